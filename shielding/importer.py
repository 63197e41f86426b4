"""Reading child records from JSON Lines: every bad line is reported with its number, nothing half-loaded."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from shielding.domain import ChildRecord

MAX_LINE_BYTES = 64 * 1024


class ImportRefused(Exception):
    """The file cannot be imported; the message lists the problems by line number."""


def parse_children(path: Path) -> list[ChildRecord]:
    try:
        if not path.is_file():
            raise ImportRefused(f"the file {path.name!r} cannot be found")
        return _parse(path)
    except OSError as err:
        raise ImportRefused(f"the file {path.name!r} cannot be read ({err.strerror or 'unreadable'})") from None


def _field(loc: tuple[int | str, ...]) -> str:
    name = ".".join(str(p) for p in loc) or "record"
    return name if name.isprintable() else repr(name)  # an unknown key is the file's text: never a raw newline


def _parse(path: Path) -> list[ChildRecord]:
    with path.open("rb") as handle:
        return parse_lines(handle)


def parse_lines(lines: Iterable[bytes]) -> list[ChildRecord]:
    """Records from JSON Lines already read (an upload): the same checks, every problem by line number."""
    problems: list[str] = []
    records: list[ChildRecord] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        if len(raw) > MAX_LINE_BYTES:
            problems.append(f"line {number}: longer than {MAX_LINE_BYTES} bytes")
            continue
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            problems.append(f"line {number}: not UTF-8 text")
            continue
        if not text:
            continue
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply to be a child record
            problems.append(f"line {number}: not valid JSON")
            continue
        if not isinstance(value, dict):
            problems.append(f"line {number}: expected a JSON object for one child")
            continue
        try:
            record = ChildRecord.model_validate(value)
        except ValidationError as err:
            fields = ", ".join(sorted({_field(e["loc"]) for e in err.errors()}))
            problems.append(f"line {number}: invalid or missing {fields}")
            continue
        if record.uid in seen:
            problems.append(f"line {number}: uid {record.uid} already appears on line {seen[record.uid]}")
            continue
        seen[record.uid] = number
        records.append(record)
    if problems:
        shown = problems[:20]
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        raise ImportRefused("nothing imported: " + "; ".join(shown) + more)
    if not records:
        raise ImportRefused("nothing imported: the file has no records")
    return records
