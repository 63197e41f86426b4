"""Privacy: no child data reaches Temporal, logs or notifications in clear; the database and the access layer
hide shielded details from every route but the audited break-glass; the audit log is append-only and
tamper-evident; the Web UI's codec endpoint decodes only for holders of its token.

Canary values (distinctive strings, unique per test) stand for the child's details, the reason and the
requestor; each leak test first shows the canaries really did pass through the path it inspects (a positive
control), so a check that finds nothing is not vacuous.

The tamper-evidence test runs last and restores the row it changes, because the audit log is shared by every
test in the session.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import secrets
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import structlog
from google.protobuf import json_format
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError

import activities.shielding as activities_module
import shielding.log as shielding_log
from shielding import access, deadlines, store
from shielding.codec import (
    ENCODING,
    KEY_ID_METADATA,
    EncryptionCodec,
    codec_from_settings,
    generate_key_spec,
    parse_keys,
)
from shielding.domain import (
    REQUEST_ID_PATTERN,
    Address,
    AuditAction,
    Carer,
    ChildRecord,
    FormSubmission,
    Gender,
    Requestor,
    RequestorType,
    ReviewDecision,
    ReviewDecisionKind,
    Stage,
    UnshieldRequest,
)
from shielding.settings import ConfigurationError, Settings
from shielding.steps import LiftShield, ShieldChildren
from shielding.store import verify_chain
from shielding.temporal import SEARCH_ATTRIBUTES, data_converter
from tests.helpers.lifecycle import advance_to, env_now, intake, send_signed, signed, start, status_where
from tests.helpers.people import grant
from tests.helpers.records import make_child
from tests.helpers.servers import running_worker
from workflows.shielding_request import ShieldingRequestWorkflow

MINUTE = timedelta(minutes=1)
PRACTITIONER_KEYS = {"uid", "given_name", "family_name", "aliases", "gender", "date_of_birth", "shielded"}
HIDDEN_KEYS = {"address", "carers", "school", "gp_practice", "practitioners"}
TEMPORAL_FAILURE_PLACEHOLDER = "Encoded failure"
# Ours, plus the one the SDK keeps for workflow.patched (patch ids only).
ALLOWED_SEARCH_ATTRIBUTES = {*SEARCH_ATTRIBUTES, "TemporalChangeVersion"}
LOCAL_ACTIVITY_MARKER_KEYS = {
    "seq",
    "attempt",
    "activity_id",
    "activity_type",
    "complete_time",
    "backoff",
    "original_schedule_time",
    "activation_index",
}


# ------------------------------------------------------------------------------------------------ canaries


def _letters(n: int) -> str:
    return "".join(secrets.choice("bcdfghjkmnpqrstvwxz") for _ in range(n))


def _digits(n: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(n))


@dataclass(frozen=True)
class Canaries:
    """Distinctive values for one child and one request; every one of them is private."""

    tag: str
    given_name: str
    family_name: str
    alias: str
    date_of_birth: date
    address_line_1: str
    address_line_2: str
    postcode: str
    carer_name: str
    carer_phone: str
    school: str
    gp_practice: str
    reason: str
    requestor_name: str
    requestor_phone: str
    requestor_email: str
    approval_reason: str
    unshield_reason: str
    document_name: str
    document_text: str

    @classmethod
    def new(cls) -> Canaries:
        tag = _letters(8)
        title = tag.capitalize()
        return cls(
            tag=tag,
            given_name=f"Zephyrine{title}",
            family_name=f"Quillfeather{title}",
            alias=f"Wrenna{title}",
            date_of_birth=date(2011, 11, 23),
            address_line_1=f"{_digits(3)} Marrowbone Canary Walk {title}",
            address_line_2=f"Little Snodbury {title}",
            postcode=f"ZQ{_digits(2)} {_digits(1)}{tag[:2].upper()}",
            carer_name=f"Perpetua Carercanary {title}",
            carer_phone=f"07{_digits(3)} {_digits(6)}",
            school=f"Saint Canary of {title} Academy",
            gp_practice=f"Canarywharf {title} Medical Practice",
            reason=f"CANARY-REASON {title}: father traced the family to the refuge at Thornbury {title}",
            requestor_name=f"Requestorcanary {title}",
            requestor_phone=f"01{_digits(3)} {_digits(6)}",
            requestor_email=f"canary.{tag}@requestor-canary.example.org",
            approval_reason=f"CANARY-APPROVAL {title}: risk continues",
            unshield_reason=f"CANARY-UNSHIELD {title}: family emigrated",
            document_name=f"CANARY-form-{tag}.pdf",
            document_text=f"CANARY-DOCUMENT {title} signed statement",
        )

    def child(self, uid: str | None = None) -> ChildRecord:
        return ChildRecord(
            uid=uid or f"C-{uuid.uuid4().hex[:12]}",
            given_name=self.given_name,
            family_name=self.family_name,
            aliases=[self.alias],
            gender=Gender.FEMALE,
            date_of_birth=self.date_of_birth,
            address=Address(lines=[self.address_line_1, self.address_line_2], postcode=self.postcode),
            carers=[Carer(name=self.carer_name, relationship="mother", phone=self.carer_phone)],
            school=self.school,
            gp_practice=self.gp_practice,
            practitioners=[f"Health visitor: {self.carer_name} HV"],
        )

    def requestor(self) -> Requestor:
        return Requestor(
            type=RequestorType.PROFESSIONAL,
            name=self.requestor_name,
            organisation="Westminster Children's Services",
            phone=self.requestor_phone,
            email=self.requestor_email,
        )

    def child_values(self) -> dict[str, str]:
        """The child's details, with the obvious encodings of the date of birth."""
        dob = self.date_of_birth
        return {
            "given_name": self.given_name,
            "family_name": self.family_name,
            "alias": self.alias,
            "date_of_birth": dob.isoformat(),
            "date_of_birth_uk": dob.strftime("%d/%m/%Y"),
            "date_of_birth_compact": dob.strftime("%Y%m%d"),
            "address_line_1": self.address_line_1,
            "address_line_2": self.address_line_2,
            "postcode": self.postcode,
            "postcode_compact": self.postcode.replace(" ", ""),
            "carer_name": self.carer_name,
            "carer_phone": self.carer_phone,
            "school": self.school,
            "gp_practice": self.gp_practice,
        }

    def request_values(self) -> dict[str, str]:
        return {
            "reason": self.reason,
            "requestor_name": self.requestor_name,
            "requestor_phone": self.requestor_phone,
            "requestor_email": self.requestor_email,
            "approval_reason": self.approval_reason,
            "unshield_reason": self.unshield_reason,
            "document_name": self.document_name,
            "document_text": self.document_text,
        }

    def all_values(self) -> dict[str, str]:
        values = {**self.child_values(), **self.request_values()}
        # Distinctive fragments too, so a value cut up or reformatted is still caught.
        values["tag"] = self.tag.capitalize()
        return values


def leaks(haystack: str | bytes, values: dict[str, str]) -> list[str]:
    """Which canaries appear in `haystack` (case-insensitively for text)."""
    if isinstance(haystack, bytes):
        lowered = haystack.lower()
        return [name for name, value in values.items() if value.lower().encode() in lowered]
    lowered_text = haystack.lower()
    return [name for name, value in values.items() if value.lower() in lowered_text]


async def import_canary_child(pool: asyncpg.Pool, canaries: Canaries) -> ChildRecord:
    record = canaries.child()
    await store.import_children(pool, [record], actor="test-import")
    return record


async def shield_directly(
    pool: asyncpg.Pool, uids: list[str], *, actor: str = "officer-intake", **overrides: Any
) -> str:
    """Shield children through the store (what the workflow's first activity does), without a workflow."""
    request = intake(uids, datetime.now(UTC), actor=actor, **overrides)
    shield = ShieldChildren(request=request, form_due_at=deadlines.form_due_at(request.called_at))
    result = await store.shield_request(pool, shield, f"{request.request_id}:1:shield")
    assert result.stage == Stage.AWAITING_FORM
    return request.request_id


async def unshield_directly(pool: asyncpg.Pool, request_id: str) -> None:
    lift = LiftShield(
        request_id=request_id,
        action=AuditAction.UNSHIELDED,
        stage=Stage.UNSHIELDED,
        actor="reviewer-test",
        reason="test over",
    )
    await store.lift_shield(pool, lift, f"{request_id}:2:unshielded")


async def full_lifecycle(env: Any, pool: asyncpg.Pool, task_queue: str, uid: str, canaries: Canaries) -> str:
    """start -> written form -> 7-day review falls due -> approve -> unshield; returns the request id."""
    request = intake([uid], await env_now(env), reason=canaries.reason, requestor=canaries.requestor())
    handle, ack = await start(env.client, task_queue, request)
    assert ack.stage == Stage.AWAITING_FORM and ack.review_7_day_at is not None
    document_ids = await store.stage_documents(
        pool, ack.request_id, [(canaries.document_name, canaries.document_text.encode())]
    )
    await send_signed(
        env.client,
        handle,
        ShieldingRequestWorkflow.form_received,
        FormSubmission(document_ids=document_ids, actor="officer-2"),
    )
    await status_where(handle, lambda s: s.form_received_at is not None)
    await advance_to(env, ack.review_7_day_at, MINUTE)
    await status_where(handle, lambda s: s.stage == Stage.REVIEW_DUE)
    await send_signed(
        env.client,
        handle,
        ShieldingRequestWorkflow.review_decided,
        ReviewDecision(decision=ReviewDecisionKind.APPROVE, reason=canaries.approval_reason, actor="reviewer-1"),
    )
    await status_where(handle, lambda s: s.stage == Stage.SHIELDED and len(s.reviews) == 1)
    await send_signed(
        env.client,
        handle,
        ShieldingRequestWorkflow.unshield_requested,
        UnshieldRequest(reason=canaries.unshield_reason, actor="reviewer-1"),
    )
    result = await handle.result()
    assert result.stage == Stage.UNSHIELDED and result.closed_reason == canaries.unshield_reason
    return ack.request_id


def plain_client(client: Client) -> Client:
    """A client on the same connection with the default data converter: no codec, sees what the server holds."""
    return Client(client.service_client, namespace=client.namespace)


def walk(message: Message, path: str = "") -> Iterator[tuple[str, Message]]:
    """Every message nested in `message` (maps and repeated fields included), with its field path."""
    yield path, message
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        if isinstance(value, Message):
            yield from walk(value, f"{path}.{field.name}")
        elif hasattr(value, "items"):
            for key, item in value.items():
                if isinstance(item, Message):
                    yield from walk(item, f"{path}.{field.name}[{key}]")
        else:
            for index, item in enumerate(value):
                yield from walk(item, f"{path}.{field.name}[{index}]")


async def raw_history(client: Client, workflow_id: str) -> list[Any]:
    history = await plain_client(client).get_workflow_handle(workflow_id).fetch_history()
    return list(history.events)


def assert_history_holds_nothing_in_clear(events: list[Any], values: dict[str, str]) -> None:
    blob = b"".join(event.SerializeToString() for event in events)
    text = "\n".join(json_format.MessageToJson(event) for event in events)
    assert leaks(blob, values) == [], "canaries in the raw history bytes"
    assert leaks(text, values) == [], "canaries in the history as JSON"
    payloads = failures = 0
    for event in events:
        for path, message in walk(event):
            if isinstance(message, Payload):
                if ".search_attributes." in path:
                    # Search attributes are indexed by the server, so they cannot be encrypted: ids and dates only.
                    assert path.rsplit("indexed_fields[", 1)[1].rstrip("]") in ALLOWED_SEARCH_ATTRIBUTES, path
                    continue
                # The SDK's core writes two kinds of marker detail without the codec; both are bookkeeping only.
                if path.endswith(".marker_recorded_event_attributes.details[patch-data].payloads[0]"):
                    # workflow.patched: a patch id.
                    marker = json.loads(message.data)
                    assert set(marker) == {"id", "deprecated"} and re.fullmatch(r"[a-z0-9-]+", marker["id"]), marker
                    continue
                if path.endswith(".marker_recorded_event_attributes.details[data].payloads[0]"):
                    # A local activity's marker: sequence, attempt, type and times (its result is encrypted).
                    marker = json.loads(message.data)
                    assert set(marker) <= LOCAL_ACTIVITY_MARKER_KEYS, marker
                    continue
                payloads += 1
                assert message.metadata.get("encoding") == ENCODING, f"payload in clear at {path}"
                assert message.metadata.get(KEY_ID_METADATA), f"payload without a key id at {path}"
            elif isinstance(message, Failure):
                failures += 1
                assert message.message == TEMPORAL_FAILURE_PLACEHOLDER, f"failure text in clear at {path}"
                assert message.stack_trace == ""
                assert message.encoded_attributes.metadata.get("encoding") == ENCODING
    assert payloads > 0


# ---------------------------------------------------------------------------------------- a. the payload codec


def _payloads(*values: Any) -> list[Payload]:
    return pydantic_data_converter.payload_converter.to_payloads(list(values))


async def test_codec_round_trip_names_its_key_and_hides_the_plaintext() -> None:
    canaries = Canaries.new()
    codec = EncryptionCodec(parse_keys(generate_key_spec("key-2026")))
    originals = _payloads(canaries.child(), canaries.reason, {"email": canaries.requestor_email})
    encoded = await codec.encode(originals)
    assert len(encoded) == len(originals)
    for payload in encoded:
        assert payload.metadata["encoding"] == ENCODING
        assert payload.metadata[KEY_ID_METADATA] == b"key-2026"
        assert leaks(payload.SerializeToString(), canaries.all_values()) == []
    assert await codec.decode(encoded) == originals
    # A fresh nonce each time: the same value never encrypts to the same bytes.
    again = await codec.encode(originals[:1])
    assert again[0].data != encoded[0].data
    # Payloads that were never encrypted are refused, not passed through (tests/test_temporal_boundary.py).
    with pytest.raises(ValueError, match="not encrypted"):
        await codec.decode(originals)


async def test_codec_rotation_decodes_old_payloads_and_encrypts_under_the_new_key() -> None:
    old_spec, new_spec = generate_key_spec("old-key"), generate_key_spec("new-key")
    originals = _payloads("Child details under the old key", {"n": 1})
    under_old = await EncryptionCodec(parse_keys(old_spec)).encode(originals)
    rotated = EncryptionCodec(parse_keys(f"{new_spec},{old_spec}"))
    assert rotated.key_id == "new-key"
    assert await rotated.decode(under_old) == originals
    under_new = await rotated.encode(originals)
    assert {p.metadata[KEY_ID_METADATA] for p in under_new} == {b"new-key"}
    assert await rotated.decode(under_new) == originals
    # Once the old key is retired, its payloads can no longer be read.
    with pytest.raises(ValueError, match="unknown key id 'old-key'"):
        await EncryptionCodec(parse_keys(new_spec)).decode(under_old)


async def test_codec_refuses_a_wrong_key_and_tampered_payloads() -> None:
    spec = generate_key_spec("key-a")
    codec = EncryptionCodec(parse_keys(spec))
    (original,) = _payloads("a shielded child's address")
    (sealed,) = await codec.encode([original])

    impostor = EncryptionCodec(parse_keys(generate_key_spec("key-a")))  # same id, different key
    with pytest.raises(ValueError, match="failed authentication"):
        await impostor.decode([sealed])

    flipped = bytearray(sealed.data)
    flipped[-1] ^= 0x01  # the ciphertext (or tag) changed
    with pytest.raises(ValueError, match="failed authentication"):
        await codec.decode([Payload(metadata=dict(sealed.metadata), data=bytes(flipped))])
    nonce_changed = bytearray(sealed.data)
    nonce_changed[0] ^= 0x80
    with pytest.raises(ValueError, match="failed authentication"):
        await codec.decode([Payload(metadata=dict(sealed.metadata), data=bytes(nonce_changed))])
    # The key id is bound as associated data: relabelling a payload with another known key id fails too.
    two_keys = EncryptionCodec(parse_keys(f"{spec},{generate_key_spec('key-b')}"))
    relabelled = Payload(metadata={**dict(sealed.metadata), KEY_ID_METADATA: b"key-b"}, data=sealed.data)
    with pytest.raises(ValueError):
        await two_keys.decode([relabelled])
    assert await two_keys.decode([sealed]) == [original]


def test_production_refuses_to_run_without_encryption_keys(tmp_path: Any) -> None:
    production = Settings(environment="production", data_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="SHIELDING_ENCRYPTION_KEYS is required"):
        codec_from_settings(production)


async def test_failure_messages_are_moved_into_the_encrypted_attributes(settings: Settings) -> None:
    canaries = Canaries.new()
    converter = data_converter(settings)
    failure = Failure()
    error = ApplicationError(f"refused: {canaries.reason}", type="FormRefused")
    converter.failure_converter.to_failure(error, converter.payload_converter, failure)
    await converter.payload_codec.encode_failure(failure)  # type: ignore[union-attr]
    assert failure.message == TEMPORAL_FAILURE_PLACEHOLDER
    assert leaks(failure.SerializeToString(), canaries.all_values()) == []
    await converter.payload_codec.decode_failure(failure)  # type: ignore[union-attr]
    back = converter.failure_converter.from_failure(failure, converter.payload_converter)
    assert canaries.reason in str(back)


# ------------------------------------------------------------------------------ b. nothing in Temporal's history


async def test_workflow_history_holds_no_child_data(time_env, pool, settings, task_queue) -> None:
    canaries = Canaries.new()
    child = await import_canary_child(pool, canaries)
    async with running_worker(time_env.client, pool, settings, task_queue):
        request_id = await full_lifecycle(time_env, pool, task_queue, child.uid, canaries)

    assert REQUEST_ID_PATTERN.match(request_id)
    events = await raw_history(time_env.client, request_id)
    kinds = {event.event_type for event in events}
    assert {
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
        EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
        EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
        EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    } <= kinds
    values = canaries.all_values()
    assert_history_holds_nothing_in_clear(events, values)

    # Positive control: the reason, the requestor and the decisions did pass through Temporal, encrypted.
    codec = codec_from_settings(settings)
    assert codec is not None
    started = next(e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)
    (decoded_input,) = await codec.decode(list(started.workflow_execution_started_event_attributes.input.payloads))
    assert {"reason", "requestor_name", "requestor_email", "requestor_phone"} <= set(leaks(decoded_input.data, values))
    signals = [e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]
    decoded_signals = b""
    for event in signals:
        for payload in await codec.decode(list(event.workflow_execution_signaled_event_attributes.input.payloads)):
            decoded_signals += payload.data
    assert {"approval_reason", "unshield_reason"} <= set(leaks(decoded_signals, values))

    # Nor in the workflow's description: id, search attributes, memo.
    # (The raw service call: the SDK's describe() cannot parse the time-skipping server's datetime attributes.)
    raw = await time_env.client.workflow_service.describe_workflow_execution(
        DescribeWorkflowExecutionRequest(
            namespace=time_env.client.namespace, execution=WorkflowExecution(workflow_id=request_id)
        )
    )
    assert leaks(raw.SerializeToString(), values) == []
    assert leaks(json_format.MessageToJson(raw), values) == []
    assert set(raw.workflow_execution_info.search_attributes.indexed_fields) <= ALLOWED_SEARCH_ATTRIBUTES
    assert len(raw.workflow_execution_info.memo.fields) == 0
    assert raw.workflow_execution_info.execution.workflow_id == request_id


@pytest.mark.devserver
async def test_refused_form_update_failure_is_encoded_in_history(dev_env, pool, settings, task_queue) -> None:
    """Updates need the dev server, which cannot skip to a form deadline (a lapsed request's workflow has
    completed, so a late form never reaches it); a second form is refused by the same update handler and path.
    The refusal, and the updates' arguments, must reach the server only encrypted."""
    canaries = Canaries.new()
    child = await import_canary_child(pool, canaries)
    async with running_worker(dev_env.client, pool, settings, task_queue):
        request = intake([child.uid], datetime.now(UTC), reason=canaries.reason, requestor=canaries.requestor())
        handle, _ = await start(dev_env.client, task_queue, request)
        first = await store.stage_documents(
            pool, request.request_id, [(canaries.document_name, canaries.document_text.encode())]
        )
        client = dev_env.client
        accepted = await handle.execute_update(
            ShieldingRequestWorkflow.receive_form,
            await signed(client, handle.id, FormSubmission(document_ids=first, actor="officer-2")),
        )
        assert accepted.accepted
        second = await store.stage_documents(pool, request.request_id, [("again.pdf", b"%PDF again")])
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(
                ShieldingRequestWorkflow.receive_form,
                await signed(client, handle.id, FormSubmission(document_ids=second, actor="officer-2")),
            )
        await handle.execute_update(
            ShieldingRequestWorkflow.unshield,
            await signed(client, handle.id, UnshieldRequest(reason=canaries.unshield_reason, actor="reviewer-1")),
        )
        assert (await handle.result()).stage == Stage.UNSHIELDED
    # The client holding the keys reads the real refusal...
    cause = refused.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "FormRefused"
    refusal_text = cause.message
    assert "has already been received" in refusal_text
    # ...the server holds only the placeholder.
    events = await raw_history(dev_env.client, request.request_id)
    completed = [e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED]
    outcomes = [e.workflow_execution_update_completed_event_attributes.outcome for e in completed]
    assert [o.WhichOneof("value") for o in outcomes] == ["success", "failure", "success"]
    assert outcomes[1].failure.message == TEMPORAL_FAILURE_PLACEHOLDER
    values = {**canaries.all_values(), "refusal": refusal_text, "refusal_fragment": "has already been received"}
    assert_history_holds_nothing_in_clear(events, values)
    # Positive control: the refusal is inside the encrypted attributes.
    codec = codec_from_settings(settings)
    assert codec is not None
    (attributes,) = await codec.decode([outcomes[1].failure.encoded_attributes])
    assert "has already been received" in attributes.data.decode()


# ------------------------------------------------------------------------------------ c. logs and notifications


@pytest.fixture
def captured_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The service's own structlog configuration, writing to a buffer for this test only."""
    saved = structlog.get_config()
    buffer = io.StringIO()
    monkeypatch.setattr(shielding_log, "_configured", False)
    with monkeypatch.context() as during_configure:
        during_configure.setattr(sys, "stderr", buffer)
        shielding_log.configure_logging("DEBUG")
    # A fresh logger proxy, so an earlier test's cached logger cannot bypass this configuration.
    monkeypatch.setattr(activities_module, "log", shielding_log.get_logger(activities_module.__name__))
    try:
        yield buffer
    finally:
        structlog.configure(**saved)


async def test_logs_and_notifications_carry_no_child_data(
    time_env, pool, settings, task_queue, captured_logs, capfd, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    canaries, lapsing = Canaries.new(), Canaries.new()
    child = await import_canary_child(pool, canaries)
    lapsing_child = await import_canary_child(pool, lapsing)
    async with running_worker(time_env.client, pool, settings, task_queue):
        request_id = await full_lifecycle(time_env, pool, task_queue, child.uid, canaries)
        # A second request gets no form and lapses, so the requestor is written to.
        lapse_request = intake(
            [lapsing_child.uid], await env_now(time_env), reason=lapsing.reason, requestor=lapsing.requestor()
        )
        lapse_handle, lapse_ack = await start(time_env.client, task_queue, lapse_request)
        assert lapse_ack.form_due_at is not None
        await advance_to(time_env, lapse_ack.form_due_at, MINUTE)
        assert (await lapse_handle.result()).stage == Stage.LAPSED

    out, err = capfd.readouterr()
    structured = captured_logs.getvalue()
    # Positive control: the worker's log lines were captured, with their identifiers.
    assert request_id in structured and lapse_request.request_id in structured
    for event in ('"event": "intake"', '"event": "form accepted"', '"event": "step"', '"event": "unshielded"'):
        assert event in structured
    everything = "\n".join([structured, out, err, caplog.text])
    all_values = {
        **{f"first.{k}": v for k, v in canaries.all_values().items()},
        **{f"lapsed.{k}": v for k, v in lapsing.all_values().items()},
    }
    assert leaks(everything, all_values) == []

    notes = await store.notifications(pool, request_id) + await store.notifications(pool, lapse_request.request_id)
    assert any(n["recipient_kind"] == "reviewers" and n["request_id"] == request_id for n in notes)
    to_requestor = [n for n in notes if n["recipient_kind"] == "requestor"]
    # The lapse is told to its requestor (and, from workflow version 2, a received form to the first one's).
    lapse_notes = [n for n in to_requestor if n["request_id"] == lapse_request.request_id]
    assert len(lapse_notes) == 1 and "unsuccessful" in lapse_notes[0]["body"]
    assert {n["request_id"] for n in to_requestor} <= {request_id, lapse_request.request_id}
    # Each requestor's own contact is where the outbox sends their message, and it appears nowhere else.
    contact = {request_id: canaries.requestor_email, lapse_request.request_id: lapsing.requestor_email}
    for note in to_requestor:
        assert note["recipient"] == contact[note["request_id"]]
    for note in notes:
        assert leaks(f"{note['subject']}\n{note['body']}", all_values) == [], note
        if note["recipient_kind"] != "requestor":
            assert leaks(note["recipient"], all_values) == [], note
    for note in to_requestor:
        text = f"{note['subject']}\n{note['body']}".lower()
        for who in (canaries, lapsing):
            for address_part in (who.address_line_1, who.address_line_2, who.postcode):
                assert address_part.lower() not in text
                assert address_part.replace(" ", "").lower() not in text.replace(" ", "")


def test_log_processor_redacts_child_detail_keys_whatever_the_caller_passes() -> None:
    canaries = Canaries.new()
    event = {
        "event": "oops",
        "request_id": "SR-ABCDEFGHJKLM",
        "address": canaries.address_line_1,
        "postcode": canaries.postcode,
        "school": canaries.school,
        "reason": canaries.reason,
        "given_name": canaries.given_name,
        "phone": canaries.requestor_phone,
    }
    redacted = shielding_log.redact_child_details(None, "info", dict(event))
    assert leaks(str(redacted), canaries.all_values()) == []
    assert redacted["request_id"] == "SR-ABCDEFGHJKLM"


# ------------------------------------------------------------------------------------- d. search without inference


async def _count(pool: asyncpg.Pool, **criteria: Any) -> int:
    args = [criteria.get(k) for k in ("given_name", "family_name", "date_of_birth", "gender", "postcode", "school")]
    return await pool.fetchval("SELECT count(*) FROM search_children($1, $2, $3, $4, $5, $6, 500)", *args)


async def test_search_finds_a_shielded_child_only_through_the_fields_it_shows(pool) -> None:
    canaries = Canaries.new()
    # Every search names a name and a date of birth: the neighbour shares the child's family name and birthday.
    neighbour = make_child(
        postcode=canaries.postcode,
        school=canaries.school,
        family_name=canaries.family_name,
        date_of_birth=canaries.date_of_birth,
    )
    await store.import_children(pool, [neighbour], actor="test-import")
    named = {"family_name": canaries.family_name, "date_of_birth": canaries.date_of_birth}
    by_postcode = {**named, "postcode": canaries.postcode}
    by_school = {**named, "school": canaries.school}
    before = {
        "postcode": len(await store.search_children(pool, store.ChildSearch(**by_postcode))),
        "school": len(await store.search_children(pool, store.ChildSearch(**by_school))),
        "postcode_sql": await _count(pool, **by_postcode),
        "school_sql": await _count(pool, **by_school),
    }
    assert before["postcode"] == before["postcode_sql"] == 1  # the unshielded neighbour

    child = await import_canary_child(pool, canaries)
    request_id = await shield_directly(pool, [child.uid])

    found = await store.search_children(
        pool,
        store.ChildSearch(
            given_name=canaries.given_name, family_name=canaries.family_name, date_of_birth=canaries.date_of_birth
        ),
    )
    assert [r["uid"] for r in found] == [child.uid]
    assert set(found[0]) == PRACTITIONER_KEYS and found[0]["shielded"] is True
    assert (
        leaks(
            str(found[0]),
            {
                k: v
                for k, v in canaries.child_values().items()
                if k in {"address_line_1", "address_line_2", "postcode", "carer_name", "school", "gp_practice"}
            },
        )
        == []
    )
    by_alias = await store.search_children(
        pool, store.ChildSearch(given_name=canaries.alias, date_of_birth=canaries.date_of_birth)
    )
    assert [r["uid"] for r in by_alias] == [child.uid]

    # Neither the results nor their counts change because a shielded child lives there or goes there.
    after = {
        "postcode": await store.search_children(pool, store.ChildSearch(**by_postcode)),
        "school": await store.search_children(pool, store.ChildSearch(**by_school)),
        "postcode_lower_nospace": await store.search_children(
            pool, store.ChildSearch(**named, postcode=canaries.postcode.replace(" ", "").lower())
        ),
        "school_lower": await store.search_children(pool, store.ChildSearch(**named, school=canaries.school.lower())),
    }
    for name, results in after.items():
        assert child.uid not in {r["uid"] for r in results}, name
        assert [r["uid"] for r in results] == [neighbour.uid], name
    assert await _count(pool, **by_postcode) == before["postcode_sql"]
    assert await _count(pool, **by_school) == before["school_sql"]
    # Name and date of birth with the right postcode or school answer exactly as with a wrong one.
    identity = {
        "given_name": canaries.given_name,
        "family_name": canaries.family_name,
        "date_of_birth": canaries.date_of_birth,
    }
    assert await _count(pool, **identity, postcode=canaries.postcode) == await _count(
        pool, **identity, postcode="ZZ1 1ZZ"
    )
    assert await _count(pool, **identity, school=canaries.school) == await _count(pool, **identity, school="Nowhere")
    assert await _count(pool, **identity, postcode=canaries.postcode) == 0
    # Even the superuser's direct call to the SQL function returns the redacted row.
    row = await pool.fetchrow("SELECT * FROM search_children($1, $2, $3, NULL, NULL, NULL, 50)", *identity.values())
    assert row["shielded"] is True and all(row[k] is None for k in HIDDEN_KEYS)

    # Positive control: once unshielded, the same postcode and school searches do find the child.
    await unshield_directly(pool, request_id)
    assert await _count(pool, **by_postcode) == before["postcode_sql"] + 1
    assert child.uid in {r["uid"] for r in await store.search_children(pool, store.ChildSearch(**by_school))}


# ------------------------------------------------------------------------------------- e. the database enforces it


async def _practitioner(database_url: str) -> asyncpg.Connection:
    """A session with the practitioners' privileges. No one logs in as that role (the service assumes it for
    each practitioner read with SET LOCAL ROLE), so take it the same way, over the test's own connection."""
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="not permitted to log in"):
        await asyncpg.connect(database_url, user="shielding_practitioner")
    # A login that is only a member of the role, so what it could borrow is exactly what the role could.
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'practitioner_probe') THEN "
            "CREATE ROLE practitioner_probe LOGIN NOINHERIT IN ROLE shielding_practitioner; END IF; END $$"
        )
    finally:
        await admin.close()
    conn = await asyncpg.connect(database_url, user="practitioner_probe")
    await conn.execute("SET ROLE shielding_practitioner")
    return conn


async def test_the_practitioner_database_role_reaches_hidden_details_by_no_route(pool, database_url) -> None:
    canaries = Canaries.new()
    child = await import_canary_child(pool, canaries)
    request_id = await shield_directly(pool, [child.uid])
    await pool.execute("ANALYZE children")
    assert await pool.fetchval("SELECT count(*) FROM pg_stats WHERE tablename = 'children'") > 0  # control

    conn = await _practitioner(database_url)
    try:
        assert await conn.fetchval("SELECT current_user") == "shielding_practitioner"
        denied = asyncpg.InsufficientPrivilegeError
        for table in (
            "children",
            "shielding_requests",
            "audit_log",
            "notifications",
            "form_documents",
            "request_children",
            "user_roles",
            "completed_operations",
            "audit_chain_head",
        ):
            with pytest.raises(denied):
                await conn.fetch(f"SELECT * FROM {table} LIMIT 1")
        with pytest.raises(denied):
            await conn.fetchval("SELECT address FROM children WHERE uid = $1", child.uid)
        with pytest.raises(denied):
            await conn.fetch("EXPLAIN SELECT address FROM children")
        with pytest.raises(denied):
            await conn.copy_from_table("children", output=io.BytesIO())
        with pytest.raises(denied):
            await conn.copy_from_query("SELECT address FROM children", output=io.BytesIO())
        with pytest.raises(denied):
            await conn.fetchval("SELECT last_value FROM notifications_notification_id_seq")

        # One record by uid, through the redacting function: names and date of birth, nothing hidden. The view
        # itself is not readable (it would list and count every shielded record).
        row = await conn.fetchrow("SELECT * FROM practitioner_child($1)", child.uid)
        assert row["shielded"] is True and row["given_name"] == canaries.given_name
        assert all(row[k] is None for k in HIDDEN_KEYS)
        with pytest.raises(denied):
            await conn.fetchval("SELECT count(*) FROM practitioner_children WHERE shielded")
        # Search: redacted, and a hidden field never selects the record.
        found = await conn.fetch(
            "SELECT * FROM search_children($1, $2, $3, NULL, NULL, NULL, 50)",
            canaries.given_name,
            canaries.family_name,
            canaries.date_of_birth,
        )
        assert [r["uid"] for r in found] == [child.uid] and all(found[0][k] is None for k in HIDDEN_KEYS)
        assert (
            await conn.fetch(
                "SELECT uid FROM search_children($1, $2, $3, NULL, $4, NULL, 50)",
                canaries.given_name,
                canaries.family_name,
                canaries.date_of_birth,
                canaries.postcode,
            )
            == []
        )

        # Statistics would show the most common postcodes and schools: none visible.
        assert await conn.fetchval("SELECT count(*) FROM pg_stats WHERE tablename = 'children'") == 0
        with pytest.raises(denied):
            await conn.fetch("SELECT starelid, staattnum FROM pg_statistic LIMIT 1")
        # The audit digest (which reads whole audit rows) is not callable.
        with pytest.raises(denied):
            await conn.fetchval("SELECT audit_entry_digest(NULL::audit_log)")
        # Nothing new can be planted in the schema, nor another role borrowed.
        with pytest.raises(denied):
            await conn.execute("CREATE FUNCTION public.peek(text) RETURNS text LANGUAGE sql AS 'SELECT $1'")
        with pytest.raises(denied):
            await conn.execute("CREATE TABLE public.stash (v text)")
        with pytest.raises(denied):
            await conn.execute("CREATE SCHEMA stash")
        with pytest.raises(denied):
            await conn.execute("SET ROLE shielding_service")
        with pytest.raises(denied):
            await conn.execute("SET ROLE postgres")
    finally:
        await conn.close()
    await unshield_directly(pool, request_id)


async def test_the_audit_log_refuses_update_delete_and_truncate_even_for_the_superuser(pool) -> None:
    async with pool.acquire() as conn:
        entry_id = await conn.fetchval("SELECT max(entry_id) FROM audit_log")
        assert entry_id is not None
        count = await conn.fetchval("SELECT count(*) FROM audit_log")
        for statement in (
            f"UPDATE audit_log SET reason = 'rewritten' WHERE entry_id = {entry_id}",
            f"DELETE FROM audit_log WHERE entry_id = {entry_id}",
            "TRUNCATE audit_log",
        ):
            transaction = conn.transaction()
            await transaction.start()
            try:
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                    await conn.execute(statement)
            finally:
                await transaction.rollback()
        assert await conn.fetchval("SELECT count(*) FROM audit_log") >= count


# --------------------------------------------------------------------------------------- f. actors and roles


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def a_manager(pool: asyncpg.Pool) -> str:
    return await grant(pool, _name("manager"), "manager")


async def _unauthorised(pool: asyncpg.Pool, actor: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT details, request_id, child_uid FROM audit_log WHERE action = 'unauthorised' AND actor = $1 "
        "ORDER BY entry_id",
        actor,
    )
    return [dict(r) for r in rows]


async def test_roles_decide_who_may_act_and_every_refusal_is_audited(pool) -> None:
    manager = await a_manager(pool)
    officer, reviewer, other_reviewer = _name("intake"), _name("reviewer"), _name("reviewer")
    await grant(pool, officer, "intake", by=manager)
    await grant(pool, reviewer, "reviewer", by=manager)
    await grant(pool, other_reviewer, "reviewer", by=manager)
    child = make_child()
    await store.import_children(pool, [child], actor="test-import")

    ghost = _name("ghost")
    with pytest.raises(access.AccessDenied, match="not a registered user"):
        await access.require(pool, ghost, "view", child_uid=child.uid)
    assert await _unauthorised(pool, ghost) == [
        {"details": {"attempted": "view"}, "request_id": None, "child_uid": child.uid}
    ]

    # The reviewer took this call themselves, so another reviewer must decide its review.
    request_id = await shield_directly(pool, [child.uid], actor=reviewer)
    assert await access.require(pool, officer, "request") == {"intake"}
    for action in ("review", "unshield"):
        with pytest.raises(access.AccessDenied, match="may not"):
            await access.require(pool, officer, action, request_id=request_id)
    assert [e["details"]["attempted"] for e in await _unauthorised(pool, officer)] == ["review", "unshield"]
    with pytest.raises(access.AccessDenied, match="cannot decide its review"):
        await access.require(pool, reviewer, "review", request_id=request_id)
    assert [(e["details"]["attempted"], e["request_id"]) for e in await _unauthorised(pool, reviewer)] == [
        ("review", request_id)
    ]
    assert await access.require(pool, other_reviewer, "review", request_id=request_id) == {"reviewer"}

    await unshield_directly(pool, request_id)


# -------------------------------------------------------------------------------------- g. break-glass override


async def test_a_break_glass_that_finds_no_record_is_audited_and_alerted_too(pool) -> None:
    manager = await a_manager(pool)
    protector = _name("cp")
    await grant(pool, protector, "child-protection", by=manager)
    uid = f"C-NOSUCH{uuid.uuid4().hex[:8]}"
    assert await access.override_view(pool, protector, uid, "looking for a child who is not here") is None
    entry = await pool.fetchrow("SELECT * FROM audit_log WHERE action = 'override-viewed' AND child_uid = $1", uid)
    assert entry is not None and entry["actor"] == protector and entry["details"] == {"record": "not found"}
    alerts = [n for n in await store.notifications(pool) if n["recipient_kind"] == "managers" and uid in n["body"]]
    assert len(alerts) == 1


async def test_break_glass_override_is_child_protection_only_audited_and_one_off(pool) -> None:
    manager = await a_manager(pool)
    protector, practitioner = _name("cp"), _name("practitioner")
    await grant(pool, protector, "child-protection", by=manager)
    await grant(pool, practitioner, "practitioner", by=manager)
    canaries = Canaries.new()
    child = await import_canary_child(pool, canaries)
    request_id = await shield_directly(pool, [child.uid])
    before = len(await store.notifications(pool, request_id))

    with pytest.raises(access.AccessDenied, match="child-protection"):
        await access.override_view(pool, practitioner, child.uid, "curious")
    assert [e["details"]["attempted"] for e in await _unauthorised(pool, practitioner)] == ["override"]

    why = f"Section 47 enquiry {canaries.tag}: child missing"
    record = await access.override_view(pool, protector, child.uid, why)
    assert record is not None and record["shielded"] is True
    assert record["address"] == {
        "lines": [canaries.address_line_1, canaries.address_line_2],
        "postcode": canaries.postcode,
    }
    assert record["school"] == canaries.school and record["gp_practice"] == canaries.gp_practice
    assert record["carers"][0]["name"] == canaries.carer_name
    assert "shield_request_id" not in record

    entry = await pool.fetchrow(
        "SELECT * FROM audit_log WHERE action = 'override-viewed' AND child_uid = $1 ORDER BY entry_id DESC LIMIT 1",
        child.uid,
    )
    assert entry is not None
    assert (entry["actor"], entry["request_id"], entry["reason"]) == (protector, request_id, why)
    notes = await store.notifications(pool, request_id)
    assert len(notes) == before + 1
    alert = notes[-1]
    assert alert["recipient_kind"] == "managers" and protector in alert["body"] and child.uid in alert["body"]
    assert leaks(f"{alert['subject']}\n{alert['body']}", canaries.child_values()) == []

    # The override was for that one view: the next ordinary view is redacted again.
    again = await store.view_child(pool, child.uid)
    assert again is not None and set(again) == PRACTITIONER_KEYS and again["shielded"] is True
    await unshield_directly(pool, request_id)


# ----------------------------------------------------------------------------------- i. duplicates from data feeds


async def test_a_fed_duplicate_of_a_shielded_child_is_shielded_at_once_and_linked(pool) -> None:
    canaries = Canaries.new()
    child = await import_canary_child(pool, canaries)
    request_id = await shield_directly(pool, [child.uid])

    same_identity = canaries.child().model_copy(update={"aliases": []})
    by_alias = canaries.child().model_copy(
        update={
            "uid": f"C-{uuid.uuid4().hex[:12]}",
            "given_name": "Different",
            "family_name": "Surname",
            "aliases": [f"{canaries.given_name} {canaries.family_name}"],
        }
    )
    other_dob = canaries.child().model_copy(
        update={"uid": f"C-{uuid.uuid4().hex[:12]}", "date_of_birth": date(2012, 1, 5)}
    )
    result = await store.import_children(pool, [same_identity, by_alias, other_dob], actor="feed-health")
    assert result.created == 3
    assert sorted(result.linked_duplicates) == sorted([same_identity.uid, by_alias.uid])

    for uid in (same_identity.uid, by_alias.uid):
        view = await store.view_child(pool, uid)
        assert view is not None and view["shielded"] is True and set(view) == PRACTITIONER_KEYS
        link = await pool.fetchrow(
            "SELECT outcome, shielded_at FROM request_children WHERE request_id = $1 AND child_uid = $2",
            request_id,
            uid,
        )
        assert link is not None and link["outcome"] == "linked-duplicate-record" and link["shielded_at"] is not None
        audit = await pool.fetchrow(
            "SELECT actor, details FROM audit_log WHERE request_id = $1 AND child_uid = $2 AND action = 'shielded'",
            request_id,
            uid,
        )
        assert audit is not None and audit["actor"] == "feed-health"
        assert audit["details"] == {"linked_duplicate_record": True}
    # A different date of birth is a different child.
    assert (await store.view_child(pool, other_dob.uid) or {}).get("shielded") is False

    reviewers = [n for n in await store.notifications(pool, request_id) if n["recipient_kind"] == "reviewers"]
    # The record with another date of birth lives at the shielded child's address: flagged, not linked.
    shared = [n for n in reviewers if n["subject"].startswith("A record shares an address or a carer")]
    assert [other_dob.uid in n["body"] for n in shared] == [True]
    notes = [n for n in reviewers if n not in shared]
    assert len(notes) == 2
    assert sorted(uid for n in notes for uid in (same_identity.uid, by_alias.uid) if uid in n["body"]) == sorted(
        [same_identity.uid, by_alias.uid]
    )
    assert all(leaks(n["body"], canaries.child_values()) == [] for n in notes)

    # Unshielding the request lifts the linked records with it.
    await unshield_directly(pool, request_id)
    assert (await store.view_child(pool, same_identity.uid) or {}).get("shielded") is False


# j. The Web UI's codec endpoint is the web service's /codec, behind sign-in: tests/test_temporal_boundary.py.


# ---------------------------------------------------------------------- h. tamper-evident audit log (runs last)


async def test_concurrent_audit_writers_keep_one_chain_in_entry_order(pool) -> None:
    """Writers racing for the chain head must not leave entries whose chain order differs from their id order
    (which `audit verify` would report as tampering nobody did)."""
    actor = _name("racer")

    async def writer(n: int) -> None:
        for i in range(12):
            async with pool.acquire() as conn, conn.transaction():
                await store.append_audit(
                    conn, action=AuditAction.REFUSED, actor=actor, request_id=None, reason=f"{n}.{i}"
                )

    await asyncio.gather(*(writer(n) for n in range(8)))
    rows = await pool.fetch("SELECT entry_id, at FROM audit_log WHERE actor = $1 ORDER BY entry_id", actor)
    assert len(rows) == 96
    assert [r["at"] for r in rows] == sorted(r["at"] for r in rows)
    verdict = await verify_chain(pool)
    assert verdict.intact, verdict.message


async def test_zz_a_changed_audit_entry_breaks_the_chain_at_that_entry(pool, database_url) -> None:
    """Last in the file: it changes a shared audit row (with triggers disabled) and restores it afterwards."""
    async with pool.acquire() as conn, conn.transaction():
        await store.append_audit(
            conn,
            action=AuditAction.REFUSED,
            actor="tamper-test",
            request_id=None,
            reason=f"original reason {uuid.uuid4().hex}",
        )
    row = await pool.fetchrow(
        "SELECT entry_id, reason FROM audit_log WHERE actor = 'tamper-test' ORDER BY entry_id DESC LIMIT 1"
    )
    entry_id, original = row["entry_id"], row["reason"]
    intact = await verify_chain(pool)
    assert intact.intact, intact.message

    superuser = await asyncpg.connect(database_url)
    try:
        await superuser.execute("SET session_replication_role = replica")  # the append-only triggers stop firing
        await superuser.execute("UPDATE audit_log SET reason = 'nothing happened' WHERE entry_id = $1", entry_id)
        broken = await verify_chain(pool)
        assert broken.intact is False
        assert broken.first_broken_entry == entry_id
        assert str(entry_id) in broken.message
    finally:
        await superuser.execute("UPDATE audit_log SET reason = $2 WHERE entry_id = $1", entry_id, original)
        await superuser.execute("RESET session_replication_role")
        await superuser.close()
    restored = await verify_chain(pool)
    assert restored.intact, restored.message
