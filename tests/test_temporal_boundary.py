"""Temporal is not a way in: what reaches a workflow without the service, and who reads what Temporal holds.

- Every payload is encrypted and bound to its workflow (namespace and workflow id in the AES-GCM associated
  data, from the SDK's serialization context). Plaintext, a payload under a key we do not hold, and one made
  for another request are refused, and the workflow keeps running (no poisoned workflow task).
- A captured staff action replayed into another request is refused twice over: by the binding, and — should
  someone hold the encryption keys but not the action keys — by its signature.
- Keys are required in every process, development included; mutual TLS in production.
- The Web UI decodes only through the web service's /codec, for signed-in managers, each decode audited.
- `shielding certs generate` makes certificates a TLS server that requires client certificates accepts, and
  `connect()` uses them; a client without one, or with one from another authority, is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import ExtendedKeyUsageOID
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory, WorkflowUpdateFailedError
from temporalio.common import RawValue
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import ActivitySerializationContext, WorkflowSerializationContext
from temporalio.service import TLSConfig
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from shielding import certs, messages, store
from shielding.codec import (
    ENCODING,
    KEY_ID_METADATA,
    NONCE_BYTES,
    REFUSED_ENCODING,
    EncryptionCodec,
    PayloadRefused,
    Refusal,
    RefusingCodec,
    codec_from_settings,
    generate_key_spec,
    parse_keys,
)
from shielding.devstack import ensure_encryption_keys
from shielding.domain import AuditAction, Stage, StatusQuery, UnshieldRequest
from shielding.settings import ConfigurationError, Settings
from shielding.temporal import ShieldingPayloadConverter, connect, data_converter, tls_config
from tests.helpers.lifecycle import intake, signed, start, status
from tests.helpers.servers import running_worker
from tests.helpers.webapp import RunningApp, add_staff
from worker.main import workflow_runner
from workflows.shielding_request import ShieldingRequestWorkflow

UI_ORIGIN = "http://localhost:8233"
A = WorkflowSerializationContext(namespace="default", workflow_id="SR-AAAAAAAAAAAA")
B = WorkflowSerializationContext(namespace="default", workflow_id="SR-BBBBBBBBBBBB")


def plain(*values: Any) -> list[Payload]:
    return pydantic_data_converter.payload_converter.to_payloads(list(values))


def codec(spec: str | None = None) -> EncryptionCodec:
    return EncryptionCodec(parse_keys(spec or generate_key_spec("k1")))


# ------------------------------------------------------------------------------------- the codec, alone


async def test_a_payload_opens_only_for_the_workflow_it_was_made_for() -> None:
    keys = codec()
    originals = plain({"reason": "canary"})
    for_a = await keys.with_context(A).encode(originals)
    assert for_a[0].metadata["encryption-workflow-id"] == A.workflow_id.encode()
    assert await keys.with_context(A).decode(for_a) == originals
    # The same payload handed to another workflow: refused, before any decryption.
    with pytest.raises(PayloadRefused) as refused:
        await keys.with_context(B).decode(for_a)
    assert refused.value.reason == Refusal.OTHER_WORKFLOW
    assert "cannot be replayed into this one" in str(refused.value)

    # An activity of workflow A reads it; an activity of B does not.
    def activity_of(workflow_id: str) -> ActivitySerializationContext:
        return ActivitySerializationContext(
            namespace="default",
            activity_id="1",
            activity_type="record_step",
            activity_task_queue="q",
            workflow_id=workflow_id,
            workflow_type="ShieldingRequestWorkflow",
            is_local=False,
        )

    in_a, in_b = activity_of(A.workflow_id), activity_of(B.workflow_id)
    assert await keys.with_context(in_a).decode(for_a) == originals
    with pytest.raises(PayloadRefused):
        await keys.with_context(in_b).decode(for_a)
    # Relabelled to say "B": the associated data no longer matches, so it fails authentication.
    relabelled = Payload(
        metadata={**dict(for_a[0].metadata), "encryption-workflow-id": B.workflow_id.encode()}, data=for_a[0].data
    )
    with pytest.raises(PayloadRefused) as tampered:
        await keys.with_context(B).decode([relabelled])
    assert tampered.value.reason == Refusal.TAMPERED
    # Another namespace with the same workflow id is another workflow.
    elsewhere = WorkflowSerializationContext(namespace="staging", workflow_id=A.workflow_id)
    with pytest.raises(PayloadRefused):
        await keys.with_context(elsewhere).decode(for_a)
    # Without a context (the Web UI's codec endpoint) it opens by the workflow it names, authenticated.
    assert await keys.decode(for_a) == originals
    with pytest.raises(PayloadRefused):
        await keys.decode([relabelled])


async def test_plaintext_and_unknown_keys_are_refused_in_words() -> None:
    keys = codec()
    with pytest.raises(PayloadRefused) as refused:
        await keys.with_context(A).decode(plain({"reason": "x"}))
    assert refused.value.reason == Refusal.PLAINTEXT
    assert str(refused.value).startswith("This message was refused: it was not encrypted")
    under_other = await codec(generate_key_spec("retired")).with_context(A).encode(plain("x"))
    with pytest.raises(PayloadRefused) as unknown:
        await keys.with_context(A).decode(under_other)
    assert unknown.value.reason == Refusal.UNKNOWN_KEY
    # A payload made without any workflow (no context) is not accepted by a workflow either.
    unbound = await keys.encode(plain("x"))
    with pytest.raises(PayloadRefused):
        await keys.with_context(A).decode(unbound)


async def test_payloads_made_before_the_binding_still_open_so_running_lifecycles_replay() -> None:
    spec = generate_key_spec("legacy")
    ((key_id, key),) = parse_keys(spec)
    (original,) = plain({"n": 1})
    nonce = b"\x01" * NONCE_BYTES
    legacy = Payload(
        metadata={"encoding": ENCODING, KEY_ID_METADATA: key_id.encode()},
        data=nonce + AESGCM(key).encrypt(nonce, original.SerializeToString(), key_id.encode()),
    )
    assert await codec(spec).with_context(A).decode([legacy]) == [original]
    assert await codec(spec).decode([legacy]) == [original]


async def test_the_converter_turns_a_refusal_into_a_payload_no_handler_reads() -> None:
    refusing = RefusingCodec(codec()).with_context(A)
    (marker,) = await refusing.decode(plain({"reason": "x"}))
    assert marker.metadata["encoding"] == REFUSED_ENCODING and marker.data == b""
    with pytest.raises(PayloadRefused, match="it was not encrypted"):
        ShieldingPayloadConverter().from_payloads([marker], [UnshieldRequest])
    # It never encodes anything itself.
    assert ShieldingPayloadConverter().to_payloads([{"a": 1}])[0].metadata["encoding"] == b"json/plain"


def test_keys_are_required_in_every_process_and_development_gets_them_from_the_dev_stack(tmp_path: Path) -> None:
    for environment in ("development", "production"):
        bare = Settings(environment=environment, data_dir=tmp_path / environment)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="SHIELDING_ENCRYPTION_KEYS is required"):
            codec_from_settings(bare)
        with pytest.raises(ConfigurationError, match="SHIELDING_ENCRYPTION_KEYS is required"):
            data_converter(bare)
    data_dir = tmp_path / "dev"
    data_dir.mkdir()
    ensure_encryption_keys(data_dir)  # what `shielding dev` does before starting anything
    assert codec_from_settings(Settings(data_dir=data_dir)).key_id.startswith("dev-")


def test_production_reaches_temporal_only_over_mutual_tls(tmp_path: Path) -> None:
    issued = {i.name: i for i in certs.generate(tmp_path / "certs")}
    production = Settings(environment="production", data_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="mutual TLS"):
        tls_config(production)
    with pytest.raises(ConfigurationError, match="go together"):
        tls_config(production.model_copy(update={"temporal_tls_cert": issued["worker"].cert}))
    assert tls_config(Settings(data_dir=tmp_path)) is None  # development: the dev server has no TLS
    config = tls_config(
        production.model_copy(
            update={
                "temporal_tls_cert": issued["worker"].cert,
                "temporal_tls_key": issued["worker"].key,
                "temporal_tls_ca": tmp_path / "certs" / "ca.pem",
                "temporal_tls_server_name": "temporal",
            }
        )
    )
    assert config is not None and config.domain == "temporal"
    assert config.client_cert == issued["worker"].cert.read_bytes()
    missing = production.model_copy(
        update={"temporal_tls_cert": tmp_path / "nope.pem", "temporal_tls_key": issued["worker"].key}
    )
    with pytest.raises(ConfigurationError, match="cannot read the Temporal client certificate"):
        tls_config(missing)


def test_generated_certificates_chain_to_one_authority_with_the_right_uses(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    issued = {i.name: i for i in certs.generate(out)}
    assert set(issued) == {"temporal", "worker", "web", "ui", "admin"}
    authority = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    for item in issued.values():
        cert = x509.load_pem_x509_certificate(item.cert.read_bytes())
        cert.verify_directly_issued_by(authority)
        usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        assert ExtendedKeyUsageOID.CLIENT_AUTH in usages
        assert (ExtendedKeyUsageOID.SERVER_AUTH in usages) == (item.name == "temporal")
    server = x509.load_pem_x509_certificate(issued["temporal"].cert.read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"temporal", "localhost"}
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    # Only the owner reads the set on the host; the authority's key is the owner's alone.
    assert out.stat().st_mode & 0o777 == 0o700
    assert (out / "ca-key.pem").stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConfigurationError, match="already exists"):
        certs.generate(out)
    assert {i.name for i in certs.generate(out, force=True)} == set(issued)


# ------------------------------------------------------------------------ messages sent straight to Temporal


@pytest.fixture
async def lifecycle(dev_env: WorkflowEnvironment, pool: asyncpg.Pool, settings: Settings, task_queue: str) -> Any:
    """A shielded request on the dev server (updates need it), with the production worker running."""
    from tests.helpers.records import make_child

    child = make_child()
    await store.import_children(pool, [child], actor="test-import")
    async with running_worker(dev_env.client, pool, settings, task_queue):
        handle, ack = await start(dev_env.client, task_queue, intake([child.uid], datetime.now(UTC)))
        assert ack.stage == Stage.AWAITING_FORM
        yield handle


async def foreign_client(env: WorkflowEnvironment, **converter: Any) -> Client:
    """A client of the same server that is not the service: no codec, or another one."""
    import dataclasses

    return await Client.connect(
        env.client.service_client.config.target_host,
        namespace=env.client.namespace,
        data_converter=dataclasses.replace(pydantic_data_converter, **converter),
    )


async def refusal_text(err: WorkflowUpdateFailedError, settings: Settings, workflow_id: str) -> str:
    """What the worker answered, read as the service reads it (the server and the sender see it encrypted)."""
    failure = getattr(err.cause, "failure", None)
    assert failure is not None
    copied = type(failure).FromString(failure.SerializeToString())
    converter = data_converter(settings).with_context(WorkflowSerializationContext("default", workflow_id))
    error: BaseException | None = await converter.decode_failure(copied)
    texts = []
    while error is not None:
        texts.append(str(error))
        error = getattr(error, "cause", None) or error.__cause__
    return " / ".join(texts)


async def audit_actions(pool: asyncpg.Pool, request_id: str) -> list[str]:
    rows = await pool.fetch("SELECT action FROM audit_log WHERE request_id = $1 ORDER BY entry_id", request_id)
    return [row["action"] for row in rows]


async def update_events(handle: Any) -> int:
    history = await handle.fetch_history()
    kinds = {
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
    }
    return sum(1 for event in history.events if event.event_type in kinds)


async def still_works(handle: Any, pool: asyncpg.Pool, client: Client) -> None:
    """The workflow was not poisoned: it answers, and a real (signed, encrypted) staff action still lands."""
    assert (await status(handle)).stage == Stage.AWAITING_FORM
    request = await signed(client, handle.id, UnshieldRequest(reason="Family moved back", actor="reviewer-1"))
    outcome = await handle.execute_update(ShieldingRequestWorkflow.unshield, request)
    assert outcome.accepted and outcome.stage == Stage.UNSHIELDED
    assert AuditAction.UNSHIELDED.value in await audit_actions(pool, handle.id)


@pytest.mark.devserver
async def test_a_plaintext_update_sent_straight_to_temporal_is_refused_and_changes_nothing(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, settings: Settings, lifecycle: Any
) -> None:
    before = await audit_actions(pool, lifecycle.id)
    outsider = await foreign_client(dev_env)
    # Even correctly signed: the signature is not the point here, the missing encryption is.
    request = await signed(outsider, lifecycle.id, UnshieldRequest(reason="forged", actor="reviewer-1"))
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await outsider.get_workflow_handle(lifecycle.id).execute_update(ShieldingRequestWorkflow.unshield, request)
    # Encrypted even in its refusal: the sender reads only a placeholder; the service reads why.
    assert str(refused.value.cause).endswith("Encoded failure")
    assert messages.PAYLOAD_PLAINTEXT in await refusal_text(refused.value, settings, lifecycle.id)
    # Rejected before it was accepted: nothing in history, nothing in the database.
    assert await update_events(lifecycle) == 0
    assert await audit_actions(pool, lifecycle.id) == before
    # A plaintext signal cannot be rejected, only dropped: recorded, and changes nothing.
    await outsider.get_workflow_handle(lifecycle.id).signal(ShieldingRequestWorkflow.unshield_requested, request)
    await asyncio.sleep(0.5)
    assert await audit_actions(pool, lifecycle.id) == before
    await still_works(lifecycle, pool, dev_env.client)


@pytest.mark.devserver
async def test_a_payload_under_a_key_the_service_does_not_hold_is_refused(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, lifecycle: Any
) -> None:
    before = await audit_actions(pool, lifecycle.id)
    impostor = await foreign_client(dev_env, payload_codec=codec(generate_key_spec("test-key-1")))  # same id
    request = await signed(impostor, lifecycle.id, UnshieldRequest(reason="forged", actor="reviewer-1"))
    # Refused; and the impostor cannot even read the (encrypted) refusal it gets back.
    with pytest.raises(PayloadRefused, match="failed authentication"):
        await impostor.get_workflow_handle(lifecycle.id).execute_update(ShieldingRequestWorkflow.unshield, request)
    assert await update_events(lifecycle) == 0
    assert await audit_actions(pool, lifecycle.id) == before
    await still_works(lifecycle, pool, dev_env.client)


async def captured_update(handle: Any) -> Payload:
    """The (encrypted) argument of the first update accepted in `handle`'s history, as anyone reading it sees."""
    history: WorkflowHistory = await handle.fetch_history()
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            (payload,) = event.workflow_execution_update_accepted_event_attributes.accepted_request.input.args.payloads
            return payload
    raise AssertionError("no accepted update in history")


@pytest.mark.devserver
async def test_a_captured_update_replayed_into_another_request_is_refused(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, settings: Settings, task_queue: str
) -> None:
    from tests.helpers.records import make_child

    first, second = make_child(), make_child()
    await store.import_children(pool, [first, second], actor="test-import")
    async with running_worker(dev_env.client, pool, settings, task_queue):
        victim, _ = await start(dev_env.client, task_queue, intake([first.uid], datetime.now(UTC)))
        target, _ = await start(dev_env.client, task_queue, intake([second.uid], datetime.now(UTC)))
        unshield = await signed(dev_env.client, victim.id, UnshieldRequest(reason="Moved away", actor="reviewer-1"))
        assert (await victim.execute_update(ShieldingRequestWorkflow.unshield, unshield)).accepted
        captured = await captured_update(victim)
        assert captured.metadata["encoding"] == ENCODING
        before = await audit_actions(pool, target.id)

        # 1. Replayed as it is (someone who can reach Temporal, no keys): refused by the binding.
        replayer = await foreign_client(dev_env)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await replayer.get_workflow_handle(target.id).execute_update("unshield", RawValue(captured))
        assert messages.PAYLOAD_OTHER_WORKFLOW in await refusal_text(refused.value, settings, target.id)

        # 2. Re-encrypted for the target by someone holding the encryption keys (not the action keys): the
        #    signature names the victim's request, so the workflow refuses it all the same.
        keys = codec_from_settings(settings)
        (opened,) = await keys.with_context(WorkflowSerializationContext("default", victim.id)).decode([captured])
        rebound = RefusingCodec(keys)
        insider = await foreign_client(dev_env, payload_codec=rebound)
        with pytest.raises(WorkflowUpdateFailedError) as resigned:
            await insider.get_workflow_handle(target.id).execute_update("unshield", RawValue(opened))
        assert str(resigned.value.cause).endswith(messages.ACTION_BAD_SIGNATURE)

        assert await update_events(target) == 0
        assert await audit_actions(pool, target.id) == before
        assert (await target.query(ShieldingRequestWorkflow.status, StatusQuery())).stage == Stage.AWAITING_FORM


@pytest.mark.devserver
async def test_a_bound_history_replays_where_it_ran(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, settings: Settings, lifecycle: Any
) -> None:
    await still_works(lifecycle, pool, dev_env.client)
    await lifecycle.result()
    history = await lifecycle.fetch_history()
    replayer = Replayer(
        workflows=[ShieldingRequestWorkflow],
        namespace=dev_env.client.namespace,
        data_converter=data_converter(settings),
        workflow_runner=workflow_runner(),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None
    # Replayed as another workflow id, the same history no longer decodes.
    moved = WorkflowHistory(workflow_id="SR-ELSEWHERE0000", events=history.events)
    elsewhere = await replayer.replay_workflow(moved, raise_on_replay_failure=False)
    assert elsewhere.replay_failure is not None


# ------------------------------------------------------------------------------- the Web UI's codec endpoint


@pytest.fixture(scope="module")
def web_settings(settings: Settings, dev_env: WorkflowEnvironment) -> Settings:
    return settings.model_copy(
        update={"temporal_address": dev_env.client.service_client.config.target_host, "codec_cors_origin": UI_ORIGIN}
    )


@pytest.fixture(scope="module")
def web(web_settings: Settings) -> Iterator[RunningApp]:
    with RunningApp(web_settings) as running:
        yield running


def body(payloads: list[Payload]) -> str:
    return json_format.MessageToJson(Payloads(payloads=payloads))


async def staff(pool: asyncpg.Pool, web: RunningApp, role: str) -> tuple[str, str]:
    name = f"{role}-{uuid.uuid4().hex[:6]}"
    password = f"{name}-correct-horse"
    await add_staff(pool, name, password, role)
    async with httpx.AsyncClient(base_url=web.url) as http:
        answer = await http.post("/api/auth/login", json={"name": name, "password": password})
    assert answer.status_code == 200, answer.text
    return name, answer.json()["token"]


async def history_payloads(settings: Settings, request_id: str, canary: str) -> list[Payload]:
    """What the UI would post: the encrypted start input of a workflow, made as the service makes it."""
    from shielding.lifecycle import ShieldingLifecycleInput

    request = intake(["CP-1001-AA"], datetime.now(UTC), reason=canary, request_id=request_id)
    converter = data_converter(settings).with_context(WorkflowSerializationContext("default", request_id))
    return await converter.encode([ShieldingLifecycleInput(request=request)])


@pytest.mark.devserver
async def test_the_codec_endpoint_decodes_only_for_managers_and_audits_each_decode(
    web: RunningApp, web_settings: Settings, pool: asyncpg.Pool
) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    request_id = "SR-" + uuid.uuid4().hex[:12].upper()
    encrypted = await history_payloads(web_settings, request_id, canary)
    ciphertext = json_format.MessageToJson(encrypted[0])
    posted = body([*encrypted, *plain("not encrypted")])
    headers = {"Content-Type": "application/json", "X-Namespace": "default"}
    async with httpx.AsyncClient(base_url=web.url, timeout=30) as http:
        anonymous = await http.post("/codec/decode", content=posted, headers=headers)
        assert anonymous.status_code == 401 and canary not in anonymous.text
        for role in ("practitioner", "intake", "reviewer", "child-protection"):
            name, token = await staff(pool, web, role)
            refused = await http.post(
                "/codec/decode", content=posted, headers={**headers, "Authorization": f"Bearer {token}"}
            )
            assert refused.status_code == 403, role
            assert canary not in refused.text and '"payloads"' not in refused.text
            assert refused.json()["detail"].endswith(
                "may not decode payloads; that needs the role manager or operations"
            )
            denied = await pool.fetchval(
                "SELECT details->>'attempted' FROM audit_log WHERE actor = $1 AND action = 'unauthorised'", name
            )
            assert denied == "decode payloads"

        # The operations staff who run the service decode too.
        _, ops_token = await staff(pool, web, "operations")
        by_operations = await http.post(
            "/codec/decode", content=posted, headers={**headers, "Authorization": f"Bearer {ops_token}"}
        )
        assert by_operations.status_code == 200, by_operations.text
        assert canary.encode() in list(json_format.Parse(by_operations.text, Payloads()).payloads)[0].data

        manager, token = await staff(pool, web, "manager")
        answer = await http.post(
            "/codec/decode", content=posted, headers={**headers, "Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["cache-control"] == "no-store"
        decoded = list(json_format.Parse(answer.text, Payloads()).payloads)
        assert canary.encode() in decoded[0].data
        assert decoded[1] == plain("not encrypted")[0]  # what it cannot open comes back as it came

        entry = await pool.fetchrow(
            "SELECT * FROM audit_log WHERE actor = $1 AND action = $2", manager, AuditAction.PAYLOADS_DECODED.value
        )
        assert entry is not None and entry["request_id"] == request_id
        details = json.loads(entry["details"]) if isinstance(entry["details"], str) else entry["details"]
        assert details == {"payloads": 2, "decoded": 1, "namespace": "default", "request_ids": [request_id]}
        # Who, how many, which request: never what they hold.
        row_text = repr(dict(entry))
        assert canary not in row_text and ciphertext[:40] not in row_text

        # Nobody mints ciphertext here, not even a manager.
        minted = await http.post(
            "/codec/encode", content=body(plain("x")), headers={**headers, "Authorization": f"Bearer {token}"}
        )
        assert minted.status_code == 403 and "read-only" in minted.json()["detail"]


@pytest.mark.devserver
async def test_the_ui_calls_with_the_session_cookie_from_its_own_origin_only(
    web: RunningApp, web_settings: Settings, pool: asyncpg.Pool
) -> None:
    manager = f"manager-{uuid.uuid4().hex[:6]}"
    await add_staff(pool, manager, f"{manager}-pw-long-enough", "manager")
    encrypted = await history_payloads(web_settings, "SR-" + uuid.uuid4().hex[:12].upper(), "cookie canary")
    async with httpx.AsyncClient(base_url=web.url, timeout=30) as http:
        signed_in = await http.post(
            "/api/auth/session", json={"name": manager, "password": f"{manager}-pw-long-enough"}
        )
        assert signed_in.status_code == 200 and http.cookies.get("shielding_session")
        ui = {"Origin": UI_ORIGIN, "Content-Type": "application/json", "X-Namespace": "default"}

        # The preflight the browser sends first: granted to the UI's origin, with credentials.
        preflight = await http.options(
            "/codec/decode",
            headers={
                "Origin": UI_ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == UI_ORIGIN
        assert preflight.headers["access-control-allow-credentials"] == "true"
        assert {"content-type", "x-namespace"} <= {
            h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")
        }
        # The cookie is enough (the UI cannot send the CSRF token): decoded, with the CORS grant.
        answer = await http.post("/codec/decode", content=body(encrypted), headers=ui)
        assert answer.status_code == 200, answer.text
        assert answer.headers["access-control-allow-origin"] == UI_ORIGIN
        assert b"cookie canary" in json_format.Parse(answer.text, Payloads()).payloads[0].data

        # Any other page's script: no preflight grant, and its POST is refused even with the cookie.
        for origin in ("http://evil.example", "http://localhost:8234", web.url, "null"):
            other = await http.options(
                "/codec/decode", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
            )
            assert other.status_code == 403 and "access-control-allow-origin" not in other.headers
            forged = await http.post("/codec/decode", content=body(encrypted), headers={**ui, "Origin": origin})
            assert forged.status_code == 403 and "cookie canary" not in forged.text
            assert "access-control-allow-origin" not in forged.headers
        # A form post (no preflight needed) is not JSON: refused before anything is read.
        form = await http.post(
            "/codec/decode", content=body(encrypted), headers={"Origin": UI_ORIGIN, "Content-Type": "text/plain"}
        )
        assert form.status_code == 415
        # Signed out: the same call is 401, still answered to the UI so it can say so.
        http.cookies.clear()
        gone = await http.post("/codec/decode", content=body(encrypted), headers=ui)
        assert gone.status_code == 401 and gone.headers["access-control-allow-origin"] == UI_ORIGIN


# --------------------------------------------------------------------------------------------- mutual TLS


class TlsFrontend:
    """A TLS server that requires a client certificate from `ca`, in front of the dev server's plain port: the
    Temporal frontend's TLS as compose configures it (the dev server itself has no TLS)."""

    def __init__(self, target: str, server_cert: Path, server_key: Path, ca: Path) -> None:
        self.host, port = target.rsplit(":", 1)
        self.port = int(port)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(server_cert, server_key)
        self.context.load_verify_locations(ca)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.set_alpn_protocols(["h2"])
        self.clients: list[str] = []
        self.address = ""

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert") or {}
        self.clients.append(dict(item[0] for item in peer.get("subject", ())).get("commonName", "?"))
        upstream_reader, upstream_writer = await asyncio.open_connection(self.host, self.port)
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TlsFrontend]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        self.address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            yield self
        finally:
            server.close()


@pytest.mark.devserver
async def test_only_clients_with_a_certificate_from_the_authority_reach_temporal(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, settings: Settings, tmp_path: Path, task_queue: str
) -> None:
    ours = {i.name: i for i in certs.generate(tmp_path / "certs")}
    theirs = {i.name: i for i in certs.generate(tmp_path / "other")}
    ca = tmp_path / "certs" / "ca.pem"
    frontend = TlsFrontend(
        dev_env.client.service_client.config.target_host, ours["temporal"].cert, ours["temporal"].key, ca
    )
    async with frontend.running():
        over_tls = settings.model_copy(
            update={
                "temporal_address": frontend.address,
                "temporal_tls_cert": ours["worker"].cert,
                "temporal_tls_key": ours["worker"].key,
                "temporal_tls_ca": ca,
                "temporal_tls_server_name": "temporal",
            }
        )
        client = await connect(over_tls)
        # The whole intake over mutual TLS: the worker and the starter both on the certificate's connection.
        from tests.helpers.records import make_child

        child = make_child()
        await store.import_children(pool, [child], actor="test-import")
        async with running_worker(client, pool, over_tls, task_queue):
            _, ack = await start(client, task_queue, intake([child.uid], datetime.now(UTC)))
        assert ack.stage == Stage.AWAITING_FORM
        assert "shielding-worker" in frontend.clients

        async def refused(tls: TLSConfig) -> None:
            with pytest.raises(RuntimeError):
                await asyncio.wait_for(Client.connect(frontend.address, tls=tls), 30)

        server_ca = ca.read_bytes()
        await refused(TLSConfig(server_root_ca_cert=server_ca, domain="temporal"))  # no certificate
        await refused(  # a certificate from another authority
            TLSConfig(
                server_root_ca_cert=server_ca,
                domain="temporal",
                client_cert=theirs["worker"].cert.read_bytes(),
                client_private_key=theirs["worker"].key.read_bytes(),
            )
        )
        await refused(  # the right certificate, but a server the client's CA did not sign
            TLSConfig(
                server_root_ca_cert=(tmp_path / "other" / "ca.pem").read_bytes(),
                domain="temporal",
                client_cert=ours["worker"].cert.read_bytes(),
                client_private_key=ours["worker"].key.read_bytes(),
            )
        )
