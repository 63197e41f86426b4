"""The access log: who viewed which child's record, or what one person viewed (managers only; each read of
the log is an entry of it too)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Request

from shielding import deadlines
from shielding.domain import UID_PATTERN
from shielding.store import access_log
from shielding.store.access_log import AccessKind, AccessPage
from starter import Refusal
from starter.identity import Session
from web.deps import PartsDep, allowed, reader

router = APIRouter(prefix="/api/access", tags=["access log"])
# The dates a search of the log may name (the service keeps no entry from before it existed).
EARLIEST, LATEST = dt.date(2000, 1, 1), dt.date(2999, 12, 31)


def day_start(day: dt.date | None) -> dt.datetime | None:
    """The start of a London day (the dates a manager types are London dates)."""
    if day is None:
        return None
    return deadlines.london_midnight_after(day - dt.timedelta(days=1))


@router.get("", summary="Who viewed a child's record, or what a person viewed, newest first (managers)")
async def access_entries(
    request: Request,
    p: PartsDep,
    session: Annotated[Session, allowed("access log")],
    child: Annotated[str | None, Query(max_length=64, description="A child's uid")] = None,
    user: Annotated[str | None, Query(max_length=64, description="A user's name")] = None,
    since: Annotated[dt.date | None, Query(description="From the start of this day (London)")] = None,
    until: Annotated[dt.date | None, Query(description="To the end of this day (London)")] = None,
    before: Annotated[int | None, Query(ge=1, description="The next page: entries before this number")] = None,
) -> AccessPage:
    if child is not None and not UID_PATTERN.fullmatch(child):
        raise Refusal(f"{child!r} is not a child's identifier.")
    if since and until and until < since:
        raise Refusal("The end date is before the start date.")
    for day in (since, until):
        if day is not None and not EARLIEST <= day <= LATEST:
            raise Refusal(f"Give dates between {EARLIEST.isoformat()} and {LATEST.isoformat()}.")
    page = await access_log.entries(
        p.pool,
        child_uid=child,
        actor=user,
        since=day_start(since),
        until=day_start(until + dt.timedelta(days=1)) if until else None,
        before_entry=before,
    )
    await access_log.record(
        p.pool,
        reader(request, session),
        AccessKind.ACCESS_LOG,
        [child] if child else [],
        details={"user": user} if user else {},
    )
    return page
