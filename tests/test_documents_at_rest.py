"""Supporting documents at rest: sealed under the encryption keys (bound to their document and request), and
their content removed once the request has been closed longer than the retention period, audited.

Real PostgreSQL (the session database) and Temporal (the time-skipping server for the workflow, the dev server
for the Schedule). Each test makes its own requests, with closing times set around the deadline.
"""

from __future__ import annotations

import json
import secrets
import string
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from temporalio.client import ScheduleCalendarSpec
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.document_retention import DocumentRetentionActivities, RetentionResult
from shielding.codec import generate_key_spec
from shielding.domain import AuditAction
from shielding.settings import ConfigurationError, Settings
from shielding.store import audit_entries
from shielding.store.documents import (
    DocumentKeys,
    DocumentUnreadable,
    read_document,
    remove_expired_documents,
    seal_documents_in_clear,
    stage_documents,
)
from worker.main import workflow_runner
from worker.retention_schedule import ensure_retention_schedule, retention_schedule_id
from workflows.document_retention import DocumentRetentionWorkflow

OLD_SPEC = generate_key_spec("old-key")
NEW_SPEC = generate_key_spec("new-key")
KEYS = DocumentKeys.from_spec(OLD_SPEC)
RETENTION = timedelta(days=30)


def canary() -> bytes:
    return f"%PDF court order for Zainab canary-{secrets.token_hex(8)} 17 Canary Gardens".encode()


def new_request_id() -> str:
    return "SR-" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(12))


async def a_request(pool: asyncpg.Pool, *, closed_at: datetime | None) -> str:
    request_id = new_request_id()
    await pool.execute(
        """INSERT INTO shielding_requests (request_id, stage, criteria, reason, requestor, called_at, received_by,
                                           closed_at, closed_reason)
           VALUES ($1, $2, '{domestic-violence}', 'test', $3, $4, 'officer-a', $5, $6)""",
        request_id,
        "unshielded" if closed_at else "shielded",
        json.dumps({"type": "public", "name": "test"}),
        (closed_at or datetime.now(UTC)) - timedelta(days=60),
        closed_at,
        "test" if closed_at else None,
    )
    return request_id


async def raw(pool: asyncpg.Pool, document_id: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM form_documents WHERE document_id = $1", uuid.UUID(document_id))
    assert row is not None
    return row


# ------------------------------------------------------------------------------------------ sealed at rest


async def test_documents_are_stored_sealed_and_read_back_whole(pool: asyncpg.Pool) -> None:
    content = canary()
    request_id = await a_request(pool, closed_at=None)
    (document_id,) = await stage_documents(pool, request_id, [("order.pdf", content)], keys=KEYS)
    row = await raw(pool, document_id)
    assert row["key_id"] == "old-key"
    assert content not in row["content"] and b"canary-" not in row["content"] and b"Zainab" not in row["content"]
    assert row["size_bytes"] == len(content)
    stored = await read_document(pool, document_id, keys=KEYS)
    assert stored.content == content and stored.filename == "order.pdf" and stored.content_deleted_at is None
    # Rotation: the new key seals, the old one still opens what it sealed.
    rotated = DocumentKeys.from_spec(f"{NEW_SPEC},{OLD_SPEC}")
    assert (await read_document(pool, document_id, keys=rotated)).content == content
    (newer,) = await stage_documents(pool, request_id, [("form.pdf", content)], keys=rotated)
    assert (await raw(pool, newer))["key_id"] == "new-key"
    with pytest.raises(DocumentUnreadable, match="not held here"):
        await read_document(pool, newer, keys=KEYS)


async def test_a_sealed_document_opens_only_in_its_own_row_and_unaltered(pool: asyncpg.Pool) -> None:
    request_id = await a_request(pool, closed_at=None)
    other_request = await a_request(pool, closed_at=None)
    first, second = await stage_documents(pool, request_id, [("a.pdf", canary()), ("b.pdf", canary())], keys=KEYS)
    (elsewhere,) = await stage_documents(pool, other_request, [("c.pdf", canary())], keys=KEYS)
    sealed_first = (await raw(pool, first))["content"]
    # Copied over another document of the same request, or of another request: it no longer opens.
    for target in (second, elsewhere):
        await pool.execute(
            "UPDATE form_documents SET content = $2 WHERE document_id = $1", uuid.UUID(target), sealed_first
        )
        with pytest.raises(DocumentUnreadable, match="failed authentication"):
            await read_document(pool, target, keys=KEYS)
    # One bit changed in its own row: refused too.
    flipped = bytes([sealed_first[0] ^ 1]) + sealed_first[1:]
    await pool.execute("UPDATE form_documents SET content = $2 WHERE document_id = $1", uuid.UUID(first), flipped)
    with pytest.raises(DocumentUnreadable, match="failed authentication"):
        await read_document(pool, first, keys=KEYS)


async def test_documents_stored_in_clear_before_are_sealed(pool: asyncpg.Pool) -> None:
    content = canary()
    request_id = await a_request(pool, closed_at=None)
    document_id = str(uuid.uuid4())
    await pool.execute(
        """INSERT INTO form_documents (document_id, request_id, filename, sha256, size_bytes, content)
           VALUES ($1, $2, 'legacy.pdf', encode(sha256($3), 'hex'), $4, $3)""",
        uuid.UUID(document_id),
        request_id,
        content,
        len(content),
    )
    assert (await read_document(pool, document_id, keys=KEYS)).content == content  # legacy rows still read
    assert await seal_documents_in_clear(pool, keys=KEYS) >= 1
    row = await raw(pool, document_id)
    assert row["key_id"] == "old-key" and content not in row["content"]
    assert (await read_document(pool, document_id, keys=KEYS)).content == content
    assert await seal_documents_in_clear(pool, keys=KEYS) == 0  # nothing left in clear


def test_documents_need_keys(tmp_path: object) -> None:
    with pytest.raises(ConfigurationError, match="SHIELDING_ENCRYPTION_KEYS is required"):
        DocumentKeys.from_settings(Settings(data_dir=tmp_path, environment="production"))
    assert DocumentKeys.from_settings(Settings(data_dir=tmp_path, encryption_keys=OLD_SPEC)).key_id == "old-key"


# ------------------------------------------------------------------------------------------------ retention


async def test_retention_removes_content_on_one_side_of_the_deadline_only(pool: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    expired = await a_request(pool, closed_at=now - RETENTION - timedelta(minutes=1))
    at_deadline = await a_request(pool, closed_at=now - RETENTION)
    not_yet = await a_request(pool, closed_at=now - RETENTION + timedelta(minutes=1))
    still_open = await a_request(pool, closed_at=None)
    staged = {}
    for request_id in (expired, at_deadline, not_yet, still_open):
        staged[request_id] = await stage_documents(
            pool, request_id, [("a.pdf", canary()), ("b.pdf", canary())], keys=KEYS
        )
    # The open request's staged rows are old, too: only closing starts the clock.
    await pool.execute(
        "UPDATE form_documents SET uploaded_at = $2 WHERE request_id = $1", still_open, now - timedelta(days=400)
    )

    removal = await remove_expired_documents(pool, RETENTION, now=now)
    assert removal.documents >= 4 and removal.requests >= 2

    for request_id in (expired, at_deadline):
        for document_id in staged[request_id]:
            row = await raw(pool, document_id)
            assert row["content"] is None and row["content_deleted_at"] == now
            assert row["filename"] in ("a.pdf", "b.pdf") and row["size_bytes"] > 0 and len(row["sha256"]) == 64
            stored = await read_document(pool, document_id, keys=KEYS)
            assert stored.content is None and stored.content_deleted_at == now
        entries = [e for e in await audit_entries(pool, request_id=request_id)]
        (entry,) = [e for e in entries if e["action"] == AuditAction.DOCUMENTS_REMOVED.value]
        assert entry["actor"] == "retention"
        assert entry["details"]["documents"] == 2 and entry["details"]["retention_days"] == 30
        assert entry["reason"].startswith("2 supporting documents removed, 30 days after the request closed")
    for request_id in (not_yet, still_open):
        for document_id in staged[request_id]:
            assert (await read_document(pool, document_id, keys=KEYS)).content is not None
        assert all(
            e["action"] != AuditAction.DOCUMENTS_REMOVED.value for e in await audit_entries(pool, request_id=request_id)
        )

    # Idempotent: a second run at the same moment removes nothing more and audits nothing more.
    await remove_expired_documents(pool, RETENTION, now=now)
    entries = await audit_entries(pool, request_id=expired)
    assert [e["action"] for e in entries].count(AuditAction.DOCUMENTS_REMOVED.value) == 1
    # Two minutes later the one that was not yet due is.
    await remove_expired_documents(pool, RETENTION, now=now + timedelta(minutes=2))
    assert [(await raw(pool, d))["content"] for d in staged[not_yet]] == [None, None]
    assert None not in [(await raw(pool, d))["content"] for d in staged[still_open]]


async def test_the_retention_workflow_removes_and_reports_counts(
    time_env: WorkflowEnvironment, pool: asyncpg.Pool
) -> None:
    expired = await a_request(pool, closed_at=datetime.now(UTC) - RETENTION - timedelta(hours=1))
    (document_id,) = await stage_documents(pool, expired, [("a.pdf", canary())], keys=KEYS)
    task_queue = f"retention-{uuid.uuid4()}"
    activities = DocumentRetentionActivities(pool, RETENTION, keys=KEYS)
    async with Worker(
        time_env.client,
        task_queue=task_queue,
        workflows=[DocumentRetentionWorkflow],
        activities=[activities.remove_expired_documents],
        workflow_runner=workflow_runner(),
    ):
        result = await time_env.client.execute_workflow(
            DocumentRetentionWorkflow.run, id=f"retention-{uuid.uuid4()}", task_queue=task_queue
        )
    assert isinstance(result, RetentionResult) and result.documents_removed >= 1 and result.requests >= 1
    assert (await raw(pool, document_id))["content"] is None


async def test_the_worker_keeps_one_nightly_schedule(dev_env: WorkflowEnvironment) -> None:
    settings = Settings(task_queue=f"retention-{uuid.uuid4()}", document_retention_days=30)
    schedule_id = await ensure_retention_schedule(dev_env.client, settings)
    assert schedule_id == retention_schedule_id(settings.task_queue)
    assert await ensure_retention_schedule(dev_env.client, settings) == schedule_id  # a second worker: same one
    handle = dev_env.client.get_schedule_handle(schedule_id)
    try:
        described = await handle.describe()
        spec = described.schedule.spec
        assert spec.time_zone_name == "Europe/London"
        (calendar,) = spec.calendars
        assert isinstance(calendar, ScheduleCalendarSpec)
        assert [r.start for r in calendar.hour] == [2] and [r.start for r in calendar.minute] == [30]
    finally:
        await handle.delete()
