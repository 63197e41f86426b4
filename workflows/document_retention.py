"""DocumentRetentionWorkflow: started daily by the worker's Temporal Schedule, it removes the content of the
supporting documents of requests closed longer than `document_retention_days` (their rows stay, audited per
request) and seals any document still stored in clear. One activity; its result is counts only."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.document_retention import DocumentRetentionActivities, RetentionResult


@workflow.defn
class DocumentRetentionWorkflow:
    @workflow.run
    async def run(self) -> RetentionResult:
        return await workflow.execute_activity_method(
            DocumentRetentionActivities.remove_expired_documents,
            start_to_close_timeout=timedelta(minutes=30),
            retry_policy=RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=10)),
        )
