"""Break-glass, around `shielding.access.override_view`: what its page needs to show the hidden details once per
warning, the refusals it records, and the alerts it sends the managers.

The alerts are the outbox messages addressed to the managers (each break-glass view sends one); they carry only
what `shielding.messages` wrote (the record's uid, who looked, the request id), never what the record holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg
from pydantic import BaseModel

from shielding.domain import AuditAction
from shielding.store.audit import RecipientKind, append_audit

ALERTS_SHOWN = 200


class ManagerAlert(BaseModel):
    notification_id: int
    created_at: datetime
    # The request that shields the record looked at; None when no request shielded it.
    request_id: str | None = None
    subject: str
    body: str


async def manager_alerts(pool: asyncpg.Pool, *, limit: int = ALERTS_SHOWN) -> tuple[list[ManagerAlert], int]:
    """The newest `limit` alerts to the managers, and how many there are in all."""
    rows = await pool.fetch(
        """SELECT notification_id, created_at, nullif(request_id, '') AS request_id, subject, body,
                  count(*) OVER () AS total
           FROM notifications WHERE recipient_kind = $1 AND contact_request_id IS NULL
           ORDER BY notification_id DESC LIMIT $2""",
        RecipientKind.MANAGERS.value,
        limit,
    )
    total = int(rows[0]["total"]) if rows else 0
    return [ManagerAlert(**{k: v for k, v in dict(r).items() if k != "total"}) for r in rows], total


async def last_view(conn: asyncpg.Connection | asyncpg.Pool, actor: str, uid: str) -> int:
    """The audit entry of this person's latest break-glass view of this record (0 if none): a warning page
    issued before it can no longer be used."""
    found = await conn.fetchval(
        "SELECT max(entry_id) FROM audit_log WHERE child_uid = $1 AND action = $2 AND actor = $3",
        uid,
        AuditAction.VIEWED_OVERRIDE.value,
        actor,
    )
    return int(found or 0)


@asynccontextmanager
async def one_view_at_a_time(pool: asyncpg.Pool, actor: str, uid: str) -> AsyncIterator[asyncpg.Connection]:
    """A transaction holding a lock on (person, record): two posts of one warning page cannot both be shown."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"break-glass:{actor}:{uid}")
        yield conn


async def record_refusal(pool: asyncpg.Pool, actor: str, uid: str, reason: str) -> None:
    """A break-glass attempt refused after the person was asked to prove who they are (a wrong password, say)."""
    async with pool.acquire() as conn, conn.transaction():
        await append_audit(
            conn,
            action=AuditAction.UNAUTHORISED,
            actor=actor,
            request_id=None,
            child_uid=uid,
            reason=reason,
            details={"attempted": "override"},
        )
