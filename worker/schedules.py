"""Creating the worker's Temporal Schedules: each is created if missing, else brought up to date, so any
number of workers starting at once leave exactly one schedule of each kind."""

from __future__ import annotations

from temporalio.client import (
    Client,
    Schedule,
    ScheduleAlreadyRunningError,
    ScheduleHandle,
    ScheduleOverlapPolicy,
    ScheduleUpdate,
    ScheduleUpdateInput,
)


async def ensure_schedule(client: Client, schedule_id: str, schedule: Schedule, *, trigger: bool = False) -> str:
    """Create the schedule, or update the one there (idempotent); `trigger` also runs it once now."""
    handle: ScheduleHandle
    try:
        handle = await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:
        handle = client.get_schedule_handle(schedule_id)

        def updated(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await handle.update(updated)
    if trigger:
        await handle.trigger(overlap=ScheduleOverlapPolicy.SKIP)
    return schedule_id
