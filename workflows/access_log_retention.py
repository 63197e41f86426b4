"""AccessLogRetentionWorkflow: started nightly by the worker's Temporal Schedule, it removes the access log
entries older than the retention setting (audited, counts only in its result)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.access_log_retention import AccessLogRetentionActivities, AccessLogRetentionResult


@workflow.defn
class AccessLogRetentionWorkflow:
    @workflow.run
    async def run(self) -> AccessLogRetentionResult:
        return await workflow.execute_activity_method(
            AccessLogRetentionActivities.prune_access_log,
            start_to_close_timeout=timedelta(hours=1),
            retry_policy=RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=10)),
            summary="remove access log entries past their retention",
        )
