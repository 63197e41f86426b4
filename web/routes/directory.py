"""The child directory: a child's record as practitioners see it, search, break-glass, and imports."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from shielding import access, store
from shielding.domain import Gender
from shielding.importer import ImportRefused, parse_lines
from starter import Refusal
from starter.identity import Session
from web.deps import PartsDep, allowed
from web.errors import NeedsFreshSignIn
from web.schemas import Override

router = APIRouter(tags=["directory"])
MAX_IMPORT_BYTES = 200 * 1024 * 1024
BREAK_GLASS_WARNING = (
    "WARNING: break-glass override. You are about to see the details this child's record hides to keep them safe. "
    "This view is audited and the managers are alerted. Use it only when a child is at risk now."
)


@router.get("/api/children/{uid}", summary="A child's record as practitioners see it (shielded: identity only)")
async def view_child(uid: str, p: PartsDep, session: Annotated[Session, allowed("view")]) -> dict[str, Any]:
    record = await store.view_child(p.pool, uid)
    if record is None:
        raise Refusal(f"No child in the directory has the identifier {uid}.")
    return record


@router.get("/api/children/{uid}/override", summary="What break-glass needs, and its warning (shows no record)")
async def override_terms(uid: str, session: Annotated[Session, allowed("override")]) -> dict[str, Any]:
    return {
        "warning": BREAK_GLASS_WARNING,
        "needs": "password" if session.auth_method == "password" else "fresh single sign-on",
    }


@router.post("/api/children/{uid}/override", summary="Break-glass: the hidden details once, audited")
async def override_view(
    uid: str, body: Override, p: PartsDep, session: Annotated[Session, allowed("override")]
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
    if record is None:
        raise Refusal(f"No child in the directory has the identifier {uid}.")
    return {"warning": BREAK_GLASS_WARNING, "record": record}


@router.get("/api/children", summary="Find children; a shielded record matches only on the fields it shows")
async def search(
    p: PartsDep,
    session: Annotated[Session, allowed("search")],
    given_name: Annotated[str | None, Query(max_length=200)] = None,
    family_name: Annotated[str | None, Query(max_length=200)] = None,
    date_of_birth: dt.date | None = None,
    gender: Gender | None = None,
    postcode: Annotated[str | None, Query(max_length=20)] = None,
    school: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, list[dict[str, Any]]]:
    query = store.ChildSearch(
        given_name=given_name,
        family_name=family_name,
        date_of_birth=date_of_birth,
        gender=gender.value if gender else None,
        postcode=postcode,
        school=school,
    )
    if not any([given_name, family_name, date_of_birth, gender, postcode, school]):
        raise Refusal("Give at least one search field.")
    return {"results": await store.search_children(p.pool, query)}


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
