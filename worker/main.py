"""The worker: runs ShieldingRequestWorkflow and its activities until SIGINT/SIGTERM, then drains."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.access_log_retention import AccessLogRetentionActivities
from activities.audit_anchor import AuditAnchorActivities
from activities.brokering import BrokeringActivities
from activities.document_retention import DocumentRetentionActivities
from activities.notifications import NotificationActivities
from activities.shielding import ShieldingActivities
from shielding import metrics, store
from shielding.action_auth import action_keys_from_settings, configure_action_keys
from shielding.audit_signing import configure_audit_signing
from shielding.delivery import sender_from_settings
from shielding.log import configure_logging, get_logger
from shielding.settings import ConfigurationError, Settings, get_settings
from shielding.store.documents import DocumentKeys, configure_document_keys
from shielding.temporal import connect
from worker.audit_schedule import ensure_anchor_schedule
from worker.notification_schedules import ensure_relay_schedules
from worker.retention_schedule import ensure_access_log_retention_schedule, ensure_retention_schedule
from workflows.access_log_retention import AccessLogRetentionWorkflow
from workflows.audit_anchor import AnchorAuditWorkflow
from workflows.contact_brokering import ContactBrokeringWorkflow
from workflows.document_retention import DocumentRetentionWorkflow
from workflows.notifications import NotificationDeliveryWorkflow, NotificationDispatchWorkflow, ReviewDigestWorkflow
from workflows.shielding_request import ShieldingRequestWorkflow

log = get_logger(__name__)


def workflow_runner() -> SandboxedWorkflowRunner:
    # The bank-holiday calendar (holidays, and dateutil under it) reads the local time zone at import, which
    # the sandbox forbids; shielding.deadlines loads it once, outside the sandbox.
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("holidays", "dateutil", "six")
    )


def build_worker(
    client: Client,
    activities: ShieldingActivities,
    settings: Settings,
    *,
    audit_anchor: AuditAnchorActivities | None = None,
    document_retention: DocumentRetentionActivities | None = None,
    access_log_retention: AccessLogRetentionActivities | None = None,
    notifications: NotificationActivities | None = None,
    brokering: BrokeringActivities | None = None,
    **overrides: object,
) -> Worker:
    # The keys every staff action and intake is checked with (workflow code reads them; it reads no settings).
    # Raises ConfigurationError, before anything runs, when production has none.
    configure_action_keys(action_keys_from_settings(settings))
    # The audit key every entry is signed with and the anchor directory (the key is required in production).
    configure_audit_signing(settings)
    # The keys documents are sealed with at rest (the payloads' keys); without any, the first document says so.
    try:
        configure_document_keys(DocumentKeys.from_settings(settings))
    except ConfigurationError:
        if settings.environment == "production":
            raise
    workflows: list[type] = [ShieldingRequestWorkflow]
    registered = activities.all()
    if audit_anchor is not None:  # the scheduled check of the audit log (run_worker; tests that test it)
        workflows.append(AnchorAuditWorkflow)
        registered = [*registered, *audit_anchor.all()]
    if document_retention is not None:  # the nightly removal of closed requests' documents (run_worker; tests)
        workflows.append(DocumentRetentionWorkflow)
        registered = [*registered, *document_retention.all()]
    if access_log_retention is not None:  # the nightly removal of access log entries past their retention
        workflows.append(AccessLogRetentionWorkflow)
        registered = [*registered, *access_log_retention.all()]
    if notifications is not None:  # the outbox relay and the reviewers' digest (run_worker; tests that test it)
        notifications.with_client(client, settings.task_queue)
        workflows += [NotificationDispatchWorkflow, NotificationDeliveryWorkflow, ReviewDigestWorkflow]
        registered = [*registered, *notifications.all()]
    if brokering is not None:  # brokering contact with a shielded child (run_worker; tests that test it)
        workflows.append(ContactBrokeringWorkflow)
        registered = [*registered, *brokering.all()]
    options: dict[str, object] = {
        "task_queue": settings.task_queue,
        "workflows": workflows,
        "workflow_runner": workflow_runner(),
        "activities": registered,
        "max_cached_workflows": settings.max_cached_workflows,
        "graceful_shutdown_timeout": timedelta(seconds=10),
    }
    options.update(overrides)
    return Worker(client, **options)  # type: ignore[arg-type]


async def run_worker(settings: Settings | None = None, stop: asyncio.Event | None = None) -> None:
    settings = settings or get_settings()
    configure_logging(settings.log_level or "INFO")
    metrics.start_runtime(settings.metrics_address, process="worker")  # before the client: it uses the runtime
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = await connect(settings)
    async with store.pool_for(settings.resolved_database_url(), max_size=10) as pool:
        retention = DocumentRetentionActivities(pool, timedelta(days=settings.document_retention_days))
        relay = NotificationActivities(
            pool, sender_from_settings(settings), retry_seconds=settings.notification_retry_seconds
        )
        worker = build_worker(
            client,
            ShieldingActivities(pool),
            settings,
            audit_anchor=AuditAnchorActivities(pool),
            document_retention=retention,
            access_log_retention=AccessLogRetentionActivities(pool, timedelta(days=settings.access_log_retention_days)),
            notifications=relay,
            brokering=BrokeringActivities(pool),
        )
        async with worker:
            schedule_id = await ensure_anchor_schedule(client, settings)
            retention_schedule = await ensure_retention_schedule(client, settings)
            await ensure_access_log_retention_schedule(client, settings)
            relay_schedule, digest_schedule = await ensure_relay_schedules(client, settings)
            log.info(
                "worker started",
                task_queue=settings.task_queue,
                audit_anchor_schedule=schedule_id,
                retention_schedule=retention_schedule,
                relay_schedule=relay_schedule,
                digest_schedule=digest_schedule,
            )
            await stop.wait()
            log.info("worker stopping")
    log.info("worker stopped")


def main() -> None:
    asyncio.run(run_worker())
    # The worker has drained and closed its connections; skip interpreter finalisation, where the SDK's
    # native threads can abort the process (sdk-python#300) and turn a clean stop into a crash.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
