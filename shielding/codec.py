"""Encryption of every payload the service sends to Temporal (AES-256-GCM, key id in each payload).

The first configured key encrypts; every configured key decrypts, so keys can be rotated while older
workflows still replay.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from shielding.settings import ConfigurationError, Settings

ENCODING = b"binary/encrypted-aes256gcm"
KEY_ID_METADATA = "encryption-key-id"
NONCE_BYTES = 12


class EncryptionCodec(PayloadCodec):
    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise ConfigurationError("At least one encryption key is needed.")
        self._encrypt_key_id = keys[0][0]
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}

    @property
    def key_id(self) -> str:
        return self._encrypt_key_id

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        cipher = self._ciphers[self._encrypt_key_id]
        encoded = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            sealed = cipher.encrypt(nonce, payload.SerializeToString(), self._encrypt_key_id.encode())
            encoded.append(
                Payload(
                    metadata={"encoding": ENCODING, KEY_ID_METADATA: self._encrypt_key_id.encode()},
                    data=nonce + sealed,
                )
            )
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        decoded = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                decoded.append(payload)
                continue
            key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode()
            cipher = self._ciphers.get(key_id)
            if cipher is None:
                raise ValueError(f"payload encrypted with unknown key id {key_id!r}")
            try:
                plain = cipher.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], key_id.encode())
            except InvalidTag as err:
                raise ValueError(f"payload under key id {key_id!r} failed authentication") from err
            decoded.append(Payload.FromString(plain))
        return decoded


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


def codec_from_settings(settings: Settings) -> EncryptionCodec | None:
    spec = settings.encryption_keys or _stack_keys(settings)
    if spec:
        return EncryptionCodec(parse_keys(spec))
    if settings.environment == "production":
        raise ConfigurationError(
            "SHIELDING_ENCRYPTION_KEYS is required in production: Temporal must never hold child data in clear."
        )
    return None


def _stack_keys(settings: Settings) -> str | None:
    path = settings.data_dir / "encryption.keys"
    if path.is_file():
        return path.read_text().strip() or None
    return None


def all_key_ids(codec: EncryptionCodec) -> Iterable[str]:
    return codec._ciphers.keys()
