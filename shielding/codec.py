"""Encryption of every payload the service sends to Temporal (AES-256-GCM, key id in each payload).

The first configured key encrypts; every configured key decrypts, so keys can be rotated while older
workflows still replay. Keys are required in every environment (`shielding dev` generates its own).

Each payload is bound to the workflow it was made for: the SDK hands the codec a serialization context
(`WorkflowSerializationContext` / `ActivitySerializationContext`: namespace and workflow id) for every encode
and decode, and both go into the AES-GCM associated data. The namespace and workflow id are also written,
in clear, into the payload's metadata (the server knows them anyway), so a reader without a context — the
Web UI's codec endpoint, which is told only the namespace — can still open it, while a worker decoding for
workflow B refuses a payload made for workflow A.

Refusals, in order: a payload that is not encrypted at all (plaintext: from a client without our codec),
one under a key we do not hold, one made for another workflow, one that fails authentication. The strict
`EncryptionCodec.decode` raises `PayloadRefused`; the data converter's `RefusingCodec` turns each refused
payload into a marker that no converter can read, so the handler it was meant for refuses it (an update is
rejected and leaves nothing in history; a signal is dropped) and the workflow itself keeps running, instead
of failing every workflow task on a message that will never decode (a poisoned workflow).

Payloads from before the binding (no namespace in their metadata: "legacy") are still opened, with the key
id alone as associated data, so running lifecycles replay; staff actions inside them are bound to their
workflow by their signature anyway (`shielding.action_auth`).
"""

from __future__ import annotations

import base64
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    ActivitySerializationContext,
    EncodingPayloadConverter,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)

from shielding import messages
from shielding.log import get_logger
from shielding.settings import ConfigurationError, Settings

log = get_logger(__name__)

ENCODING = b"binary/encrypted-aes256gcm"
KEY_ID_METADATA = "encryption-key-id"
NAMESPACE_METADATA = "encryption-namespace"
WORKFLOW_ID_METADATA = "encryption-workflow-id"
NONCE_BYTES = 12
# Names the layout of the associated data, so it can never be confused with the legacy (key id only) form.
BOUND_SCHEME = b"shielding-payload-v2"
# What a refused payload becomes on its way to the workflow code (`RefusingCodec`): nothing can read it.
REFUSED_ENCODING = b"binary/refused-by-shielding"
REFUSED_REASON_METADATA = "refused-reason"


class Refusal(StrEnum):
    PLAINTEXT = "plaintext"
    UNKNOWN_KEY = "unknown-key"
    OTHER_WORKFLOW = "other-workflow"
    TAMPERED = "failed-authentication"


_SENTENCES = {
    Refusal.PLAINTEXT: messages.PAYLOAD_PLAINTEXT,
    Refusal.UNKNOWN_KEY: messages.PAYLOAD_UNKNOWN_KEY,
    Refusal.OTHER_WORKFLOW: messages.PAYLOAD_OTHER_WORKFLOW,
    Refusal.TAMPERED: messages.PAYLOAD_TAMPERED,
}


class PayloadRefused(ValueError):
    """A payload this service will not read; the message is one sentence, `reason` says which rule."""

    def __init__(self, reason: Refusal, detail: str = "") -> None:
        super().__init__(_SENTENCES[reason] + (f" ({detail})" if detail else ""))
        self.reason = reason


@dataclass(frozen=True)
class Binding:
    """The workflow a payload belongs to: its namespace and workflow id ("" for a payload made without one)."""

    namespace: str
    workflow_id: str

    @classmethod
    def of(cls, context: SerializationContext | None) -> Binding | None:
        if isinstance(context, WorkflowSerializationContext):
            return cls(context.namespace, context.workflow_id)
        if isinstance(context, ActivitySerializationContext) and context.workflow_id:
            return cls(context.namespace, context.workflow_id)
        return None


UNBOUND = Binding("", "")


def _associated_data(key_id: str, binding: Binding) -> bytes:
    parts = [BOUND_SCHEME, key_id.encode(), binding.namespace.encode(), binding.workflow_id.encode()]
    return b"".join(struct.pack(">I", len(part)) + part for part in parts)


def binding_of(payload: Payload) -> Binding | None:
    """The workflow named in an encrypted payload's metadata (None: a legacy payload). Not yet authenticated."""
    if NAMESPACE_METADATA not in payload.metadata:
        return None
    return Binding(
        payload.metadata[NAMESPACE_METADATA].decode(errors="replace"),
        payload.metadata.get(WORKFLOW_ID_METADATA, b"").decode(errors="replace"),
    )


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    def __init__(self, keys: Sequence[tuple[str, bytes]], *, binding: Binding | None = None) -> None:
        if not keys:
            raise ConfigurationError("At least one encryption key is needed.")
        self._keys = list(keys)
        self._encrypt_key_id = keys[0][0]
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}
        # The workflow this codec codes for (from the SDK's serialization context); None: no context.
        self.binding = binding

    @property
    def key_id(self) -> str:
        return self._encrypt_key_id

    def with_context(self, context: SerializationContext) -> EncryptionCodec:
        binding = Binding.of(context)
        if binding == self.binding:
            return self
        return EncryptionCodec(self._keys, binding=binding)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        cipher = self._ciphers[self._encrypt_key_id]
        binding = self.binding or UNBOUND
        aad = _associated_data(self._encrypt_key_id, binding)
        encoded = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            sealed = cipher.encrypt(nonce, payload.SerializeToString(), aad)
            metadata = {
                "encoding": ENCODING,
                KEY_ID_METADATA: self._encrypt_key_id.encode(),
                NAMESPACE_METADATA: binding.namespace.encode(),
                WORKFLOW_ID_METADATA: binding.workflow_id.encode(),
            }
            encoded.append(Payload(metadata=metadata, data=nonce + sealed))
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Every payload opened, or `PayloadRefused` (a ValueError) for the first one that cannot be."""
        return [self.decode_one(payload) for payload in payloads]

    def decode_one(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            raise PayloadRefused(Refusal.PLAINTEXT)
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadRefused(Refusal.UNKNOWN_KEY, f"unknown key id {key_id!r}")
        named = binding_of(payload)
        if named is None:
            aad = key_id.encode()  # legacy: made before payloads were bound to their workflow
        else:
            if self.binding is not None and named != self.binding:
                raise PayloadRefused(Refusal.OTHER_WORKFLOW, f"made for {named.workflow_id or 'no workflow'!r}")
            aad = _associated_data(key_id, self.binding or named)
        try:
            plain = cipher.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], aad)
        except InvalidTag:
            raise PayloadRefused(Refusal.TAMPERED, f"payload under key id {key_id!r} failed authentication") from None
        return Payload.FromString(plain)


class RefusingCodec(PayloadCodec, WithSerializationContext):
    """The data converter's codec: encrypts with `EncryptionCodec`; on decoding, each payload that codec
    refuses becomes a marker (`REFUSED_ENCODING`) that `RefusedPayloadConverter` will not convert, and the
    refusal is logged (which rule, which workflow: never the payload)."""

    def __init__(self, inner: EncryptionCodec) -> None:
        self.inner = inner

    def with_context(self, context: SerializationContext) -> RefusingCodec:
        inner = self.inner.with_context(context)
        return self if inner is self.inner else RefusingCodec(inner)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return await self.inner.encode(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        decoded = []
        for payload in payloads:
            try:
                decoded.append(self.inner.decode_one(payload))
            except PayloadRefused as refused:
                binding = self.inner.binding
                log.warning(
                    "payload refused",
                    reason=refused.reason.value,
                    workflow_id=binding.workflow_id if binding else None,
                    namespace=binding.namespace if binding else None,
                )
                decoded.append(
                    Payload(
                        metadata={"encoding": REFUSED_ENCODING, REFUSED_REASON_METADATA: refused.reason.value.encode()}
                    )
                )
        return decoded


class RefusedPayloadConverter(EncodingPayloadConverter):
    """Reads nothing: converting a refused payload raises its refusal, in words."""

    @property
    def encoding(self) -> str:
        return REFUSED_ENCODING.decode()

    def to_payload(self, value: Any) -> Payload | None:
        return None

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        reason = payload.metadata.get(REFUSED_REASON_METADATA, b"").decode(errors="replace")
        raise PayloadRefused(Refusal(reason) if reason in Refusal._value2member_map_ else Refusal.TAMPERED)


def parse_keys(spec: str) -> list[tuple[str, bytes]]:
    """Parse "key-id:base64key,older-id:base64key" (the first encrypts)."""
    keys = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        key_id, sep, encoded = item.partition(":")
        if not sep or not key_id:
            raise ConfigurationError("SHIELDING_ENCRYPTION_KEYS entries look like key-id:base64-key")
        try:
            key = base64.b64decode(encoded, validate=True)
        except ValueError as err:
            raise ConfigurationError(f"encryption key {key_id!r} is not valid base64") from err
        if len(key) != 32:
            raise ConfigurationError(f"encryption key {key_id!r} must be 32 bytes (AES-256)")
        keys.append((key_id, key))
    return keys


def generate_key_spec(key_id: str) -> str:
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"


def codec_from_settings(settings: Settings) -> EncryptionCodec:
    """The codec of this process; ConfigurationError without keys, in every environment."""
    spec = settings.encryption_keys or _stack_keys(settings)
    if spec:
        keys = parse_keys(spec)
        if keys:
            return EncryptionCodec(keys)
    raise ConfigurationError(
        "SHIELDING_ENCRYPTION_KEYS is required: Temporal must never hold child data in clear, in development "
        "too (`shielding dev` generates development keys under its data dir)."
    )


def _stack_keys(settings: Settings) -> str | None:
    path = settings.data_dir / "encryption.keys"
    if path.is_file():
        return path.read_text().strip() or None
    return None


def all_key_ids(codec: EncryptionCodec) -> Iterable[str]:
    return codec._ciphers.keys()
