"""Signed staff actions: only what the service signed changes a lifecycle.

First the rules of `shielding.action_auth` without a server, each from both sides (accepted, then refused when
one signed thing changes); then, on the dev server, what someone who can reach Temporal but holds no action key
can do by sending updates, signals and starts straight to it: nothing.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from shielding import action_auth, messages, store
from shielding.action_auth import (
    MAX_SKEW,
    ActionKeys,
    SignedAction,
    action_keys_from_settings,
    configure_action_keys,
    ensure_dev_action_keys,
    generate_action_key_spec,
    parse_action_keys,
    sign_action,
    signed,
    verify_action,
)
from shielding.domain import (
    ActionSignature,
    FormSubmission,
    ReviewDecision,
    ReviewDecisionKind,
    ShieldingRequestInput,
    Stage,
    UnshieldRequest,
)
from shielding.lifecycle import NONCES_KEPT, LifecycleState, ShieldingLifecycleInput
from shielding.settings import ConfigurationError, Settings
from shielding.store.requests import UNAUTHENTICATED_ACTOR
from shielding.temporal import data_converter
from starter import Refusal, ShieldingService
from tests.helpers.lifecycle import draft, eventually, intake, start, status
from tests.helpers.lifecycle import signed as signed_for
from tests.helpers.records import make_child
from tests.helpers.servers import TEST_ACTION_KEYS, running_worker
from workflows.shielding_request import ShieldingRequestWorkflow

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
NAMESPACE = "default"
WORKFLOW_ID = "SR-ABCDEFGH2345"
OTHER_WORKFLOW_ID = "SR-ZYXWVUTS9876"
KEYS = ActionKeys.from_spec(generate_action_key_spec("current"))
MICROSECOND = timedelta(microseconds=1)


def unshield_request(reason: str = "Family rehoused out of area", actor: str = "reviewer-b") -> UnshieldRequest:
    return UnshieldRequest(reason=reason, actor=actor)


def sign(argument: Any, **overrides: Any) -> ActionSignature:
    fields: dict[str, Any] = {
        "namespace": NAMESPACE,
        "workflow_id": WORKFLOW_ID,
        "action": SignedAction.UNSHIELD,
        "argument": argument,
        "actor": argument.actor,
        "issued_at": NOW,
    }
    fields.update(overrides)
    keys = fields.pop("keys", KEYS)
    return sign_action(keys, **fields)


def verify(signature: ActionSignature | None, argument: Any, **overrides: Any) -> str | None:
    fields: dict[str, Any] = {
        "namespace": NAMESPACE,
        "workflow_id": WORKFLOW_ID,
        "action": SignedAction.UNSHIELD,
        "argument": argument,
        "actor": argument.actor,
        "now": NOW,
        "keys": KEYS,
    }
    fields.update(overrides)
    return verify_action(signature, **fields)


# ------------------------------------------------------------------------------------------ signatures


def test_the_service_signature_verifies() -> None:
    request = unshield_request()
    signature = sign(request)
    assert signature.key_id == "current" and signature.actor == "reviewer-b" and len(signature.mac) == 64
    assert verify(signature, request) is None


def test_a_missing_signature_is_refused() -> None:
    assert verify(None, unshield_request()) == messages.ACTION_UNSIGNED


def test_without_configured_keys_everything_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(action_auth, "_configured", None)
    request = unshield_request()
    assert verify(sign(request), request, keys=None) == messages.ACTION_KEYS_MISSING


def test_configured_keys_are_used_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(action_auth, "_configured", action_auth.configured_action_keys())
    spec = generate_action_key_spec("worker")
    configure_action_keys(spec)
    request = unshield_request()
    assert verify(sign(request, keys=ActionKeys.from_spec(spec)), request, keys=None) is None
    assert verify(sign(request), request, keys=None) == messages.ACTION_UNKNOWN_KEY


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("actor", "reviewer-c"),
        ("issued_at", NOW + MICROSECOND),
        ("nonce", "A" * 24),
        ("mac", "0" * 64),
    ],
)
def test_each_field_of_the_signature_is_covered(field: str, value: Any) -> None:
    request = unshield_request()
    signature = sign(request)
    assert verify(signature, request) is None
    tampered = signature.model_copy(update={field: value})
    assert verify(tampered, request, actor=tampered.actor) == messages.ACTION_BAD_SIGNATURE


def test_the_arguments_are_covered() -> None:
    request = unshield_request()
    signature = sign(request)
    assert verify(signature, request.model_copy(update={"reason": "Another reason"})) == messages.ACTION_BAD_SIGNATURE
    other_actor = request.model_copy(update={"actor": "mallory"})
    assert verify(signature, other_actor, actor=signature.actor) == messages.ACTION_BAD_SIGNATURE
    # The signature itself is not part of the digest, so the signed argument carries it and still verifies.
    carried = request.model_copy(update={"signature": signature})
    assert verify(carried.signature, carried) is None


def test_another_workflow_id_namespace_or_action_is_refused() -> None:
    request = unshield_request()
    signature = sign(request)
    assert verify(signature, request, workflow_id=WORKFLOW_ID) is None
    assert verify(signature, request, workflow_id=OTHER_WORKFLOW_ID) == messages.ACTION_BAD_SIGNATURE
    assert verify(signature, request, namespace="production") == messages.ACTION_BAD_SIGNATURE
    assert verify(signature, request, action=SignedAction.RECEIVE_FORM) == messages.ACTION_BAD_SIGNATURE
    assert verify(signature, request, action=SignedAction.DECIDE_REVIEW) == messages.ACTION_BAD_SIGNATURE


def test_a_signature_for_one_person_is_refused_for_another() -> None:
    request = unshield_request(actor="reviewer-b")
    # Correctly signed, but for someone the action does not name.
    signature = sign(request, actor="reviewer-c")
    assert verify(signature, request, actor="reviewer-c") is None
    assert verify(signature, request) == messages.ACTION_WRONG_ACTOR


def test_a_key_the_verifier_does_not_hold_is_refused() -> None:
    request = unshield_request()
    stranger = ActionKeys.from_spec(generate_action_key_spec("stranger"))
    assert verify(sign(request, keys=stranger), request) == messages.ACTION_UNKNOWN_KEY
    # The same key id with other key material: the MAC does not match.
    impostor = ActionKeys.from_spec(generate_action_key_spec("current"))
    assert verify(sign(request, keys=impostor), request) == messages.ACTION_BAD_SIGNATURE
    # Claiming another held key id does not help either.
    both = ActionKeys.from_spec(f"{generate_action_key_spec('a')},{generate_action_key_spec('b')}")
    signature = sign(request, keys=both)
    assert verify(signature, request, keys=both) is None
    assert verify(signature.model_copy(update={"key_id": "b"}), request, keys=both) == messages.ACTION_BAD_SIGNATURE


def test_a_rotated_key_still_verifies_and_the_new_one_signs() -> None:
    old_spec, new_spec = generate_action_key_spec("2026-old"), generate_action_key_spec("2027-new")
    before = ActionKeys.from_spec(old_spec)
    after = ActionKeys.from_spec(f"{new_spec},{old_spec}")
    request = unshield_request()
    from_before = sign(request, keys=before)
    assert verify(from_before, request, keys=after) is None
    from_after = sign(request, keys=after)
    assert from_after.key_id == "2027-new"
    assert verify(from_after, request, keys=after) is None
    assert verify(from_after, request, keys=before) == messages.ACTION_UNKNOWN_KEY


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [
        (-MAX_SKEW, True),
        (-MAX_SKEW - MICROSECOND, False),
        (MAX_SKEW, True),
        (MAX_SKEW + MICROSECOND, False),
        (timedelta(0), True),
        (-timedelta(days=30), False),
    ],
)
def test_five_minutes_either_side_of_the_workflow_clock(offset: timedelta, accepted: bool) -> None:
    request = unshield_request()
    signature = sign(request, issued_at=NOW + offset)
    refusal = verify(signature, request, now=NOW)
    assert refusal is None if accepted else refusal == messages.action_stale(5)


def test_a_signature_in_another_time_zone_is_the_same_instant() -> None:
    request = unshield_request()
    london_summer = datetime(2026, 7, 1, 13, 0, tzinfo=ZoneInfo("Europe/London"))
    signature = sign(request, issued_at=london_summer)
    assert verify(signature, request, now=datetime(2026, 7, 1, 12, 0, tzinfo=UTC)) is None


def test_a_spent_nonce_is_refused() -> None:
    request = unshield_request()
    signature = sign(request)
    assert verify(signature, request, seen_nonces=["someone-elses-nonce"]) is None
    assert verify(signature, request, seen_nonces=[signature.nonce]) == messages.ACTION_REPLAYED
    assert sign(request).nonce != signature.nonce


def test_the_lifecycle_remembers_a_bounded_number_of_nonces() -> None:
    state = LifecycleState(request_id=WORKFLOW_ID)
    assert state.accepted_nonces == []
    for i in range(NONCES_KEPT + 5):
        state.remember_nonce(f"nonce-{i:020d}")
    assert len(state.accepted_nonces) == NONCES_KEPT
    assert state.accepted_nonces[-1] == f"nonce-{NONCES_KEPT + 4:020d}"
    assert "nonce-00000000000000000000" not in state.accepted_nonces
    # Carried over by continue-as-new, and absent (empty) in states recorded before it existed.
    carried = ShieldingLifecycleInput.model_validate_json(ShieldingLifecycleInput(state=state).model_dump_json())
    assert carried.state is not None and carried.state.accepted_nonces == state.accepted_nonces
    old = ShieldingLifecycleInput.model_validate({"state": {"request_id": WORKFLOW_ID}})
    assert old.state is not None and old.state.accepted_nonces == []


def test_models_recorded_before_signatures_still_decode() -> None:
    assert FormSubmission.model_validate({"document_ids": ["0f8fad5b-d9cb-469f-a165-70867728950e"]}).signature is None
    assert UnshieldRequest.model_validate({"reason": "r"}).signature is None
    assert ReviewDecision.model_validate({"decision": "approve"}).signature is None


@pytest.mark.parametrize("field", ["key_id", "nonce", "mac"])
def test_a_signature_field_out_of_bounds_is_refused_where_it_is_decoded(field: str) -> None:
    from pydantic import ValidationError

    request = unshield_request()
    good = sign(request).model_dump()
    with pytest.raises(ValidationError):
        ActionSignature.model_validate({**good, field: "x" * 5000})
    with pytest.raises(ValidationError):
        ActionSignature.model_validate({**good, "issued_at": "2026-11-24T12:00:00"})  # no offset


async def test_every_signed_model_survives_the_data_converter(settings: Settings) -> None:
    converter = data_converter(settings)
    called_at = datetime(2026, 7, 1, 9, 30, tzinfo=ZoneInfo("Europe/London"))
    arguments: list[tuple[Any, SignedAction]] = [
        (intake(["C-0001"], called_at, request_id=WORKFLOW_ID), SignedAction.INTAKE),
        (FormSubmission(document_ids=["0f8fad5b-d9cb-469f-a165-70867728950e"], actor="o"), SignedAction.RECEIVE_FORM),
        (
            ReviewDecision(decision=ReviewDecisionKind.UNSHIELD, reason="  padded  ", actor="r"),
            SignedAction.DECIDE_REVIEW,
        ),
        (unshield_request(reason="Ünïcode — reason ✓"), SignedAction.UNSHIELD),
    ]
    for argument, action in arguments:
        sent = signed(argument, KEYS, namespace=NAMESPACE, workflow_id=WORKFLOW_ID, action=action, issued_at=NOW)
        (received,) = await converter.decode(await converter.encode([sent]), [type(argument)])
        assert received == sent
        refusal = verify(received.signature, received, action=action, actor=received.actor)
        assert refusal is None, (type(argument).__name__, refusal)


# ----------------------------------------------------------------------------------------------- keys


def test_key_specs_parse_like_the_encryption_keys() -> None:
    first, second = generate_action_key_spec("k-1"), generate_action_key_spec("k.0_old")
    keys = ActionKeys.from_spec(f" {first} , {second} ,")
    assert keys.signing_key_id == "k-1" and keys.key_ids == ["k-1", "k.0_old"]
    assert [key_id for key_id, _ in parse_action_keys(first)] == ["k-1"]


@pytest.mark.parametrize(
    "spec",
    [
        "",
        " , ",
        "no-colon",
        ":" + base64.b64encode(os.urandom(32)).decode(),
        "short:" + base64.b64encode(os.urandom(16)).decode(),
        "bad-base64:%%%%",
        "spaced id:" + base64.b64encode(os.urandom(32)).decode(),
        "-leading:" + base64.b64encode(os.urandom(32)).decode(),
        "x" * 65 + ":" + base64.b64encode(os.urandom(32)).decode(),
    ],
)
def test_a_bad_key_spec_is_refused_without_echoing_key_material(spec: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        ActionKeys.from_spec(spec)
    _, _, material = spec.partition(":")
    assert not material or material not in str(refused.value)


def test_the_same_key_id_twice_is_refused() -> None:
    spec = generate_action_key_spec("twice")
    with pytest.raises(ConfigurationError, match="same key id twice"):
        ActionKeys.from_spec(f"{spec},{generate_action_key_spec('twice')}")


def test_key_material_never_shows_in_a_repr() -> None:
    spec = generate_action_key_spec("shown")
    keys = ActionKeys.from_spec(spec)
    assert spec.partition(":")[2] not in repr(keys) and "shown" in repr(keys)


def test_the_development_key_file_is_private_from_creation(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    old_umask = os.umask(0)  # even with a permissive umask
    try:
        path = ensure_dev_action_keys(data_dir)
    finally:
        os.umask(old_umask)
    assert path == data_dir / "action.keys"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    spec = path.read_text().strip()
    assert ActionKeys.from_spec(spec).signing_key_id.startswith("dev-")
    # Made once: the worker and the web service, started together, get the same key.
    assert ensure_dev_action_keys(data_dir) == path and path.read_text().strip() == spec
    settings = Settings(data_dir=data_dir)
    assert action_keys_from_settings(settings) == spec


def test_concurrent_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "fresh")
    with ThreadPoolExecutor(max_workers=8) as pool:
        specs = list(pool.map(lambda _: action_keys_from_settings(settings), range(16)))
    assert len(set(specs)) == 1


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = ensure_dev_action_keys(tmp_path)
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        action_keys_from_settings(Settings(data_dir=tmp_path))


def test_settings_win_and_production_refuses_to_start_without_keys(tmp_path: Path) -> None:
    spec = generate_action_key_spec("from-env")
    assert action_keys_from_settings(Settings(data_dir=tmp_path, action_keys=spec)) == spec
    assert not (tmp_path / "action.keys").exists()
    production = Settings(data_dir=tmp_path, environment="production")
    with pytest.raises(ConfigurationError, match="SHIELDING_ACTION_KEYS is required in production"):
        action_keys_from_settings(production)
    assert not (tmp_path / "action.keys").exists()
    assert action_keys_from_settings(production.model_copy(update={"action_keys": spec})) == spec


def test_a_worker_refuses_to_start_in_production_without_keys(tmp_path: Path) -> None:
    from worker.main import build_worker

    production = Settings(data_dir=tmp_path, environment="production", task_queue="q")
    with pytest.raises(ConfigurationError, match="SHIELDING_ACTION_KEYS"):
        build_worker(None, None, production)  # type: ignore[arg-type]


def test_the_service_needs_valid_keys() -> None:
    with pytest.raises(ConfigurationError):
        ShieldingService(None, None, task_queue="q", max_document_bytes=1, action_keys="")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- canaries


def test_no_refusal_carries_key_material_or_payload_text() -> None:
    canary_reason = "canary-reason-" + secrets.token_hex(6)
    canary_actor = "canary-actor-" + secrets.token_hex(6)
    canary_key_id = "canary-key-" + secrets.token_hex(6)
    spec = generate_action_key_spec(canary_key_id)
    keys = ActionKeys.from_spec(spec)
    request = unshield_request(reason=canary_reason, actor=canary_actor)
    signature = sign(request, keys=keys)
    refusals = [
        verify(None, request, keys=keys),
        verify(signature, request, keys=KEYS),
        verify(signature, request, keys=keys, workflow_id=OTHER_WORKFLOW_ID),
        verify(signature.model_copy(update={"mac": "f" * 64}), request, keys=keys),
        verify(sign(request, keys=keys, actor="someone-else"), request, keys=keys),
        verify(signature, request, keys=keys, now=NOW + timedelta(hours=1)),
        verify(signature, request, keys=keys, seen_nonces=[signature.nonce]),
        messages.intake_unauthenticated(messages.ACTION_UNSIGNED),
    ]
    assert all(refusals)
    forbidden = [canary_reason, canary_actor, canary_key_id, spec.partition(":")[2], signature.mac, signature.nonce]
    for refusal in refusals:
        assert refusal is not None
        for value in forbidden:
            assert value not in refusal, (value, refusal)


# ----------------------------------------------------------------------------------- the dev server

devserver = pytest.mark.devserver


@pytest.fixture
async def service(dev_env: Any, pool: asyncpg.Pool, settings: Settings, task_queue: str) -> Any:
    async with running_worker(dev_env.client, pool, settings, task_queue):
        yield ShieldingService(
            dev_env.client, pool, task_queue=task_queue, max_document_bytes=1024, action_keys=TEST_ACTION_KEYS
        )


def handle_for(client: Client, request_id: str) -> WorkflowHandle[Any, Any]:
    return client.get_workflow_handle_for(ShieldingRequestWorkflow.run, request_id)


async def shield_owner(pool: asyncpg.Pool, uid: str) -> str | None:
    return await pool.fetchval("SELECT shield_request_id FROM children WHERE uid = $1", uid)  # type: ignore[no-any-return]


async def event_types(handle: WorkflowHandle[Any, Any]) -> list[int]:
    return [event.event_type for event in (await handle.fetch_history()).events]


async def refused_update(call: Callable[[], Any]) -> ApplicationError:
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await call()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError), cause
    return cause


async def signals_handled(handle: WorkflowHandle[Any, Any], count: int) -> list[Any]:
    """The history once `count` signals have arrived and a workflow task has completed after the last one."""

    def handled(events: list[Any]) -> bool:
        signals = [e.event_id for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]
        done = [e.event_id for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]
        return len(signals) >= count and bool(done) and done[-1] > signals[-1]

    history = await eventually(lambda: handle.fetch_history(), lambda h: handled(list(h.events)))
    return list(history.events)


def after(events: list[Any], event_type: int) -> list[Any]:
    """Events after the first signal."""
    first = next(i for i, e in enumerate(events) if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
    return [e for e in events[first:] if e.event_type == event_type]


@devserver
async def test_an_unsigned_unshield_sent_to_temporal_is_refused_and_leaves_nothing(
    service: ShieldingService, dev_env: Any, pool: asyncpg.Pool, children: list[Any]
) -> None:
    uid = children[0].uid
    ack = await service.submit_request(draft([uid]), actor="officer-a")
    handle = handle_for(dev_env.client, ack.request_id)
    before = await event_types(handle)
    canary = "canary-" + secrets.token_hex(8)
    forged = UnshieldRequest(reason=f"{canary} the abuser asked", actor="head-of-service")
    refusal = await refused_update(lambda: handle.execute_update(ShieldingRequestWorkflow.unshield, forged))
    assert refusal.type == "Unauthenticated" and refusal.non_retryable
    assert refusal.message == messages.ACTION_UNSIGNED
    # A made-up signature claiming the service's key fares no better.
    made_up = ActionSignature(
        key_id="test-action-key-1", actor="head-of-service", issued_at=datetime.now(UTC), nonce="n" * 24, mac="a" * 64
    )
    refusal = await refused_update(
        lambda: handle.execute_update(
            ShieldingRequestWorkflow.unshield, forged.model_copy(update={"signature": made_up})
        )
    )
    assert refusal.type == "Unauthenticated" and refusal.message == messages.ACTION_BAD_SIGNATURE
    # Nor a forged form or review decision.
    form = FormSubmission(document_ids=["0f8fad5b-d9cb-469f-a165-70867728950e"], actor="head-of-service")
    refusal = await refused_update(lambda: handle.execute_update(ShieldingRequestWorkflow.receive_form, form))
    assert refusal.type == "Unauthenticated"
    decision = ReviewDecision(decision=ReviewDecisionKind.UNSHIELD, reason=canary, actor="head-of-service")
    refusal = await refused_update(lambda: handle.execute_update(ShieldingRequestWorkflow.decide_review, decision))
    assert refusal.type == "Unauthenticated"
    for text in (refusal.message, messages.ACTION_BAD_SIGNATURE):
        assert canary not in text and "head-of-service" not in text and TEST_ACTION_KEYS.partition(":")[2] not in text

    # The child is still shielded; the lifecycle neither recorded nor did anything.
    assert await shield_owner(pool, uid) == ack.request_id
    assert (await status(handle)).stage == Stage.AWAITING_FORM
    assert await event_types(handle) == before
    accepted = [t for t in before if t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED]
    assert len(accepted) == 1  # the intake's own acknowledgement, nothing since
    assert "unshielded" not in [r["action"] for r in await store.audit_entries(pool, request_id=ack.request_id)]


@devserver
async def test_a_valid_signature_replayed_onto_another_request_or_again_is_refused(
    service: ShieldingService, dev_env: Any, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    first_child, second_child = make_child(), make_child()
    await store.import_children(pool, [first_child, second_child], actor="test-import")
    first = await service.submit_request(draft([first_child.uid]), actor="officer-a")
    second = await service.submit_request(draft([second_child.uid]), actor="officer-a")
    form = tmp_path / "form.pdf"
    form.write_bytes(b"%PDF-1.7 the completed form")
    assert (await service.submit_form(first.request_id, [form], actor="officer-a")).accepted
    await service.unshield(first.request_id, reason="Risk has passed", actor="reviewer-b")

    # What the service sent the first request, captured from its history (as anyone reading Temporal could).
    captured = await captured_updates(dev_env.client, first.request_id)
    signed_form = captured["receive_form"]
    signed_unshield = captured["unshield"]
    assert isinstance(signed_form, FormSubmission) and signed_form.signature is not None
    assert isinstance(signed_unshield, UnshieldRequest) and signed_unshield.signature is not None

    other = handle_for(dev_env.client, second.request_id)
    refusal = await refused_update(lambda: other.execute_update(ShieldingRequestWorkflow.unshield, signed_unshield))
    assert refusal.type == "Unauthenticated" and refusal.message == messages.ACTION_BAD_SIGNATURE
    refusal = await refused_update(lambda: other.execute_update(ShieldingRequestWorkflow.receive_form, signed_form))
    assert refusal.message == messages.ACTION_BAD_SIGNATURE
    assert await shield_owner(pool, second_child.uid) == second.request_id
    assert (await status(other)).stage == Stage.AWAITING_FORM

    # Onto the same request, a form sent once already is refused as a replay before anything else is asked.
    third_child = make_child()
    await store.import_children(pool, [third_child], actor="test-import")
    third = await service.submit_request(draft([third_child.uid]), actor="officer-a")
    handle = handle_for(dev_env.client, third.request_id)
    ids = await store.stage_documents(pool, third.request_id, [("form.pdf", b"%PDF-1.7 form")])
    once = await signed_for(dev_env.client, third.request_id, FormSubmission(document_ids=ids, actor="officer-a"))
    assert (await handle.execute_update(ShieldingRequestWorkflow.receive_form, once)).accepted
    refusal = await refused_update(lambda: handle.execute_update(ShieldingRequestWorkflow.receive_form, once))
    assert refusal.type == "Unauthenticated" and refusal.message == messages.ACTION_REPLAYED
    # A second decision signed once and sent twice: the validator of the second copy refuses it.
    decision = await signed_for(
        dev_env.client,
        third.request_id,
        UnshieldRequest(reason="Family moved abroad", actor="reviewer-b"),
    )
    results = await asyncio.gather(
        handle.execute_update(ShieldingRequestWorkflow.unshield, decision),
        handle.execute_update(ShieldingRequestWorkflow.unshield, decision),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1, results
    audit = [r["action"] for r in await store.audit_entries(pool, request_id=third.request_id)]
    assert audit.count("unshielded") == 1


async def captured_updates(client: Client, request_id: str) -> dict[str, Any]:
    """The arguments of the updates the history accepted, decoded with the keys (by update name)."""
    types = {"receive_form": FormSubmission, "unshield": UnshieldRequest, "decide_review": ReviewDecision}
    found: dict[str, Any] = {}
    for event in (await handle_for(client, request_id).fetch_history()).events:
        if event.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            continue
        request = event.workflow_execution_update_accepted_event_attributes.accepted_request
        name = request.input.name
        if name in types:
            (found[name],) = await client.data_converter.decode(list(request.input.args.payloads), [types[name]])
    return found


@devserver
async def test_forged_signals_change_nothing(
    service: ShieldingService,
    dev_env: Any,
    pool: asyncpg.Pool,
    children: list[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    uid = children[0].uid
    ack = await service.submit_request(draft([uid]), actor="officer-a")
    handle = handle_for(dev_env.client, ack.request_id)
    canary = "canary-" + secrets.token_hex(8)
    ids = await store.stage_documents(pool, ack.request_id, [("forged.pdf", b"%PDF forged")])
    forged_unshield = UnshieldRequest(reason=f"{canary} unshield", actor="head-of-service")
    forged_form = FormSubmission(document_ids=ids, actor=f"{canary}-actor")
    # Signed properly, but for another request: as good as forged here.
    borrowed = await signed_for(dev_env.client, "SR-AAAAAAAAAAAA", UnshieldRequest(reason="x", actor="reviewer-b"))
    await handle.signal(ShieldingRequestWorkflow.unshield_requested, forged_unshield)
    await handle.signal(ShieldingRequestWorkflow.form_received, forged_form)
    await handle.signal(ShieldingRequestWorkflow.unshield_requested, borrowed)
    events = await signals_handled(handle, 3)

    assert after(events, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) == []
    st = await status(handle)
    assert st.stage == Stage.AWAITING_FORM and st.form_received_at is None
    assert await shield_owner(pool, uid) == ack.request_id
    audit = [r["action"] for r in await store.audit_entries(pool, request_id=ack.request_id)]
    assert "unshielded" not in audit and "form-received" not in audit
    # Each was logged with the request id and nothing of what it carried.
    ignored = [r for r in caplog.records if "failed authentication" in r.getMessage()]
    assert len(ignored) == 3
    for record in ignored:
        assert ack.request_id in record.getMessage() and getattr(record, "request_id", None) == ack.request_id
        assert canary not in record.getMessage() and "head-of-service" not in record.getMessage()

    # The service's own form is still taken afterwards.
    form = FormSubmission(document_ids=ids, actor="officer-a")
    outcome = await handle.execute_update(
        ShieldingRequestWorkflow.receive_form, await signed_for(dev_env.client, ack.request_id, form)
    )
    assert outcome.accepted


@devserver
async def test_a_forged_intake_start_shields_nothing_and_is_audited_as_refused(
    service: ShieldingService, dev_env: Any, pool: asyncpg.Pool, task_queue: str, children: list[Any]
) -> None:
    uid = children[0].uid
    now = datetime.now(UTC)

    # Unsigned, claiming a senior officer took the call.
    forged = intake([uid], now, actor="head-of-service")
    handle, ack = await start(dev_env.client, task_queue, forged, keys=None)
    assert ack.stage == Stage.REFUSED and not any(c.shielded for c in ack.children)
    assert ack.message == messages.intake_unauthenticated(messages.ACTION_UNSIGNED)
    assert (await handle.result()).stage == Stage.REFUSED
    assert await shield_owner(pool, uid) is None
    entries = await store.audit_entries(pool, request_id=forged.request_id)
    assert [(e["action"], e["actor"]) for e in entries] == [("refused", UNAUTHENTICATED_ACTOR)]
    assert entries[0]["details"]["claimed_actor"] == "head-of-service"
    assert entries[0]["reason"] == ack.message
    assert not await store.request_exists(pool, forged.request_id)
    assert forged.reason not in ack.message and "head-of-service" not in ack.message

    # Signed for one request, started as another; and signed for one officer, claimed for another.
    genuine = intake([uid], now, actor="officer-a")
    signed_genuine = await signed_for(dev_env.client, genuine.request_id, genuine, at=now)
    moved = signed_genuine.model_copy(update={"request_id": intake([uid], now).request_id})
    _, ack = await start(dev_env.client, task_queue, moved, keys=None)
    assert ack.stage == Stage.REFUSED and ack.message == messages.intake_unauthenticated(messages.ACTION_BAD_SIGNATURE)
    claimed = signed_genuine.model_copy(update={"actor": "head-of-service"})
    _, ack = await start(dev_env.client, task_queue, claimed, keys=None)
    assert ack.stage == Stage.REFUSED and ack.message == messages.intake_unauthenticated(messages.ACTION_BAD_SIGNATURE)
    # Stale: signed long before it reached the worker.
    old = intake([uid], now)
    late = await signed_for(dev_env.client, old.request_id, old, at=now - timedelta(minutes=6))
    _, ack = await start(dev_env.client, task_queue, late, keys=None)
    assert ack.stage == Stage.REFUSED and ack.message == messages.intake_unauthenticated(messages.action_stale(5))
    assert await shield_owner(pool, uid) is None


@devserver
async def test_the_services_own_signed_actions_work_end_to_end(
    service: ShieldingService, dev_env: Any, pool: asyncpg.Pool, children: list[Any], tmp_path: Path
) -> None:
    uids = [c.uid for c in children]
    ack = await service.submit_request(draft(uids), actor="officer-a")
    assert ack.stage == Stage.AWAITING_FORM
    handle = handle_for(dev_env.client, ack.request_id)
    started = (await handle.fetch_history()).events[0].workflow_execution_started_event_attributes
    (params,) = await dev_env.client.data_converter.decode(list(started.input.payloads), [ShieldingLifecycleInput])
    assert isinstance(params.request, ShieldingRequestInput) and params.request.signature is not None
    assert params.request.signature.actor == "officer-a"
    form = tmp_path / "form.pdf"
    form.write_bytes(b"%PDF-1.7 the completed form")
    assert (await service.submit_form(ack.request_id, [form], actor="officer-a")).accepted
    # Past authentication, the lifecycle's own rules answer.
    with pytest.raises(Refusal, match="No review is due"):
        await service.decide_review(ack.request_id, approve=True, reason=None, actor="reviewer-b")
    outcome = await service.unshield(ack.request_id, reason="Family rehoused out of area", actor="reviewer-b")
    assert outcome.stage == Stage.UNSHIELDED
    assert [await shield_owner(pool, uid) for uid in uids] == [None, None]
    audit = await store.audit_entries(pool, request_id=ack.request_id)
    assert ("received", "officer-a") in [(e["action"], e["actor"]) for e in audit]
    assert ("unshielded", "reviewer-b") in [(e["action"], e["actor"]) for e in audit]
    st = await service.status(ack.request_id)
    assert st.stage == Stage.UNSHIELDED
