"""The relay, as Temporal work.

- NotificationDispatchWorkflow: started by the worker's Schedule every `notification_relay_seconds` (overlap
  SKIP); its activity starts one NotificationDeliveryWorkflow per queued message (`notification-<id>`, so starting
  one twice is harmless) and marks them dispatched.
- NotificationDeliveryWorkflow: delivers one message to each recipient, retrying with backoff (5 s, doubling, at
  most 10 minutes apart) for up to 3 days; a permanent failure (an address refused, no recipient with an
  address) or 3 days without the provider marks the message failed, audited, in plain words.
- ReviewDigestWorkflow: the reviewers' daily digest (08:00 Europe/London), queued as an outbox message.

Inputs and results are ids, counts and codes only.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

with workflow.unsafe.imports_passed_through():
    from activities.notifications import (
        UNDELIVERABLE,
        DeliveryResult,
        DigestResult,
        DispatchResult,
        FailedNotification,
        NotificationActivities,
        NotificationRef,
    )
    from shielding.delivery.senders import FailureCode

DELIVERY_DEADLINE = timedelta(days=3)
MAX_RETRY_INTERVAL = timedelta(minutes=10)


@workflow.defn
class NotificationDispatchWorkflow:
    @workflow.run
    async def run(self) -> DispatchResult:
        return await workflow.execute_activity_method(
            NotificationActivities.dispatch_notifications,
            start_to_close_timeout=timedelta(minutes=5),
            heartbeat_timeout=timedelta(minutes=1),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=5),
        )


class DeliveryOutcome(DeliveryResult):
    failed: FailureCode | None = None


@workflow.defn
class NotificationDeliveryWorkflow:
    @workflow.run
    async def run(self, ref: NotificationRef) -> DeliveryOutcome:
        try:
            result = await workflow.execute_activity_method(
                NotificationActivities.deliver_notification,
                ref,
                schedule_to_close_timeout=DELIVERY_DEADLINE,
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=ref.retry_seconds),
                    backoff_coefficient=2.0,
                    maximum_interval=MAX_RETRY_INTERVAL,
                    non_retryable_error_types=[UNDELIVERABLE],
                ),
            )
            return DeliveryOutcome(**result.model_dump())
        except ActivityError as error:
            code = _failure_code(error)
        await workflow.execute_activity_method(
            NotificationActivities.mark_notification_failed,
            FailedNotification(notification_id=ref.notification_id, code=code),
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=5), maximum_interval=MAX_RETRY_INTERVAL),
        )
        return DeliveryOutcome(failed=code)


def _failure_code(error: ActivityError) -> FailureCode:
    cause = error.cause
    if isinstance(cause, TimeoutError):
        return FailureCode.TIMED_OUT
    if isinstance(cause, ApplicationError) and cause.type == UNDELIVERABLE and cause.details:
        detail = str(cause.details[0])
        if detail in {c.value for c in FailureCode}:
            return FailureCode(detail)
    # Retries exhausted by the deadline with the provider's last error as the cause.
    return FailureCode.TIMED_OUT


@workflow.defn
class ReviewDigestWorkflow:
    @workflow.run
    async def run(self) -> DigestResult:
        return await workflow.execute_activity_method(
            NotificationActivities.queue_review_digest,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=10), maximum_attempts=10),
        )
