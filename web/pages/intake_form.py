"""The intake form as the page posts it: what was typed, the children chosen so far, and the problems to show.

The whole call is one POST form: the children chosen so far travel in hidden fields (their uids, which an intake
officer may see), the search terms in the body (never in a URL), and everything typed is shown again after each
step (find, add, remove) until the request is shielded. Nothing is kept on the server between steps.

The service's refusal ("Refused: a; b; c.") is split into its problems, each put at the field it is about, in
the service's own words; the page adds only what the service cannot say (a time of the call it cannot read).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time

from starlette.datastructures import FormData

from shielding import deadlines
from shielding.domain import REQUEST_ID_PATTERN, UID_PATTERN
from shielding.store import ChildSearch
from starter import IntakeDraft, new_request_id
from starter.validation import RelatedDraft
from web.pages.forms import Problems

MAX_CHOSEN = 60  # the service refuses more than 50 with its own words; past this the page stops reading
MAX_SEARCH_TEXT = 200
NO_SEARCH_TERMS = "Give at least one search field."
SEARCH_NEEDS_NAME = "Enter a given name or a family name to search"
SEARCH_NEEDS_DATE_OF_BIRTH = "Enter the date of birth to search"
REASON_MISSING = "the reason is missing"

# Field ids, in the order the fields appear on the page (the error summary lists them in this order).
SEARCH_NAME, SEARCH_DOB, CHILDREN, RELATED = "search-given-name", "search-dob-day", "children", "related"
CRITERIA, OTHER, REASON = "criteria", "other_description", "reason"
REQUESTOR_TYPE, REQUESTOR_NAME = "requestor_type", "requestor_name"
ORGANISATION, PHONE, EMAIL = "requestor_organisation", "requestor_phone", "requestor_email"
CALLED_AT, SUBMIT = "called-at-day", "shield"
FIELD_ORDER = (
    SEARCH_NAME,
    SEARCH_DOB,
    CHILDREN,
    RELATED,
    CRITERIA,
    OTHER,
    REASON,
    REQUESTOR_TYPE,
    REQUESTOR_NAME,
    ORGANISATION,
    PHONE,
    EMAIL,
    CALLED_AT,
    SUBMIT,
)

# Which field a problem of the service's is about, by its words (the first match wins).
_FIELD_WORDS: tuple[tuple[str, str], ...] = (
    ("objection to the directory", CRITERIA),
    ("other-significant-harm", OTHER),
    ("description of the other circumstances", OTHER),
    ("criteri", CRITERIA),
    ("phone number or email address", PHONE),
    ("requestor phone number", PHONE),
    ("requestor email", EMAIL),
    ("organisation", ORGANISATION),
    ("requestor type", REQUESTOR_TYPE),
    ("requestor name", REQUESTOR_NAME),
    ("the reason", REASON),
    ("time of the call", CALLED_AT),
    ("the call was", CALLED_AT),
    ("child", CHILDREN),
    ("children", CHILDREN),
)

_TIME = re.compile(r"^(\d{1,2})(?:[:.](\d{2}))?\s*([ap]\.?m\.?)?$", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def sentence(problem: str) -> str:
    """A problem as the error summary shows it: first letter capital, no closing full stop."""
    problem = problem.strip().rstrip(".")
    return problem[:1].upper() + problem[1:]


def refusal_problems(message: str) -> tuple[list[tuple[str, str]], bool]:
    """The service's refusal as (field id, problem) pairs, and whether it was a list of problems.

    "Refused: a; b; c." lists the problems of a request the service checked; a refusal of one sentence or more
    (an objection in principle, an unknown child, an id already used) is one problem and is kept whole.
    """
    text = message.strip()
    listed = text.startswith("Refused: ")
    body = text.removeprefix("Refused: ").rstrip(".")
    if not listed or ". " in body:
        return [(_field_of(body), body)], False
    return [(_field_of(part), part) for part in body.split("; ") if part.strip()], True


def _field_of(problem: str) -> str:
    lowered = problem.lower()
    return next((field_id for words, field_id in _FIELD_WORDS if words in lowered), SUBMIT)


class FormProblems:
    """Problems gathered from the page and the service, shown in the order of the fields on the page."""

    def __init__(self) -> None:
        self._by_field: dict[str, list[str]] = {}

    def add(self, field_id: str, problem: str) -> None:
        problems = self._by_field.setdefault(field_id, [])
        if sentence(problem) not in problems:
            problems.append(sentence(problem))

    def extend(self, pairs: Iterable[tuple[str, str]]) -> None:
        for field_id, problem in pairs:
            self.add(field_id, problem)

    def __bool__(self) -> bool:
        return bool(self._by_field)

    def has(self, problem: str) -> bool:
        return any(sentence(problem) in problems for problems in self._by_field.values())

    def problems(self) -> Problems:
        shown = Problems()
        for field_id in sorted(self._by_field, key=lambda f: FIELD_ORDER.index(f) if f in FIELD_ORDER else 99):
            # Two problems at one field (rare): both, one sentence after the other.
            shown.add(field_id, ". ".join(self._by_field[field_id]))
        return shown


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _texts(form: FormData, name: str, limit: int) -> list[str]:
    values = [v.strip() for v in form.getlist(name)[:limit] if isinstance(v, str)]
    return list(dict.fromkeys(v for v in values if v))


def _related_from(form: FormData) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """The related records the page listed (hidden uids), each one's decision and reason for not adding it."""
    uids = [uid for uid in _texts(form, "related", MAX_CHOSEN) if UID_PATTERN.fullmatch(uid)]
    decisions = {uid: _text(form, f"related-{uid}") for uid in uids}
    reasons = {uid: _CONTROL.sub(" ", _text(form, f"related-{uid}-reason")) for uid in uids}
    return (
        uids,
        {uid: d for uid, d in decisions.items() if d in ("added", "not-added")},
        {uid: r for uid, r in reasons.items() if r},
    )


def _date(day: str, month: str, year: str) -> date | None:
    try:
        return date(int(year), int(month), int(day)) if len(year) == 4 else None
    except ValueError:
        return None


def parse_clock(text: str) -> time | None:
    """ "2:30pm", "2.30 pm", "9am", "14:30", "midday", "midnight"; None when it is not a time of day."""
    lowered = text.strip().lower()
    if lowered in {"midday", "noon", "12 noon"}:
        return time(12, 0)
    if lowered == "midnight":
        return time(0, 0)
    match = _TIME.fullmatch(lowered)
    if match is None:
        return None
    hour, minute = int(match[1]), int(match[2] or 0)
    suffix = (match[3] or "").replace(".", "")
    if suffix:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if suffix == "pm" else 0)
    elif match[2] is None:
        return None  # "2" alone: morning or afternoon?
    if hour > 23 or minute > 59:
        return None
    return time(hour, minute)


@dataclass
class IntakeForm:
    """What the intake page posted (or an empty form): every value as typed, the chosen children's uids."""

    request_id: str = field(default_factory=new_request_id)
    children: list[str] = field(default_factory=list)
    search_given_name: str = ""
    search_family_name: str = ""
    search_dob_day: str = ""
    search_dob_month: str = ""
    search_dob_year: str = ""
    criteria: list[str] = field(default_factory=list)
    other_description: str = ""
    reason: str = ""
    requestor_type: str = ""
    requestor_name: str = ""
    requestor_organisation: str = ""
    requestor_phone: str = ""
    requestor_email: str = ""
    called_day: str = ""
    called_month: str = ""
    called_year: str = ""
    called_time: str = ""
    # Records sharing an address or a carer with a chosen child (named by the service), and what was decided:
    # "added" or "not-added", with the reason for not adding.
    related: list[str] = field(default_factory=list)
    related_decisions: dict[str, str] = field(default_factory=dict)
    related_reasons: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_form(cls, form: FormData) -> IntakeForm:
        request_id = _text(form, "request_id")
        return cls(
            # A reference the page did not make is replaced: the service would refuse it anyway.
            request_id=request_id if REQUEST_ID_PATTERN.fullmatch(request_id) else new_request_id(),
            children=[uid for uid in _texts(form, "children", MAX_CHOSEN) if UID_PATTERN.fullmatch(uid)],
            search_given_name=_text(form, "search_given_name"),
            search_family_name=_text(form, "search_family_name"),
            search_dob_day=_text(form, "search_dob-day"),
            search_dob_month=_text(form, "search_dob-month"),
            search_dob_year=_text(form, "search_dob-year"),
            criteria=_texts(form, "criteria", 100),
            other_description=_text(form, "other_description"),
            reason=_text(form, "reason"),
            requestor_type=_text(form, "requestor_type"),
            requestor_name=_text(form, "requestor_name"),
            requestor_organisation=_text(form, "requestor_organisation"),
            requestor_phone=_text(form, "requestor_phone"),
            requestor_email=_text(form, "requestor_email"),
            called_day=_text(form, "called_at-day"),
            called_month=_text(form, "called_at-month"),
            called_year=_text(form, "called_at-year"),
            called_time=_text(form, "called_at-time"),
            related=(related := _related_from(form))[0],
            related_decisions=related[1],
            related_reasons=related[2],
        )

    def with_related(self, uids: Iterable[str]) -> IntakeForm:
        return replace(self, related=list(dict.fromkeys([*self.related, *uids])))

    def related_undecided(self) -> list[str]:
        """Related records marked not added with no reason: the reason is what is missing."""
        return [
            uid
            for uid in self.related
            if self.related_decisions.get(uid) == "not-added" and not self.related_reasons.get(uid)
        ]

    def all_children(self) -> list[str]:
        """The chosen children and the related records added to the request."""
        added = [uid for uid in self.related if self.related_decisions.get(uid) == "added"]
        return list(dict.fromkeys([*self.children, *added]))

    def with_child(self, uid: str) -> IntakeForm:
        if not UID_PATTERN.fullmatch(uid) or uid in self.children:
            return self
        return replace(self, children=[*self.children, uid])

    def without_child(self, uid: str) -> IntakeForm:
        return replace(self, children=[c for c in self.children if c != uid])

    # ------------------------------------------------------------------------------------------- search

    def has_search_terms(self) -> bool:
        return any(
            (
                self.search_given_name,
                self.search_family_name,
                self.search_dob_day,
                self.search_dob_month,
                self.search_dob_year,
            )
        )

    def search(self, problems: FormProblems) -> ChildSearch | None:
        """The directory search these terms ask for, or None (with the problem) when they cannot be searched."""
        if not self.has_search_terms():
            problems.add(SEARCH_NAME, NO_SEARCH_TERMS)
            return None
        names = [_CONTROL.sub("", n) for n in (self.search_given_name, self.search_family_name)]
        if any(len(n) > MAX_SEARCH_TEXT for n in names):
            problems.add(SEARCH_NAME, f"Names must be {MAX_SEARCH_TEXT} characters or fewer")
        if not any(n.strip() for n in names):
            problems.add(SEARCH_NAME, SEARCH_NEEDS_NAME)
        born = None
        if self.search_dob_day or self.search_dob_month or self.search_dob_year:
            born = _date(self.search_dob_day, self.search_dob_month, self.search_dob_year)
            if born is None:
                problems.add(SEARCH_DOB, "Date of birth must be a real date, for example 21 6 2019")
        else:
            # A name and a date of birth, always: the directory lists no one by name alone.
            problems.add(SEARCH_DOB, SEARCH_NEEDS_DATE_OF_BIRTH)
        if problems:
            return None
        return ChildSearch(given_name=names[0] or None, family_name=names[1] or None, date_of_birth=born)

    # ---------------------------------------------------------------------------------------- the call

    def called_at(self, now: datetime) -> tuple[datetime | None, str | None]:
        """When the call started, in London time; (None, None) when left blank (the call is now)."""
        given_date = self.called_day or self.called_month or self.called_year
        if not given_date and not self.called_time:
            return None, None
        if given_date:
            day = _date(self.called_day, self.called_month, self.called_year)
            if day is None:
                return None, "The date of the call must be a real date, for example 24 11 2026"
        else:
            day = deadlines.to_london(now).date()
        if not self.called_time:
            return None, "Enter the time the call started, for example 2:30pm"
        clock = parse_clock(self.called_time)
        if clock is None:
            return None, "The time of the call must be a time of day, for example 2:30pm or 14:30"
        return datetime.combine(day, clock, tzinfo=deadlines.LONDON), None

    def draft(self, called_at: datetime | None) -> IntakeDraft:
        return IntakeDraft(
            children=self.children,
            criteria=self.criteria,
            other_description=self.other_description or None,
            reason=self.reason or None,
            requestor_type=self.requestor_type or None,
            requestor_name=self.requestor_name or None,
            requestor_organisation=self.requestor_organisation or None,
            requestor_phone=self.requestor_phone or None,
            requestor_email=self.requestor_email or None,
            called_at=called_at,
            related_records=[
                RelatedDraft(uid=uid, decision=decision, reason=self.related_reasons.get(uid) or None)
                for uid in self.related
                if (decision := self.related_decisions.get(uid)) in ("added", "not-added")
            ],
        )
