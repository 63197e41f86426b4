"""The outbox for managers: each message's status, reason and deliveries (addresses masked)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from shielding.store import outbox
from starter.identity import Session
from web.deps import PartsDep, allowed

router = APIRouter(prefix="/api/messages", tags=["messages"])


@router.get("", summary="The newest messages of the outbox and how their delivery went (managers)")
async def list_messages(
    p: PartsDep,
    session: Annotated[Session, allowed("users")],
    failed: bool = False,
    request: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=outbox.OUTBOX_SHOWN)] = outbox.OUTBOX_SHOWN,
) -> dict[str, list[outbox.OutboxMessage]]:
    shown = await outbox.outbox(p.pool, failed_only=failed, request_id=request, limit=limit)
    return {"messages": [m.masked() for m in shown]}
