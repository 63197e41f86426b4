"""Find a child: the directory search and a child's record, as practitioners see them (every role sees the same).

    GET  /children          the search form
    POST /children          the search: the form as it was sent, and the children found beside it
    GET  /children/{uid}    the record: the Identity bar; for a shielded child nothing else but the message to
                            contact the Integrated Working Team (and, for child protection, the way to break-glass)

The search is a POST so that none of its terms reach a URL (browser history, server and proxy logs): a postcode
or a school typed here can be a shielded child's, and those are the very details shielding hides. A POST carries
the CSRF token like every other form, though nothing is changed.

Both read through the store's redacting path (`store.search_children`, `store.view_child`: the practitioners'
database role). The page adds a second fence: a shielded record is turned into the record number, name, gender
and date of birth only (`ChildView.from_record`; not even the other names the store returns), so nothing else
could reach the template. A search by postcode or school never finds a shielded child, and the page says
nothing that would show one was left out.

A search names a name and a date of birth (gender, postcode and school only narrow it) and shows at most a page,
never a total; every search and record viewed counts against the person's allowance of directory reads (a page
saying so past it, HTTP 429). An address and carers shared with a shielded record are shown as withheld.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import Form, Request, Response

from shielding import store
from shielding.access import PERMISSIONS
from shielding.deadlines import LONDON, long_date
from shielding.domain import UID_PATTERN
from shielding.store import access_log
from shielding.store.access_log import AccessKind
from shielding.store.directory import SEARCH_PAGE, ReadsLimited, count_directory_read, search_page
from starter.identity import Session
from web.deps import PartsDep, reader
from web.pages.forms import Problems
from web.pages.rendering import GENDER_LABELS, render
from web.pages.routing import page_router
from web.pages.session import may

router = page_router()

SEARCH_PATH = "/children"
SHIELDED_MESSAGE = (
    "This record is shielded. Other details are withheld. Contact the Integrated Working Team to reach this child."
)
# How to reach the team, from the shielding process (ContactPoint shielding: "WCC Integrated Working Team").
TEAM_PHONE, TEAM_HOURS = "020 7641 1899", "during normal office hours"
RESULTS_SHOWN = SEARCH_PAGE
WITHHELD_MESSAGE = (
    "Withheld: a record that shares this address or carer is shielded. Contact the Integrated Working Team."
)
NEEDS_NAME = "Enter a first name or a last name"
NEEDS_DATE_OF_BIRTH = "Enter a date of birth"
# As the API allows (web.routes.directory.search).
MAX_NAME, MAX_POSTCODE, MAX_SCHOOL = 200, 20, 200
ANY_GENDER = "any"
MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}
# A whole UK postcode (the directory matches whole postcodes only: part of one finds nothing), or a BFPO number.
_POSTCODE = re.compile(r"[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}|BFPO ?[0-9]{1,4}")


def _clean(value: str) -> str:
    """What was typed, without control characters (a browser cannot type them; PostgreSQL cannot hold a NUL)."""
    kept = "".join(ch for ch in value if unicodedata.category(ch) != "Cc" or ch in "\t\n")
    return " ".join(kept.split())


# ------------------------------------------------------------------------------------------ the search form


@dataclass
class SearchForm:
    """The search form as typed, so it can be shown again exactly, and what was wrong with it."""

    given_name: str = ""
    family_name: str = ""
    day: str = ""
    month: str = ""
    year: str = ""
    gender: str = ANY_GENDER
    postcode: str = ""
    school: str = ""
    # Which of day, month and year to mark when the date of birth has a problem.
    date_parts_in_error: list[str] = field(default_factory=list, init=False)

    def date_of_birth(self, problems: Problems, today: date) -> date | None:
        parts = {"day": self.day, "month": self.month, "year": self.year}
        missing = [name for name, value in parts.items() if not value]
        if len(missing) == 3:
            return None
        if missing:
            self._date_problem(problems, "Date of birth must include a " + " and ".join(missing), missing)
            return None
        month = self.month.lower().rstrip(".")
        month_number = MONTHS.get(month) or (int(month) if month.isdigit() else None)
        if not (self.day.isdigit() and month_number and self.year.isdigit()):
            self._date_problem(problems, "Date of birth must be a real date", list(parts))
            return None
        if len(self.year) != 4:
            self._date_problem(problems, "Year must include 4 numbers", ["year"])
            return None
        try:
            value = date(int(self.year), month_number, int(self.day))
        except ValueError:
            self._date_problem(problems, "Date of birth must be a real date", list(parts))
            return None
        if value > today:
            self._date_problem(problems, "Date of birth must be today or in the past", list(parts))
            return None
        return value

    def _date_problem(self, problems: Problems, message: str, parts: list[str]) -> None:
        self.date_parts_in_error = parts
        problems.add(f"date_of_birth-{parts[0]}", message)

    @property
    def date_error_field(self) -> str | None:
        return f"date_of_birth-{self.date_parts_in_error[0]}" if self.date_parts_in_error else None

    def to_search(self, today: date) -> tuple[store.ChildSearch | None, Problems]:
        """The store's search, or None and what to fix (in the order the fields appear on the page)."""
        problems = Problems()
        for name, label, limit in (("given_name", "First name", MAX_NAME), ("family_name", "Last name", MAX_NAME)):
            if len(getattr(self, name)) > limit:
                problems.add(name, f"{label} must be {limit} characters or fewer")
        born = self.date_of_birth(problems, today)
        gender = None if self.gender == ANY_GENDER else self.gender
        if gender is not None and gender not in GENDER_LABELS:
            problems.add("gender", "Select a gender, or Any")
        postcode = self.postcode.upper()
        if postcode and (len(postcode) > MAX_POSTCODE or not _POSTCODE.fullmatch(postcode)):
            problems.add("postcode", "Enter a full postcode, like NW8 8NQ")
        if len(self.school) > MAX_SCHOOL:
            problems.add("school", f"School must be {MAX_SCHOOL} characters or fewer")
        typed_date = bool(self.day or self.month or self.year)
        if not (self.given_name or self.family_name):
            problems.add("given_name", NEEDS_NAME)
        if not typed_date:
            self._date_problem(problems, NEEDS_DATE_OF_BIRTH, ["day", "month", "year"])
        if problems:
            return None, problems
        search = store.ChildSearch(
            given_name=self.given_name or None,
            family_name=self.family_name or None,
            date_of_birth=born,
            gender=gender,
            postcode=postcode or None,
            school=self.school or None,
        )
        return search, problems


# ------------------------------------------------------------------------------------------ a child's record


@dataclass(frozen=True)
class Carer:
    name: str
    relationship: str | None
    phone: str | None


@dataclass(frozen=True)
class ChildDetails:
    """What an unshielded record shows beyond the child's identity."""

    address_lines: list[str]
    postcode: str | None
    carers: list[Carer]
    school: str | None
    gp_practice: str | None
    practitioners: list[str]
    # Address and carers withheld: a record sharing one of them is shielded.
    withheld: bool = False


@dataclass(frozen=True)
class ChildView:
    """A child as a page shows them: the identity always; the details only when the record is not shielded."""

    uid: str
    given_name: str
    family_name: str
    aliases: list[str]
    gender: str
    date_of_birth: date
    shielded: bool
    details: ChildDetails | None

    @property
    def name(self) -> str:
        return f"{self.given_name} {self.family_name}"

    @property
    def gender_label(self) -> str:
        return GENDER_LABELS.get(self.gender, self.gender)

    @property
    def born(self) -> str:
        return long_date(self.date_of_birth)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ChildView:
        """From the store's practitioner record. A shielded one gives up the record number, name, gender and date
        of birth, and nothing else: not even the other names it is known by (the store returns them, and search
        matches them), since an alias can join a child's old and new identities (adoption, a refuge)."""
        shielded = bool(record["shielded"])
        born = record["date_of_birth"]
        return cls(
            uid=str(record["uid"]),
            given_name=str(record["given_name"]),
            family_name=str(record["family_name"]),
            aliases=[] if shielded else [str(a) for a in record.get("aliases") or []],
            gender=str(record["gender"]),
            date_of_birth=born if isinstance(born, date) else date.fromisoformat(str(born)),
            shielded=shielded,
            details=None if shielded else _details(record),
        )


def _details(record: dict[str, Any]) -> ChildDetails:
    address = record.get("address") or {}
    return ChildDetails(
        address_lines=[str(line) for line in address.get("lines") or []],
        postcode=address.get("postcode"),
        carers=[
            Carer(name=str(c.get("name", "")), relationship=c.get("relationship"), phone=c.get("phone"))
            for c in record.get("carers") or []
        ],
        school=record.get("school"),
        gp_practice=record.get("gp_practice"),
        practitioners=[str(p) for p in record.get("practitioners") or []],
        withheld=bool(record.get("withheld")),
    )


async def reads_refused(request: Request, p: PartsDep, session: Session) -> Response | None:
    """Count one directory read for this person; past the allowance, the page that says so (429), else None."""
    try:
        await count_directory_read(
            p.pool,
            session.name,
            limit=p.settings.directory_reads_per_window,
            window_seconds=p.settings.directory_read_window_seconds,
        )
    except ReadsLimited as limited:
        return render(request, "problem.html", status_code=429, heading="Too many searches", paragraphs=[str(limited)])
    return None


# ------------------------------------------------------------------------------------------------- routes


def results_heading(results: list[ChildView] | None, *, more: bool) -> str:
    """What a search found, as the results' heading (and the page's title) says it; empty before a search."""
    if results is None:
        return ""
    if more:
        return f"More than {RESULTS_SHOWN} children found"
    if not results:
        return "No children found"
    return "1 child found" if len(results) == 1 else f"{len(results)} children found"


def _search_page(
    request: Request,
    form: SearchForm,
    *,
    errors: Problems | None = None,
    results: list[ChildView] | None = None,
    more: bool = False,
) -> Response:
    return render(
        request,
        "children_search.html",
        form=form,
        errors=errors or Problems(),
        results=results,
        results_heading=results_heading(results, more=more),
        more=more,
        shown=RESULTS_SHOWN,
        gender_items=[{"value": ANY_GENDER, "text": "Any"}]
        + [{"value": value, "text": label} for value, label in GENDER_LABELS.items()],
    )


@router.get(SEARCH_PATH)
async def search_form(request: Request, session: Annotated[Session, may("search")]) -> Response:
    return _search_page(request, SearchForm())


@router.post(SEARCH_PATH)
async def search(
    request: Request,
    p: PartsDep,
    session: Annotated[Session, may("search")],
    given_name: Annotated[str, Form()] = "",
    family_name: Annotated[str, Form()] = "",
    day: Annotated[str, Form(alias="date_of_birth-day")] = "",
    month: Annotated[str, Form(alias="date_of_birth-month")] = "",
    year: Annotated[str, Form(alias="date_of_birth-year")] = "",
    gender: Annotated[str, Form()] = ANY_GENDER,
    postcode: Annotated[str, Form()] = "",
    school: Annotated[str, Form()] = "",
) -> Response:
    form = SearchForm(
        given_name=_clean(given_name),
        family_name=_clean(family_name),
        day=_clean(day),
        month=_clean(month),
        year=_clean(year),
        gender=_clean(gender) or ANY_GENDER,
        postcode=_clean(postcode),
        school=_clean(school),
    )
    query, problems = form.to_search(datetime.now(LONDON).date())
    if query is None:
        return _search_page(request, form, errors=problems)
    refused = await reads_refused(request, p, session)
    if refused is not None:
        return refused
    found = await search_page(p.pool, query)
    await access_log.record(p.pool, reader(request, session), AccessKind.SEARCH, [r["uid"] for r in found.results])
    results = [ChildView.from_record(record) for record in found.results]
    return _search_page(request, form, results=results, more=found.more)


@router.get(SEARCH_PATH + "/{uid}")
async def child_record(request: Request, uid: str, p: PartsDep, session: Annotated[Session, may("view")]) -> Response:
    record: dict[str, Any] | None
    if not UID_PATTERN.fullmatch(uid):
        refused = await reads_refused(request, p, session)
        if refused is not None:
            return refused
        record = None
    else:
        who = reader(request, session)

        async def read() -> Response | dict[str, Any] | None:
            refused = await reads_refused(request, p, session)
            return refused if refused is not None else await store.view_child(p.pool, uid)

        # The entry is written while the read is counted and made (the longer of the two, not their sum).
        got = await access_log.viewed(p.pool, who, uid, read())
        if isinstance(got, Response):
            return got
        record = got
        if record is not None and record.get("shielded"):
            await access_log.flag_repeated_views(p.pool, who, uid, limit=p.settings.shielded_views_per_day)
    if record is None:
        return render(
            request,
            "problem.html",
            status_code=404,
            heading="No child has this record number",
            paragraphs=[
                f"No child in the directory has the record number {uid[:64]}.",
                "Check the record number, or search for the child by name and date of birth.",
            ],
        )
    child = ChildView.from_record(record)
    may_break_glass = bool(session.roles & PERMISSIONS["override"])
    return render(
        request,
        "child_record.html",
        child=child,
        shielded_message=SHIELDED_MESSAGE,
        withheld_message=WITHHELD_MESSAGE,
        team_phone=TEAM_PHONE,
        team_hours=TEAM_HOURS,
        break_glass_href=f"{SEARCH_PATH}/{child.uid}/break-glass" if child.shielded and may_break_glass else None,
        access_href=f"{SEARCH_PATH}/{child.uid}/access" if session.roles & PERMISSIONS["access log"] else None,
        contact_href=f"{SEARCH_PATH}/{child.uid}/contact"
        if child.shielded and session.roles & PERMISSIONS["ask contact"]
        else None,
    )
