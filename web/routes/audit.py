"""The audit log: every entry on a request or a child, and the check of its hash chain."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from shielding import store
from shielding.store import access_log
from shielding.store.access_log import AccessKind
from starter import Refusal
from starter.identity import Session
from web.deps import PartsDep, allowed, reader

router = APIRouter(prefix="/api/audit", tags=["audit"])


@router.get("", summary="Every entry on a request, or on a child (including refused requests that named it)")
async def entries(
    http: Request,
    p: PartsDep,
    session: Annotated[Session, allowed("audit")],
    request: Annotated[str | None, Query(max_length=64)] = None,
    child: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, list[dict[str, Any]]]:
    if (request is None) == (child is None):
        raise Refusal("Give exactly one of a request id or a child's identifier.")
    found = await store.audit_entries(p.pool, request_id=request, child_uid=child)
    for entry in found:
        entry.pop("entry_hash", None)
        entry.pop("prev_hash", None)
    uids = [child] if child else [e["child_uid"] for e in found if e.get("child_uid")]
    await access_log.record(p.pool, reader(http, session), AccessKind.LIST, uids, request_id=request)
    return {"entries": found}


@router.get("/verify", summary="Check the audit log's hash chain; names the first broken entry")
async def verify(p: PartsDep, session: Annotated[Session, allowed("audit")]) -> store.ChainVerdict:
    return await store.verify_chain(p.pool)
