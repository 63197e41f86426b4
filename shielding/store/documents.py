"""Form documents: staged on upload, linked to the request when the workflow accepts the form, else deleted."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from shielding import messages
from shielding.domain import AuditAction
from shielding.steps import FormDocuments, StepResult
from shielding.store.audit import append_audit
from shielding.store.db import once


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


async def accept_form(pool: asyncpg.Pool, form: FormDocuments, operation_key: str) -> StepResult:
    async def operation(conn: asyncpg.Connection) -> StepResult:
        at: datetime = await conn.fetchval("SELECT now()")
        rows = await conn.fetch(
            """UPDATE form_documents SET accepted_at = $3
               WHERE request_id = $1 AND document_id = ANY($2::uuid[]) AND accepted_at IS NULL
               RETURNING document_id, sha256, size_bytes""",
            form.request_id,
            [uuid.UUID(d) for d in form.document_ids],
            at,
        )
        await conn.execute(
            "UPDATE shielding_requests SET form_received_at = $2 WHERE request_id = $1", form.request_id, at
        )
        await append_audit(
            conn,
            action=AuditAction.FORM_RECEIVED,
            actor=form.actor,
            request_id=form.request_id,
            reason=messages.FORM_RECEIVED_AUDIT,
            details={"documents": [{"sha256": r["sha256"], "size_bytes": r["size_bytes"]} for r in rows]},
        )
        return StepResult(at=at)

    return await once(pool, operation_key, StepResult, operation)


async def refuse_form(pool: asyncpg.Pool, form: FormDocuments, operation_key: str) -> StepResult:
    async def operation(conn: asyncpg.Connection) -> StepResult:
        await conn.execute(
            """DELETE FROM form_documents
               WHERE request_id = $1 AND document_id = ANY($2::uuid[]) AND accepted_at IS NULL""",
            form.request_id,
            [uuid.UUID(d) for d in form.document_ids],
        )
        await append_audit(
            conn,
            action=AuditAction.FORM_REFUSED,
            actor=form.actor,
            request_id=form.request_id,
            reason=form.refusal_reason or "form refused",
        )
        return StepResult()

    return await once(pool, operation_key, StepResult, operation)
