"""The Temporal Schedules of retention, made by the worker at start (created if missing, else brought up to date):
expired supporting documents (DocumentRetentionWorkflow) every night at 02:30 Europe/London, and access log
entries past their retention (AccessLogRetentionWorkflow) at 03:15."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
)

from shielding.settings import Settings
from worker.schedules import ensure_schedule
from workflows.access_log_retention import AccessLogRetentionWorkflow
from workflows.document_retention import DocumentRetentionWorkflow


def retention_schedule_id(task_queue: str) -> str:
    return f"document-retention-{task_queue}"


def nightly(run: Any, schedule_id: str, settings: Settings, *, hour: int, minute: int) -> Schedule:
    """A retention job every night at hour:minute Europe/London: one run at a time; a night missed while the
    worker was down is made up once, within a day."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            run, id=schedule_id, task_queue=settings.task_queue, execution_timeout=timedelta(hours=2)
        ),
        spec=ScheduleSpec(
            calendars=[ScheduleCalendarSpec(hour=[ScheduleRange(hour)], minute=[ScheduleRange(minute)])],
            time_zone_name="Europe/London",
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(days=1)),
    )


def retention_schedule(settings: Settings) -> Schedule:
    schedule_id = retention_schedule_id(settings.task_queue)
    return nightly(DocumentRetentionWorkflow.run, schedule_id, settings, hour=2, minute=30)


async def ensure_retention_schedule(client: Client, settings: Settings) -> str:
    """Create the schedule, or update the one there (idempotent; any number of workers); returns its id."""
    return await ensure_schedule(client, retention_schedule_id(settings.task_queue), retention_schedule(settings))


def access_log_retention_schedule_id(task_queue: str) -> str:
    return f"access-log-retention-{task_queue}"


def access_log_retention_schedule(settings: Settings) -> Schedule:
    schedule_id = access_log_retention_schedule_id(settings.task_queue)
    return nightly(AccessLogRetentionWorkflow.run, schedule_id, settings, hour=3, minute=15)


async def ensure_access_log_retention_schedule(client: Client, settings: Settings) -> str:
    """Create the schedule, or update the one there (idempotent; any number of workers); returns its id."""
    return await ensure_schedule(
        client, access_log_retention_schedule_id(settings.task_queue), access_log_retention_schedule(settings)
    )
