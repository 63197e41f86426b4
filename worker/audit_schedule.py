"""The Temporal Schedule that verifies the audit log and anchors its head (AnchorAuditWorkflow), made by the
worker at start: created if missing, else brought to the current interval; then triggered once, so a restart
anchors at once."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)

from shielding.settings import Settings
from worker.schedules import ensure_schedule
from workflows.audit_anchor import AnchorAuditWorkflow


def anchor_schedule_id(task_queue: str) -> str:
    return f"audit-anchor-{task_queue}"


def anchor_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            AnchorAuditWorkflow.run,
            id=anchor_schedule_id(settings.task_queue),
            task_queue=settings.task_queue,
            execution_timeout=timedelta(hours=1),
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(minutes=settings.audit_anchor_minutes))]),
        # One check at a time; a missed run (the worker was down) is not made up in a burst.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(minutes=1)),
    )


async def ensure_anchor_schedule(client: Client, settings: Settings, *, trigger: bool = True) -> str:
    """Create the schedule, or update the one there (idempotent; any number of workers); returns its id."""
    return await ensure_schedule(
        client, anchor_schedule_id(settings.task_queue), anchor_schedule(settings), trigger=trigger
    )
