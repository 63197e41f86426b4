"""The audit log and the outbox: appending entries, reading them, checking the hash chain, queueing messages.

Entries are written in the same transaction as the change they record, signed by the service; triggers chain
and protect them; `verify_chain` checks them in Python against the anchor file (shielding.audit_signing).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import BaseModel

from shielding import metrics
from shielding.audit_signing import (
    AUDIT_LOG,
    GENESIS,
    Anchor,
    AnchorError,
    AuditKeys,
    AuditSigning,
    AuditStream,
    append_anchor,
    audit_signing,
    chain_digest,
    entry_message,
    read_anchors,
    sign_entry,
)
from shielding.domain import AuditAction, Requestor
from shielding.store.db import jsonable_row, storable


class RecipientKind(StrEnum):
    REQUESTOR = "requestor"
    REVIEWERS = "reviewers"
    MANAGERS = "managers"
    # A practitioner's own address (email or phone) that they gave: the recipient column holds it.
    PRACTITIONER = "practitioner"


class MessageKind(StrEnum):
    """What a queued message is about: its Notify template (`SHIELDING_NOTIFY_TEMPLATES`), `generic` otherwise."""

    GENERIC = "generic"
    LAPSE = "lapse"
    FORM_RECEIPT = "form-receipt"
    REVIEW_DUE = "review-due"
    REVIEW_REMINDER = "review-reminder"
    DUPLICATE_RECORD = "duplicate-record"
    SHARED_DETAILS = "shared-details"
    BREAK_GLASS = "break-glass"
    REVIEW_DIGEST = "review-digest"


async def append_audit(
    conn: asyncpg.Connection,
    *,
    action: AuditAction,
    actor: str,
    request_id: str | None,
    child_uid: str | None = None,
    requestor: Requestor | dict[str, Any] | None = None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> int:
    """Append one signed entry in the caller's transaction; returns its number."""
    metrics.audited(action)
    if isinstance(requestor, Requestor):
        requestor = requestor.model_dump(mode="json", exclude_none=True)
    content = {
        "action": action.value,
        "actor": actor,
        "request_id": request_id,
        "child_uid": child_uid,
        "requestor": requestor,
        "reason": reason,
        "details": details or {},
    }
    return await append_signed(conn, AUDIT_LOG, content)


async def append_signed(conn: asyncpg.Connection, stream: AuditStream, content: dict[str, Any]) -> int:
    """Append one entry to `stream`, signed by this process (shielding.audit_signing).

    Under the head's row lock (held until commit, so concurrent writers queue and a rollback frees the number
    again): the next number, the time (never before the last entry's) and the previous hash; json columns as
    PostgreSQL will give them back, so what is signed is what verify reads. The trigger checks the number and
    time and computes the chain hash.
    """
    columns = list(stream.columns)
    as_stored = [c for c in columns if c in stream.json_columns]
    casts = "".join(f", ${n}::jsonb AS {c}__stored" for n, c in enumerate(as_stored, start=1))
    # One statement: the head under its row lock, the entry's time (never before the last one's) and the json
    # columns as PostgreSQL will give them back, so what is signed is what verify reads.
    head = await conn.fetchrow(
        f"SELECT h.*, greatest(clock_timestamp(), h.last_at) AS next_at{casts} "
        f"FROM {stream.head_table} h WHERE singleton FOR UPDATE",
        *(content[c] for c in as_stored),
    )
    stored = {**content, **{c: head[f"{c}__stored"] for c in as_stored}}
    entry_id, prev_hash, at = int(head["last_entry_id"]) + 1, str(head["last_hash"]), head["next_at"]
    keys = audit_signing().keys
    key_id, mac = sign_entry(keys, stream, entry_id=entry_id, at=at, prev_hash=prev_hash, content=stored)
    values = [entry_id, at, *(stored[c] for c in columns), key_id, mac]
    placeholders = ", ".join(f"${n}" for n in range(1, len(values) + 1))
    await conn.execute(
        f"""INSERT INTO {stream.table} (entry_id, at, {", ".join(columns)}, key_id, mac, prev_hash, entry_hash)
            VALUES ({placeholders}, '', '')""",
        *values,
    )
    return entry_id


async def append_signed_batch(
    conn: asyncpg.Connection, stream: AuditStream, contents: Sequence[dict[str, Any]]
) -> list[int]:
    """Append several entries to `stream` in the caller's transaction, in order, taking the head's lock once.

    One statement locks the head and has PostgreSQL give back each entry's json columns as it stores them and
    as text; each entry is then numbered, chained (its previous hash is the hash the trigger will compute for the
    one before it: `chain_digest`, the same function verify uses) and signed, and all are inserted at once."""
    if len(contents) == 1:
        return [await append_signed(conn, stream, contents[0])]
    columns = list(stream.columns)
    as_stored = [c for c in columns if c in stream.json_columns]
    arrays = "".join(
        f", (SELECT array_agg(x::jsonb ORDER BY n) FROM unnest(${i}::text[]) WITH ORDINALITY AS t(x, n)) AS {c}__stored"
        f", (SELECT array_agg(x::jsonb::text ORDER BY n) FROM unnest(${i}::text[]) WITH ORDINALITY AS t(x, n))"
        f" AS {c}__text"
        for i, c in enumerate(as_stored, start=1)
    )
    head = await conn.fetchrow(
        f"SELECT h.last_entry_id, h.last_hash, greatest(clock_timestamp(), h.last_at) AS next_at{arrays} "
        f"FROM {stream.head_table} h WHERE singleton FOR UPDATE",
        *([json.dumps(content[c]) for content in contents] for c in as_stored),
    )
    keys = audit_signing().keys
    at, prev_hash, entry_id = head["next_at"], str(head["last_hash"]), int(head["last_entry_id"])
    rows, ids = [], []
    for i, content in enumerate(contents):
        entry_id += 1
        stored = {**content, **{c: head[f"{c}__stored"][i] for c in as_stored}}
        key_id, mac = sign_entry(keys, stream, entry_id=entry_id, at=at, prev_hash=prev_hash, content=stored)
        rows.append([entry_id, at, *(stored[c] for c in columns), key_id, mac])
        texts = [head[f"{c}__text"][i] if c in stream.json_columns else (stored[c] or "") for c in columns]
        prev_hash = chain_digest(stream, entry_id=entry_id, at=at, prev_hash=prev_hash, texts=texts)
        ids.append(entry_id)
    placeholders = ", ".join(f"${n}" for n in range(1, len(rows[0]) + 1))
    await conn.executemany(
        f"""INSERT INTO {stream.table} (entry_id, at, {", ".join(columns)}, key_id, mac, prev_hash, entry_hash)
            VALUES ({placeholders}, '', '')""",
        rows,
    )
    return ids


async def record_refusal(
    pool: asyncpg.Pool,
    *,
    request_id: str,
    actor: str,
    requestor: dict[str, Any] | None,
    reason: str,
    details: dict[str, Any] | None = None,
) -> None:
    """A request refused before any workflow started (it named no valid criterion, say).

    What was typed is recorded as typed, except what PostgreSQL cannot hold (NUL, lone surrogates), escaped.
    """
    async with pool.acquire() as conn, conn.transaction():
        await append_audit(
            conn,
            action=AuditAction.REFUSED,
            actor=actor,
            request_id=request_id,
            requestor=storable(requestor),
            reason=storable(reason),
            details=storable(details),
        )


async def notify(
    conn: asyncpg.Connection,
    *,
    recipient_kind: str,
    recipient: str,
    request_id: str,
    subject: str,
    body: str,
    template: str = "generic",
) -> int:
    """Queue one message in the caller's transaction; the relay (shielding.delivery) sends it. `template`: the
    message's kind (a Notify template each, `SHIELDING_NOTIFY_TEMPLATES`). Returns its notification id."""
    return int(
        await conn.fetchval(
            """INSERT INTO notifications (recipient_kind, recipient, request_id, subject, body, template)
               VALUES ($1, $2, $3, $4, $5, $6) RETURNING notification_id""",
            recipient_kind,
            recipient,
            request_id,
            subject,
            body,
            template,
        )
    )


async def notify_reviewers(
    conn: asyncpg.Connection, request_id: str, subject: str, body: str, *, template: str = "generic"
) -> None:
    group = RecipientKind.REVIEWERS.value
    await notify(
        conn,
        recipient_kind=group,
        recipient=group,
        request_id=request_id,
        subject=subject,
        body=body,
        template=template,
    )


async def notify_requestor(
    conn: asyncpg.Connection, request_id: str, subject: str, body: str, *, template: str = "generic"
) -> None:
    """Queue a message to the requestor's own contact: the address is the envelope, never the content."""
    requestor = await conn.fetchval("SELECT requestor FROM shielding_requests WHERE request_id = $1", request_id)
    contact = (requestor or {}).get("email") or (requestor or {}).get("phone") or "unknown"
    await notify(
        conn,
        recipient_kind=RecipientKind.REQUESTOR.value,
        recipient=contact,
        request_id=request_id,
        subject=subject,
        body=body,
        template=template,
    )


async def audit_entries(
    pool: asyncpg.Pool, *, request_id: str | None = None, child_uid: str | None = None
) -> list[dict[str, Any]]:
    if request_id is not None:
        # A UNION of indexed lookups, not one OR: the OR is a scan of the whole log (515 ms at 2M entries).
        rows = await pool.fetch(
            """SELECT * FROM audit_log WHERE entry_id IN (
                   SELECT entry_id FROM audit_log WHERE request_id = $1
                   UNION SELECT a.entry_id FROM request_children rc
                         JOIN audit_log a ON a.request_id = rc.existing_request_id
                         WHERE rc.request_id = $1 AND a.details ->> 'duplicate_request_id' = $1)
               ORDER BY entry_id""",
            request_id,
        )
    else:
        # A refused request never reached request_children: it names its children only in its entry's details.
        rows = await pool.fetch(
            """SELECT * FROM audit_log WHERE entry_id IN (
                   SELECT entry_id FROM audit_log WHERE child_uid = $1
                   UNION SELECT a.entry_id FROM request_children rc JOIN audit_log a ON a.request_id = rc.request_id
                         WHERE rc.child_uid = $1
                   UNION SELECT entry_id FROM audit_log WHERE (details -> 'children') ? $1)
               ORDER BY entry_id""",
            child_uid,
        )
    return [jsonable_row(r) for r in rows]


async def notifications(pool: asyncpg.Pool, request_id: str | None = None) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT * FROM notifications WHERE $1::text IS NULL OR request_id = $1 ORDER BY notification_id",
        request_id,
    )
    return [jsonable_row(r) for r in rows]


class ChainVerdict(BaseModel):
    intact: bool
    entries: int
    first_broken_entry: int | None = None
    message: str
    # The newest entry whose hash the anchor file holds after this check (None: nothing anchored yet).
    anchored_entry: int | None = None


class _Broken(Exception):
    def __init__(self, entry_id: int | None, message: str) -> None:
        super().__init__(message)
        self.entry_id = entry_id


def _when(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds")


class _Walk:
    """Entries in number order, each checked against the one before it, its signature and the anchors."""

    def __init__(self, stream: AuditStream, keys: AuditKeys, anchors: list[Anchor], signed_from: int) -> None:
        self.stream, self.keys, self.signed_from = stream, keys, signed_from
        self.anchors: dict[int, list[Anchor]] = {}
        for anchor in anchors:
            self.anchors.setdefault(anchor.entry_id, []).append(anchor)
        self.checked = 0
        self.last_id = 0
        self.prev_hash = GENESIS
        self.matched: set[int] = set()
        self._first = 1

    def _broken(self, entry_id: int, what: str) -> _Broken:
        return _Broken(entry_id, f"{self.stream.label} BROKEN at entry {entry_id}: {what}")

    @property
    def first(self) -> int:
        return self._first

    def retained_from(self, first: int, pruned_hash: str | None) -> None:
        """Retention removed the entries before `first`: the kept log chains on from the last one removed, and
        the anchors of removed entries can no longer be checked."""
        self._first = first
        if first > 1:
            self.last_id, self.prev_hash = first - 1, pruned_hash or GENESIS
            for entry_id in [e for e in self.anchors if e < first]:
                del self.anchors[entry_id]

    def entry(self, row: asyncpg.Record) -> None:
        entry_id: int = row["entry_id"]
        if entry_id >= self.signed_from and entry_id != self.last_id + 1:
            missing = self.last_id + 1
            raise self._broken(missing, "it is missing (removed after it was written)")
        texts = [(row[f"{c}__text"] if c in self.stream.json_columns else row[c]) or "" for c in self.stream.columns]
        digest = chain_digest(self.stream, entry_id=entry_id, at=row["at"], prev_hash=row["prev_hash"], texts=texts)
        if row["prev_hash"] != self.prev_hash or digest != row["entry_hash"]:
            raise self._broken(entry_id, "it was changed or removed after it was written")
        if entry_id >= self.signed_from or row["mac"] is not None:
            message = entry_message(
                self.stream,
                key_id=row["key_id"] or "",
                entry_id=entry_id,
                at=row["at"],
                prev_hash=row["prev_hash"],
                content={c: row[c] for c in self.stream.columns},
            )
            if not self.keys.check(row["key_id"], message, row["mac"]):
                raise self._broken(
                    entry_id,
                    "it does not carry the service's signature (it was changed, or written other than by the service)",
                )
        for anchor in self.anchors.get(entry_id, []):
            if anchor.head_hash != row["entry_hash"]:
                raise self._broken(
                    entry_id,
                    f"it differs from the head anchored at {_when(anchor.at)} (it, or an entry before it, was changed)",
                )
            self.matched.add(entry_id)
        self.checked += 1
        self.last_id, self.prev_hash = entry_id, row["entry_hash"]

    def finish(self, head: asyncpg.Record) -> None:
        if self.last_id != head["last_entry_id"] or self.prev_hash != head["last_hash"]:
            missing = self.last_id + 1
            raise self._broken(missing, "the newest entries were removed (the chain head does not match)")
        for entry_id in sorted(set(self.anchors) - self.matched):
            anchor = self.anchors[entry_id][0]
            first = entry_id if entry_id <= self.last_id else self.last_id + 1
            raise self._broken(first, f"entries up to {entry_id}, anchored at {_when(anchor.at)}, were removed")


async def _check_retention(conn: asyncpg.Connection, stream: AuditStream, retained_from: int) -> None:
    """Where the kept log starts must be where the last audited prune left it: the head alone could be moved to
    hide entries that are still there."""
    audited = await conn.fetchval(
        """SELECT (details ->> 'through')::bigint FROM audit_log
           WHERE action = $1 AND details ->> 'stream' = $2 ORDER BY entry_id DESC LIMIT 1""",
        AuditAction.ACCESS_LOG_PRUNED.value,
        stream.table,
    )
    expected = 1 if audited is None else int(audited) + 1
    if retained_from != expected:
        first = min(retained_from, expected)
        raise _Broken(
            first,
            f"{stream.label} BROKEN at entry {first}: it says it starts at entry {retained_from}, but the audited "
            f"retention left it starting at entry {expected}",
        )


def _verify_query(stream: AuditStream) -> str:
    columns = [f"{c}, {c}::text AS {c}__text" if c in stream.json_columns else c for c in stream.columns]
    return (
        f"SELECT entry_id, at, prev_hash, entry_hash, key_id, mac, {', '.join(columns)} FROM {stream.table} "
        "WHERE entry_id <= $1 AND entry_id >= $2 ORDER BY entry_id"
    )


async def verify_chain(
    pool: asyncpg.Pool,
    *,
    stream: AuditStream = AUDIT_LOG,
    signing: AuditSigning | None = None,
    anchor_path: Path | None = None,
    batch: int = 5000,
) -> ChainVerdict:
    """Check every entry in Python, in number order: numbers without gaps (from the first signed entry), the
    hash chain recomputed, each signature, and every head in the anchor file; then anchor the head checked.

    Names the first entry that differs. Nothing here runs in the database but reading rows, so replacing a
    database function changes nothing. The anchor file is read before the snapshot is taken, so every head in
    it was committed before the entries read.
    """
    signing = signing or audit_signing()
    path = anchor_path or signing.anchor_path(stream)
    try:
        anchors = read_anchors(path, stream, signing.keys)
    except AnchorError as err:
        return ChainVerdict(intact=False, entries=0, message=f"{stream.label} cannot be trusted: {err}")
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        kept = ", retained_from, pruned_hash" if stream.pruned else ""
        head = await conn.fetchrow(
            f"SELECT last_hash, last_entry_id, signed_from{kept} FROM {stream.head_table} WHERE singleton"
        )
        walk = _Walk(stream, signing.keys, anchors, int(head["signed_from"]))
        try:
            if stream.pruned:
                await _check_retention(conn, stream, int(head["retained_from"]))
                walk.retained_from(int(head["retained_from"]), head["pruned_hash"])
            moved = [a for a in anchors if a.signed_from != walk.signed_from]
            if moved:
                raise _Broken(
                    None,
                    f"{stream.label} BROKEN: it says entries are signed from entry {walk.signed_from}, the anchor file "
                    f"from entry {moved[0].signed_from}",
                )
            first = int(head["retained_from"]) if stream.pruned else 1
            async for row in conn.cursor(_verify_query(stream), head["last_entry_id"], first, prefetch=batch):
                walk.entry(row)
            walk.finish(head)
        except _Broken as broken:
            return ChainVerdict(
                intact=False, entries=walk.checked, first_broken_entry=broken.entry_id, message=str(broken)
            )
    newest = max((a.entry_id for a in anchors), default=None)
    if walk.last_id and (newest is None or newest < walk.last_id):
        append_anchor(
            path, stream, signing.keys, Anchor(datetime.now(UTC), walk.last_id, walk.prev_hash, walk.signed_from)
        )
        newest = walk.last_id
    return ChainVerdict(
        intact=True,
        entries=walk.checked,
        anchored_entry=newest,
        message=f"{stream.label} intact: {walk.checked} entries verified"
        + (f" (from entry {walk.first}: retention removed the ones before it)" if walk.first > 1 else ""),
    )
