"""The relay's Temporal Schedules, made by the worker at start (created if missing, else brought up to date):
NotificationDispatchWorkflow every `notification_relay_seconds` (one at a time, a missed run not made up), and
ReviewDigestWorkflow every day at `review_digest_hour` Europe/London."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
)

from shielding.settings import Settings
from worker.schedules import ensure_schedule
from workflows.notifications import NotificationDispatchWorkflow, ReviewDigestWorkflow


def relay_schedule_id(task_queue: str) -> str:
    return f"notification-relay-{task_queue}"


def digest_schedule_id(task_queue: str) -> str:
    return f"review-digest-{task_queue}"


def relay_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            NotificationDispatchWorkflow.run,
            id=relay_schedule_id(settings.task_queue),
            task_queue=settings.task_queue,
            execution_timeout=timedelta(minutes=10),
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.notification_relay_seconds))]
        ),
        # One dispatch at a time; while the worker was down nothing is lost (the rows wait in the outbox).
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(minutes=1)),
    )


def digest_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ReviewDigestWorkflow.run,
            id=digest_schedule_id(settings.task_queue),
            task_queue=settings.task_queue,
            execution_timeout=timedelta(hours=1),
        ),
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(hour=[ScheduleRange(settings.review_digest_hour)], minute=[ScheduleRange(0)])
            ],
            time_zone_name="Europe/London",
        ),
        # A morning missed while the worker was down is sent once, later that day.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(hours=12)),
    )


async def ensure_relay_schedules(client: Client, settings: Settings, *, trigger: bool = True) -> tuple[str, str]:
    """Both schedules (idempotent; any number of workers); the relay also runs once now. Returns their ids."""
    relay = await ensure_schedule(
        client, relay_schedule_id(settings.task_queue), relay_schedule(settings), trigger=trigger
    )
    digest = await ensure_schedule(client, digest_schedule_id(settings.task_queue), digest_schedule(settings))
    return relay, digest
