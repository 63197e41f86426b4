"""`shielding access`: who viewed a child's record, or what a person viewed (managers; the read is logged)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import typer

from cli.app import JsonOption, app, run
from cli.context import Context
from cli.errors import CommandError
from cli.render import emit, iso
from shielding.settings import get_settings


def access_lines(entries: list[dict[str, object]], more: bool) -> list[str]:
    lines = [
        f"{e['at']}  {e['actor']:<18} {e['kind']:<17} {e['front_end']:<4} {e['request_id'] or '-':<16} "
        f"{', '.join(e['child_uids']) or '-'}"  # type: ignore[arg-type]
        for e in entries
    ] or ["no entries"]
    if more:
        lines.append(f"(older entries: --before {entries[-1]['entry_id']})")
    return lines


@app.command("access")
@run
def access(
    child: Annotated[str | None, typer.Option("--child", help="Who viewed this child's record (a uid).")] = None,
    user: Annotated[str | None, typer.Option("--user", help="What this person viewed (a user name).")] = None,
    since: Annotated[str | None, typer.Option("--since", help="From this day (YYYY-MM-DD, London).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="To the end of this day (YYYY-MM-DD).")] = None,
    before: Annotated[int | None, typer.Option("--before", help="The next page: entries before this one.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Who looked at which child's record, newest first, 50 at a time (managers only; this read is logged)."""
    for name, value in (("--since", since), ("--until", until)):
        if value is not None:
            try:
                date.fromisoformat(value)
            except ValueError:
                raise CommandError(f"{name} {value!r} is not a date: write it YYYY-MM-DD") from None
    with Context(get_settings()) as ctx:
        page = ctx.get(
            "/api/access",
            child=child,
            user=user,
            since=since,
            until=until,
            before=str(before) if before is not None else None,
        )
    for e in page["entries"]:
        e["at"] = iso(datetime.fromisoformat(e["at"]))
    emit(as_json, page, access_lines(page["entries"], page["more"]))
