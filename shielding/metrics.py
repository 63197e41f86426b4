"""Prometheus metrics: the Temporal SDK's own and ours, from one place per process.

Each process (a worker, a web service) runs the SDK's telemetry runtime with its Prometheus exporter on
`SHIELDING_METRICS_ADDRESS` (a port of its own, for the internal network, not the pages' port), and our metrics
are made with the same runtime's meter, so one scrape shows both: `temporal_*` (workflow task latency, polls,
activity failures, client requests) and `shielding_*` below.

No label carries child data: the only label is `reason`, and its values are fixed audit action names.
Counts come from where the event is recorded (the audit entry for a refusal, a failed sign-in, a break-glass
view), so every front end is counted alike; an entry whose transaction then fails is counted all the same (the
metric is for seeing trouble, the audit log is the record).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import asyncpg
from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from shielding.domain import AuditAction
from shielding.log import get_logger

log = get_logger(__name__)

# Audit actions that are a refusal of something someone asked for; each is a `reason` of shielding_refusals_total.
REFUSALS = frozenset(
    {
        AuditAction.REFUSED,
        AuditAction.FORM_REFUSED,
        AuditAction.UNAUTHORISED,
        AuditAction.READS_LIMITED,
        AuditAction.SIGN_IN_FAILED,
    }
)
# What a caller waits for at intake, in seconds: the buckets around the figures the benchmark measures.
TIME_TO_SHIELD_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 45.0)
TIME_TO_SHIELD = "shielding_intake_time_to_shield_seconds"


class _Metrics:
    """The process's meter and our instruments (no-ops until `start_runtime` gives them an exporter)."""

    def __init__(self, meter: MetricMeter) -> None:
        self.time_to_shield = meter.create_histogram_float(
            TIME_TO_SHIELD, "Seconds from an intake call reaching the service to every record shielded."
        )
        self.refusals = meter.create_counter("shielding_refusals", "Refusals, by the audit action recorded.")
        self.sign_in_failures = meter.create_counter("shielding_sign_in_failures", "Failed sign-ins.")
        self.break_glass_views = meter.create_counter(
            "shielding_break_glass_views", "Break-glass views of a shielded child's hidden details."
        )
        self.reviews_due = meter.create_gauge("shielding_reviews_due", "Reviews due (fell due less than a day ago).")
        self.reviews_overdue = meter.create_gauge("shielding_reviews_overdue", "Reviews due for more than a day.")
        self.forms_awaited = meter.create_gauge("shielding_forms_awaited", "Open requests waiting for their form.")
        self.notifications_failed = meter.create_gauge(
            "shielding_notifications_failed", "Outbox messages that could not be delivered."
        )


_metrics = _Metrics(MetricMeter.noop)


def start_runtime(address: str | None, *, process: str) -> Runtime | None:
    """The SDK runtime with its Prometheus exporter on `address` (None: no metrics, the SDK's default runtime).
    Call once per process, before connecting to Temporal; `process` tags every metric ("worker", "web")."""
    global _metrics
    if not address:
        return None
    runtime = Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=address,
                counters_total_suffix=True,
                durations_as_seconds=True,
                histogram_bucket_overrides={TIME_TO_SHIELD: list(TIME_TO_SHIELD_BUCKETS)},
            ),
            global_tags={"process": process},
        )
    )
    # Every client and worker this process makes uses it (the SDK's default runtime has no exporter).
    Runtime.set_default(runtime, error_if_already_set=False)
    _metrics = _Metrics(runtime.metric_meter)
    return runtime


def time_to_shield(elapsed: timedelta) -> None:
    _metrics.time_to_shield.record(elapsed.total_seconds())


def audited(action: AuditAction | str) -> None:
    """Count what an audit entry records, when it is a refusal, a failed sign-in or a break-glass view."""
    if action in REFUSALS:
        _metrics.refusals.add(1, {"reason": str(action)})
    if action == AuditAction.SIGN_IN_FAILED:
        _metrics.sign_in_failures.add(1)
    elif action == AuditAction.VIEWED_OVERRIDE:
        _metrics.break_glass_views.add(1)


def queue_levels(counts: dict[str, Any]) -> None:
    """The reviewers' queue as gauges (from `store.reviews.queue_counts`) and the outbox's failed messages."""
    _metrics.reviews_due.set(int(counts.get("due", 0)))
    _metrics.reviews_overdue.set(int(counts.get("overdue", 0)))
    _metrics.forms_awaited.set(int(counts.get("form", 0)))
    _metrics.notifications_failed.set(int(counts.get("notifications_failed", 0)))


async def refresh_gauges(pool: asyncpg.Pool, every_seconds: float) -> None:
    """Keep the queue gauges current, read from PostgreSQL every `every_seconds` (the web service runs it; every
    process reads the same table, so any one scrape is the whole directory's figure)."""
    from shielding.store.reviews import queue_counts  # the store counts its audit entries here: no cycle

    while True:
        try:
            counts: dict[str, Any] = dict(await queue_counts(pool))
            counts["notifications_failed"] = await pool.fetchval(
                "SELECT count(*) FROM notifications WHERE failed_at IS NOT NULL"
            )
            queue_levels(counts)
        except (OSError, asyncpg.PostgresError) as err:
            log.warning("queue gauges not refreshed", error=type(err).__name__)
        await asyncio.sleep(every_seconds)
