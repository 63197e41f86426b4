"""The scheduled retention of the access log: entries older than `access_log_retention_days` are removed (the
oldest first, a prefix only, through the database's `prune_access_log`), and each batch removed is audited."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
from pydantic import BaseModel
from temporalio import activity

from shielding.log import get_logger
from shielding.store import access_log

log = get_logger(__name__)


class AccessLogRetentionResult(BaseModel):
    entries_removed: int


class AccessLogRetentionActivities:
    def __init__(self, pool: asyncpg.Pool, keep: timedelta) -> None:
        self._pool = pool
        self._keep = keep

    @activity.defn
    async def prune_access_log(self) -> AccessLogRetentionResult:
        removed = await access_log.prune(self._pool, keep=self._keep)
        log.info("access log pruned", entries=removed)
        return AccessLogRetentionResult(entries_removed=removed)

    def all(self) -> list[object]:
        return [self.prune_access_log]
