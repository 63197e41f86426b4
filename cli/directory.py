"""Commands on the child directory: import records, view a child, search (the practitioners' read path)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.app import JsonOption, app, directory_app, run
from cli.context import Context, segment
from cli.errors import CommandError
from cli.passwords import read_password
from cli.render import break_glass_record, child_record, emit, search_results
from shielding.domain import Gender
from shielding.importer import ImportRefused
from shielding.settings import get_settings
from shielding.store import ImportResult
from shielding.store.directory import MAX_DOB_TOLERANCE_DAYS


@directory_app.command("import")
@run
def directory_import(
    file: Annotated[Path, typer.Argument(help="JSON Lines file, one child a line.")],
    as_json: JsonOption = False,
) -> None:
    """Load or update child records from JSON Lines; all or nothing."""
    try:
        if not file.is_file():
            raise ImportRefused(f"the file {file.name!r} cannot be found")
        handle = file.open("rb")
    except OSError as err:
        raise ImportRefused(f"the file {file.name!r} cannot be read ({err.strerror or 'unreadable'})") from None
    with handle, Context(get_settings()) as ctx:
        answer = ctx.post("/api/directory/import", content=handle, headers={"Content-Type": "application/x-ndjson"})
    result = ImportResult.model_validate(answer)
    emit(
        as_json,
        result.model_dump(),
        [f"imported {result.imported} records ({result.created} new, {result.updated} updated)"]
        + [f"linked duplicate of a shielded child, now shielded: {uid}" for uid in result.linked_duplicates],
    )


def _override(ctx: Context, uid: str, reason: str, password_stdin: bool) -> dict[str, Any]:
    terms = ctx.get(f"/api/children/{segment(uid)}/override")
    # The warning comes first, before anything is asked or shown.
    typer.echo(terms.get("warning") or "WARNING: break-glass override. This view is audited.", err=True)
    body: dict[str, str | None] = {"reason": reason}
    if terms.get("needs") == "password":
        if not password_stdin:
            raise CommandError("break-glass needs your password again: give it on standard input with --password-stdin")
        body["password"] = read_password(True, needed_for="break-glass")
    viewed = ctx.post(f"/api/children/{segment(uid)}/override", json=body)
    return viewed["record"]  # type: ignore[no-any-return]


@app.command()
@run
def view(
    uid: Annotated[str, typer.Argument(help="The child's unique identifier.")],
    override: Annotated[bool, typer.Option("--override", help="Break-glass: show hidden details once.")] = False,
    reason: Annotated[str | None, typer.Option(help="Why the override is needed (required with --override).")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Break-glass: your password again, from standard input.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """What a practitioner sees of a child's record (with --override: everything, once, audited)."""
    if override and not (reason or "").strip():
        raise CommandError("--override needs --reason")
    with Context(get_settings()) as ctx:
        if override:
            record = _override(ctx, uid, reason or "", password_stdin)
        else:
            record = ctx.get(f"/api/children/{segment(uid)}")
    emit(as_json, record, break_glass_record(record) if override else _record_lines(record))


WITHHELD = "WITHHELD (shared with a record that is shielded)"


def _record_lines(record: dict[str, Any]) -> list[str]:
    """A record's lines; an address and carers withheld because a record sharing them is shielded say so."""
    lines = child_record(record)
    if not record.get("withheld"):
        return lines
    return [
        f"{line.split(':', 1)[0]}:{' ' * (15 - len(line.split(':', 1)[0]))}{WITHHELD}"
        if line.startswith(("address:", "carers:"))
        else line
        for line in lines
    ]


def _date_of_birth(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"date of birth {text!r} is not a date (YYYY-MM-DD)") from None


@app.command()
@run
def search(
    given_name: Annotated[str | None, typer.Option(help="Given name or alias.")] = None,
    family_name: Annotated[str | None, typer.Option(help="Family name or alias.")] = None,
    date_of_birth: Annotated[str | None, typer.Option(help="YYYY-MM-DD.")] = None,
    gender: Annotated[str | None, typer.Option(help="female, male, other or unknown.")] = None,
    postcode: Annotated[str | None, typer.Option(help="Postcode (never matches a shielded record).")] = None,
    school: Annotated[str | None, typer.Option(help="School (never matches a shielded record).")] = None,
    fuzzy: Annotated[bool, typer.Option("--fuzzy", help="Forgive spelling: ranked with a score, at most 50.")] = False,
    dob_tolerance_days: Annotated[
        int, typer.Option(min=0, max=MAX_DOB_TOLERANCE_DAYS, help="With --fuzzy: days either side of the date.")
    ] = 0,
    as_json: JsonOption = False,
) -> None:
    """Find children by a name and a date of birth (at most a page); gender, postcode and school only narrow it,
    and a shielded record is found only through the fields it shows."""
    if not (given_name or family_name) or not date_of_birth:
        raise CommandError(
            "give a name (--given-name or --family-name) and --date-of-birth; --gender, --postcode and --school "
            "only narrow a search"
        )
    dob = _date_of_birth(date_of_birth)
    if gender and gender not in set(Gender):
        raise CommandError("gender must be female, male, other or unknown")
    if dob_tolerance_days and not fuzzy:
        raise CommandError("--dob-tolerance-days goes with --fuzzy")
    forgiving = {"fuzzy": "true", "dob_tolerance_days": str(dob_tolerance_days)} if fuzzy else {}
    with Context(get_settings()) as ctx:
        found = ctx.get(
            "/api/children",
            given_name=given_name,
            family_name=family_name,
            date_of_birth=dob.isoformat() if dob else None,
            gender=gender,
            postcode=postcode,
            school=school,
            **forgiving,
        )
    more = bool(found.get("more"))
    lines = search_results(found["results"])
    if fuzzy:  # best first, each with its score (from names and date of birth only)
        lines[1:] = [f"{line}  score {r['score']:.2f}" for line, r in zip(lines[1:], found["results"], strict=True)]
    if more:
        lines.append(f"more than {len(found['results'])} match: add the given name or gender to narrow the search")
    emit(as_json, {"results": found["results"], "more": more}, lines)
