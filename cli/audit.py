"""Commands on the audit log: the entries for a request or a child, and the check of its hash chain."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from cli.app import JsonOption, audit_app, run
from cli.context import Context
from cli.errors import CommandError
from cli.render import audit_lines, emit, iso
from shielding.settings import get_settings
from shielding.store import ChainVerdict


@audit_app.callback()
def audit(
    ctx: typer.Context,
    request_id: Annotated[str | None, typer.Option("--request", help="A request id.")] = None,
    child: Annotated[str | None, typer.Option("--child", help="A child uid.")] = None,
    as_json: JsonOption = False,
) -> None:
    """The log of every action on a request or a child (`audit verify` checks the hash chain)."""
    if ctx.invoked_subcommand is not None:
        return
    _audit(request_id, child, as_json)


@run
def _audit(request_id: str | None, child: str | None, as_json: bool) -> None:
    if (request_id is None) == (child is None):
        raise CommandError("give exactly one of --request REQUEST_ID or --child UID")
    with Context(get_settings()) as ctx:
        entries = ctx.get("/api/audit", request=request_id, child=child)["entries"]
    for e in entries:
        e["at"] = iso(datetime.fromisoformat(e["at"]))
        e.pop("entry_hash", None)
        e.pop("prev_hash", None)
    emit(as_json, {"entries": entries}, audit_lines(entries))


@audit_app.command("verify")
@run
def audit_verify(as_json: JsonOption = False) -> None:
    """Check the audit log's hash chain; names the first broken entry."""
    with Context(get_settings()) as ctx:
        result = ChainVerdict.model_validate(ctx.get("/api/audit/verify"))
    emit(as_json, result.model_dump(), [result.message])
    if not result.intact:
        raise typer.Exit(1)
