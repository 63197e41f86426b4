"""Commands for managers: who may do what."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.app import JsonOption, run, users_app
from cli.context import Context
from cli.render import emit
from shielding import access
from shielding.settings import get_settings


@users_app.command("add")
@run
async def users_add(
    name: Annotated[str, typer.Argument(help="The actor name (what SHIELDING_ACTOR holds).")],
    role: Annotated[str, typer.Option(help="intake, reviewer, manager, practitioner or child-protection.")],
    as_json: JsonOption = False,
) -> None:
    """Add a user or change their role."""
    async with Context(get_settings()) as ctx:
        await access.add_user(await ctx.pool(), name, role, by=ctx.actor)
    emit(as_json, {"name": name, "role": role}, [f"user {name}: {role}"])
