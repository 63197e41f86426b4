"""Checking the audit log's hash chain: each entry's hash covers its content and the previous hash."""

from __future__ import annotations

import asyncpg
from pydantic import BaseModel

GENESIS = "0" * 64


class ChainVerdict(BaseModel):
    intact: bool
    entries: int
    first_broken_entry: int | None = None
    message: str


async def verify_chain(pool: asyncpg.Pool, *, batch: int = 5000) -> ChainVerdict:
    """Recompute every entry's hash in order (in PostgreSQL, with the same digest the trigger used)."""
    previous = GENESIS
    checked = 0
    last_id = 0
    async with pool.acquire() as conn:
        while True:
            rows = await conn.fetch(
                """SELECT entry_id, prev_hash, entry_hash,
                          audit_entry_digest(ROW(a.entry_id, a.at, a.action, a.actor, a.request_id, a.child_uid,
                                                 a.requestor, a.reason, a.details, a.prev_hash, '')::audit_log)
                              AS recomputed
                   FROM audit_log a WHERE entry_id > $1 ORDER BY entry_id LIMIT $2""",
                last_id,
                batch,
            )
            if not rows:
                break
            for row in rows:
                checked += 1
                if row["prev_hash"] != previous or row["recomputed"] != row["entry_hash"]:
                    return ChainVerdict(
                        intact=False,
                        entries=checked,
                        first_broken_entry=row["entry_id"],
                        message=f"audit log BROKEN at entry {row['entry_id']}: it was changed or removed after "
                        "it was written",
                    )
                previous = row["entry_hash"]
                last_id = row["entry_id"]
        head = await conn.fetchval("SELECT last_hash FROM audit_chain_head")
    if head != previous:
        return ChainVerdict(
            intact=False,
            entries=checked,
            first_broken_entry=None,
            message="audit log BROKEN: the newest entries were removed (the chain head does not match)",
        )
    return ChainVerdict(intact=True, entries=checked, message=f"audit log intact: {checked} entries verified")
