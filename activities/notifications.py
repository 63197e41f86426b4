"""The relay's activities: start one delivery workflow per queued message, deliver one message to each of its
recipients exactly once, mark a message that can never be delivered, and queue the reviewers' daily digest.

Inputs and results carry notification ids, counts and codes only: never an address, a subject or a body (those
stay in PostgreSQL, where the sender reads them), so nothing of a message reaches Temporal's history.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from shielding import deadlines, messages
from shielding.delivery import FailureCode, NotPossible, PermanentFailure, Sender, TemporaryFailure, failure_reason
from shielding.log import get_logger
from shielding.store import outbox
from shielding.store.audit import MessageKind, RecipientKind, notify
from shielding.store.db import once
from shielding.store.reviews import QueueQuery, QueueStatus, review_queue

log = get_logger(__name__)

DELIVERY_WORKFLOW = "NotificationDeliveryWorkflow"
DISPATCH_BATCH = 200
# Types of the ApplicationError the delivery activity raises: a permanent failure never retries.
UNDELIVERABLE = "NotificationUndeliverable"
UNAVAILABLE = "NotificationProviderUnavailable"


def delivery_workflow_id(notification_id: int) -> str:
    return f"notification-{notification_id}"


class NotificationRef(BaseModel):
    """One message of the outbox, by id (the delivery workflow's input). `retry_seconds`: the first wait before
    a failed delivery is tried again (`notification_retry_seconds`)."""

    notification_id: int
    retry_seconds: float = 5.0


class FailedNotification(BaseModel):
    notification_id: int
    code: FailureCode


class DispatchResult(BaseModel):
    started: int = 0
    already_started: int = 0


class DeliveryResult(BaseModel):
    """Counts only: how many recipients were sent it now, had been sent it before, or cannot be reached here."""

    sent: int = 0
    already_sent: int = 0
    not_possible: int = 0


class DigestResult(BaseModel):
    due: int = 0
    overdue: int = 0
    notification_id: int | None = None


class NotificationActivities:
    """`sender`: Notify or SMTP (shielding.delivery.sender_from_settings); `client` and `task_queue`: where the
    dispatch starts delivery workflows (the worker's own); `retry_seconds`: their first retry interval."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        sender: Sender,
        *,
        client: Client | None = None,
        task_queue: str = "shielding",
        retry_seconds: float = 5.0,
    ) -> None:
        self._pool = pool
        self._sender = sender
        self._client = client
        self._task_queue = task_queue
        self._retry_seconds = retry_seconds

    def with_client(self, client: Client, task_queue: str) -> NotificationActivities:
        self._client, self._task_queue = client, task_queue
        return self

    # ------------------------------------------------------------------------------------------ dispatch

    @activity.defn
    async def dispatch_notifications(self) -> DispatchResult:
        """Start `notification-<id>` for every message not yet dispatched; one already started (or finished)
        counts as done, so a dispatch repeated after a crash starts nothing twice."""
        if self._client is None:
            raise ApplicationError("the relay has no Temporal client", non_retryable=True, type="NoClient")
        result = DispatchResult()
        while ids := await outbox.undispatched(self._pool, limit=DISPATCH_BATCH):
            for notification_id in ids:
                try:
                    await self._client.start_workflow(
                        DELIVERY_WORKFLOW,
                        NotificationRef(notification_id=notification_id, retry_seconds=self._retry_seconds),
                        id=delivery_workflow_id(notification_id),
                        task_queue=self._task_queue,
                        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    )
                    result.started += 1
                except WorkflowAlreadyStartedError:
                    result.already_started += 1
            await outbox.mark_dispatched(self._pool, ids)
            activity.heartbeat(result.started + result.already_started)
        if result.started or result.already_started:
            log.info("notifications dispatched", count=result.started, already=result.already_started)
        return result

    # ------------------------------------------------------------------------------------------ delivery

    @activity.defn
    async def deliver_notification(self, ref: NotificationRef) -> DeliveryResult:
        message = await outbox.outgoing(self._pool, ref.notification_id)
        if message is None:
            raise ApplicationError("no such message", non_retryable=True, type=UNDELIVERABLE)
        result = DeliveryResult()
        if message.sent_at is not None or message.failed_at is not None:
            return result
        found = await outbox.recipients(self._pool, message)
        if not found:
            raise _undeliverable(FailureCode.NO_RECIPIENT)
        done = await outbox.deliveries(self._pool, message.notification_id)
        refused: FailureCode | None = None
        for recipient in found:
            earlier = done.get(recipient.address)
            if earlier is not None and (earlier.sent_at is not None or earlier.not_possible is not None):
                result.already_sent += 1 if earlier.sent_at else 0
                result.not_possible += 1 if earlier.not_possible else 0
                continue
            delivery = earlier or await outbox.begin_delivery(
                self._pool, message.notification_id, recipient, self._sender.provider
            )
            try:
                if earlier is not None:
                    # Tried before and not recorded (a crash, a timeout): does the provider have it already?
                    provider_id = await self._sender.find(delivery)
                    if provider_id is not None:
                        await outbox.record_sent(self._pool, delivery, provider_id)
                        result.already_sent += 1
                        continue
                # The send and its record together: a worker stopping now lets them finish, not half of it
                # (a retry elsewhere would otherwise find the row unrecorded and could send it again).
                sending = asyncio.ensure_future(self._send(message, delivery))
                try:
                    await asyncio.shield(sending)
                except asyncio.CancelledError:
                    await sending
                    raise
                result.sent += 1
            except NotPossible as why:
                await outbox.record_not_possible(self._pool, delivery, why.reason)
                result.not_possible += 1
            except PermanentFailure as failure:
                await outbox.record_not_possible(self._pool, delivery, failure.reason)
                refused = failure.code
            except TemporaryFailure as failure:
                log.warning(
                    "notification not delivered yet",
                    notification_id=message.notification_id,
                    provider=self._sender.provider,
                    attempt=activity.info().attempt,
                )
                raise ApplicationError(failure.reason, type=UNAVAILABLE) from None
        if refused is not None:
            raise _undeliverable(refused)
        await outbox.finish(self._pool, message.notification_id)
        log.info("notification delivered", notification_id=message.notification_id, count=result.sent)
        return result

    async def _send(self, message: outbox.Outgoing, delivery: outbox.Delivery) -> None:
        provider_id = await self._sender.send(message, delivery)
        await outbox.record_sent(self._pool, delivery, provider_id)

    @activity.defn
    async def mark_notification_failed(self, failed: FailedNotification) -> bool:
        marked = await outbox.mark_failed(self._pool, failed.notification_id, failure_reason(failed.code))
        if marked:
            log.warning("notification failed", notification_id=failed.notification_id, code=failed.code.value)
        return marked

    # -------------------------------------------------------------------------------------------- digest

    @activity.defn
    async def queue_review_digest(self) -> DigestResult:
        """The reviewers' daily digest of reviews due and overdue (counts and request ids), once a London day."""
        today = deadlines.to_london(datetime.now(UTC)).date().isoformat()

        async def operation(conn: asyncpg.Connection) -> DigestResult:
            page = await review_queue(
                self._pool, QueueQuery(statuses=frozenset({QueueStatus.DUE, QueueStatus.OVERDUE}), limit=500)
            )
            due = sorted(i.request_id for i in page.items if i.status == QueueStatus.DUE)
            overdue = sorted(i.request_id for i in page.items if i.status == QueueStatus.OVERDUE)
            if not due and not overdue:
                return DigestResult()
            group = RecipientKind.REVIEWERS.value
            notification_id = await notify(
                conn,
                recipient_kind=group,
                recipient=group,
                request_id="",
                subject=messages.review_digest_subject(len(due), len(overdue)),
                body=messages.review_digest_body(due, overdue),
                template=MessageKind.REVIEW_DIGEST,
            )
            return DigestResult(due=len(due), overdue=len(overdue), notification_id=notification_id)

        result = await once(self._pool, f"review-digest-{today}", DigestResult, operation)
        log.info("review digest", count=result.due, overdue=result.overdue)
        return result

    def all(self) -> list[object]:
        return [
            self.dispatch_notifications,
            self.deliver_notification,
            self.mark_notification_failed,
            self.queue_review_digest,
        ]


def _undeliverable(code: FailureCode) -> ApplicationError:
    return ApplicationError(failure_reason(code), code.value, non_retryable=True, type=UNDELIVERABLE)
