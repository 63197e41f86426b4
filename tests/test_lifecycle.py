"""The shielding lifecycle on the time-skipping server: every timer path, each side of each deadline.

The time-skipping server supports neither updates nor visibility, so forms, decisions and unshields are
sent here through the workflow's signals (the same handlers the updates use), signed as the service signs
them; the updates themselves are tested on the dev server in test_intake_devserver.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from shielding import deadlines, store
from shielding.domain import (
    FormSubmission,
    ReviewDecision,
    ReviewDecisionKind,
    ReviewKind,
    Stage,
    UnshieldRequest,
)
from starter import Refusal, ShieldingService
from tests.helpers.lifecycle import (
    actions,
    advance_to,
    env_now,
    eventually,
    intake,
    send_signed,
    shielded_uids,
    start,
    status,
    status_where,
)
from tests.helpers.records import make_child
from tests.helpers.servers import TEST_ACTION_KEYS, running_worker
from workflows.shielding_request import ShieldingRequestWorkflow

MINUTE = timedelta(minutes=1)


async def send_form(env, handle, pool, request_id):
    ids = await store.stage_documents(pool, request_id, [("form.pdf", b"%PDF-1.7 shielding form")])
    submission = FormSubmission(document_ids=ids, actor="officer-2")
    await send_signed(env.client, handle, ShieldingRequestWorkflow.form_received, submission)
    return ids


async def approve(env, handle, actor="reviewer-1"):
    await send_signed(
        env.client,
        handle,
        ShieldingRequestWorkflow.review_decided,
        ReviewDecision(decision=ReviewDecisionKind.APPROVE, actor=actor),
    )


async def test_siblings_are_shielded_before_the_acknowledgement(time_env, pool, settings, children, task_queue):
    uids = [c.uid for c in children]
    async with running_worker(time_env.client, pool, settings, task_queue):
        now = await env_now(time_env)
        _, ack = await start(time_env.client, task_queue, intake(uids, now))
        # By the time the intake is acknowledged, no read of the directory shows either address.
        assert await shielded_uids(pool, uids) == set(uids)
        for uid in uids:
            view = await store.view_child(pool, uid)
            assert view is not None and view["shielded"] is True and "address" not in view
    assert ack.stage == Stage.AWAITING_FORM
    assert [c.uid for c in ack.children] == uids and all(c.shielded for c in ack.children)
    assert ack.form_due_at == deadlines.form_due_at(now)
    assert ack.review_7_day_at is not None and ack.review_6_month_at is not None
    assert await actions(pool, ack.request_id) == ["received", "shielded", "shielded"]


async def test_form_just_before_the_deadline_is_recorded_and_the_shield_stays(
    time_env, pool, settings, children, task_queue
):
    uids = [c.uid for c in children]
    async with running_worker(time_env.client, pool, settings, task_queue):
        handle, ack = await start(time_env.client, task_queue, intake(uids, await env_now(time_env)))
        assert ack.form_due_at is not None
        await advance_to(time_env, ack.form_due_at, -MINUTE)
        assert (await status(handle)).stage in {Stage.AWAITING_FORM, Stage.REVIEW_DUE}
        document_ids = await send_form(time_env, handle, pool, ack.request_id)
        st = await status_where(handle, lambda s: s.form_received_at is not None)
        # Past the deadline now: the form was in time, so nothing lapses.
        await advance_to(time_env, ack.form_due_at, MINUTE)
        st = await status(handle)
        assert st.stage in {Stage.SHIELDED, Stage.REVIEW_DUE}
        assert await shielded_uids(pool, uids) == set(uids)
    stored = await pool.fetch(
        "SELECT sha256, size_bytes, accepted_at FROM form_documents WHERE document_id = ANY($1::uuid[])", document_ids
    )
    assert len(stored) == 1 and stored[0]["accepted_at"] is not None and stored[0]["size_bytes"] == 23
    assert "form-received" in await actions(pool, ack.request_id)
    assert "lapsed" not in await actions(pool, ack.request_id)
    # Version 2 of the workflow acknowledges the form to the requestor, naming only the request.
    receipts = [n for n in await store.notifications(pool, ack.request_id) if n["recipient_kind"] == "requestor"]
    assert [n["subject"] for n in receipts] == [f"Shielding request {ack.request_id}: form received"]
    assert receipts[0]["recipient"] == "020 7641 0000"
    for child in children:
        assert child.family_name not in receipts[0]["body"] and child.address.postcode not in receipts[0]["body"]


async def test_no_form_by_the_deadline_lapses_the_request(time_env, pool, settings, children, task_queue, tmp_path):
    uids = [c.uid for c in children]
    async with running_worker(time_env.client, pool, settings, task_queue):
        handle, ack = await start(time_env.client, task_queue, intake(uids, await env_now(time_env)))
        assert ack.form_due_at is not None
        await advance_to(time_env, ack.form_due_at, -MINUTE)
        assert (await status(handle)).stage != Stage.LAPSED
        assert await shielded_uids(pool, uids) == set(uids)
        await advance_to(time_env, ack.form_due_at, MINUTE)
        st = await status_where(handle, lambda s: s.stage == Stage.LAPSED)
        assert "not received" in (st.closed_reason or "")
        result = await handle.result()
        # A form arriving after the deadline is refused with the reason, audited, and no document is kept.
        service = ShieldingService(
            time_env.client, pool, task_queue=task_queue, max_document_bytes=1000, action_keys=TEST_ACTION_KEYS
        )
        late = tmp_path / "form.pdf"
        late.write_bytes(b"%PDF late form")
        with pytest.raises(Refusal, match="closed \\(lapsed\\)"):
            await service.submit_form(ack.request_id, [late], actor="officer-2")
    assert result.stage == Stage.LAPSED
    assert await shielded_uids(pool, uids) == set()
    audit = await actions(pool, ack.request_id)
    assert audit.count("lapsed") == 2 and audit[-1] == "form-refused"
    assert await pool.fetchval("SELECT count(*) FROM form_documents WHERE request_id = $1", ack.request_id) == 0
    notes = await store.notifications(pool, ack.request_id)
    to_requestor = [n for n in notes if n["recipient_kind"] == "requestor"]
    assert len(to_requestor) == 1 and "unsuccessful" in to_requestor[0]["body"]
    assert to_requestor[0]["recipient"] == "020 7641 0000"


async def test_seven_day_review_falls_due_then_approve_keeps_the_shield(time_env, pool, settings, children, task_queue):
    uids = [c.uid for c in children]
    async with running_worker(time_env.client, pool, settings, task_queue):
        handle, ack = await start(time_env.client, task_queue, intake(uids, await env_now(time_env)))
        await send_form(time_env, handle, pool, ack.request_id)
        await status_where(handle, lambda s: s.stage == Stage.SHIELDED)
        assert ack.review_7_day_at is not None
        await advance_to(time_env, ack.review_7_day_at, -MINUTE)
        st = await status(handle)
        assert st.stage == Stage.SHIELDED and st.next_review_kind == ReviewKind.SEVEN_DAY
        await advance_to(time_env, ack.review_7_day_at, MINUTE)
        st = await status_where(handle, lambda s: s.stage == Stage.REVIEW_DUE)
        assert st.review_due_since == ack.review_7_day_at
        await approve(time_env, handle)
        st = await status_where(handle, lambda s: s.stage == Stage.SHIELDED)
        assert st.next_review_kind == ReviewKind.SIX_MONTH and st.next_review_at == ack.review_6_month_at
        assert [(r.kind, r.decision) for r in st.reviews] == [(ReviewKind.SEVEN_DAY, ReviewDecisionKind.APPROVE)]
        assert await shielded_uids(pool, uids) == set(uids)
    audit = await actions(pool, ack.request_id)
    assert audit[-2:] == ["review-due", "approved"]
    notes = [n for n in await store.notifications(pool, ack.request_id) if n["recipient_kind"] == "reviewers"]
    assert len(notes) == 1 and "7-day review" in notes[0]["subject"]


async def test_seven_day_review_unshield_lifts_the_shield(time_env, pool, settings, children, task_queue):
    uids = [c.uid for c in children]
    async with running_worker(time_env.client, pool, settings, task_queue):
        handle, ack = await start(time_env.client, task_queue, intake(uids, await env_now(time_env)))
        assert ack.review_7_day_at is not None
        await advance_to(time_env, ack.review_7_day_at, MINUTE)
        await status_where(handle, lambda s: s.stage == Stage.REVIEW_DUE)
        await send_signed(
            time_env.client,
            handle,
            ShieldingRequestWorkflow.review_decided,
            ReviewDecision(decision=ReviewDecisionKind.UNSHIELD, reason="Criteria not met", actor="reviewer-1"),
        )
        result = await handle.result()
    assert result.stage == Stage.UNSHIELDED and result.closed_reason == "Criteria not met"
    assert await shielded_uids(pool, uids) == set()
    assert (await actions(pool, ack.request_id))[-2:] == ["unshielded", "unshielded"]


async def test_overdue_review_sends_reminders_and_never_unshields(time_env, pool, settings, children, task_queue):
    uids = [c.uid for c in children]
    async with running_worker(time_env.client, pool, settings, task_queue):
        handle, ack = await start(time_env.client, task_queue, intake(uids, await env_now(time_env)))
        await send_form(time_env, handle, pool, ack.request_id)
        await status_where(handle, lambda s: s.form_received_at is not None)
        assert ack.review_7_day_at is not None
        await advance_to(time_env, ack.review_7_day_at, MINUTE)
        await status_where(handle, lambda s: s.stage == Stage.REVIEW_DUE)
        # Just before the first reminder: none yet.
        await advance_to(time_env, ack.review_7_day_at, timedelta(days=1) - MINUTE)
        assert (await status(handle)).reminders_sent == 0
        await advance_to(time_env, ack.review_7_day_at, timedelta(days=3) + MINUTE)
        st = await status_where(handle, lambda s: s.reminders_sent == 3)
        # Weeks of silence: still shielded, still waiting.
        await advance_to(time_env, ack.review_7_day_at, timedelta(days=30))
        st = await status_where(handle, lambda s: s.reminders_sent >= 29)
        assert st.stage == Stage.REVIEW_DUE
        assert await shielded_uids(pool, uids) == set(uids)
    audit = await actions(pool, ack.request_id)
    assert "unshielded" not in audit and audit.count("reminder") == st.reminders_sent


async def test_six_month_review_then_recurring_review_after_continue_as_new(
    time_env, pool, settings, children, task_queue
):
    uids = [c.uid for c in children]
    async with running_worker(time_env.client, pool, settings, task_queue):
        handle, ack = await start(time_env.client, task_queue, intake(uids, await env_now(time_env)))
        await send_form(time_env, handle, pool, ack.request_id)
        assert ack.review_7_day_at is not None and ack.review_6_month_at is not None
        await advance_to(time_env, ack.review_7_day_at, MINUTE)
        await status_where(handle, lambda s: s.stage == Stage.REVIEW_DUE)
        await approve(time_env, handle)
        await status_where(handle, lambda s: s.stage == Stage.SHIELDED)

        await advance_to(time_env, ack.review_6_month_at, -MINUTE)
        assert (await status(handle)).stage == Stage.SHIELDED
        await advance_to(time_env, ack.review_6_month_at, MINUTE)
        await status_where(handle, lambda s: s.stage == Stage.REVIEW_DUE and s.next_review_kind == ReviewKind.SIX_MONTH)
        await approve(time_env, handle)

        latest = time_env.client.get_workflow_handle(ack.request_id)
        # Wait for the fresh run by its history, not by queries: the time-skipping server can lose its
        # time-skipping lock when a query races the continue-as-new of the run it was sent to.
        await eventually(
            lambda: latest.fetch_history(),
            lambda h: h.events[0].workflow_execution_started_event_attributes.continued_execution_run_id != "",
        )
        twelve_months = deadlines.review_6_month_at(await _shielded_at(latest), 2)
        st = await status_where(latest, lambda s: s.stage == Stage.SHIELDED and s.next_review_at == twelve_months)
        assert [r.kind for r in st.reviews] == [ReviewKind.SEVEN_DAY, ReviewKind.SIX_MONTH]

        await advance_to(time_env, twelve_months, MINUTE)
        await status_where(latest, lambda s: s.stage == Stage.REVIEW_DUE)
        await approve(time_env, latest)
        eighteen_months = deadlines.review_6_month_at(await _shielded_at(latest), 3)
        await status_where(latest, lambda s: s.stage == Stage.SHIELDED and s.next_review_at == eighteen_months)
        assert await shielded_uids(pool, uids) == set(uids)
    assert (await actions(pool, ack.request_id)).count("approved") == 3


async def _shielded_at(handle):
    st = await status(handle)
    assert st.shielded_at is not None
    return st.shielded_at


async def test_unshield_while_waiting_for_the_form(time_env, pool, settings, children, task_queue):
    uids = [c.uid for c in children]
    async with running_worker(time_env.client, pool, settings, task_queue):
        handle, ack = await start(time_env.client, task_queue, intake(uids, await env_now(time_env)))
        await time_env.sleep(timedelta(days=2))
        await send_signed(
            time_env.client,
            handle,
            ShieldingRequestWorkflow.unshield_requested,
            UnshieldRequest(reason="Family moved abroad; risk ended", actor="reviewer-1"),
        )
        result = await handle.result()
    assert result.stage == Stage.UNSHIELDED
    assert await shielded_uids(pool, uids) == set()
    assert (await actions(pool, ack.request_id))[-1] == "unshielded"


async def test_second_request_for_a_shielded_child_is_recorded_against_the_first(
    time_env, pool, settings, children, task_queue
):
    first_child, second_child = children
    async with running_worker(time_env.client, pool, settings, task_queue):
        now = await env_now(time_env)
        first_handle, first = await start(time_env.client, task_queue, intake([first_child.uid], now))
        _, duplicate = await start(time_env.client, task_queue, intake([first_child.uid], now))
        # A mixed request: the sibling is new and is shielded under it; the first child stays where it was.
        mixed_handle, mixed = await start(time_env.client, task_queue, intake([first_child.uid, second_child.uid], now))
        assert (await status(first_handle)).stage == Stage.AWAITING_FORM
        assert (await status(mixed_handle)).children == [second_child.uid]
    assert duplicate.stage == Stage.DUPLICATE
    assert duplicate.children[0].existing_request_id == first.request_id
    assert first.request_id in duplicate.message
    against_first = await pool.fetch(
        "SELECT action, details FROM audit_log WHERE request_id = $1 AND action = 'duplicate'", first.request_id
    )
    assert {r["details"]["duplicate_request_id"] for r in against_first} == {duplicate.request_id, mixed.request_id}
    assert mixed.stage == Stage.AWAITING_FORM
    assert {(c.uid, c.existing_request_id) for c in mixed.children} == {
        (first_child.uid, first.request_id),
        (second_child.uid, None),
    }
    owners = await pool.fetch(
        "SELECT uid, shield_request_id FROM children WHERE uid = ANY($1::text[])", [c.uid for c in children]
    )
    assert {r["uid"]: r["shield_request_id"] for r in owners} == {
        first_child.uid: first.request_id,
        second_child.uid: mixed.request_id,
    }


async def test_unknown_child_is_refused_and_nothing_is_shielded(time_env, pool, settings, task_queue):
    known = make_child()
    await store.import_children(pool, [known], actor="test-import")
    async with running_worker(time_env.client, pool, settings, task_queue):
        handle, ack = await start(
            time_env.client, task_queue, intake([known.uid, "NO-SUCH-CHILD-1"], await env_now(time_env))
        )
        result = await handle.result()
    assert ack.stage == Stage.REFUSED and result.stage == Stage.REFUSED
    assert "NO-SUCH-CHILD-1" in ack.message
    assert await shielded_uids(pool, [known.uid]) == set()
    refusal = await pool.fetchrow(
        "SELECT reason, requestor FROM audit_log WHERE request_id = $1 AND action = 'refused'", ack.request_id
    )
    assert refusal is not None and "NO-SUCH-CHILD-1" in refusal["reason"]
    assert refusal["requestor"]["name"] == "Dana Whitcombe"


@pytest.mark.parametrize("repeat", [2])
async def test_a_retried_activity_has_one_effect_and_one_audit_entry(pool, children, repeat):
    from datetime import UTC, datetime

    from shielding.domain import AuditAction
    from shielding.steps import LiftShield, ShieldChildren

    request = intake([c.uid for c in children], datetime.now(UTC))
    due = deadlines.form_due_at(request.called_at)
    shield = ShieldChildren(request=request, form_due_at=due)
    results = [await store.shield_request(pool, shield, f"{request.request_id}:1:shield") for _ in range(repeat)]
    assert results[0] == results[1]
    lifts = [
        await store.lift_shield(
            pool,
            LiftShield(
                request_id=request.request_id,
                action=AuditAction.UNSHIELDED,
                stage=Stage.UNSHIELDED,
                actor="reviewer-1",
                reason="changed",
            ),
            f"{request.request_id}:2:unshielded",
        )
        for _ in range(repeat)
    ]
    assert lifts[0] == lifts[1] and sorted(lifts[0].children) == sorted(c.uid for c in children)
    assert await actions(pool, request.request_id) == [
        "received",
        "shielded",
        "shielded",
        "unshielded",
        "unshielded",
    ]


async def test_a_form_arriving_while_an_unshield_runs_is_refused_not_recorded(
    time_env, pool, settings, children, task_queue
):
    uids = [c.uid for c in children]
    async with running_worker(time_env.client, pool, settings, task_queue):
        handle, ack = await start(time_env.client, task_queue, intake(uids, await env_now(time_env)))
        await send_signed(
            time_env.client,
            handle,
            ShieldingRequestWorkflow.unshield_requested,
            UnshieldRequest(reason="Family moved abroad", actor="reviewer-1"),
        )
        late_ids = await send_form(time_env, handle, pool, ack.request_id)
        result = await handle.result()
    assert result.stage == Stage.UNSHIELDED
    audit = await actions(pool, ack.request_id)
    assert "form-received" not in audit and audit[-1] == "form-refused"
    assert await pool.fetchval("SELECT count(*) FROM form_documents WHERE document_id = ANY($1::uuid[])", late_ids) == 0
    receipts = [n for n in await store.notifications(pool, ack.request_id) if n["recipient_kind"] == "requestor"]
    assert receipts == []
