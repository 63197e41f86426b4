"""Who looked: the access log as managers read it.

    GET  /children/{uid}/access   "Who viewed this record": every view, search, list and break-glass that
                                  showed this child, newest first, by date and a page at a time
    POST /users/access            "What this person viewed" (the name is posted, never put in an address)

Managers only (`shielding.access`, "access log"), and each read of the log is an entry of it. The dates are
London days; a page holds 50 entries and offers the older ones after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated

from fastapi import Form, Query, Request, Response

from shielding.domain import UID_PATTERN
from shielding.store import access_log
from shielding.store.access_log import AccessKind, AccessPage
from starter.identity import Session
from web.deps import PartsDep, reader
from web.pages.forms import Problems
from web.pages.rendering import render
from web.pages.routing import page_router
from web.pages.session import may
from web.routes.access_log import EARLIEST, LATEST, day_start

router = page_router()

KIND_LABELS = {
    AccessKind.VIEW: "Viewed the record",
    AccessKind.SEARCH: "Found in a search",
    AccessKind.LIST: "Listed (a request, a queue or an audit trail)",
    AccessKind.EXPORT: "Exported",
    AccessKind.BREAK_GLASS: "Saw the withheld details (break-glass)",
    AccessKind.BROKERING: "Saw the withheld details (brokering contact)",
    AccessKind.DECODE: "Decoded workflow payloads",
    AccessKind.ACCESS_LOG: "Read the access log",
}
FRONT_END_LABELS = {"web": "Pages", "api": "API", "cli": "Command line", "worker": "Worker"}


@dataclass
class Dates:
    since: str = ""
    until: str = ""

    def read(self, problems: Problems) -> tuple[date | None, date | None]:
        parsed: list[date | None] = []
        for field, text, label in (("since", self.since, "From"), ("until", self.until, "To")):
            value = None
            if text.strip():
                try:
                    value = date.fromisoformat(text.strip())
                except ValueError:
                    problems.add(field, f"{label} must be a date written like 2026-12-01")
            parsed.append(value)
        since, until = parsed
        if since and until and until < since:
            problems.add("until", "To must be the same as or after From")
        for field, value, label in (("since", since, "From"), ("until", until, "To")):
            if value is not None and not EARLIEST <= value <= LATEST:
                problems.add(field, f"{label} must be a date between {EARLIEST.year} and {LATEST.year}")
        return since, until


def _until(until: date | None) -> datetime | None:
    return day_start(until + timedelta(days=1)) if until else None


async def _page(
    request: Request,
    p: PartsDep,
    session: Session,
    *,
    child_uid: str | None,
    user: str | None,
    dates: Dates,
    before: int | None,
) -> Response:
    problems = Problems()
    since, until = dates.read(problems)
    page = AccessPage(entries=[], more=False)
    if not problems:
        page = await access_log.entries(
            p.pool, child_uid=child_uid, actor=user, since=day_start(since), until=_until(until), before_entry=before
        )
        await access_log.record(
            p.pool,
            reader(request, session),
            AccessKind.ACCESS_LOG,
            [child_uid] if child_uid else [],
            details={"user": user} if user else {},
        )
    return render(
        request,
        "access_log.html",
        errors=problems,
        page=page,
        child_uid=child_uid,
        user=user,
        dates=dates,
        kind_labels=KIND_LABELS,
        front_end_labels=FRONT_END_LABELS,
        older=page.entries[-1].entry_id if page.more and page.entries else None,
    )


@router.get("/children/{uid}/access")
async def child_access(
    request: Request,
    uid: str,
    p: PartsDep,
    session: Annotated[Session, may("access log")],
    since: Annotated[str, Query(max_length=20)] = "",
    until: Annotated[str, Query(max_length=20)] = "",
    before: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    if not UID_PATTERN.fullmatch(uid):
        heading = "No child has this record number"
        paragraphs = ["Check the record number, or search for the child by name and date of birth."]
        return render(request, "problem.html", status_code=404, heading=heading, paragraphs=paragraphs)
    dates = Dates(since, until)
    return await _page(request, p, session, child_uid=uid, user=None, dates=dates, before=before)


@router.post("/users/access")
async def user_access(
    request: Request,
    p: PartsDep,
    session: Annotated[Session, may("access log")],
    name: Annotated[str, Form(max_length=64)],
    since: Annotated[str, Form(max_length=20)] = "",
    until: Annotated[str, Form(max_length=20)] = "",
    before: Annotated[int | None, Form(ge=1)] = None,
) -> Response:
    dates = Dates(since, until)
    return await _page(request, p, session, child_uid=None, user=name, dates=dates, before=before)
