"""AnchorAuditWorkflow: started by the worker's Temporal Schedule, it verifies the audit log and anchors its head.

One activity; the verdict (entry numbers and counts, nothing from an entry) is its result. A broken log fails
the run, so the schedule's history in the Web UI shows when and where it broke.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.audit_anchor import AnchorResult, AuditAnchorActivities

AUDIT_LOG_BROKEN = "AuditLogBroken"


@workflow.defn
class AnchorAuditWorkflow:
    @workflow.run
    async def run(self) -> AnchorResult:
        result = await workflow.execute_activity_method(
            AuditAnchorActivities.anchor_audit_log,
            start_to_close_timeout=timedelta(minutes=30),
            retry_policy=RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=10)),
        )
        if not result.intact:
            raise ApplicationError(result.message, type=AUDIT_LOG_BROKEN, non_retryable=True)
        return result
