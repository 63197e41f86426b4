"""The scheduled check of the audit log and the access log: verify every entry of each and anchor each head
outside the database."""

from __future__ import annotations

import asyncpg
from pydantic import BaseModel
from temporalio import activity

from shielding import store
from shielding.audit_signing import ACCESS_LOG, AuditSigning
from shielding.log import get_logger

log = get_logger(__name__)


class AnchorResult(BaseModel):
    """What the check found: counts and entry numbers only, never an entry's content."""

    intact: bool
    entries: int
    first_broken_entry: int | None = None
    anchored_entry: int | None = None
    message: str
    # The access log's own verdict (checked in the same run, against its own anchor file).
    access_log: AnchorResult | None = None


class AuditAnchorActivities:
    """`signing`: the keys and anchor directory to check with (default: the process's, as configured)."""

    def __init__(self, pool: asyncpg.Pool, signing: AuditSigning | None = None) -> None:
        self._pool = pool
        self._signing = signing

    @activity.defn
    async def anchor_audit_log(self) -> AnchorResult:
        verdict = await store.verify_chain(self._pool, signing=self._signing)
        access = await store.verify_chain(self._pool, stream=ACCESS_LOG, signing=self._signing)
        for name, checked in (("audit log", verdict), ("access log", access)):
            if checked.intact:
                log.info("log anchored", stream=name, entries=checked.entries, anchored_entry=checked.anchored_entry)
            else:
                log.error("log broken", stream=name, first_broken_entry=checked.first_broken_entry)
        result = AnchorResult(**verdict.model_dump(), access_log=AnchorResult(**access.model_dump()))
        if verdict.intact and not access.intact:
            # The run fails on either: say which.
            result = result.model_copy(update={"intact": False, "message": access.message})
        return result

    def all(self) -> list[object]:
        return [self.anchor_audit_log]
