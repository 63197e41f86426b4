"""A command's connections (database pool, Temporal client, the service), opened lazily, closed at the end."""

from __future__ import annotations

import asyncio
import getpass
from types import TracebackType

import asyncpg
from temporalio.client import Client

from shielding import access, store
from shielding.settings import Settings
from shielding.temporal import connect
from starter import ShieldingService


class Context:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pool: asyncpg.Pool | None = None
        self._client: Client | None = None

    @property
    def actor(self) -> str:
        return self.settings.actor or getpass.getuser()

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await store.create_pool(self.settings.resolved_database_url(), max_size=2)
        return self._pool

    async def client(self) -> Client:
        if self._client is None:
            self._client = await asyncio.wait_for(connect(self.settings), timeout=15)
        return self._client

    async def service(self) -> ShieldingService:
        return ShieldingService(
            await self.client(),
            await self.pool(),
            task_queue=self.settings.task_queue,
            max_document_bytes=self.settings.max_document_bytes,
            intake_timeout=self.settings.intake_timeout_seconds,
        )

    async def authorise(self, action: str, *, request_id: str | None = None, child_uid: str | None = None) -> str:
        await access.require(await self.pool(), self.actor, action, request_id=request_id, child_uid=child_uid)
        return self.actor

    async def __aenter__(self) -> Context:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._pool is not None:
            await self._pool.close()
