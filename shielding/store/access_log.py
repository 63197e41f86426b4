"""Who looked at which child: the access log (migration 0013), written on every read path, read by managers.

Every view of a record, every search (with the uids it returned, never the terms), every list that names
children, every break-glass and brokering view and every decode of workflow payloads is one signed entry of the
ACCESS_LOG stream (shielding.audit_signing): who, when, from which front end, which children, and the request
id where there is one. The entry holds ids and fixed words only; never a name, an address or a search term.

Writing it must not slow a read: `viewed` writes the entry while the record is read (two connections, at the
same time), so a view costs the longer of the two, not their sum; a search writes it after, since the uids are
its answer. Either way the data is handed over only once the entry is committed.

Reading it is for managers (`shielding.access`, action "access log"), and each read is itself an entry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

import asyncpg
from pydantic import BaseModel

from shielding import messages
from shielding.audit_signing import ACCESS_LOG
from shielding.deadlines import LONDON
from shielding.domain import UID_PATTERN, AuditAction
from shielding.store.audit import append_audit, append_signed, append_signed_batch, notify
from shielding.store.db import jsonable_row, storable

T = TypeVar("T")
# How many entries one page of the managers' pages and `shielding access` shows.
PAGE = 50


class AccessKind(StrEnum):
    VIEW = "view"  # one child's record (redacted or not, by its role)
    SEARCH = "search"  # the uids a search returned
    LIST = "list"  # a page or answer that names children (a request, a queue, a confirmation, an audit trail)
    EXPORT = "export"
    BREAK_GLASS = "break-glass-view"
    BROKERING = "brokering-view"
    DECODE = "payloads-decoded"  # workflow payloads read through the Temporal UI's codec endpoint
    ACCESS_LOG = "access-log-read"  # someone read this log


class FrontEnd(StrEnum):
    WEB = "web"  # the pages
    API = "api"  # the JSON API
    CLI = "cli"  # the `shielding` command (a client of the API that says so)
    WORKER = "worker"


class Reader(BaseModel):
    """Who is reading, through what: from the signed-in session (never from anything the caller says about
    who they are), and the request the read is part of, if any."""

    actor: str
    front_end: FrontEnd
    request_id: str | None = None


class AccessEntry(BaseModel):
    entry_id: int
    at: datetime
    actor: str
    front_end: str
    kind: str
    request_id: str | None = None
    child_uids: list[str]
    details: dict[str, Any]


class AccessPage(BaseModel):
    entries: list[AccessEntry]
    # Whether there are older entries than these (the next page starts before the last entry_id shown).
    more: bool


async def record(
    pool_or_conn: asyncpg.Pool | asyncpg.Connection,
    reader: Reader,
    kind: AccessKind,
    child_uids: Sequence[str] = (),
    *,
    request_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> int:
    """Append one entry; returns its number once it is committed. Given the pool, the entry joins the entries
    this process is writing at the same moment (one transaction, one turn of the head's lock for all of them:
    `_GroupCommit`); given a connection, it is written in that connection's transaction."""
    content = {
        "actor": reader.actor,
        "front_end": reader.front_end.value,
        "kind": kind.value,
        "request_id": request_id or reader.request_id,
        # Only what can name a record (a typed uid with a NUL in it names nothing, and PostgreSQL cannot hold it).
        "child_uids": [uid for uid in dict.fromkeys(child_uids) if UID_PATTERN.fullmatch(uid)],
        "details": storable(details or {}),
    }
    if isinstance(pool_or_conn, asyncpg.Pool):
        return await _group_commit(pool_or_conn).append(content)
    return await append_signed(pool_or_conn, ACCESS_LOG, content)


class _GroupCommit:
    """Entries asked for while a batch is being written wait for it and go in the next one, together.

    Every reader waits for its own entry to commit, so nothing is lost if the process dies: what is here in
    memory is only entries not yet acknowledged to anyone. A busy directory then takes the head's row lock once
    per batch instead of once per read; its cost stays that of one transaction, not of a queue of them."""

    MAX_BATCH = 200

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._waiting: list[tuple[dict[str, Any], asyncio.Future[int]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def append(self, content: dict[str, Any]) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append((content, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await future

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[: self.MAX_BATCH], self._waiting[self.MAX_BATCH :]
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    ids = await append_signed_batch(conn, ACCESS_LOG, [content for content, _ in batch])
            except BaseException as err:  # every waiter hears why, and the next batch is tried
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                if isinstance(err, asyncio.CancelledError):
                    raise
                continue
            for (_, future), entry_id in zip(batch, ids, strict=True):
                if not future.done():
                    future.set_result(entry_id)


_writers: dict[int, _GroupCommit] = {}


def _group_commit(pool: asyncpg.Pool) -> _GroupCommit:
    writer = _writers.get(id(pool))
    if writer is None or writer._pool is not pool:
        writer = _writers[id(pool)] = _GroupCommit(pool)
    return writer


async def viewed(pool: asyncpg.Pool, reader: Reader, uid: str, read: Awaitable[T]) -> T:
    """Run `read` (one child's record) while the entry for it is written; the record only once both are done.
    An entry is kept even if the record is not there: someone looked for it."""
    result, _ = await asyncio.gather(read, record(pool, reader, AccessKind.VIEW, [uid]))
    return result


async def flag_repeated_views(pool: asyncpg.Pool, reader: Reader, uid: str, *, limit: int) -> bool:
    """After a view of a shielded child: if the reader has no request or brokering link to the child and has
    viewed the record more than `limit` times today (London), tell the managers, once a day (an audit entry and
    a message; not a block). Returns whether this view crossed the limit."""
    since = _london_midnight(datetime.now(UTC).astimezone(LONDON).date())
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT (SELECT shield_request_id FROM children WHERE uid = $3) AS shielded_by,
                      (SELECT count(*) FROM access_log
                       WHERE actor = $1 AND at >= $2 AND kind = 'view'
                         AND child_uids @> to_jsonb(ARRAY[$3::text])) AS views""",
            reader.actor,
            since,
            uid,
        )
        shielded_by, count = row["shielded_by"], int(row["views"])
        if shielded_by is None or count != limit + 1 or await _linked(conn, reader.actor, uid):
            return False
        async with conn.transaction():
            await append_audit(
                conn,
                action=AuditAction.VIEWS_FLAGGED,
                actor=reader.actor,
                request_id=shielded_by,
                child_uid=uid,
                details={"views_today": int(count), "limit": limit},
            )
            managers = "managers"
            await notify(
                conn,
                recipient_kind=managers,
                recipient=managers,
                request_id=shielded_by,
                subject=messages.views_flagged_subject(uid),
                body=messages.views_flagged_body(uid, reader.actor, int(count), limit),
            )
    return True


async def _linked(conn: asyncpg.Connection, actor: str, uid: str) -> bool:
    """Whether `actor` has a reason to look at this child: they took, or acted on, a request naming it."""
    linked = await conn.fetchval(
        """SELECT EXISTS (
               SELECT 1 FROM request_children rc JOIN shielding_requests r ON r.request_id = rc.request_id
               WHERE rc.child_uid = $2 AND r.received_by = $1
           ) OR EXISTS (
               SELECT 1 FROM request_children rc JOIN audit_log a ON a.request_id = rc.request_id
               WHERE rc.child_uid = $2 AND a.actor = $1
                 AND a.action IN ('form-received', 'approved', 'unshielded', 'review-due')
           )""",
        actor,
        uid,
    )
    return bool(linked)


def _london_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=LONDON)


async def entries(
    pool: asyncpg.Pool,
    *,
    child_uid: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_entry: int | None = None,
    limit: int = PAGE,
) -> AccessPage:
    """One page of the log, newest first: for a child, or by a person, within dates."""
    rows = await pool.fetch(
        """SELECT entry_id, at, actor, front_end, kind, request_id, child_uids, details FROM access_log
           WHERE ($1::text IS NULL OR child_uids @> to_jsonb(ARRAY[$1::text]))
             AND ($2::text IS NULL OR actor = $2)
             AND ($3::timestamptz IS NULL OR at >= $3)
             AND ($4::timestamptz IS NULL OR at < $4)
             AND ($5::bigint IS NULL OR entry_id < $5)
           ORDER BY entry_id DESC LIMIT $6""",
        child_uid,
        actor,
        since,
        until,
        before_entry,
        limit + 1,
    )
    page = [AccessEntry.model_validate(jsonable_row(r)) for r in rows[:limit]]
    return AccessPage(entries=page, more=len(rows) > limit)


async def prune(pool: asyncpg.Pool, *, keep: timedelta, batch: int = 10_000) -> int:
    """Remove the entries older than `keep` (in batches), auditing each batch removed; returns how many."""
    older_than = datetime.now(UTC) - keep
    removed_total = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT removed, through FROM prune_access_log($1, $2)", older_than, batch)
            removed = int(row["removed"] or 0)
            if removed == 0:
                return removed_total
            await append_audit(
                conn,
                action=AuditAction.ACCESS_LOG_PRUNED,
                actor="system",
                request_id=None,
                reason=messages.access_log_pruned(removed, keep.days),
                details={"stream": ACCESS_LOG.table, "removed": removed, "through": int(row["through"])},
            )
        removed_total += removed
