"""The scheduled removal of closed requests' supporting documents, and the sealing of any left in clear."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
from pydantic import BaseModel
from temporalio import activity

from shielding.log import get_logger
from shielding.store.documents import DocumentKeys, remove_expired_documents, seal_documents_in_clear

log = get_logger(__name__)


class RetentionResult(BaseModel):
    """What a run did: counts only, never a name or a request's details."""

    documents_removed: int
    requests: int
    documents_sealed: int


class DocumentRetentionActivities:
    """`retention`: how long after a request closed its documents are kept (`document_retention_days`);
    `keys`: the keys to seal with (default: the process's, as configured at start)."""

    def __init__(self, pool: asyncpg.Pool, retention: timedelta, keys: DocumentKeys | None = None) -> None:
        self._pool = pool
        self._retention = retention
        self._keys = keys

    @activity.defn
    async def remove_expired_documents(self) -> RetentionResult:
        sealed = await seal_documents_in_clear(self._pool, keys=self._keys)
        removal = await remove_expired_documents(self._pool, self._retention)
        log.info("documents removed", documents=removal.documents, requests=removal.requests, sealed=sealed)
        return RetentionResult(documents_removed=removal.documents, requests=removal.requests, documents_sealed=sealed)

    def all(self) -> list[object]:
        return [self.remove_expired_documents]
