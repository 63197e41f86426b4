"""The scheduled check of the audit log: verify every entry and anchor its head outside the database."""

from __future__ import annotations

import asyncpg
from pydantic import BaseModel
from temporalio import activity

from shielding import store
from shielding.audit_signing import AuditSigning
from shielding.log import get_logger

log = get_logger(__name__)


class AnchorResult(BaseModel):
    """What the check found: counts and entry numbers only, never an entry's content."""

    intact: bool
    entries: int
    first_broken_entry: int | None = None
    anchored_entry: int | None = None
    message: str


class AuditAnchorActivities:
    """`signing`: the keys and anchor directory to check with (default: the process's, as configured)."""

    def __init__(self, pool: asyncpg.Pool, signing: AuditSigning | None = None) -> None:
        self._pool = pool
        self._signing = signing

    @activity.defn
    async def anchor_audit_log(self) -> AnchorResult:
        verdict = await store.verify_chain(self._pool, signing=self._signing)
        if verdict.intact:
            log.info("audit log anchored", entries=verdict.entries, anchored_entry=verdict.anchored_entry)
        else:
            log.error("audit log broken", first_broken_entry=verdict.first_broken_entry, message=verdict.message)
        return AnchorResult(**verdict.model_dump())

    def all(self) -> list[object]:
        return [self.anchor_audit_log]
