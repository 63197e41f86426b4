"""The visibility queries the README gives operations staff find exactly what they say, on a real dev server.

A worker that runs the workflows but no activities holds each request in the state it was started with (a
lifecycle carried in with its times set back: a review due for an hour, one overdue for three days, a form due
tomorrow, one an hour past its deadline, a call still being taken, a request that failed, and a quiet one that
needs nobody); each query, limited to this test's task queue, returns exactly the ones it should.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.worker import Worker

from activities.notifications import NotificationRef
from shielding import deadlines
from shielding.domain import Stage
from shielding.lifecycle import LifecycleState, ShieldingLifecycleInput
from shielding.temporal import STAGE_ATTRIBUTE, register_search_attributes
from shielding.visibility import QUERIES
from tests.helpers.lifecycle import eventually, intake
from worker.main import workflow_runner
from workflows.notifications import NotificationDeliveryWorkflow
from workflows.shielding_request import ShieldingRequestWorkflow

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_prints_every_query_as_the_code_runs_it() -> None:
    text = README.read_text()
    for query in QUERIES:
        assert f"`{query.template}`" in text, f"the README does not give the {query.name} query as it is run"


def carried(request_id: str, now: datetime, **fields: object) -> ShieldingLifecycleInput:
    return ShieldingLifecycleInput(state=LifecycleState(request_id=request_id, called_at=now, **fields))


def states(now: datetime) -> dict[str, ShieldingLifecycleInput]:
    due_since = now - timedelta(hours=1)
    overdue_since = now - timedelta(days=3)
    return {
        "due": carried(
            "SR-DUE",
            now,
            stage=Stage.REVIEW_DUE,
            shielded_at=due_since - timedelta(days=7),
            form_received_at=due_since - timedelta(days=6),
            review_due_since=due_since,
            next_reminder_at=now + timedelta(hours=23),
        ),
        "overdue": carried(
            "SR-OVERDUE",
            now,
            stage=Stage.REVIEW_DUE,
            shielded_at=overdue_since - timedelta(days=7),
            form_received_at=overdue_since - timedelta(days=6),
            review_due_since=overdue_since,
            reminders_sent=2,
            next_reminder_at=now + timedelta(hours=2),
        ),
        "form-soon": carried(
            "SR-FORMSOON", now, stage=Stage.AWAITING_FORM, shielded_at=now, form_due_at=now + timedelta(days=1)
        ),
        "form-late": carried(
            "SR-FORMLATE",
            now,
            stage=Stage.AWAITING_FORM,
            shielded_at=now - timedelta(days=1),
            form_due_at=now - timedelta(hours=1),
        ),
        "quiet": carried(
            "SR-QUIET",
            now,
            stage=Stage.SHIELDED,
            shielded_at=now - timedelta(days=2),
            form_received_at=now - timedelta(days=1),
        ),
    }


# What each query finds among the requests above (by their key), the call being taken and the failed one.
EXPECTED = {
    "reviews-due": {"due", "overdue"},
    "reviews-overdue": {"overdue"},
    "forms-due-soon": {"form-soon"},
    "forms-past-due": {"form-late"},
    "intakes-stuck": {"intake"},
    "messages-retrying": {"message"},
    "failed-workflows": {"failed"},
}


async def found(client: Client, query: str, task_queue: str, ids: dict[str, str]) -> set[str]:
    names = {workflow_id: key for key, workflow_id in ids.items()}
    listed = client.list_workflows(f"({query}) AND TaskQueue = '{task_queue}'")
    return {names.get(execution.id, execution.id) async for execution in listed}


@pytest.mark.slow
async def test_each_query_finds_exactly_what_it_says(dev_env) -> None:
    client = dev_env.client
    await register_search_attributes(client)
    task_queue = f"ops-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    suffix = uuid.uuid4().hex[:6].upper()
    ids: dict[str, str] = {}
    # Workflows only: each activity waits, unrun, so every request stays as it was started.
    workflows = [ShieldingRequestWorkflow, NotificationDeliveryWorkflow]
    async with Worker(client, task_queue=task_queue, workflows=workflows, workflow_runner=workflow_runner()):
        for key, params in states(now).items():
            assert params.state is not None
            workflow_id = f"{params.state.request_id}-{suffix}"
            params = ShieldingLifecycleInput(state=params.state.model_copy(update={"request_id": workflow_id}))
            await client.start_workflow(ShieldingRequestWorkflow.run, params, id=workflow_id, task_queue=task_queue)
            ids[key] = workflow_id
        # A call being taken: started as the service starts one; its shield (a local activity) cannot run here.
        call = intake(["CP-0000-XX"], now)
        ids["intake"] = call.request_id
        await client.start_workflow(
            ShieldingRequestWorkflow.run,
            ShieldingLifecycleInput(request=call),
            id=call.request_id,
            task_queue=task_queue,
            search_attributes=TypedSearchAttributes([SearchAttributePair(STAGE_ATTRIBUTE, Stage.INTAKE.value)]),
        )
        # A message whose delivery is being retried (its activity never runs here).
        ids["message"] = f"notification-test-{suffix}"
        await client.start_workflow(
            NotificationDeliveryWorkflow.run,
            NotificationRef(notification_id=1),
            id=ids["message"],
            task_queue=task_queue,
        )
        # A lifecycle given neither a request nor a state fails at once.
        ids["failed"] = f"SR-FAILED-{suffix}"
        failed = await client.start_workflow(
            ShieldingRequestWorkflow.run, ShieldingLifecycleInput(), id=ids["failed"], task_queue=task_queue
        )
        with pytest.raises(WorkflowFailureError):
            await failed.result()

        try:
            for query in QUERIES:
                # The stuck-intake query looks for calls older than a minute: ask it as of two minutes from now.
                # and the retrying messages for ones older than an hour: as of two hours from now.
                later = {"intakes-stuck": timedelta(minutes=2), "messages-retrying": timedelta(hours=2)}
                as_of = now + later.get(query.name, timedelta(0))
                text = query.at(as_of)
                assert not re.search(r"[{}]", text), text
                await eventually(
                    lambda text=text: found(client, text, task_queue, ids),
                    lambda got, want=EXPECTED[query.name]: got == want,
                    timeout=20,
                )
        finally:
            for key, workflow_id in ids.items():
                if key != "failed":
                    await client.get_workflow_handle(workflow_id).terminate("test over")


def test_the_times_are_filled_in_as_temporal_reads_them() -> None:
    (overdue,) = [q for q in QUERIES if q.name == "reviews-overdue"]
    text = overdue.at(datetime(2026, 12, 2, 16, 0, tzinfo=deadlines.LONDON))
    assert "NextReviewAt < '2026-12-01T16:00:00Z'" in text
