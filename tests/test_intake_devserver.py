"""Intake by update-with-start, the update paths and search attributes, on the Temporal dev server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.service import RPCError

from shielding import deadlines, store
from shielding.domain import Stage
from starter import Refusal, ShieldingService, new_request_id
from tests.helpers.lifecycle import draft
from tests.helpers.records import make_child
from tests.helpers.servers import TEST_ACTION_KEYS, running_worker

pytestmark = pytest.mark.devserver


@pytest.fixture
async def service(dev_env, pool, settings, task_queue):
    async with running_worker(dev_env.client, pool, settings, task_queue):
        yield ShieldingService(
            dev_env.client, pool, task_queue=task_queue, max_document_bytes=1024, action_keys=TEST_ACTION_KEYS
        )


async def test_intake_returns_only_once_the_directory_hides_the_address(service, pool, children):
    uids = [c.uid for c in children]
    ack = await service.submit_request(draft(uids), actor="officer-a")
    # The very next read, with no waiting, is already redacted.
    views = [await store.view_child(pool, uid) for uid in uids]
    assert all(v is not None and v["shielded"] and "address" not in v for v in views)
    assert ack.stage == Stage.AWAITING_FORM
    assert ack.form_due_at is not None and ack.review_7_day_at is not None and ack.review_6_month_at is not None
    assert ack.form_due_at > datetime.now(UTC) + timedelta(days=8)
    assert ack.form_due_at.astimezone(deadlines.LONDON).time().isoformat() == "00:00:00"
    # The workflow id says nothing about the child.
    assert ack.request_id.startswith("SR-")
    for child in children:
        for value in (child.uid, child.given_name, child.family_name, child.date_of_birth.isoformat()):
            assert value not in ack.request_id


async def test_search_attributes_follow_the_stage(service, dev_env, children):
    uids = [c.uid for c in children]
    ack = await service.submit_request(draft(uids), actor="officer-a")

    async def listed(query: str) -> list[str]:
        return [wf.id async for wf in dev_env.client.list_workflows(query)]

    query = f'WorkflowId = "{ack.request_id}" AND ShieldingStage = "awaiting-form"'
    for _ in range(100):
        if await listed(query):
            break
        await asyncio.sleep(0.1)
    assert await listed(query) == [ack.request_id]
    description = await dev_env.client.get_workflow_handle(ack.request_id).describe()
    attributes = {key.name: value for key, value in description.typed_search_attributes}
    assert attributes["ShieldingStage"] == "awaiting-form"
    assert attributes["FormDueAt"] == ack.form_due_at
    assert attributes["NextReviewAt"] == ack.review_7_day_at
    assert not any(uid in str(attributes) for uid in uids)

    await service.unshield(ack.request_id, reason="Family rehoused out of area", actor="reviewer-b")
    query = f'WorkflowId = "{ack.request_id}" AND ShieldingStage = "unshielded"'
    for _ in range(100):
        if await listed(query):
            break
        await asyncio.sleep(0.1)
    assert await listed(query) == [ack.request_id]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"criteria": ["no-such-criterion"]}, "'no-such-criterion' is not a shielding criterion"),
        ({"criteria": []}, "at least one shielding criterion"),
        ({"criteria": ["objection-in-principle"]}, "objection to ContactPoint in principle"),
        ({"criteria": ["refuge", "objection-in-principle"]}, "objection to ContactPoint in principle"),
        ({"requestor_phone": None}, "phone number or email address"),
        ({"requestor_organisation": None}, "organisation is needed"),
        ({"requestor_type": "neighbour"}, "requestor type"),
        ({"reason": ""}, "the reason is missing"),
        ({"called_at": "2026-11-24T10:00:00"}, "no UTC offset"),
        ({"called_at": "yesterday"}, "not an ISO 8601"),
        ({"called_at": "2031-01-01T10:00:00+00:00"}, "in the future"),
        ({"called_at": "2020-01-01T10:00:00+00:00"}, "more than 7 working days ago"),
        ({"criteria": ["other-significant-harm"]}, "needs a description"),
        ({"children": ["bad uid with spaces"]}, "child identifier is not in the expected format"),
    ],
)
async def test_bad_requests_are_refused_audited_and_shield_nothing(
    service, pool, dev_env, children, overrides, expected
):
    uids = [children[0].uid]
    request_id = new_request_id()
    with pytest.raises(Refusal) as refusal:
        await service.submit_request(draft(uids, **overrides), actor="officer-a", request_id=request_id)
    assert expected in str(refusal.value)
    assert (await store.view_child(pool, uids[0]))["shielded"] is False
    entry = await pool.fetchrow("SELECT action, reason, requestor FROM audit_log WHERE request_id = $1", request_id)
    assert entry["action"] == "refused" and expected in entry["reason"]
    assert entry["requestor"]["requestor_name"] == "Sam Achebe"
    with pytest.raises(RPCError):  # no lifecycle was started
        await dev_env.client.get_workflow_handle(request_id).describe()


async def test_unknown_child_is_refused_with_its_identifier(service, pool, children):
    with pytest.raises(Refusal, match="NOBODY-42"):
        await service.submit_request(draft([children[0].uid, "NOBODY-42"]), actor="officer-a")
    assert (await store.view_child(pool, children[0].uid))["shielded"] is False


async def test_duplicate_request_is_told_the_existing_request(service, children):
    first = await service.submit_request(draft([children[0].uid]), actor="officer-a")
    second = await service.submit_request(draft([children[0].uid]), actor="officer-c")
    assert second.stage == Stage.DUPLICATE
    assert first.request_id in second.message
    assert second.children[0].existing_request_id == first.request_id


async def test_form_update_accepts_once_and_refuses_bad_documents(service, pool, children, tmp_path):
    ack = await service.submit_request(draft([children[0].uid]), actor="officer-a")
    form = tmp_path / "form.pdf"
    form.write_bytes(b"%PDF-1.7 the completed shielding request form")
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    huge = tmp_path / "huge.pdf"
    huge.write_bytes(b"x" * 1025)
    with pytest.raises(Refusal, match="'empty.pdf' is empty"):
        await service.submit_form(ack.request_id, [form, empty], actor="officer-a")
    with pytest.raises(Refusal, match="'huge.pdf' is 1,025 bytes, over the 1,024-byte limit"):
        await service.submit_form(ack.request_id, [huge], actor="officer-a")
    assert await pool.fetchval("SELECT count(*) FROM form_documents WHERE request_id = $1", ack.request_id) == 0

    outcome = await service.submit_form(ack.request_id, [form], actor="officer-a")
    assert outcome.accepted
    stored = await pool.fetchrow("SELECT sha256, size_bytes FROM form_documents WHERE request_id = $1", ack.request_id)
    import hashlib

    assert stored["sha256"] == hashlib.sha256(form.read_bytes()).hexdigest()
    assert stored["size_bytes"] == form.stat().st_size
    with pytest.raises(Refusal, match="already been received"):
        await service.submit_form(ack.request_id, [form], actor="officer-a")
    # The refused second copy was not kept.
    assert await pool.fetchval("SELECT count(*) FROM form_documents WHERE request_id = $1", ack.request_id) == 1
    status = await service.status(ack.request_id)
    assert status.stage == Stage.SHIELDED and status.form_received_at is not None


async def test_review_with_no_review_due_is_refused(service, children):
    ack = await service.submit_request(draft([children[0].uid]), actor="officer-a")
    with pytest.raises(Refusal, match="No review is due") as refusal:
        await service.decide_review(ack.request_id, approve=True, reason=None, actor="reviewer-b")
    assert "7-day" in str(refusal.value)


async def test_form_for_an_unknown_request_is_refused(service, tmp_path):
    form = tmp_path / "form.pdf"
    form.write_bytes(b"%PDF")
    with pytest.raises(Refusal, match="There is no shielding request SR-AAAAAAAAAAAA"):
        await service.submit_form("SR-AAAAAAAAAAAA", [form], actor="officer-a")
    with pytest.raises(Refusal, match="is not a shielding request id"):
        await service.submit_form("../../etc/passwd", [form], actor="officer-a")


async def test_unshield_ends_the_lifecycle_and_a_second_unshield_is_refused(service, pool, children):
    ack = await service.submit_request(draft([c.uid for c in children]), actor="officer-a")
    outcome = await service.unshield(ack.request_id, reason="Risk has passed", actor="reviewer-b")
    assert outcome.stage == Stage.UNSHIELDED
    views = [await store.view_child(pool, c.uid) for c in children]
    assert [v["shielded"] for v in views] == [False, False]
    with pytest.raises(Refusal, match="closed"):
        await service.unshield(ack.request_id, reason="again", actor="reviewer-b")


async def test_a_repeated_intake_with_the_same_request_id_is_answered_once(service, pool):
    child = make_child()
    await store.import_children(pool, [child], actor="test-import")
    request_id = new_request_id()
    first = await service.submit_request(draft([child.uid]), actor="officer-a", request_id=request_id)
    again = await service.submit_request(draft([child.uid]), actor="officer-a", request_id=request_id)
    assert first == again
    rows = await pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE request_id = $1 AND action = 'shielded'", request_id
    )
    assert rows == 1


async def test_an_ended_request_id_is_never_reused_and_another_request_cannot_borrow_a_running_one(service, pool):
    first, second = make_child(), make_child()
    await store.import_children(pool, [first, second], actor="test-import")
    request_id = new_request_id()
    await service.submit_request(draft([first.uid]), actor="officer-a", request_id=request_id)
    with pytest.raises(Refusal, match="belongs to a request for other children"):
        await service.submit_request(draft([second.uid]), actor="officer-a", request_id=request_id)
    assert (await store.view_child(pool, second.uid))["shielded"] is False
    await service.unshield(request_id, reason="Risk ended", actor="reviewer-b")
    with pytest.raises(Refusal, match="has already ended"):
        await service.submit_request(draft([first.uid]), actor="officer-a", request_id=request_id)
    assert (await store.view_child(pool, first.uid))["shielded"] is False


def test_a_malformed_document_id_is_refused_where_the_form_is_decoded():
    from pydantic import ValidationError

    from shielding.domain import FormSubmission

    with pytest.raises(ValidationError):
        FormSubmission(document_ids=["not-a-uuid"])
    assert FormSubmission(document_ids=["0f8fad5b-d9cb-469f-a165-70867728950e"]).document_ids
