"""The engine floor: the cheapest workflow with the same shape as an intake.

An update-with-start whose update runs one no-op activity and returns: the same round trips as
`ShieldingService.submit_request` (start + update admitted in the first workflow task, one activity, the
update completed in the second workflow task), with none of our work in between. The local-activity variant
is only used by `python -m bench.breakdown` to put a number on "make the shield step a local activity".
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

FLOOR_ACTIVITY_TIMEOUT = timedelta(seconds=30)


@activity.defn(name="bench_noop")
async def noop() -> None:
    return None


@workflow.defn(name="BenchFloor")
class FloorWorkflow:
    def __init__(self) -> None:
        self._done = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self._done)

    @workflow.update(name="ack")
    async def ack(self) -> str:
        await workflow.execute_activity(noop, start_to_close_timeout=FLOOR_ACTIVITY_TIMEOUT)
        self._done = True
        return "ok"


@workflow.defn(name="BenchFloorLocal")
class FloorLocalWorkflow:
    """The same, with the activity run as a local activity (one workflow-task hop fewer)."""

    def __init__(self) -> None:
        self._done = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self._done)

    @workflow.update(name="ack")
    async def ack(self) -> str:
        await workflow.execute_local_activity(noop, start_to_close_timeout=FLOOR_ACTIVITY_TIMEOUT)
        self._done = True
        return "ok"


FLOOR_WORKFLOWS = [FloorWorkflow, FloorLocalWorkflow]
FLOOR_ACTIVITIES = [noop]


async def floor_intake(client: Client, workflow_id: str, task_queue: str, *, local: bool = False) -> str:
    """One floor intake: update-with-start, returning once the update (and its activity) has completed."""
    if local:
        local_start = WithStartWorkflowOperation(
            FloorLocalWorkflow.run,
            id=workflow_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        return await client.execute_update_with_start_workflow(
            FloorLocalWorkflow.ack,  # type: ignore[arg-type]  # the SDK's zero-argument overload is off
            start_workflow_operation=local_start,
        )
    start = WithStartWorkflowOperation(
        FloorWorkflow.run,
        id=workflow_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    return await client.execute_update_with_start_workflow(
        FloorWorkflow.ack,  # type: ignore[arg-type]  # the SDK's zero-argument overload is off
        start_workflow_operation=start,
    )
