"""Hostile input: random and huge strings, control characters, wrong types, SQL and JSON metacharacters,
impossible dates and offsets, and thousands of children, thrown at intake, forms, import and the CLI.

Every property is the same promise seen from a different door: the service either refuses with a clear
message (one printable line, no Python or pydantic noise) or does exactly what was asked, and the database
is left consistent (all or nothing; what was stored reads back exactly).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import unicodedata
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shielding import deadlines, store
from shielding.domain import (
    MAX_CHILDREN_PER_REQUEST,
    REQUEST_ID_PATTERN,
    UID_PATTERN,
    ChildRecord,
    Criterion,
    ShieldingRequestInput,
)
from shielding.importer import MAX_LINE_BYTES, ImportRefused, parse_children
from starter import (
    CLOCK_SKEW,
    IntakeDraft,
    Refusal,
    ShieldingService,
    new_request_id,
    parse_instant,
    read_documents,
    validate_intake,
)
from tests.helpers.servers import TEST_ACTION_KEYS

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
REQUEST_ID = "SR-ABCDEFGH2345"
ACTOR = "intake.hostile"
MAX_DOCUMENT_BYTES = 4096

# Python, pydantic and traceback wording that must never reach a person.
NOISE = (
    "Traceback",
    "pydantic",
    "ValidationError",
    "input_value",
    "input_type",
    "Input should",
    "List should",
    "after validation",
    "For further information",
    "object at 0x",
    "<class ",
)

DB_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def noise_free(text: str) -> bool:
    """Inputs are echoed (quoted) in refusals, so an input that itself spells noise is left out."""
    lowered = text.lower()
    return not any(word.lower() in lowered for word in NOISE)


def assert_clear(message: str) -> None:
    """A refusal a person can read: non-empty, one printable line, no Python or pydantic noise."""
    assert message.strip(), "empty refusal"
    assert message.isprintable(), f"refusal is not one printable line: {message[:500]!r}"
    for word in NOISE:
        assert word.lower() not in message.lower(), f"{word!r} in refusal: {message[:500]!r}"


# ------------------------------------------------------------------------------------------- strategies

METACHARACTERS = [
    "'; DROP TABLE children; --",
    "Robert'); DROP TABLE students;--",
    "' OR '1'='1",
    '"; DELETE FROM audit_log; --',
    '"}{',
    '{"uid": "x"}',
    "\u0000",
    "\\u0000",
    "\\",
    "$1",
    "%s%n%x",
    "{}",
    "[]",
    "null",
    "NaN",
    "\ud800",
    "\udfff",
    "\ufeff",
    "\u202e",
    "\u2028",
    "\x7f",
    "\x1b[31m",
    "\r\n",
    "\t",
    " ",
    "",
    "🙂",
    "Ω≈ç√",
    "<script>alert(1)</script>",
    "${jndi:ldap://x}",
    "{{7*7}}",
    "../../etc/passwd",
]

IMPOSSIBLE_INSTANTS = [
    "2026-02-30T10:00:00+00:00",
    "2026-02-29T10:00:00+00:00",
    "2026-13-01T10:00:00+00:00",
    "2026-11-24T24:00:00+00:00",
    "2026-11-24T10:60:00+00:00",
    "2026-11-24T10:00:00+25:00",
    "2026-11-24T10:00:00-24:00",
    "2026-11-24T10:00:00+23:59",
    "2026-11-24T10:00:00-23:59",
    "0000-01-01T00:00:00Z",
    "0001-01-01T00:00:00+05:00",
    "0001-01-01T00:00:00Z",
    "1899-12-31T12:00:00Z",
    "1999-06-01T10:00:00Z",
    "1999-12-31T23:59:59Z",
    "2101-01-01T00:00:00Z",
    "9999-12-31T23:59:59-23:59",
    "10000-01-01T00:00:00Z",
    "2026-11-24T10:00:00",
    "2026-11-24",
    "2026-11-24T10:00:00+00:00\x00",
    "2026-11-24T10:00:00\x00",
    " 2026-11-24T10:00\n",
    "2026-11-24T10:00:00+00:00'; DROP TABLE children; --",
    "Z",
    "now",
    "",
    " ",
]

any_text = st.text(alphabet=st.characters(exclude_categories=()))  # surrogates included
control_text = st.text(alphabet=st.characters(max_codepoint=0x9F, categories=("Cc",)), min_size=1, max_size=5)
huge_text = st.builds(
    lambda unit, count: unit * count,
    st.sampled_from(["a", "'; DROP TABLE children; --", "é", "🙂", " ", "\x00", '"}{']),
    st.integers(1_000, 100_000),
)
hostile_text = st.one_of(
    st.sampled_from(METACHARACTERS),
    st.text(),
    any_text,
    control_text,
    huge_text,
    st.builds(lambda a, b, c: a + b + c, st.text(max_size=5), st.sampled_from(METACHARACTERS), st.text(max_size=5)),
).filter(noise_free)

padding = st.sampled_from(["", " ", "  ", "\t", "\n", " \u00a0", "\u3000"])


def padded(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda before, value, after: before + value + after, padding, strategy, padding)


# Text that is hostile to SQL and JSON but valid: no control characters or surrogates, not blank.
printable_char = st.characters(exclude_categories=("Cc", "Cs"))
awkward_text = st.one_of(
    st.sampled_from([m for m in METACHARACTERS if m.strip() and m.isprintable() and "\ud800" not in m]),
    st.text(alphabet=printable_char, min_size=1, max_size=60),
    st.builds(
        lambda a, b: a + b,
        st.sampled_from(["'; DROP TABLE children; --", '"}{', "\\u0000", "O'Brien", "Zoë", "محمد", "李"]),
        st.text(alphabet=printable_char, max_size=20),
    ),
).filter(lambda s: bool(s.strip()) and len(s.strip()) <= 200 and noise_free(s))

valid_uid = st.from_regex(UID_PATTERN, fullmatch=True)
PHONE = re.compile(r"^\+?[0-9 ()-]{6,24}$")
valid_phone = st.from_regex(r"\A\+?[0-9 ()-]{6,24}\Z").filter(lambda s: bool(PHONE.match(s.strip())))
valid_email = st.emails().filter(lambda s: len(s) <= 254)
criterion_code = st.builds(
    lambda c, upper: c.value.upper() if upper else c.value,
    st.sampled_from([c for c in Criterion if c is not Criterion.OTHER_SIGNIFICANT_HARM]),
    st.booleans(),
)
fixed_offsets = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))


@st.composite
def valid_drafts(draw: st.DrawFn) -> tuple[dict[str, Any], datetime]:
    """A draft the service must accept, with awkward (but valid) text everywhere; and its time of call."""
    professional = draw(st.booleans())
    ago = draw(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3)))
    called = (NOW - ago).astimezone(draw(fixed_offsets)).replace(microsecond=0)
    called_text = draw(
        st.sampled_from(
            [
                called.isoformat(),
                called.isoformat(sep=" "),
                called.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                called.astimezone(UTC).isoformat().replace("+00:00", "z"),
            ]
        )
    )
    contact = draw(st.sampled_from(["phone", "email", "both"]))
    kwargs: dict[str, Any] = {
        "children": draw(st.lists(padded(valid_uid), min_size=1, max_size=MAX_CHILDREN_PER_REQUEST)),
        "criteria": draw(st.lists(padded(criterion_code), min_size=1, max_size=5)),
        "reason": draw(padded(awkward_text)),
        "requestor_type": draw(padded(st.sampled_from(["professional", "Professional", "PUBLIC", "public"])))
        if professional
        else "public",
        "requestor_name": draw(padded(awkward_text)),
        "requestor_organisation": draw(padded(awkward_text)) if professional else None,
        "requestor_phone": draw(valid_phone) if contact in {"phone", "both"} else None,
        "requestor_email": draw(valid_email) if contact in {"email", "both"} else None,
    }
    if draw(st.booleans()):
        kwargs["criteria"].append("other-significant-harm")
        kwargs["other_description"] = draw(padded(awkward_text))
    if draw(st.booleans()):
        kwargs["called_at"] = called_text
        return kwargs, called
    return kwargs, NOW


instant_text = st.one_of(
    st.sampled_from(IMPOSSIBLE_INSTANTS),
    hostile_text,
    st.datetimes(timezones=st.one_of(st.none(), fixed_offsets)).map(lambda d: d.isoformat()),
)
# Times the service must accept: within the last few days (some just inside the clock-skew allowance).
recent_instant = st.builds(
    lambda ago, zone: (NOW - ago).astimezone(zone),
    st.timedeltas(min_value=-CLOCK_SKEW, max_value=timedelta(days=3)),
    st.one_of(fixed_offsets, st.timezones()),
)
instant_value = st.one_of(
    instant_text,
    recent_instant,
    recent_instant.map(lambda d: d.isoformat()),
    st.datetimes(timezones=st.one_of(st.none(), st.timezones(), fixed_offsets)),
)

HOSTILE_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "children": st.one_of(
        st.lists(hostile_text, max_size=5),
        st.lists(valid_uid, min_size=MAX_CHILDREN_PER_REQUEST + 1, max_size=300),
    ),
    "criteria": st.lists(st.one_of(hostile_text, st.just("objection-in-principle")), max_size=5),
    "other_description": st.one_of(st.none(), hostile_text),
    "reason": st.one_of(st.none(), hostile_text),
    "requestor_type": st.one_of(st.none(), hostile_text),
    "requestor_name": st.one_of(st.none(), hostile_text),
    "requestor_organisation": st.one_of(st.none(), hostile_text),
    "requestor_phone": st.one_of(st.none(), hostile_text),
    "requestor_email": st.one_of(st.none(), hostile_text),
    "called_at": st.one_of(st.none(), instant_value),
}


@st.composite
def hostile_drafts(draw: st.DrawFn) -> dict[str, Any]:
    """A valid draft with one or more fields replaced by something hostile."""
    kwargs, _ = draw(valid_drafts())
    for field in draw(st.lists(st.sampled_from(sorted(HOSTILE_FIELDS)), min_size=1, max_size=4, unique=True)):
        kwargs[field] = draw(HOSTILE_FIELDS[field])
    return kwargs


# A valid draft, for explicit examples of the problems these properties first found.
BASE_DRAFT: dict[str, Any] = {
    "children": ["C-1"],
    "criteria": ["refuge"],
    "reason": "Family in a refuge.",
    "requestor_type": "public",
    "requestor_name": "A caller",
    "requestor_phone": "020 7946 0000",
}
FOUND_DRAFTS = [
    {**BASE_DRAFT, "called_at": "1999-06-01T10:00:00Z"},  # crashed: outside the bank-holiday calendar
    {**BASE_DRAFT, "called_at": "0001-01-01T00:00:00+05:00"},  # crashed: OverflowError
    {**BASE_DRAFT, "called_at": "2026-11-24T10:00:00+00:00\x00"},  # accepted despite the NUL
    {**BASE_DRAFT, "called_at": " 2026-11-24T10:00\n"},  # refusal split over two lines
    {**BASE_DRAFT, "reason": "\ud800"},  # pydantic wording in the refusal
    {**BASE_DRAFT, "requestor_name": "a\x9b31m"},  # C1 control character accepted
    {**BASE_DRAFT, "children": [f"C-{i}" for i in range(51)]},  # pydantic wording for the limit
    {**BASE_DRAFT, "children": [f"C-{i}" for i in range(3000)], "requestor_phone": None},  # limit not named
    {**BASE_DRAFT, "requestor_name": "\x00", "children": ["\ud800", "'; DROP TABLE children; --"]},  # jsonb
]


def with_examples(argument: str, values: list[Any]) -> Any:
    def decorate(test: Any) -> Any:
        for value in values:
            test = example(**{argument: value})(test)
        return test

    return decorate


wrong_type = st.one_of(
    st.integers(),
    st.floats(),
    st.booleans(),
    st.binary(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.just(object()),
)


# ----------------------------------------------------------------------------------------------- intake


def assert_faithful(kwargs: dict[str, Any], result: ShieldingRequestInput, called_at: datetime | None) -> None:
    """The validated request says exactly what was typed, after stripping."""

    def stripped(value: str | None) -> str | None:
        return value.strip() if value else None

    assert isinstance(result, ShieldingRequestInput)
    assert result.request_id == REQUEST_ID
    assert result.actor == ACTOR
    assert result.children == [c.strip() for c in kwargs["children"]]
    assert all(UID_PATTERN.fullmatch(c) for c in result.children)
    assert 1 <= len(result.children) <= MAX_CHILDREN_PER_REQUEST
    assert result.criteria == list(dict.fromkeys(Criterion(c.strip().lower()) for c in kwargs["criteria"]))
    assert result.reason == kwargs["reason"].strip()
    assert result.other_description == stripped(kwargs.get("other_description"))
    requestor = result.requestor
    assert requestor.type.value == kwargs["requestor_type"].strip().lower()
    assert requestor.name == kwargs["requestor_name"].strip()
    assert requestor.organisation == stripped(kwargs.get("requestor_organisation"))
    assert requestor.phone == stripped(kwargs.get("requestor_phone"))
    assert requestor.email == stripped(kwargs.get("requestor_email"))
    if called_at is not None:
        assert result.called_at == called_at
    assert result.called_at.utcoffset() is not None
    assert result.called_at <= NOW + CLOCK_SKEW
    assert deadlines.form_due_at(result.called_at) > NOW
    for text in (result.reason, result.other_description, requestor.name, requestor.organisation):
        assert text is None or not any(unicodedata.category(ch) == "Cc" and ch != "\t" for ch in text), text


@settings(max_examples=150, deadline=None)
@given(valid_drafts())
def test_valid_draft_with_awkward_text_is_accepted_faithfully(case: tuple[dict[str, Any], datetime]) -> None:
    kwargs, called_at = case
    result = validate_intake(IntakeDraft(**kwargs), request_id=REQUEST_ID, actor=ACTOR, now=NOW)
    assert_faithful(kwargs, result, called_at)


@settings(max_examples=400, deadline=None)
@given(kwargs=hostile_drafts())
@with_examples("kwargs", FOUND_DRAFTS)
def test_hostile_draft_is_refused_clearly_or_accepted_faithfully(kwargs: dict[str, Any]) -> None:
    draft = IntakeDraft(**kwargs)
    try:
        result = validate_intake(draft, request_id=REQUEST_ID, actor=ACTOR, now=NOW)
    except Refusal as refusal:
        event("refused")
        message = str(refusal)
        assert message.startswith("Refused"), message[:300]
        assert_clear(message)
        return
    event("accepted")
    called = kwargs.get("called_at")
    assert_faithful(kwargs, result, None if called is None else parse_instant(called))


@settings(max_examples=300, deadline=None)
@given(instant_value)
def test_time_of_call_is_refused_clearly_or_parsed_exactly(value: str | datetime) -> None:
    event(check_time_of_call(value))


@pytest.mark.parametrize("value", IMPOSSIBLE_INSTANTS)
def test_each_impossible_time_of_call_is_refused_clearly_or_parsed_exactly(value: str) -> None:
    check_time_of_call(value)


def check_time_of_call(value: str | datetime) -> str:
    draft = IntakeDraft(**{**BASE_DRAFT, "called_at": value})
    try:
        result = validate_intake(draft, request_id=REQUEST_ID, actor=ACTOR, now=NOW)
    except Refusal as refusal:
        assert_clear(str(refusal))
        return "refused"
    # Accepted: the instant is unambiguous, within the form deadline and not in the future.
    if isinstance(value, str):
        assert value.strip().isprintable(), f"accepted a time with control characters: {value!r}"
        text = value.strip()
        if text[-1:] in "Zz":
            text = text[:-1] + "+00:00"
        assert result.called_at == datetime.fromisoformat(text)
    else:
        assert result.called_at == value
    assert result.called_at.utcoffset() is not None
    assert NOW - timedelta(days=12) < result.called_at <= NOW + CLOCK_SKEW
    return "accepted"


@settings(max_examples=200, deadline=None)
@given(text=instant_text)
@with_examples("text", IMPOSSIBLE_INSTANTS)
def test_parse_instant_refuses_clearly_or_returns_an_aware_instant(text: str) -> None:
    try:
        parsed = parse_instant(text, "time of the call")
    except Refusal as refusal:
        assert_clear(str(refusal))
        return
    assert parsed.utcoffset() is not None
    assert text.strip().isprintable(), f"accepted a time with control characters: {text!r}"


@settings(max_examples=150, deadline=None)
@given(field=st.sampled_from(sorted(HOSTILE_FIELDS)), value=wrong_type)
@example(field="called_at", value=0)  # became 1970-01-01T00:00Z, then crashed outside the calendar
def test_wrong_types_never_reach_intake_as_anything_but_strings(field: str, value: Any) -> None:
    """A draft is typed: a value of the wrong type is either rejected when the draft is built (the CLI and the
    service only ever build drafts from typed text) or coerced to text, which intake then judges as usual."""
    base = {**BASE_DRAFT, field: value}
    try:
        draft = IntakeDraft(**base)
    except ValidationError:
        return
    for name in ("children", "criteria"):
        assert all(isinstance(item, str) for item in getattr(draft, name))
    try:
        validate_intake(draft, request_id=REQUEST_ID, actor=ACTOR, now=NOW)
    except Refusal as refusal:
        assert_clear(str(refusal))


@settings(max_examples=15, deadline=None)
@given(
    count=st.integers(MAX_CHILDREN_PER_REQUEST + 1, 5_000),
    bad_uids=st.booleans(),
    other_problem=st.booleans(),
)
def test_thousands_of_children_are_refused_with_the_limit(count: int, bad_uids: bool, other_problem: bool) -> None:
    children = [f"'; DROP TABLE children; -- {i}" if bad_uids else f"C-{i:06d}" for i in range(count)]
    draft = IntakeDraft(
        children=children,
        criteria=["refuge"],
        reason="Siblings in a refuge.",
        requestor_type="public",
        requestor_name="A caller",
        requestor_phone=None if other_problem else "020 7946 0000",
    )
    with pytest.raises(Refusal) as info:
        validate_intake(draft, request_id=REQUEST_ID, actor=ACTOR, now=NOW)
    message = str(info.value)
    assert_clear(message)
    assert str(MAX_CHILDREN_PER_REQUEST) in message and "child" in message.lower(), message[:500]
    assert len(message) < 2_000, "the refusal should name the limit, not every child"


def test_exactly_the_limit_of_children_is_accepted() -> None:
    children = [f"C-{i:06d}" for i in range(MAX_CHILDREN_PER_REQUEST)]
    draft = IntakeDraft(
        children=children,
        criteria=["refuge"],
        reason="Siblings in a refuge.",
        requestor_type="public",
        requestor_name="A caller",
        requestor_phone="020 7946 0000",
    )
    assert validate_intake(draft, request_id=REQUEST_ID, actor=ACTOR, now=NOW).children == children


def service(pool: asyncpg.Pool) -> ShieldingService:
    """A service whose refusals never reach Temporal (no client: a refusal must not need one)."""
    return ShieldingService(
        None,  # type: ignore[arg-type]
        pool,
        task_queue="unused",
        max_document_bytes=MAX_DOCUMENT_BYTES,
        action_keys=TEST_ACTION_KEYS,
    )


@DB_SETTINGS
@given(kwargs=st.one_of(hostile_drafts(), st.builds(dict, children=st.lists(valid_uid, min_size=51, max_size=3000))))
@with_examples("kwargs", FOUND_DRAFTS)
async def test_refused_intake_is_audited_and_starts_nothing(pool: asyncpg.Pool, kwargs: dict[str, Any]) -> None:
    draft = IntakeDraft(**kwargs)
    try:
        validate_intake(draft, request_id=REQUEST_ID, actor=ACTOR, now=NOW)
    except Refusal:
        pass
    else:
        assume(False)  # an accepted request starts a workflow; the lifecycle tests cover that path
    request_id = new_request_id()
    with pytest.raises(Refusal) as info:
        await service(pool).submit_request(draft, actor=ACTOR, request_id=request_id, now=NOW)
    assert_clear(str(info.value))
    rows = await pool.fetch("SELECT action, reason, details FROM audit_log WHERE request_id = $1", request_id)
    assert [r["action"] for r in rows] == ["refused"]
    assert rows[0]["reason"] == str(info.value)
    assert len(rows[0]["details"]["children"]) <= 50
    assert not await store.request_exists(pool, request_id)


# ------------------------------------------------------------------------------------------------- forms


@pytest.fixture(scope="module")
def documents_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="hostile-docs-") as root:
        base = Path(root)
        (base / "form.pdf").write_bytes(b"%PDF-1.7 completed form")
        (base / "empty.pdf").write_bytes(b"")
        (base / "big.pdf").write_bytes(b"x" * (MAX_DOCUMENT_BYTES + 1))
        (base / "exact.pdf").write_bytes(b"y" * MAX_DOCUMENT_BYTES)
        (base / "'; DROP TABLE form_documents; --.pdf").write_bytes(b"quoted")
        (base / '"}{ 名前 🙂.txt').write_bytes(b"\x00\xff binary \r\n")
        (base / "folder").mkdir()
        (base / "loop").symlink_to(base / "loop")
        (base / "dangling").symlink_to(base / "missing")
        yield base


NAMED_DOCUMENTS = [
    "form.pdf",
    "empty.pdf",
    "big.pdf",
    "exact.pdf",
    "'; DROP TABLE form_documents; --.pdf",
    '"}{ 名前 🙂.txt',
    "folder",
    "loop",
    "loop/x",
    "dangling",
    "form.pdf/x",
    "missing",
]

READABLE_DOCUMENTS = NAMED_DOCUMENTS[3:6] + ["form.pdf"]

document_path = st.one_of(
    st.sampled_from(READABLE_DOCUMENTS).map(lambda name: ("in-dir", name)),
    st.sampled_from(NAMED_DOCUMENTS).map(lambda name: ("in-dir", name)),
    st.one_of(
        hostile_text,
        st.builds(lambda n: "a" * n, st.integers(200, 6_000)),
        st.builds(lambda n: "a/" * n, st.integers(100, 3_000)),
        st.sampled_from(["", ".", "..", "/", "/dev/null", "/proc/self/mem", "-"]),
    ).map(lambda raw: ("raw", raw)),
)


@settings(max_examples=300, deadline=None)
@given(entries=st.lists(document_path, max_size=3))
@example(entries=[("raw", "a" * 300)])  # crashed: OSError (file name too long)
@example(entries=[("in-dir", "form.pdf"), ("raw", "a/" * 3_000)])
def test_documents_are_refused_clearly_or_read_exactly(documents_dir: Path, entries: list[tuple[str, str]]) -> None:
    paths = [str(documents_dir / value) if kind == "in-dir" else value for kind, value in entries]
    try:
        documents = read_documents(paths, MAX_DOCUMENT_BYTES)
    except Refusal as refusal:
        event("refused")
        assert_clear(str(refusal))
        return
    event("read")
    assert len(documents) == len(paths) >= 1
    for raw, document in zip(paths, documents, strict=True):
        assert document.filename == Path(raw).name
        assert document.content == Path(raw).read_bytes()
        assert 0 < len(document.content) <= MAX_DOCUMENT_BYTES


request_ids = st.one_of(
    hostile_text,
    st.from_regex(REQUEST_ID_PATTERN, fullmatch=True),
    st.builds(
        lambda rid, suffix: rid + suffix,
        st.from_regex(REQUEST_ID_PATTERN, fullmatch=True),
        st.sampled_from(["\n", " ", "\x00", "'; DROP TABLE shielding_requests; --", "\r\n", "\u2028"]),
    ),
    st.builds(lambda rid: rid.lower(), st.from_regex(REQUEST_ID_PATTERN, fullmatch=True)),
)


@DB_SETTINGS
@given(request_id=request_ids, entries=st.lists(st.sampled_from(NAMED_DOCUMENTS), max_size=3))
@example(request_id="SR-ABCDEFGH2345\n", entries=["form.pdf"])  # passed the id check: refusal over two lines
async def test_form_for_an_unknown_or_malformed_request_is_refused_and_stores_nothing(
    pool: asyncpg.Pool, documents_dir: Path, request_id: str, entries: list[str]
) -> None:
    before = await pool.fetchval("SELECT count(*) FROM form_documents")
    with pytest.raises(Refusal) as info:
        await service(pool).submit_form(request_id, [documents_dir / name for name in entries], actor=ACTOR)
    assert_clear(str(info.value))
    assert await pool.fetchval("SELECT count(*) FROM form_documents") == before


# ------------------------------------------------------------------------------------------------ import

GENDERS = ["female", "male", "other", "unknown"]


@st.composite
def child_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """One valid child as JSON, with SQL/JSON-hostile (but valid) text in every text field; uid set later."""
    text = padded(awkward_text)
    child: dict[str, Any] = {
        "uid": "placeholder",
        "given_name": draw(text),
        "family_name": draw(text),
        "aliases": draw(st.lists(text, max_size=3)),
        "gender": draw(st.sampled_from(GENDERS)),
        "date_of_birth": draw(st.dates()).isoformat(),
    }
    if draw(st.booleans()):
        child["address"] = {
            "lines": draw(st.lists(text, max_size=3)),
            "postcode": draw(st.one_of(st.none(), text)),
        }
    child["carers"] = draw(
        st.lists(
            st.fixed_dictionaries(
                {"name": text},
                optional={"relationship": text, "phone": valid_phone},
            ),
            max_size=2,
        )
    )
    for key in ("school", "gp_practice"):
        if draw(st.booleans()):
            child[key] = draw(text)
    child["practitioners"] = draw(st.lists(text, max_size=3))
    return child


def unique_uid(prefix: str = "H") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def bad_lines(uid: str) -> st.SearchStrategy[bytes]:
    """Lines that must be refused: not JSON, not an object, or an invalid child."""

    def corrupt(child: dict[str, Any], key: str, value: Any) -> bytes:
        return json.dumps({**child, "uid": uid, key: value}).encode()

    child = {"uid": uid, "given_name": "Amelia", "family_name": "Hartley", "gender": "female"}
    child["date_of_birth"] = "2015-03-14"
    corrupted = st.one_of(
        st.tuples(st.just("uid"), st.sampled_from(["", "bad uid", "'; DROP TABLE children; --", "x" * 65, "-a", 123])),
        st.tuples(
            st.just("date_of_birth"),
            st.sampled_from(["2026-02-30", "0000-01-01", "10000-01-01", "2015-13-01", "yesterday", None, "", True]),
        ),
        st.tuples(st.just("gender"), st.sampled_from(["FEMALE", "f", "", None, "'; DROP TABLE children; --"])),
        st.tuples(
            st.just("given_name"),
            st.sampled_from(
                ["", "   ", "\u0000", "a\nb", "\x1b[31m", "\x85", "a\x9b31m", "x" * 201, None, 5, ["a"], "\ud800"]
            ),
        ),
        st.tuples(st.just("aliases"), st.sampled_from(["alias", [""], ["a"] * 21, [None], {"a": 1}])),
        st.tuples(st.just("address"), st.sampled_from(["12 Frampton Street", {"lines": "x"}, {"town": "London"}])),
        st.tuples(st.just("carers"), st.sampled_from([[{"name": "J", "phone": "call me"}], [{}], "Joan"])),
        st.tuples(st.just("'; DROP TABLE children; --"), st.just(1)),
        st.tuples(st.just("\n\x00}{"), st.just("x")),
    ).map(lambda kv: corrupt(child, *kv))
    return st.one_of(
        corrupted,
        st.sampled_from(
            [
                b"'; DROP TABLE children; --",
                b'"}{',
                b"{",
                b"[]",
                b"null",
                b"42",
                b'"a string"',
                b"\xff\xfe\x00",
                b"\xc3\x28",
                b"\x00",
                "\ufeff".encode() + json.dumps(child).encode(),
                b"[" * 50_000,
                b'{"a":' * 10_000,
                b"x" * (MAX_LINE_BYTES + 10),
            ]
        ),
        st.binary(min_size=1, max_size=50).filter(lambda b: b.strip() and b"\n" not in b),
    )


async def count_children(pool: asyncpg.Pool) -> int:
    return await pool.fetchval("SELECT count(*) FROM children")  # type: ignore[no-any-return]


def write_lines(lines: list[bytes], newline: bytes = b"\n") -> Path:
    with tempfile.NamedTemporaryFile(prefix="hostile-import-", suffix=".jsonl", delete=False) as handle:
        handle.write(newline.join(lines) + newline)
    return Path(handle.name)


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(
        st.one_of(
            bad_lines("B-1"),
            st.binary(max_size=80),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.floats() | hostile_text,
                lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3),
                max_leaves=8,
            ).map(lambda v: json.dumps(v).encode()),
            child_dicts().map(lambda c: json.dumps(c).encode()),
        ),
        max_size=8,
    ),
    newline=st.sampled_from([b"\n", b"\r\n"]),
)
@example(lines=[b"[" * 50_000], newline=b"\n")  # crashed: RecursionError
@example(lines=[b'{"uid": "C-1", "\\n\\u0000}{": 1}'], newline=b"\n")  # the key's newline in the refusal
@example(  # C1 control character accepted
    lines=[
        b'{"uid": "placeholder", "given_name": "a\\u009b31m", "family_name": "F", "gender": "male",'
        b' "date_of_birth": "2015-01-01"}'
    ],
    newline=b"\n",
)
def test_parse_refuses_clearly_or_returns_every_line(lines: list[bytes], newline: bytes) -> None:
    # Give each generated child its own uid, so a duplicate uid is never the (legitimate) reason for refusal.
    numbered = []
    for line in lines:
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):
            numbered.append(line)
            continue
        if isinstance(value, dict) and value.get("uid") == "placeholder":
            value["uid"] = unique_uid()
            line = json.dumps(value).encode()
        numbered.append(line)
    path = write_lines(numbered, newline)
    try:
        records = parse_children(path)
    except ImportRefused as refusal:
        message = str(refusal)
        assert_clear(message)
        assert message.startswith("nothing imported"), message[:300]
        event("refused")
        return
    finally:
        path.unlink()
    event("parsed")
    non_blank = [line for line in b"\n".join(numbered).split(b"\n") if line.strip()]
    assert len(records) == len(non_blank) >= 1
    for record, line in zip(records, non_blank, strict=True):
        assert isinstance(record, ChildRecord)
        assert record.uid == json.loads(line)["uid"]
        assert not any(
            unicodedata.category(ch) == "Cc" and ch != "\t"
            for ch in json.dumps(record.model_dump(mode="json"), ensure_ascii=False)
        ), f"accepted a control character: {record!r}"


@DB_SETTINGS
@given(
    good=st.lists(child_dicts(), min_size=1, max_size=30),
    bad=st.integers(1, 4),
    data=st.data(),
)
async def test_failed_import_of_a_mixed_file_changes_nothing(
    pool: asyncpg.Pool, good: list[dict[str, Any]], bad: int, data: st.DataObject
) -> None:
    lines: list[bytes] = []
    uids = []
    for child in good:
        child["uid"] = unique_uid("G")
        uids.append(child["uid"])
        lines.append(json.dumps(child, ensure_ascii=data.draw(st.booleans())).encode())
    bad_numbers = []
    for _ in range(bad):
        position = data.draw(st.integers(0, len(lines)))
        lines.insert(position, data.draw(bad_lines(unique_uid("B"))))
        bad_numbers = [n + 1 if n >= position + 1 else n for n in bad_numbers] + [position + 1]
    if data.draw(st.booleans()):  # a duplicate uid is a bad line too
        lines.append(json.dumps(good[0]).encode())
        bad_numbers.append(len(lines))
    before = await count_children(pool)
    path = write_lines(lines)
    try:
        with pytest.raises(ImportRefused) as info:
            records = parse_children(path)
            await store.import_children(pool, records, actor="import.hostile")
    finally:
        path.unlink()
    message = str(info.value)
    assert_clear(message)
    assert f"line {min(bad_numbers)}:" in message, message[:500]
    assert await count_children(pool) == before
    assert await store.existing_children(pool, uids) == set()


@DB_SETTINGS
@given(
    good=st.lists(child_dicts(), min_size=1, max_size=20),
    position=st.integers(0, 20),
    poison=st.sampled_from(["\x00", "a\x00b", "\ud800", "\udfff x"]),
    field=st.sampled_from(["given_name", "family_name", "school"]),
)
async def test_import_is_all_or_nothing_when_the_database_rejects_a_record(
    pool: asyncpg.Pool, good: list[dict[str, Any]], position: int, poison: str, field: str
) -> None:
    """A record that slipped past validation (built without it) and that PostgreSQL cannot store rolls back
    the whole batch, including the records before it."""
    records = []
    for child in good:
        child["uid"] = unique_uid("A")
        records.append(ChildRecord.model_validate(child))
    poisoned = ChildRecord.model_construct(**{**dict(records[0]), "uid": unique_uid("P"), field: poison})
    records.insert(min(position, len(records)), poisoned)
    before = await count_children(pool)
    with pytest.raises((asyncpg.PostgresError, UnicodeError)):
        await store.import_children(pool, records, actor="import.hostile")
    assert await count_children(pool) == before
    assert await store.existing_children(pool, [r.uid for r in records]) == set()


@DB_SETTINGS
@given(child=child_dicts(), ensure_ascii=st.booleans())
async def test_hostile_but_valid_strings_round_trip_exactly(
    pool: asyncpg.Pool, child: dict[str, Any], ensure_ascii: bool
) -> None:
    child["uid"] = unique_uid("R")
    path = write_lines([json.dumps(child, ensure_ascii=ensure_ascii).encode()])
    try:
        records = parse_children(path)
    finally:
        path.unlink()
    before = await count_children(pool)
    result = await store.import_children(pool, records, actor="import.hostile")
    assert (result.imported, result.created, result.updated) == (1, 1, 0)
    assert await count_children(pool) == before + 1

    def s(value: str | None) -> str | None:
        return value.strip() if value is not None else None

    view = await store.view_child(pool, child["uid"])
    assert view is not None and view["shielded"] is False
    assert view["uid"] == child["uid"]
    assert view["given_name"] == s(child["given_name"])
    assert view["family_name"] == s(child["family_name"])
    assert view["aliases"] == [s(a) for a in child["aliases"]]
    assert view["gender"] == child["gender"]
    assert view["date_of_birth"] == child["date_of_birth"]
    assert view["school"] == s(child.get("school"))
    assert view["gp_practice"] == s(child.get("gp_practice"))
    assert view["practitioners"] == [s(p) for p in child["practitioners"]]
    if "address" in child:
        address = child["address"]
        assert view["address"] == {"lines": [s(line) for line in address["lines"]], "postcode": s(address["postcode"])}
    else:
        assert view["address"] is None
    assert view["carers"] == [{k: s(v) for k, v in carer.items()} for carer in child["carers"]]


# --------------------------------------------------------------------------------------------------- CLI

SHIELDING = Path(sys.executable).with_name("shielding")
CLI_SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

REQUEST_OPTIONS = [
    "--child",
    "--criterion",
    "--reason",
    "--requestor-type",
    "--requestor-name",
    "--requestor-organisation",
    "--requestor-phone",
    "--requestor-email",
    "--called-at",
    "--other-description",
    "--json",
]


def shell_safe(text: str) -> bool:
    """What a shell can pass as an argument: no NUL, no lone surrogate (they have no UTF-8 encoding)."""
    return "\x00" not in text and not any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)


# Any text but NUL, at most 128 KiB an argument (MAX_ARG_STRLEN); arbitrary bytes come separately.
cli_text = st.one_of(
    st.sampled_from([m for m in METACHARACTERS + IMPOSSIBLE_INSTANTS if shell_safe(m)]),
    st.text(alphabet=st.characters(exclude_characters="\x00")),
    st.text(alphabet=st.characters(max_codepoint=0x9F, categories=("Cc",), exclude_characters="\x00"), min_size=1),
    st.builds(
        lambda unit, count: unit * count,
        st.sampled_from(["a", "'; DROP TABLE children; --", "🙂"]),
        st.integers(1_000, 4_000),
    ),
    recent_instant.map(lambda d: d.isoformat()),
).filter(noise_free)
cli_arg = st.one_of(cli_text, st.binary(min_size=1, max_size=30).filter(lambda b: b"\x00" not in b))


def run_cli(args: list[str | bytes], data_dir: Path) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "TEMPORAL_", "SHIELDING_"))}
    env["SHIELDING_DATA_DIR"] = str(data_dir)
    env["SHIELDING_CREDENTIALS"] = str(data_dir / "no-session.json")  # never the developer's own session
    return subprocess.run([SHIELDING, *args], env=env, cwd=data_dir, capture_output=True, timeout=60, check=False)


def assert_cli_outcome(result: subprocess.CompletedProcess[bytes]) -> str:
    stdout = result.stdout.decode("utf-8", "replace")
    stderr = result.stderr.decode("utf-8", "replace")
    shown = f"exit {result.returncode}\nstdout: {stdout[:2000]}\nstderr: {stderr[:2000]}"
    assert result.returncode in {0, 1, 2}, shown
    assert "Traceback" not in stdout + stderr, shown
    if result.returncode != 0:
        lines = stderr.splitlines()
        assert len(lines) == 1, f"expected exactly one line on stderr\n{shown}"
        assert lines[0].startswith("error:"), shown
    return stderr


@pytest.fixture
def empty_data_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="hostile-cli-") as root:
        yield Path(root)


@CLI_SETTINGS
@given(called_at=cli_arg, shielded_at=st.one_of(st.none(), cli_arg), as_json=st.booleans())
@example(called_at=" 2026-11-24T10:00\n", shielded_at=None, as_json=False)  # the error was two lines
def test_cli_deadlines_with_hostile_times(
    empty_data_dir: Path, called_at: str | bytes, shielded_at: str | bytes | None, as_json: bool
) -> None:
    args: list[str | bytes] = ["deadlines", "--called-at", called_at]
    if shielded_at is not None:
        args += ["--shielded-at", shielded_at]
    if as_json:
        args.append("--json")
    result = run_cli(args, empty_data_dir)
    assert_cli_outcome(result)
    event(f"exit {result.returncode}")
    if result.returncode == 0 and as_json:
        assert set(json.loads(result.stdout)) == {"form_due_at", "review_7_day_at", "review_6_month_at"}


@st.composite
def request_argv(draw: st.DrawFn) -> list[str | bytes]:
    if draw(st.booleans()):  # every required option, with hostile values
        args: list[str | bytes] = []
        for option in REQUEST_OPTIONS[:5] + draw(st.lists(st.sampled_from(REQUEST_OPTIONS[5:]), max_size=3)):
            args.append(option)
            if option != "--json":
                args.append(draw(cli_arg))
        return ["request", *args]
    return ["request", *draw(st.lists(st.one_of(st.sampled_from(REQUEST_OPTIONS), cli_arg), max_size=12))]


@CLI_SETTINGS
@given(args=request_argv())
def test_cli_request_with_hostile_arguments_fails_cleanly(empty_data_dir: Path, args: list[str | bytes]) -> None:
    result = run_cli(args, empty_data_dir)
    stderr = assert_cli_outcome(result)
    event("usage error" if result.returncode == 2 else stderr.split(":")[1].strip()[:40])
    assert result.returncode != 0, "a request cannot succeed without the service"


@CLI_SETTINGS
@given(path=st.one_of(cli_text, st.builds(lambda n: "a" * n, st.integers(256, 5_000)), st.just("/etc/hostname")))
@example(path="a" * 300)  # "the directory database cannot be reached" for a file name too long
def test_cli_import_of_hostile_paths_names_the_file_problem(empty_data_dir: Path, path: str) -> None:
    """Whatever the path, the file is opened (and refused) before the service or any database is needed."""
    assume(not path.startswith("-") and path.strip())
    result = run_cli(["directory", "import", path], empty_data_dir)
    stderr = assert_cli_outcome(result)
    assert result.returncode != 0
    assert "database" not in stderr.lower(), stderr
