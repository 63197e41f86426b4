"""PostgreSQL: the directory, shielding requests, the audit log and the outbox.

Every state change and its audit entry are written in one transaction. Operations that a Temporal
activity may retry take an `operation_key`; the first attempt records its result under that key and a
retry returns the recorded result without acting again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime
from importlib import resources
from typing import Any, TypeVar

import asyncpg
from pydantic import BaseModel

from shielding.domain import (
    AuditAction,
    ChildOutcome,
    ChildRecord,
    Requestor,
    ShieldingRequestInput,
    Stage,
)

T = TypeVar("T", bound=BaseModel)

PRACTITIONER_FIELDS = ("uid", "given_name", "family_name", "aliases", "gender", "date_of_birth", "shielded")
HIDDEN_FIELDS = ("address", "carers", "school", "gp_practice", "practitioners")


class StoreError(Exception):
    """A refusal from the store, worded for the person at the keyboard."""


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(database_url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        database_url, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=30
    )
    assert pool is not None
    return pool


def migrate(database_url: str) -> list[str]:
    """Apply pending migrations (yoyo, under its lock); returns the ids applied."""
    from yoyo import get_backend, read_migrations

    url = database_url
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix) :]
    backend = get_backend(url)
    migrations = read_migrations(str(resources.files("shielding") / "migrations"))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [m.id for m in pending]


async def migrate_async(database_url: str) -> list[str]:
    return await asyncio.to_thread(migrate, database_url)


# ---------------------------------------------------------------------------------------------- helpers


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
) -> None:
    if isinstance(requestor, Requestor):
        requestor = requestor.model_dump(mode="json", exclude_none=True)
    await conn.execute(
        """INSERT INTO audit_log (action, actor, request_id, child_uid, requestor, reason, details, prev_hash,
                                  entry_hash)
           VALUES ($1, $2, $3, $4, $5, $6, $7, '', '')""",
        action.value,
        actor,
        request_id,
        child_uid,
        requestor,
        reason,
        details or {},
    )


async def notify(
    conn: asyncpg.Connection, *, recipient_kind: str, recipient: str, request_id: str, subject: str, body: str
) -> None:
    await conn.execute(
        """INSERT INTO notifications (recipient_kind, recipient, request_id, subject, body)
           VALUES ($1, $2, $3, $4, $5)""",
        recipient_kind,
        recipient,
        request_id,
        subject,
        body,
    )


async def once(
    pool: asyncpg.Pool,
    operation_key: str,
    result_type: type[T],
    operation: Callable[[asyncpg.Connection], Awaitable[T]],
) -> T:
    """Run `operation` in a transaction exactly once per key; a retry returns the first result."""
    async with pool.acquire() as conn, conn.transaction():
        claimed = await conn.fetchval(
            "INSERT INTO completed_operations (operation_key) VALUES ($1) ON CONFLICT DO NOTHING RETURNING 1",
            operation_key,
        )
        if claimed is None:
            stored = await conn.fetchval(
                "SELECT result FROM completed_operations WHERE operation_key = $1", operation_key
            )
            return result_type.model_validate(stored)
        result = await operation(conn)
        await conn.execute(
            "UPDATE completed_operations SET result = $2 WHERE operation_key = $1",
            operation_key,
            result.model_dump(mode="json"),
        )
        return result


# ------------------------------------------------------------------------------------------- the directory


def _record_args(record: ChildRecord) -> tuple[Any, ...]:
    return (
        record.uid,
        record.given_name,
        record.family_name,
        list(record.aliases),
        record.gender.value,
        record.date_of_birth,
        record.address.model_dump(mode="json") if record.address else None,
        [c.model_dump(mode="json", exclude_none=True) for c in record.carers],
        record.school,
        record.gp_practice,
        list(record.practitioners),
    )


class ImportResult(BaseModel):
    imported: int
    created: int
    updated: int
    linked_duplicates: list[str] = []


async def import_children(pool: asyncpg.Pool, records: Sequence[ChildRecord], *, actor: str) -> ImportResult:
    """Insert or update records, all or nothing.

    A new record whose identity (name or alias, date of birth, gender) matches a shielded child under another
    uid is shielded at once and linked to that child's request: a data feed must never re-expose a child.
    """
    created = updated = 0
    linked: list[str] = []
    async with pool.acquire() as conn, conn.transaction():
        for record in records:
            existed = await conn.fetchval(
                """INSERT INTO children (uid, given_name, family_name, aliases, gender, date_of_birth, address,
                                         carers, school, gp_practice, practitioners)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                   ON CONFLICT (uid) DO UPDATE SET
                     given_name = EXCLUDED.given_name, family_name = EXCLUDED.family_name,
                     aliases = EXCLUDED.aliases, gender = EXCLUDED.gender,
                     date_of_birth = EXCLUDED.date_of_birth, address = EXCLUDED.address,
                     carers = EXCLUDED.carers, school = EXCLUDED.school, gp_practice = EXCLUDED.gp_practice,
                     practitioners = EXCLUDED.practitioners, updated_at = now()
                   RETURNING (xmax <> 0)""",
                *_record_args(record),
            )
            if existed:
                updated += 1
            else:
                created += 1
            request_id = await _shielded_identity_match(conn, record)
            if request_id is not None:
                await _link_duplicate_record(conn, record.uid, request_id, actor=actor)
                linked.append(record.uid)
    return ImportResult(imported=len(records), created=created, updated=updated, linked_duplicates=linked)


async def _shielded_identity_match(conn: asyncpg.Connection, record: ChildRecord) -> str | None:
    names = [n.lower() for n in (record.given_name, *record.aliases)]
    family = [n.lower() for n in (record.family_name, *record.aliases)]
    full = [f"{record.given_name} {record.family_name}".lower(), *(a.lower() for a in record.aliases)]
    return await conn.fetchval(  # type: ignore[no-any-return]
        """SELECT shield_request_id FROM children
           WHERE shield_request_id IS NOT NULL AND uid <> $1 AND date_of_birth = $2 AND gender = $3
             AND (
               (lower(given_name) = ANY($4::text[]) AND lower(family_name) = ANY($5::text[]))
               OR lower(given_name || ' ' || family_name) = ANY($6::text[])
               OR EXISTS (SELECT 1 FROM unnest(aliases) a WHERE lower(a) = ANY($6::text[]))
             )
           ORDER BY uid LIMIT 1""",
        record.uid,
        record.date_of_birth,
        record.gender.value,
        names,
        family,
        full,
    )


async def _link_duplicate_record(conn: asyncpg.Connection, uid: str, request_id: str, *, actor: str) -> None:
    changed = await conn.fetchval(
        """UPDATE children SET shield_request_id = $2 WHERE uid = $1 AND shield_request_id IS NULL
           RETURNING 1""",
        uid,
        request_id,
    )
    if not changed:
        return
    await conn.execute(
        """INSERT INTO request_children (request_id, child_uid, outcome, shielded_at)
           VALUES ($1, $2, 'linked-duplicate-record', now())
           ON CONFLICT (request_id, child_uid) DO UPDATE SET shielded_at = now(), unshielded_at = NULL""",
        request_id,
        uid,
    )
    await append_audit(
        conn,
        action=AuditAction.SHIELDED,
        actor=actor,
        request_id=request_id,
        child_uid=uid,
        reason="an imported record matches a shielded child; shielded at once and linked for review",
        details={"linked_duplicate_record": True},
    )
    await notify(
        conn,
        recipient_kind="reviewers",
        recipient="reviewers",
        request_id=request_id,
        subject=f"Possible duplicate record linked to shielding request {request_id}",
        body=(
            f"A record imported into the directory (uid {uid}) matches a child shielded under request "
            f"{request_id}. It has been shielded and linked to that request. Please check it."
        ),
    )


async def view_child(pool: asyncpg.Pool, uid: str) -> dict[str, Any] | None:
    """What a practitioner sees, read through the redacting view (the same path the database role has)."""
    row = await pool.fetchrow("SELECT * FROM practitioner_children WHERE uid = $1", uid)
    return practitioner_record(dict(row)) if row else None


def practitioner_record(row: dict[str, Any]) -> dict[str, Any]:
    """The shape a practitioner is shown: for a shielded record exactly the permitted keys, nothing else."""
    if row["shielded"]:
        return {key: _jsonable(row[key]) for key in PRACTITIONER_FIELDS}
    return {key: _jsonable(value) for key, value in row.items()}


async def full_child(pool: asyncpg.Pool, uid: str) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        """SELECT uid, given_name, family_name, aliases, gender, date_of_birth, address, carers, school,
                  gp_practice, practitioners, (shield_request_id IS NOT NULL) AS shielded, shield_request_id
           FROM children WHERE uid = $1""",
        uid,
    )
    return {k: _jsonable(v) for k, v in dict(row).items()} if row else None


async def search_children(
    pool: asyncpg.Pool,
    *,
    given_name: str | None = None,
    family_name: str | None = None,
    date_of_birth: date | None = None,
    gender: str | None = None,
    postcode: str | None = None,
    school: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT * FROM search_children($1, $2, $3, $4, $5, $6, $7)",
        given_name,
        family_name,
        date_of_birth,
        gender,
        postcode,
        school,
        limit,
    )
    return [practitioner_record(dict(r)) for r in rows]


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


async def existing_children(pool: asyncpg.Pool, uids: Sequence[str]) -> set[str]:
    rows = await pool.fetch("SELECT uid FROM children WHERE uid = ANY($1::text[])", list(uids))
    return {r["uid"] for r in rows}


# ------------------------------------------------------------------------------------------------- intake


class ShieldResult(BaseModel):
    stage: Stage
    shielded_at: datetime
    children: list[ChildOutcome]
    message: str = ""


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
            requestor=_storable(requestor),
            reason=_storable(reason),
            details=_storable(details),
        )


def _storable(value: Any) -> Any:
    """Unvalidated text as PostgreSQL text and jsonb can hold it: NUL and lone surrogates escaped."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    if isinstance(value, list):
        return [_storable(item) for item in value]
    if isinstance(value, dict):
        return {_storable(key): _storable(item) for key, item in value.items()}
    return value


async def shield_request(
    pool: asyncpg.Pool, request: ShieldingRequestInput, operation_key: str, form_due_at: datetime
) -> ShieldResult:
    async def operation(conn: asyncpg.Connection) -> ShieldResult:
        uids = list(dict.fromkeys(request.children))
        shielded_at: datetime = await conn.fetchval("SELECT now()")
        # Lock the children so two requests for one child cannot both claim it.
        rows = await conn.fetch(
            "SELECT uid, shield_request_id FROM children WHERE uid = ANY($1::text[]) ORDER BY uid FOR UPDATE",
            uids,
        )
        current = {r["uid"]: r["shield_request_id"] for r in rows}
        await conn.execute(
            """INSERT INTO shielding_requests (request_id, stage, criteria, other_description, reason, requestor,
                                               called_at, received_by)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
            request.request_id,
            Stage.INTAKE.value,
            [c.value for c in request.criteria],
            request.other_description,
            request.reason,
            request.requestor.model_dump(mode="json", exclude_none=True),
            request.called_at,
            request.actor,
        )
        await append_audit(
            conn,
            action=AuditAction.RECEIVED,
            actor=request.actor,
            request_id=request.request_id,
            requestor=request.requestor,
            reason=request.reason,
            details={
                "criteria": [c.value for c in request.criteria],
                "children": uids,
                "called_at": request.called_at.isoformat(),
            },
        )
        unknown = [uid for uid in uids if uid not in current]
        if unknown:
            message = (
                "No child in the directory has the identifier "
                + ", ".join(unknown)
                + ". Check the identifier with the caller; nothing has been shielded."
            )
            await _close_request(conn, request.request_id, Stage.REFUSED, message)
            await append_audit(
                conn,
                action=AuditAction.REFUSED,
                actor=request.actor,
                request_id=request.request_id,
                requestor=request.requestor,
                reason=message,
                details={"unknown_children": unknown},
            )
            return ShieldResult(stage=Stage.REFUSED, shielded_at=shielded_at, children=[], message=message)

        outcomes: list[ChildOutcome] = []
        for uid in uids:
            existing = current[uid]
            if existing is None:
                await conn.execute("UPDATE children SET shield_request_id = $2 WHERE uid = $1", uid, request.request_id)
                await conn.execute(
                    """INSERT INTO request_children (request_id, child_uid, outcome, shielded_at)
                       VALUES ($1, $2, 'shielded', $3)""",
                    request.request_id,
                    uid,
                    shielded_at,
                )
                await append_audit(
                    conn,
                    action=AuditAction.SHIELDED,
                    actor=request.actor,
                    request_id=request.request_id,
                    child_uid=uid,
                    reason="shielded at intake",
                )
                outcomes.append(ChildOutcome(uid=uid, shielded=True))
            else:
                await conn.execute(
                    """INSERT INTO request_children (request_id, child_uid, outcome, existing_request_id)
                       VALUES ($1, $2, 'duplicate', $3)""",
                    request.request_id,
                    uid,
                    existing,
                )
                # Recorded against the lifecycle that already shields the child.
                await append_audit(
                    conn,
                    action=AuditAction.DUPLICATE,
                    actor=request.actor,
                    request_id=existing,
                    child_uid=uid,
                    requestor=request.requestor,
                    reason=request.reason,
                    details={
                        "duplicate_request_id": request.request_id,
                        "criteria": [c.value for c in request.criteria],
                    },
                )
                outcomes.append(ChildOutcome(uid=uid, shielded=True, existing_request_id=existing))

        newly = [o for o in outcomes if o.existing_request_id is None]
        if not newly:
            existing_ids = sorted({o.existing_request_id for o in outcomes if o.existing_request_id})
            message = (
                "Already shielded under request "
                + ", ".join(existing_ids)
                + "; this request has been recorded against it and no new shielding was started."
            )
            await _close_request(conn, request.request_id, Stage.DUPLICATE, message)
            return ShieldResult(stage=Stage.DUPLICATE, shielded_at=shielded_at, children=outcomes, message=message)
        await conn.execute(
            "UPDATE shielding_requests SET stage = $2, shielded_at = $3, form_due_at = $4 WHERE request_id = $1",
            request.request_id,
            Stage.AWAITING_FORM.value,
            shielded_at,
            form_due_at,
        )
        return ShieldResult(stage=Stage.AWAITING_FORM, shielded_at=shielded_at, children=outcomes)

    return await once(pool, operation_key, ShieldResult, operation)


async def _close_request(conn: asyncpg.Connection, request_id: str, stage: Stage, reason: str) -> None:
    await conn.execute(
        """UPDATE shielding_requests SET stage = $2, closed_at = now(), closed_reason = $3
           WHERE request_id = $1""",
        request_id,
        stage.value,
        reason,
    )


class StepResult(BaseModel):
    done: bool = True
    children: list[str] = []
    at: datetime | None = None


async def lift_shield(
    pool: asyncpg.Pool,
    *,
    request_id: str,
    action: AuditAction,
    stage: Stage,
    actor: str,
    reason: str,
    operation_key: str,
    notify_requestor: str | None = None,
) -> StepResult:
    """Unshield every child the request shields (lapse, review decision or change of circumstances)."""

    async def operation(conn: asyncpg.Connection) -> StepResult:
        rows = await conn.fetch(
            """UPDATE children SET shield_request_id = NULL, updated_at = now() WHERE shield_request_id = $1
               RETURNING uid""",
            request_id,
        )
        uids = sorted(r["uid"] for r in rows)
        at: datetime = await conn.fetchval("SELECT now()")
        await conn.execute(
            """UPDATE request_children SET unshielded_at = $2
               WHERE request_id = $1 AND shielded_at IS NOT NULL AND unshielded_at IS NULL""",
            request_id,
            at,
        )
        await _close_request(conn, request_id, stage, reason)
        for uid in uids:
            await append_audit(
                conn,
                action=action,
                actor=actor,
                request_id=request_id,
                child_uid=uid,
                reason=reason,
            )
        if not uids:
            await append_audit(conn, action=action, actor=actor, request_id=request_id, reason=reason)
        if notify_requestor:
            await _notify_requestor(conn, request_id, f"Shielding request {request_id}", notify_requestor)
        return StepResult(children=uids, at=at)

    return await once(pool, operation_key, StepResult, operation)


async def _notify_requestor(conn: asyncpg.Connection, request_id: str, subject: str, body: str) -> None:
    """Queue a message to the requestor's own contact: the address is the envelope, never the content."""
    requestor = await conn.fetchval("SELECT requestor FROM shielding_requests WHERE request_id = $1", request_id)
    contact = (requestor or {}).get("email") or (requestor or {}).get("phone") or "unknown"
    await notify(conn, recipient_kind="requestor", recipient=contact, request_id=request_id, subject=subject, body=body)


async def notify_requestor(
    pool: asyncpg.Pool, *, request_id: str, subject: str, body: str, operation_key: str
) -> StepResult:
    """Queue a message to the requestor's contact (never any child detail: the body is written by the caller)."""

    async def operation(conn: asyncpg.Connection) -> StepResult:
        await _notify_requestor(conn, request_id, subject, body)
        return StepResult()

    return await once(pool, operation_key, StepResult, operation)


async def stage_documents(pool: asyncpg.Pool, request_id: str, documents: Sequence[tuple[str, bytes]]) -> list[str]:
    """Store uploaded documents, unlinked until the workflow accepts the form; returns their ids."""
    ids = []
    async with pool.acquire() as conn, conn.transaction():
        for filename, content in documents:
            document_id = str(uuid.uuid4())
            await conn.execute(
                """INSERT INTO form_documents (document_id, request_id, filename, sha256, size_bytes, content)
                   VALUES ($1, $2, $3, $4, $5, $6)""",
                uuid.UUID(document_id),
                request_id,
                filename,
                hashlib.sha256(content).hexdigest(),
                len(content),
                content,
            )
            ids.append(document_id)
    return ids


async def discard_staged_documents(pool: asyncpg.Pool, document_ids: Sequence[str]) -> None:
    await pool.execute(
        "DELETE FROM form_documents WHERE document_id = ANY($1::uuid[]) AND accepted_at IS NULL",
        [uuid.UUID(d) for d in document_ids],
    )


async def accept_form(
    pool: asyncpg.Pool, *, request_id: str, document_ids: Sequence[str], actor: str, operation_key: str
) -> StepResult:
    async def operation(conn: asyncpg.Connection) -> StepResult:
        at: datetime = await conn.fetchval("SELECT now()")
        rows = await conn.fetch(
            """UPDATE form_documents SET accepted_at = $3
               WHERE request_id = $1 AND document_id = ANY($2::uuid[]) AND accepted_at IS NULL
               RETURNING document_id, sha256, size_bytes""",
            request_id,
            [uuid.UUID(d) for d in document_ids],
            at,
        )
        await conn.execute("UPDATE shielding_requests SET form_received_at = $2 WHERE request_id = $1", request_id, at)
        await append_audit(
            conn,
            action=AuditAction.FORM_RECEIVED,
            actor=actor,
            request_id=request_id,
            reason="written form and supporting documents received",
            details={"documents": [{"sha256": r["sha256"], "size_bytes": r["size_bytes"]} for r in rows]},
        )
        return StepResult(at=at)

    return await once(pool, operation_key, StepResult, operation)


async def refuse_form(
    pool: asyncpg.Pool,
    *,
    request_id: str,
    document_ids: Sequence[str],
    actor: str,
    reason: str,
    operation_key: str,
) -> StepResult:
    async def operation(conn: asyncpg.Connection) -> StepResult:
        await conn.execute(
            """DELETE FROM form_documents
               WHERE request_id = $1 AND document_id = ANY($2::uuid[]) AND accepted_at IS NULL""",
            request_id,
            [uuid.UUID(d) for d in document_ids],
        )
        await append_audit(conn, action=AuditAction.FORM_REFUSED, actor=actor, request_id=request_id, reason=reason)
        return StepResult()

    return await once(pool, operation_key, StepResult, operation)


async def record_step(
    pool: asyncpg.Pool,
    *,
    request_id: str,
    action: AuditAction,
    actor: str,
    reason: str,
    operation_key: str,
    stage: Stage | None = None,
    details: dict[str, Any] | None = None,
    notify_reviewers: tuple[str, str] | None = None,
) -> StepResult:
    """An audited step that changes no shield: review due, reminder, approval."""

    async def operation(conn: asyncpg.Connection) -> StepResult:
        if stage is not None:
            await conn.execute(
                "UPDATE shielding_requests SET stage = $2 WHERE request_id = $1", request_id, stage.value
            )
        await append_audit(conn, action=action, actor=actor, request_id=request_id, reason=reason, details=details)
        if notify_reviewers:
            subject, body = notify_reviewers
            await notify(
                conn,
                recipient_kind="reviewers",
                recipient="reviewers",
                request_id=request_id,
                subject=subject,
                body=body,
            )
        return StepResult(at=await conn.fetchval("SELECT now()"))

    return await once(pool, operation_key, StepResult, operation)


# ---------------------------------------------------------------------------------------------- reading


async def request_exists(pool: asyncpg.Pool, request_id: str) -> bool:
    return bool(await pool.fetchval("SELECT 1 FROM shielding_requests WHERE request_id = $1", request_id))


async def closed_stage(pool: asyncpg.Pool, request_id: str) -> tuple[str, str | None] | None:
    """(stage, form_due_at text) of a closed request, or None while its lifecycle runs."""
    row = await pool.fetchrow(
        "SELECT stage, form_due_at FROM shielding_requests WHERE request_id = $1 AND closed_at IS NOT NULL",
        request_id,
    )
    if row is None:
        return None
    return row["stage"], row["form_due_at"].isoformat() if row["form_due_at"] else None


async def request_requestor_actor(pool: asyncpg.Pool, request_id: str) -> str | None:
    return await pool.fetchval(  # type: ignore[no-any-return]
        "SELECT received_by FROM shielding_requests WHERE request_id = $1", request_id
    )


async def audit_entries(
    pool: asyncpg.Pool, *, request_id: str | None = None, child_uid: str | None = None
) -> list[dict[str, Any]]:
    if request_id is not None:
        rows = await pool.fetch(
            """SELECT * FROM audit_log WHERE request_id = $1
                  OR request_id IN (SELECT existing_request_id FROM request_children WHERE request_id = $1)
                     AND details->>'duplicate_request_id' = $1
               ORDER BY entry_id""",
            request_id,
        )
    else:
        rows = await pool.fetch(
            """SELECT * FROM audit_log WHERE child_uid = $1
                  OR request_id IN (SELECT request_id FROM request_children WHERE child_uid = $1)
               ORDER BY entry_id""",
            child_uid,
        )
    return [{k: _jsonable(v) for k, v in dict(r).items()} for r in rows]


async def notifications(pool: asyncpg.Pool, request_id: str | None = None) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT * FROM notifications WHERE $1::text IS NULL OR request_id = $1 ORDER BY notification_id",
        request_id,
    )
    return [{k: _jsonable(v) for k, v in dict(r).items()} for r in rows]


@asynccontextmanager
async def pool_for(database_url: str, **kwargs: Any) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, **kwargs)
    try:
        yield pool
    finally:
        await pool.close()
