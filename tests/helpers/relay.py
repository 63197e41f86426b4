"""The relay for tests: a fresh database of its own (notification ids, the delivery workflows' ids, start at 1),
the production worker with the relay's activities on a test's task queue, staff with addresses, and waiting
until every message of the outbox has an outcome."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from temporalio.client import Client
from temporalio.worker import Worker

from activities.notifications import NotificationActivities
from activities.shielding import ShieldingActivities
from shielding import store
from shielding.delivery import Sender
from shielding.embedded_postgres import EmbeddedPostgres
from shielding.settings import Settings
from shielding.store import outbox
from tests.helpers.people import grant
from worker.main import build_worker
from workflows.notifications import NotificationDispatchWorkflow

RETRY_SECONDS = 0.2


@dataclass
class FreshDatabase:
    url: str
    pool: asyncpg.Pool


@asynccontextmanager
async def fresh_database(pg_server: EmbeddedPostgres, prefix: str = "relay") -> AsyncIterator[FreshDatabase]:
    """A database of the session's embedded server, migrated, for this test only; dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_server.uri)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = urlunsplit(urlsplit(pg_server.uri)._replace(path=f"/{name}"))
    await asyncio.to_thread(store.migrate, url)
    pool = await store.create_pool(url, max_size=8)
    try:
        yield FreshDatabase(url, pool)
    finally:
        await pool.close()
        admin = await asyncpg.connect(pg_server.uri)
        try:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def relay_worker(
    client: Client, pool: asyncpg.Pool, settings: Settings, task_queue: str, sender: Sender, **overrides: Any
) -> Worker:
    """The production worker with the relay (build_worker's `notifications`), retrying after RETRY_SECONDS."""
    return build_worker(
        client,
        ShieldingActivities(pool),
        settings.model_copy(update={"task_queue": task_queue}),
        notifications=NotificationActivities(pool, sender, retry_seconds=RETRY_SECONDS),
        **overrides,
    )


async def dispatch(client: Client, pool: asyncpg.Pool, task_queue: str) -> None:
    """One run of what the Schedule starts, waited for in the database (never on its result: awaiting a result
    lets the time-skipping server jump over the delivery workflows' retry backoff)."""
    await client.start_workflow(
        NotificationDispatchWorkflow.run,
        id=f"dispatch-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
        execution_timeout=timedelta(minutes=2),
    )

    async def dispatched() -> bool:
        return not await outbox.undispatched(pool)

    await eventually(dispatched)


async def staff(pool: asyncpg.Pool, role: str, email: str | None, *, phone: str | None = None) -> str:
    name = f"{role}-{uuid.uuid4().hex[:6]}"
    await grant(pool, name, role)
    async with pool.acquire() as conn, conn.transaction():
        await outbox.set_staff_address(conn, name, by="test-setup", email=email, phone=phone)
    return name


async def settled(pool: asyncpg.Pool, ids: list[int], *, timeout: float = 60.0) -> list[outbox.OutboxMessage]:
    """Wait until every one of `ids` is sent, not possible or failed; their outbox rows."""
    deadline = time.monotonic() + timeout
    while True:
        rows = {m.notification_id: m for m in await outbox.outbox(pool, limit=1000)}
        if all(rows[i].status != outbox.MessageStatus.QUEUED for i in ids):
            return [rows[i] for i in ids]
        if time.monotonic() > deadline:
            raise AssertionError(f"still queued: {[i for i in ids if rows[i].status == outbox.MessageStatus.QUEUED]}")
        await asyncio.sleep(0.1)


async def eventually(check: Any, *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)
