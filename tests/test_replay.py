"""Replay of recorded workflow histories: a code change that would break running lifecycles fails here.

The histories in tests/histories/ were recorded from real runs by `test_record_histories` (RECORD_HISTORIES=1
records the scenarios that have no file yet; existing files are never rewritten, so histories made by older
versions of the workflow keep guarding running lifecycles). They are encrypted with a fixed key that exists
only for these fixtures.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from shielding import store
from shielding.domain import FormSubmission, ReviewDecision, ReviewDecisionKind, Stage, UnshieldRequest
from shielding.settings import Settings
from shielding.temporal import data_converter, register_search_attributes
from tests.helpers.lifecycle import env_now, intake, start, status_where
from tests.helpers.records import make_child
from tests.helpers.servers import running_worker, temporal_binary
from worker.main import workflow_runner
from workflows.shielding_request import ShieldingRequestWorkflow

HISTORIES = Path(__file__).parent / "histories"
# Not a secret: it protects nothing but these test fixtures.
REPLAY_KEYS = "replay-fixtures:oJ8FBdgOUucl+a63Mq2H7G6WisRW/AsGpftwRhXzElc="


def replay_settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(data_dir=tmp_path, DATABASE_URL=database_url, encryption_keys=REPLAY_KEYS)


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
    } <= names


def test_a_version_2_history_carries_the_patch_marker_and_version_1_histories_do_not() -> None:
    v2 = (HISTORIES / "v2-form-receipt-then-unshielded.json").read_text()
    v1 = (HISTORIES / "reviewed-through-six-months.json").read_text()
    assert "form-receipt-to-requestor" in v2 or "EVENT_TYPE_MARKER_RECORDED" in v2
    assert "EVENT_TYPE_MARKER_RECORDED" not in v1


@pytest.mark.parametrize("path", recorded(), ids=lambda p: p.stem)
async def test_recorded_history_replays_with_current_code(path: Path, tmp_path: Path, database_url: str) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(
        workflows=[ShieldingRequestWorkflow],
        data_converter=data_converter(replay_settings(tmp_path, database_url)),
        workflow_runner=workflow_runner(),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.stem} no longer replays: {result.replay_failure}"


@pytest.mark.skipif(os.environ.get("RECORD_HISTORIES") != "1", reason="set RECORD_HISTORIES=1 to re-record")
async def test_record_histories(tmp_path: Path, database_url: str, pool) -> None:
    settings = replay_settings(tmp_path, database_url)
    HISTORIES.mkdir(exist_ok=True)
    approve = ReviewDecision(decision=ReviewDecisionKind.APPROVE, actor="rev")

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
                handle, ack = await start(env.client, "record", intake([child.uid], await env_now(env)))
                await scenario(env, handle, ack)
                history = await env.client.get_workflow_handle(handle.id, run_id=handle.result_run_id).fetch_history()
                (HISTORIES / f"{name}.json").write_text(history.to_json())
        finally:
            await env.shutdown()

    async def lapse(env, handle, ack):
        await env.sleep(timedelta(days=20))
        await handle.result()

    async def unshield(env, handle, ack):
        await handle.signal(
            ShieldingRequestWorkflow.unshield_requested, UnshieldRequest(reason="recorded", actor="rev")
        )
        await handle.result()

    async def six_months(env, handle, ack):
        ids = await store.stage_documents(pool, ack.request_id, [("form.pdf", b"%PDF form")])
        await handle.signal(ShieldingRequestWorkflow.form_received, FormSubmission(document_ids=ids))
        await env.sleep(timedelta(days=7, hours=1))
        await status_where(handle, lambda s: s.stage == Stage.REVIEW_DUE)
        await env.sleep(timedelta(days=2))
        await status_where(handle, lambda s: s.reminders_sent >= 1)
        await handle.signal(ShieldingRequestWorkflow.review_decided, approve)
        await status_where(handle, lambda s: s.stage == Stage.SHIELDED)
        await env.sleep(timedelta(days=190))
        await status_where(handle, lambda s: s.stage == Stage.REVIEW_DUE)
        await handle.signal(ShieldingRequestWorkflow.review_decided, approve)
        latest = env.client.get_workflow_handle(handle.id)
        await status_where(latest, lambda s: s.stage == Stage.SHIELDED and len(s.reviews) == 2)

    async def form_then_unshield(env, handle, ack):
        ids = await store.stage_documents(pool, ack.request_id, [("form.pdf", b"%PDF form")])
        await handle.signal(ShieldingRequestWorkflow.form_received, FormSubmission(document_ids=ids))
        await status_where(handle, lambda s: s.form_received_at is not None)
        await handle.signal(
            ShieldingRequestWorkflow.unshield_requested, UnshieldRequest(reason="recorded", actor="rev")
        )
        await handle.result()

    await record("lapsed", lapse)
    # Recorded after the form-receipt patch (version 2): replays with the patch marker in its history.
    await record("v2-form-receipt-then-unshielded", form_then_unshield)
    # Version 3: the intake shield runs as a local activity.
    await record("v3-local-shield-form-then-unshielded", form_then_unshield)
    await record("unshielded-while-awaiting-form", unshield)
    await record("reviewed-through-six-months", six_months)
