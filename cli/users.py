"""Who may do what: the first manager (on the server, once), then managers add, remove and list staff
through the service."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated

import typer

from cli.app import JsonOption, run, users_app
from cli.context import Context, segment
from cli.passwords import read_password
from cli.render import emit, user_lines
from shielding.settings import Settings, get_settings

PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first line of standard input.")
]


async def _bootstrap(settings: Settings, name: str, password: str) -> None:
    from shielding import store
    from starter.identity import IdentityService

    pool = await store.create_pool(settings.resolved_database_url(), max_size=1)
    try:
        identity = IdentityService(pool, idle_timeout=timedelta(minutes=settings.session_idle_minutes))
        await identity.bootstrap_manager(name, password)
    finally:
        await pool.close()


@users_app.command("bootstrap")
@run
def users_bootstrap(
    name: Annotated[str, typer.Argument(help="The first manager's account name.")],
    password_stdin: PasswordStdin = False,
) -> None:
    """Create the first manager, straight in the database (DATABASE_URL); refused once any manager exists."""
    settings = get_settings()
    password = read_password(password_stdin, needed_for="the first manager")
    asyncio.run(_bootstrap(settings, name, password))
    typer.echo(f"user {name}: manager (the first); sign in with `shielding login {name}`")


@users_app.command("add")
@run
def users_add(
    name: Annotated[str, typer.Argument(help="The account name they sign in with.")],
    role: Annotated[str, typer.Option(help="intake, reviewer, manager, practitioner, child-protection or operations.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Set their password (a local account) from standard input.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Add a user or grant them a role (managers)."""
    body: dict[str, str] = {"name": name, "role": role}
    if password_stdin:
        body["password"] = read_password(True, needed_for="a local account")
    with Context(get_settings()) as ctx:
        added = ctx.post("/api/users", json=body)
    emit(as_json, added, [f"user {added['name']}: {added['role']}"])


@users_app.command("remove")
@run
def users_remove(
    name: Annotated[str, typer.Argument(help="The account name.")],
    role: Annotated[str | None, typer.Option(help="Remove only this role (default: every role and sign-in).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Remove a role from a user, or every role and their sign-in (managers)."""
    with Context(get_settings()) as ctx:
        removed = ctx.delete(f"/api/users/{segment(name)}", role=role)
    emit(as_json, removed, [f"user {removed['name']}: removed {removed['removed']}"])


@users_app.command("list")
@run
def users_list(as_json: JsonOption = False) -> None:
    """Every account, its roles and how it signs in (managers)."""
    with Context(get_settings()) as ctx:
        listed = ctx.get("/api/users")
    emit(as_json, listed, user_lines(listed["users"]))
