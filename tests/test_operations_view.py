"""What operations staff see of a request in the Temporal UI: a summary, current details that follow the
stage, and a timeline whose timers and activities say what they are — all through the codec, none of it
naming a child.

The words are pure functions, tested alone; the rest runs a real lifecycle on the time-skipping server and
reads what Temporal holds: the workflow's metadata query (what the UI's "current details" shows) and the
history's timer and activity events (what the timeline shows), decoded with the service's data converter,
and raw, to see that the metadata went through the codec like every payload.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowHandle

from shielding import deadlines, messages, store
from shielding.codec import ENCODING
from shielding.domain import ReviewKind, Stage
from shielding.lifecycle import LifecycleState
from tests.helpers.lifecycle import advance_to, env_now, eventually, intake, start, status_where
from tests.helpers.records import make_child
from tests.helpers.servers import running_worker

# Monday 30 November 2026, 10am London: the written form is due by the end of Wednesday 9 December.
CALLED = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
METADATA_QUERY = "__temporal_workflow_metadata"


def awaiting_form() -> LifecycleState:
    return LifecycleState(
        request_id="SR-OPS",
        stage=Stage.AWAITING_FORM,
        called_at=CALLED,
        shielded_at=CALLED,
        form_due_at=deadlines.form_due_at(CALLED),
    )


# ------------------------------------------------------------------------------------ the words, alone


def test_awaiting_the_form_names_the_deadline_as_it_is_read_aloud() -> None:
    details = awaiting_form().operations_details(2)
    assert details.startswith("**Awaiting the written form — due by the end of Wednesday 9 December 2026;")
    assert "7-day review due Monday 7 December 2026 at 10am" in details
    assert "Request SR-OPS · 2 children" in details


def test_each_stage_has_its_own_words() -> None:
    state = awaiting_form()
    state.form_received_at = CALLED + timedelta(days=1)
    state.stage = state.derived_stage()
    assert state.operations_details(1).startswith("**Shielded — 7-day review due Monday 7 December 2026")
    assert "1 child" in state.operations_details(1)
    state.review_fell_due(deadlines.review_7_day_at(CALLED))
    assert state.operations_details(1).startswith(
        "**7-day review overdue since Monday 7 December 2026 at 10am — waiting for a reviewer"
    )
    state.close(Stage.UNSHIELDED, "the family has moved; Flat 3, 9 Canary Row")
    closed = state.operations_details(1)
    assert closed.startswith("**Closed: unshielded**")
    # A reviewer's reason may name the family or where they went: never in what the UI shows.
    assert "Canary" not in closed
    assert LifecycleState(request_id="SR-OPS").operations_details(1).startswith("**Taking the call")


def test_the_next_timer_is_named_for_what_falls_due() -> None:
    state = awaiting_form()
    # The 7-day review (7 days) comes before the form deadline (7 working days).
    timer = state.next_timer()
    assert timer is not None and timer.name == "7-day review"
    assert timer.at == deadlines.review_7_day_at(CALLED)
    state.review_fell_due(timer.at)
    timer = state.next_timer()
    assert timer is not None and timer.name == messages.TIMER_REMINDER
    state.approve_review()
    timer = state.next_timer()
    assert timer is not None and timer.name == messages.TIMER_FORM_DEADLINE and timer.at == state.form_due_at
    state.form_received_at = CALLED + timedelta(days=8)
    timer = state.next_timer()
    assert timer is not None and timer.name == messages.review_timer(ReviewKind.SIX_MONTH) == "6-month review"
    state.close(Stage.UNSHIELDED, "done")
    assert state.next_timer() is None


# --------------------------------------------------------------------------------- on a real lifecycle


async def metadata(handle: WorkflowHandle) -> WorkflowMetadata:
    return await handle.query(METADATA_QUERY, result_type=WorkflowMetadata)


async def timeline(client: Client, handle: WorkflowHandle) -> tuple[list[str], list[str], list[Payload]]:
    """The timers' and activities' summaries as the UI shows them (decoded), and the raw summary payloads."""
    timers, activities, raw = [], [], []
    converter = client.data_converter
    async for event in handle.fetch_history_events():
        if not event.user_metadata.HasField("summary"):
            continue
        raw.append(event.user_metadata.summary)
        (summary,) = await converter.decode([event.user_metadata.summary], [str])
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            timers.append(summary)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            activities.append(summary)
    return timers, activities, raw


async def test_the_ui_shows_the_stage_and_names_each_timer_and_activity(time_env, pool, settings, task_queue):
    canary = make_child(given_name="Canarygiven", address_line="Canary Flat, 1 Canary Wharf", carer_name="Canary Carer")
    await store.import_children(pool, [canary], actor="test-import")
    async with running_worker(time_env.client, pool, settings, task_queue):
        handle, ack = await start(time_env.client, task_queue, intake([canary.uid], await env_now(time_env)))
        assert ack.form_due_at is not None
        details = (await metadata(handle)).current_details
        assert details.startswith(f"**Awaiting the written form — due by {deadlines.describe(ack.form_due_at)}")
        assert f"Request {ack.request_id} · 1 child" in details

        # No form: the request lapses at its deadline, and the details follow.
        await advance_to(time_env, ack.form_due_at, timedelta(seconds=1))
        await status_where(handle, lambda s: s.stage == Stage.LAPSED)
        closed = await eventually(lambda: metadata(handle), lambda m: "lapsed" in m.current_details)
        assert closed.current_details.startswith("**Closed: lapsed")

        timers, activities, raw = await timeline(time_env.client, handle)
    assert {"7-day review", messages.TIMER_REMINDER, messages.TIMER_FORM_DEADLINE} <= set(timers)
    assert messages.ACTIVITY_UNSHIELD in activities
    # Every summary went through the codec, like every payload; and none names the child.
    assert raw and all(p.metadata.get("encoding") == ENCODING for p in raw)
    for text in [details, closed.current_details, *timers, *activities]:
        for secret in ("Canary", canary.family_name, canary.school):
            assert secret not in text
