"""The child directory: a child's record as practitioners see it, search, break-glass, and imports."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request

from shielding import access, store
from shielding.domain import Gender
from shielding.importer import ImportRefused, parse_lines
from shielding.store import access_log
from shielding.store.access_log import AccessKind
from shielding.store.directory import (
    MAX_DOB_TOLERANCE_DAYS,
    ReadsLimited,
    SearchPage,
    count_directory_read,
    search_page,
)
from starter import Refusal
from starter.identity import Session
from web.deps import Parts, PartsDep, allowed, reader
from web.errors import NeedsFreshSignIn
from web.schemas import Override, Problem

router = APIRouter(tags=["directory"])
NEEDS_NAME_AND_BIRTH = (
    "Give a name and a date of birth to search the directory (gender, postcode and school only narrow a search)."
)
TOLERANCE_NEEDS_FUZZY = "A date-of-birth tolerance goes with a search that forgives spelling (fuzzy=true)."
RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {"model": Problem, "description": "Too many directory reads by this person in the window (audited)"}
}
MAX_IMPORT_BYTES = 200 * 1024 * 1024
BREAK_GLASS_WARNING = (
    "WARNING: break-glass override. You are about to see the details this child's record hides to keep them safe. "
    "This view is audited and the managers are alerted. Use it only when a child is at risk now."
)


async def count_read(p: Parts, session: Session) -> None:
    """One directory read (a search, a view by uid) counted for this person; 429 past the limit."""
    try:
        await count_directory_read(
            p.pool,
            session.name,
            limit=p.settings.directory_reads_per_window,
            window_seconds=p.settings.directory_read_window_seconds,
        )
    except ReadsLimited as limited:
        raise HTTPException(status_code=429, detail=str(limited)) from None


@router.get(
    "/api/children/{uid}",
    summary="A child's record as practitioners see it (shielded: identity only)",
    responses=RATE_LIMITED,
)
async def view_child(
    uid: str, request: Request, p: PartsDep, session: Annotated[Session, allowed("view")]
) -> dict[str, Any]:
    who = reader(request, session)

    async def read() -> dict[str, Any] | None:
        await count_read(p, session)
        return await store.view_child(p.pool, uid)

    # The entry is written while the read is counted and made: it costs the longer of the two, not their sum.
    record = await access_log.viewed(p.pool, who, uid, read())
    if record is None:
        raise Refusal(f"No child in the directory has the identifier {uid}.")
    if record.get("shielded"):
        await access_log.flag_repeated_views(p.pool, who, uid, limit=p.settings.shielded_views_per_day)
    return record


@router.get("/api/children/{uid}/override", summary="What break-glass needs, and its warning (shows no record)")
async def override_terms(uid: str, session: Annotated[Session, allowed("override")]) -> dict[str, Any]:
    return {
        "warning": BREAK_GLASS_WARNING,
        "needs": "password" if session.auth_method == "password" else "fresh single sign-on",
    }


@router.post("/api/children/{uid}/override", summary="Break-glass: the hidden details once, audited")
async def override_view(
    uid: str, body: Override, request: Request, p: PartsDep, session: Annotated[Session, allowed("override")]
) -> dict[str, Any]:
    if not body.reason.strip():
        raise Refusal("Break-glass needs a reason.")
    if session.auth_method == "password":
        if not body.password:
            raise NeedsFreshSignIn("Break-glass needs your password again.")
        session = await p.identity.reauthenticate(session, body.password)
    elif not session.fresh(dt.timedelta(minutes=p.settings.fresh_auth_minutes)):
        raise NeedsFreshSignIn(
            "Break-glass needs you to sign in again first (go to /auth/oidc/login?fresh=1, or run `shielding login`)."
        )
    record = await access.override_view(p.pool, session.name, uid, body.reason)
    await access_log.record(p.pool, reader(request, session), AccessKind.BREAK_GLASS, [uid])
    if record is None:
        raise Refusal(f"No child in the directory has the identifier {uid}.")
    return {"warning": BREAK_GLASS_WARNING, "record": record}


@router.get(
    "/api/children",
    summary="Find children by a name and a date of birth: at most a page, never a total",
    responses=RATE_LIMITED,
)
async def search(
    request: Request,
    p: PartsDep,
    session: Annotated[Session, allowed("search")],
    given_name: Annotated[str | None, Query(max_length=200)] = None,
    family_name: Annotated[str | None, Query(max_length=200)] = None,
    date_of_birth: dt.date | None = None,
    gender: Gender | None = None,
    postcode: Annotated[str | None, Query(max_length=20)] = None,
    school: Annotated[str | None, Query(max_length=200)] = None,
    fuzzy: Annotated[bool, Query(description="Forgive spelling: ranked with a score, a page of 50")] = False,
    dob_tolerance_days: Annotated[int, Query(ge=0, le=MAX_DOB_TOLERANCE_DAYS)] = 0,
) -> SearchPage:
    if dob_tolerance_days and not fuzzy:
        raise Refusal(TOLERANCE_NEEDS_FUZZY)
    query = store.ChildSearch(
        given_name=given_name,
        family_name=family_name,
        date_of_birth=date_of_birth,
        gender=gender.value if gender else None,
        postcode=postcode,
        school=school,
        fuzzy=fuzzy,
        dob_tolerance_days=dob_tolerance_days,
    )
    if not query.names_a_child():
        raise Refusal(NEEDS_NAME_AND_BIRTH)
    await count_read(p, session)
    page = await search_page(p.pool, query)
    # The uids it returned, never the terms (a search names a child's name and date of birth).
    await access_log.record(p.pool, reader(request, session), AccessKind.SEARCH, [r["uid"] for r in page.results])
    return page


@router.post(
    "/api/directory/import",
    summary="Load or update child records (JSON Lines in the body); all or nothing",
    openapi_extra={"requestBody": {"content": {"application/x-ndjson": {"schema": {"type": "string"}}}}},
)
async def import_children(
    request: Request, p: PartsDep, session: Annotated[Session, allowed("import")]
) -> store.ImportResult:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_IMPORT_BYTES:
            raise ImportRefused(f"nothing imported: the file is over {MAX_IMPORT_BYTES:,} bytes")
    # Each line's own limit (and every other problem) is checked by the parser, with its number.
    records = parse_lines(bytes(body).splitlines(keepends=True))
    return await store.import_children(p.pool, records, actor=session.name)
