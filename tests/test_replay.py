"""Replay of recorded workflow histories: a code change that would break running lifecycles fails here.

The histories in tests/histories/ were recorded from real runs by `test_record_histories` (RECORD_HISTORIES=1
records the scenarios that have no file yet; existing files are never rewritten, so histories made by older
versions of the workflow keep guarding running lifecycles). They are encrypted, and since version 4 their staff
actions signed, with fixed keys that exist only for these fixtures.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from shielding import action_auth, store
from shielding.domain import ActionSignature, FormSubmission, ReviewDecision, ReviewDecisionKind, Stage, UnshieldRequest
from shielding.lifecycle import ShieldingLifecycleInput
from shielding.settings import Settings
from shielding.temporal import data_converter, register_search_attributes
from tests.helpers.lifecycle import env_now, intake, send_signed, start, status_where
from tests.helpers.records import make_child
from tests.helpers.servers import running_worker, temporal_binary
from worker.main import workflow_runner
from workflows.shielding_request import ShieldingRequestWorkflow

HISTORIES = Path(__file__).parent / "histories"
# The time-skipping server's namespace, where every fixture was recorded.
RECORDED_NAMESPACE = "default"
# Not a secret: it protects nothing but these test fixtures.
REPLAY_KEYS = "replay-fixtures:oJ8FBdgOUucl+a63Mq2H7G6WisRW/AsGpftwRhXzElc="
# Nor this: it signs the staff actions in the fixtures recorded since version 4 (signed actions).
REPLAY_ACTION_KEYS = "replay-action-fixtures:8MIA3bXyw8MDky5DEh+W+o9gV7GbuxdhAtxZcU0rODw="


def replay_settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path, DATABASE_URL=database_url, encryption_keys=REPLAY_KEYS, action_keys=REPLAY_ACTION_KEYS
    )


@pytest.fixture
def replay_action_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The keys a worker would hold while it replays the fixtures (restored afterwards)."""
    monkeypatch.setattr(action_auth, "_configured", action_auth.configured_action_keys())
    action_auth.configure_action_keys(REPLAY_ACTION_KEYS)


def recorded() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


def test_there_are_recorded_histories_to_replay() -> None:
    names = {p.stem for p in recorded()}
    assert {
        "lapsed",
        "reviewed-through-six-months",
        "unshielded-while-awaiting-form",
        "v2-form-receipt-then-unshielded",
        "v3-local-shield-form-then-unshielded",
        "v4-signed-form-then-unshielded",
        "v4-forged-signals-ignored-then-unshielded",
    } <= names


def test_a_version_2_history_carries_the_patch_marker_and_version_1_histories_do_not() -> None:
    v2 = (HISTORIES / "v2-form-receipt-then-unshielded.json").read_text()
    v1 = (HISTORIES / "reviewed-through-six-months.json").read_text()
    assert "form-receipt-to-requestor" in v2 or "EVENT_TYPE_MARKER_RECORDED" in v2
    assert "EVENT_TYPE_MARKER_RECORDED" not in v1


async def recorded_workflow_id(text: str, converter: DataConverter) -> str:
    """The request id the history was recorded under (a signed action is bound to it), from its start input."""
    started = WorkflowHistory.from_json("unknown", text).events[0].workflow_execution_started_event_attributes
    (params,) = await converter.decode(list(started.input.payloads), [ShieldingLifecycleInput])
    lifecycle = params.request or params.state
    assert lifecycle is not None
    return str(lifecycle.request_id)


@pytest.mark.parametrize("path", recorded(), ids=lambda p: p.stem)
@pytest.mark.usefixtures("replay_action_keys")
async def test_recorded_history_replays_with_current_code(path: Path, tmp_path: Path, database_url: str) -> None:
    converter = data_converter(replay_settings(tmp_path, database_url))
    text = path.read_text()
    # Replayed where it ran (namespace and workflow id), as a worker replays it: signatures are bound to both.
    history = WorkflowHistory.from_json(await recorded_workflow_id(text, converter), text)
    replayer = Replayer(
        workflows=[ShieldingRequestWorkflow],
        namespace=RECORDED_NAMESPACE,
        data_converter=converter,
        workflow_runner=workflow_runner(),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.stem} no longer replays: {result.replay_failure}"


@pytest.mark.skipif(os.environ.get("RECORD_HISTORIES") != "1", reason="set RECORD_HISTORIES=1 to re-record")
async def test_record_histories(tmp_path: Path, database_url: str, pool) -> None:
    settings = replay_settings(tmp_path, database_url)
    HISTORIES.mkdir(exist_ok=True)
    approve = ReviewDecision(decision=ReviewDecisionKind.APPROVE, actor="rev")

    async def send(env, handle, signal, argument):
        await send_signed(env.client, handle, signal, argument, keys=REPLAY_ACTION_KEYS)

    async def record(name, scenario):
        if (HISTORIES / f"{name}.json").exists():
            return  # keep what older code versions recorded: that is the point of the fixtures
        # A fresh server per scenario: the time-skipping clock must start where the database clock is.
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=temporal_binary("temporal-test-server"), data_converter=data_converter(settings)
        )
        try:
            await register_search_attributes(env.client)
            async with running_worker(env.client, pool, settings, "record"):
                child = make_child()
                await store.import_children(pool, [child], actor="recorder")
                request = intake([child.uid], await env_now(env))
                handle, ack = await start(env.client, "record", request, keys=REPLAY_ACTION_KEYS)
                await scenario(env, handle, ack)
                history = await env.client.get_workflow_handle(handle.id, run_id=handle.result_run_id).fetch_history()
                (HISTORIES / f"{name}.json").write_text(history.to_json())
        finally:
            await env.shutdown()

    async def lapse(env, handle, ack):
        await env.sleep(timedelta(days=20))
        await handle.result()

    async def unshield(env, handle, ack):
        await send(env, handle, ShieldingRequestWorkflow.unshield_requested, UnshieldRequest(reason="recorded"))
        await handle.result()

    async def six_months(env, handle, ack):
        ids = await store.stage_documents(pool, ack.request_id, [("form.pdf", b"%PDF form")])
        await send(env, handle, ShieldingRequestWorkflow.form_received, FormSubmission(document_ids=ids))
        await env.sleep(timedelta(days=7, hours=1))
        await status_where(handle, lambda s: s.stage == Stage.REVIEW_DUE)
        await env.sleep(timedelta(days=2))
        await status_where(handle, lambda s: s.reminders_sent >= 1)
        await send(env, handle, ShieldingRequestWorkflow.review_decided, approve)
        await status_where(handle, lambda s: s.stage == Stage.SHIELDED)
        await env.sleep(timedelta(days=190))
        await status_where(handle, lambda s: s.stage == Stage.REVIEW_DUE)
        await send(env, handle, ShieldingRequestWorkflow.review_decided, approve)
        latest = env.client.get_workflow_handle(handle.id)
        await status_where(latest, lambda s: s.stage == Stage.SHIELDED and len(s.reviews) == 2)

    async def form_then_unshield(env, handle, ack):
        ids = await store.stage_documents(pool, ack.request_id, [("form.pdf", b"%PDF form")])
        await send(env, handle, ShieldingRequestWorkflow.form_received, FormSubmission(document_ids=ids))
        await status_where(handle, lambda s: s.form_received_at is not None)
        await send(env, handle, ShieldingRequestWorkflow.unshield_requested, UnshieldRequest(reason="recorded"))
        await handle.result()

    async def forged_then_unshield(env, handle, ack):
        # Ignored, each leaving only its signal (and, unsigned, a patch marker) in history.
        forged = UnshieldRequest(reason="forged", actor="rev")
        await handle.signal(ShieldingRequestWorkflow.unshield_requested, forged)
        bogus = ActionSignature(
            key_id="replay-action-fixtures", actor="rev", issued_at=await env_now(env), nonce="n" * 24, mac="0" * 64
        )
        await handle.signal(ShieldingRequestWorkflow.unshield_requested, forged.model_copy(update={"signature": bogus}))
        ids = await store.stage_documents(pool, ack.request_id, [("form.pdf", b"%PDF form")])
        await handle.signal(ShieldingRequestWorkflow.form_received, FormSubmission(document_ids=ids, actor="rev"))
        await send(env, handle, ShieldingRequestWorkflow.unshield_requested, UnshieldRequest(reason="recorded"))
        await handle.result()

    await record("lapsed", lapse)
    # Recorded after the form-receipt patch (version 2): replays with the patch marker in its history.
    await record("v2-form-receipt-then-unshielded", form_then_unshield)
    # Version 3: the intake shield runs as a local activity.
    await record("v3-local-shield-form-then-unshielded", form_then_unshield)
    await record("unshielded-while-awaiting-form", unshield)
    await record("reviewed-through-six-months", six_months)
    # Version 4: staff actions are signed; forged signals are ignored.
    await record("v4-signed-form-then-unshielded", form_then_unshield)
    await record("v4-forged-signals-ignored-then-unshielded", forged_then_unshield)
