"""Form documents: staged on upload, linked to the request when the workflow accepts the form, else deleted.

At rest, a document's content is sealed with AES-256-GCM under the service's encryption keys (the same keys
as Temporal's payloads, `SHIELDING_ENCRYPTION_KEYS`; the first seals, all open): the key id is stored beside
it, and the associated data binds the ciphertext to its document id and request id, so a sealed content
copied to another row (or another request) no longer opens. The digest and size are of the document itself.

Once a request has been closed longer than `document_retention_days`, `remove_expired_documents` removes its
documents' content (the rows stay: name, size, digest and when it was removed) and audits how many, per
request. It also seals any document stored in clear before encryption at rest (`seal_documents_in_clear`).
"""

from __future__ import annotations

import hashlib
import os
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shielding import messages
from shielding.domain import AuditAction
from shielding.settings import ConfigurationError, Settings, get_settings
from shielding.steps import FormDocuments, StepResult
from shielding.store.audit import append_audit
from shielding.store.db import once

NONCE_BYTES = 12
# Names the layout of the associated data (a new layout gets a new name).
SCHEME = b"shielding-document-v1"
RETENTION_ACTOR = "retention"


class DocumentUnreadable(Exception):
    """A stored document that does not open: under a key this process does not hold, or altered."""


def _associated_data(key_id: str, document_id: str, request_id: str) -> bytes:
    parts = [SCHEME, key_id.encode(), document_id.encode(), request_id.encode()]
    return b"".join(struct.pack(">I", len(part)) + part for part in parts)


class DocumentKeys:
    """The keys documents are sealed with (the first) and opened with (all)."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise ConfigurationError("At least one encryption key is needed to store documents.")
        self.key_id = keys[0][0]
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}

    @classmethod
    def from_spec(cls, spec: str) -> DocumentKeys:
        from shielding.codec import parse_keys

        return cls(parse_keys(spec))

    @classmethod
    def from_settings(cls, settings: Settings) -> DocumentKeys:
        """SHIELDING_ENCRYPTION_KEYS (or its _FILE), else the development keys `shielding dev` made."""
        spec = settings.encryption_keys
        dev_keys = settings.data_dir / "encryption.keys"
        if not spec and settings.environment == "development" and dev_keys.is_file():
            spec = dev_keys.read_text().strip()
        if not spec:
            raise ConfigurationError(
                "SHIELDING_ENCRYPTION_KEYS is required: supporting documents are stored encrypted "
                "(`shielding dev` generates development keys under its data dir)."
            )
        return cls.from_spec(spec)

    def seal(self, document_id: str, request_id: str, content: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        aad = _associated_data(self.key_id, document_id, request_id)
        return nonce + self._ciphers[self.key_id].encrypt(nonce, content, aad)

    def open(self, key_id: str, document_id: str, request_id: str, sealed: bytes) -> bytes:
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise DocumentUnreadable(f"Document {document_id} is sealed under key {key_id!r}, which is not held here.")
        try:
            aad = _associated_data(key_id, document_id, request_id)
            return cipher.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
        except InvalidTag:
            altered = f"Document {document_id} failed authentication: it was altered or moved."
            raise DocumentUnreadable(altered) from None


# The keys of this process, set once at start (the web service and the worker); else read from the settings.
_configured: DocumentKeys | None = None


def configure_document_keys(keys: DocumentKeys | None) -> None:
    global _configured
    _configured = keys


def document_keys() -> DocumentKeys:
    global _configured
    if _configured is None:
        _configured = DocumentKeys.from_settings(get_settings())
    return _configured


async def stage_documents(
    pool: asyncpg.Pool,
    request_id: str,
    documents: Sequence[tuple[str, bytes]],
    *,
    keys: DocumentKeys | None = None,
) -> list[str]:
    """Store uploaded documents, sealed, unlinked until the workflow accepts the form; returns their ids."""
    keys = keys or document_keys()
    ids = []
    async with pool.acquire() as conn, conn.transaction():
        for filename, content in documents:
            document_id = str(uuid.uuid4())
            await conn.execute(
                """INSERT INTO form_documents (document_id, request_id, filename, sha256, size_bytes, content, key_id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                uuid.UUID(document_id),
                request_id,
                filename,
                hashlib.sha256(content).hexdigest(),
                len(content),
                keys.seal(document_id, request_id, content),
                keys.key_id,
            )
            ids.append(document_id)
    return ids


@dataclass(frozen=True)
class StoredDocument:
    document_id: str
    request_id: str
    filename: str
    sha256: str
    size_bytes: int
    accepted_at: datetime | None
    content_deleted_at: datetime | None
    # None once removed after the retention period.
    content: bytes | None


async def read_document(pool: asyncpg.Pool, document_id: str, *, keys: DocumentKeys | None = None) -> StoredDocument:
    """One document, its content opened (and checked against its digest); None content once removed."""
    row = await pool.fetchrow(
        """SELECT document_id::text, request_id, filename, sha256, size_bytes, accepted_at, content_deleted_at,
                  content, key_id
           FROM form_documents WHERE document_id = $1""",
        uuid.UUID(document_id),
    )
    if row is None:
        raise DocumentUnreadable(f"There is no document {document_id}.")
    content: bytes | None = row["content"]
    if content is not None and row["key_id"] is not None:
        content = (keys or document_keys()).open(row["key_id"], row["document_id"], row["request_id"], content)
    if content is not None and hashlib.sha256(content).hexdigest() != row["sha256"]:
        raise DocumentUnreadable(f"Document {document_id} does not match its digest.")
    return StoredDocument(
        document_id=row["document_id"],
        request_id=row["request_id"],
        filename=row["filename"],
        sha256=row["sha256"],
        size_bytes=row["size_bytes"],
        accepted_at=row["accepted_at"],
        content_deleted_at=row["content_deleted_at"],
        content=content,
    )


async def seal_documents_in_clear(pool: asyncpg.Pool, *, keys: DocumentKeys | None = None, batch: int = 200) -> int:
    """Seal documents stored in clear before encryption at rest; returns how many were sealed."""
    keys = keys or document_keys()
    sealed = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT document_id, document_id::text AS id, request_id, content FROM form_documents
                   WHERE content IS NOT NULL AND key_id IS NULL LIMIT $1 FOR UPDATE SKIP LOCKED""",
                batch,
            )
            for row in rows:
                await conn.execute(
                    "UPDATE form_documents SET content = $2, key_id = $3 WHERE document_id = $1",
                    row["document_id"],
                    keys.seal(row["id"], row["request_id"], row["content"]),
                    keys.key_id,
                )
        sealed += len(rows)
        if len(rows) < batch:
            return sealed


@dataclass(frozen=True)
class Removal:
    """What a retention run removed: how many documents, of how many requests (no names, no content)."""

    documents: int
    requests: int


async def remove_expired_documents(pool: asyncpg.Pool, retention: timedelta, *, now: datetime | None = None) -> Removal:
    """Remove the content of every document of a request closed at least `retention` ago; keep the rows and
    audit each request's count in the same transaction. Idempotent: a second run finds nothing to remove."""
    async with pool.acquire() as conn, conn.transaction():
        at: datetime = now or await conn.fetchval("SELECT now()")
        rows = await conn.fetch(
            """UPDATE form_documents d SET content = NULL, content_deleted_at = $2
               FROM shielding_requests r
               WHERE d.request_id = r.request_id AND d.content IS NOT NULL
                 AND r.closed_at IS NOT NULL AND r.closed_at <= $1
               RETURNING d.request_id""",
            at - retention,
            at,
        )
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["request_id"]] = counts.get(row["request_id"], 0) + 1
        days = retention / timedelta(days=1)
        for request_id, count in sorted(counts.items()):
            await append_audit(
                conn,
                action=AuditAction.DOCUMENTS_REMOVED,
                actor=RETENTION_ACTOR,
                request_id=request_id,
                reason=messages.documents_removed_audit(count, days),
                details={"documents": count, "retention_days": days},
            )
    return Removal(documents=len(rows), requests=len(counts))


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
