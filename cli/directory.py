"""Commands on the child directory: import records, view a child, search (the practitioners' read path)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from cli.app import JsonOption, app, directory_app, run
from cli.context import Context
from cli.errors import CommandError
from cli.render import child_record, emit, search_results
from shielding import access, store
from shielding.domain import Gender
from shielding.importer import parse_children
from shielding.settings import get_settings


@directory_app.command("import")
@run
async def directory_import(
    file: Annotated[Path, typer.Argument(help="JSON Lines file, one child a line.")],
    as_json: JsonOption = False,
) -> None:
    """Load or update child records from JSON Lines; all or nothing."""
    records = parse_children(file)
    async with Context(get_settings()) as ctx:
        actor = await ctx.authorise("import")
        result = await store.import_children(await ctx.pool(), records, actor=actor)
    emit(
        as_json,
        result.model_dump(),
        [f"imported {result.imported} records ({result.created} new, {result.updated} updated)"]
        + [f"linked duplicate of a shielded child, now shielded: {uid}" for uid in result.linked_duplicates],
    )


@app.command()
@run
async def view(
    uid: Annotated[str, typer.Argument(help="The child's unique identifier.")],
    override: Annotated[bool, typer.Option("--override", help="Break-glass: show hidden details once.")] = False,
    reason: Annotated[str | None, typer.Option(help="Why the override is needed (required with --override).")] = None,
    as_json: JsonOption = False,
) -> None:
    """What a practitioner sees of a child's record."""
    async with Context(get_settings()) as ctx:
        if override:
            if not (reason or "").strip():
                raise CommandError("--override needs --reason")
            record = await access.override_view(await ctx.pool(), ctx.actor, uid, reason or "")
            typer.echo("WARNING: break-glass override. This view is audited and the managers are alerted.", err=True)
        else:
            await ctx.authorise("view", child_uid=uid)
            record = await store.view_child(await ctx.pool(), uid)
    if record is None:
        raise CommandError(f"no child in the directory has the identifier {uid}")
    emit(as_json, record, child_record(record))


def _date_of_birth(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"date of birth {text!r} is not a date (YYYY-MM-DD)") from None


@app.command()
@run
async def search(
    given_name: Annotated[str | None, typer.Option(help="Given name or alias.")] = None,
    family_name: Annotated[str | None, typer.Option(help="Family name or alias.")] = None,
    date_of_birth: Annotated[str | None, typer.Option(help="YYYY-MM-DD.")] = None,
    gender: Annotated[str | None, typer.Option(help="female, male, other or unknown.")] = None,
    postcode: Annotated[str | None, typer.Option(help="Postcode (never matches a shielded record).")] = None,
    school: Annotated[str | None, typer.Option(help="School (never matches a shielded record).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Find children; a shielded record is found only through the fields it shows."""
    if not any([given_name, family_name, date_of_birth, gender, postcode, school]):
        raise CommandError("give at least one search field")
    dob = _date_of_birth(date_of_birth)
    if gender and gender not in set(Gender):
        raise CommandError("gender must be female, male, other or unknown")
    query = store.ChildSearch(
        given_name=given_name,
        family_name=family_name,
        date_of_birth=dob,
        gender=gender,
        postcode=postcode,
        school=school,
    )
    async with Context(get_settings()) as ctx:
        await ctx.authorise("search")
        results = await store.search_children(await ctx.pool(), query)
    emit(as_json, {"results": results}, search_results(results))
