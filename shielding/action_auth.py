"""Signed staff actions: the service signs what it sends a workflow (HMAC-SHA256), the workflow checks it.

Temporal authorises every caller of the dev server, and a real cluster cannot say "only the service may
unshield" (see TEMPORAL-SECURITY.md), so the workflow itself refuses an action it cannot trust: unsigned,
changed, signed for another request or action, for another person, stale, or sent twice.

Keys look like the encryption keys, `key-id:base64-32-bytes,older-id:...`: the first signs, every one verifies,
so keys can be rotated. A retired key must stay in the list for as long as a lifecycle that accepted an action
signed with it may replay (its workflow history is checked again, deterministically, on every replay).

The worker calls `configure_action_keys` once at start; workflow code then calls `verify_action`, which reads
no environment, file or clock of its own (the workflow passes its deterministic `now`), so the module is
imported passed through the sandbox.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import stat
import time
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from shielding import messages
from shielding.domain import (
    ActionSignature,
    FormSubmission,
    ReviewDecision,
    ShieldingRequestInput,
    UnshieldRequest,
)
from shielding.settings import ConfigurationError, Settings

__all__ = [
    "ACTION_KEYS_FILE",
    "MAX_SKEW",
    "ActionKeys",
    "ActionSignature",
    "Signable",
    "SignedAction",
    "action_keys_from_settings",
    "argument_digest",
    "configure_action_keys",
    "configured_action_keys",
    "ensure_dev_action_keys",
    "generate_action_key_spec",
    "parse_action_keys",
    "sign_action",
    "signed",
    "verify_action",
]

ACTION_KEYS_FILE = "action.keys"
KEY_BYTES = 32
# How far a signature's time may be from the workflow's clock, either way (clock drift, a slow round trip).
MAX_SKEW = timedelta(minutes=5)
# Names the encoding, so a MAC made for anything else can never verify as an action.
SCHEME = "shielding-action-v1"
_KEY_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


class SignedAction(StrEnum):
    """The actions the service signs; a signal carries the same name as its update twin."""

    INTAKE = "intake"
    RECEIVE_FORM = "receive_form"
    DECIDE_REVIEW = "decide_review"
    UNSHIELD = "unshield"


# ---------------------------------------------------------------------------------------------- keys


class ActionKeys:
    """Parsed action keys: the first signs, every one verifies."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise ConfigurationError("At least one action key is needed (SHIELDING_ACTION_KEYS).")
        self._signing_key_id = keys[0][0]
        self._keys = dict(keys)
        if len(self._keys) != len(keys):
            raise ConfigurationError("SHIELDING_ACTION_KEYS names the same key id twice.")

    @classmethod
    def from_spec(cls, spec: str) -> ActionKeys:
        return cls(parse_action_keys(spec))

    @property
    def signing_key_id(self) -> str:
        return self._signing_key_id

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    def mac(self, key_id: str, message: bytes) -> str | None:
        """The hex HMAC-SHA256 of `message` under `key_id`, or None if no such key is held."""
        key = self._keys.get(key_id)
        if key is None:
            return None
        return hmac.new(key, message, hashlib.sha256).hexdigest()

    def __repr__(self) -> str:  # never the key material
        return f"ActionKeys(key_ids={self.key_ids!r})"


def parse_action_keys(spec: str) -> list[tuple[str, bytes]]:
    """Parse "key-id:base64key,older-id:base64key" (the first signs)."""
    keys = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        key_id, sep, encoded = item.partition(":")
        if not sep or not key_id or len(key_id) > 64 or not set(key_id) <= _KEY_ID_CHARS or key_id[0] in "._-":
            raise ConfigurationError(
                "SHIELDING_ACTION_KEYS entries look like key-id:base64-key (key ids: letters, digits, . _ -)"
            )
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except ValueError as err:
            raise ConfigurationError(f"action key {key_id!r} is not valid base64") from err
        if len(key) != KEY_BYTES:
            raise ConfigurationError(f"action key {key_id!r} must be {KEY_BYTES} bytes")
        keys.append((key_id, key))
    if not keys:
        raise ConfigurationError("SHIELDING_ACTION_KEYS holds no key.")
    return keys


def generate_action_key_spec(key_id: str) -> str:
    return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"


def ensure_dev_action_keys(data_dir: Path) -> Path:
    """`<data_dir>/action.keys`, made with a new key if missing: readable by its owner only from the start."""
    path = data_dir / ACTION_KEYS_FILE
    if path.exists():
        return path
    data_dir.mkdir(parents=True, exist_ok=True)
    spec = generate_action_key_spec("dev-" + time.strftime("%Y%m%d"))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process (the worker, say) made it first: use theirs
        return path
    with os.fdopen(fd, "w") as file:
        file.write(spec + "\n")
        file.flush()
        os.fsync(file.fileno())
    return path


def _read_keys_file(path: Path) -> str:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(f"{path} can be read by other users; make it private (chmod 600 {path}).")
    # A process that lost the race to create it may look before the winner has written it.
    for _ in range(40):
        spec = path.read_text().strip()
        if spec:
            return spec
        time.sleep(0.05)
    raise ConfigurationError(f"{path} is empty; delete it and start again to generate a development key.")


def action_keys_from_settings(settings: Settings) -> str:
    """The action key spec: SHIELDING_ACTION_KEYS, else (development only) the generated file under the data dir."""
    if settings.action_keys:
        return settings.action_keys
    if settings.environment == "production":
        raise ConfigurationError(
            "SHIELDING_ACTION_KEYS is required in production: without it nobody can tell the service's actions "
            "from forged ones."
        )
    return _read_keys_file(ensure_dev_action_keys(settings.data_dir))


# The keys this worker verifies with, set once at start (configure_action_keys) and read by workflow code.
_configured: ActionKeys | None = None


def configure_action_keys(spec: str) -> ActionKeys:
    """Parse `spec` and make it the keys `verify_action` uses by default (the worker calls this at start)."""
    global _configured
    keys = ActionKeys.from_spec(spec)
    _configured = keys
    return keys


def configured_action_keys() -> ActionKeys | None:
    return _configured


# ------------------------------------------------------------------------------------------ signatures


def argument_digest(argument: BaseModel) -> str:
    """SHA-256 of the argument's canonical JSON, its signature left out."""
    body = argument.model_dump(mode="json", exclude={"signature"})
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _instant(at: datetime) -> str:
    if at.utcoffset() is None:
        raise ValueError("a signature's time must carry its UTC offset")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _message(
    *, key_id: str, namespace: str, workflow_id: str, action: str, digest: str, actor: str, at: datetime, nonce: str
) -> bytes:
    fields = [SCHEME, key_id, namespace, workflow_id, action, digest, actor, _instant(at), nonce]
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode()


def sign_action(
    keys: ActionKeys,
    *,
    namespace: str,
    workflow_id: str,
    action: str,
    argument: BaseModel,
    actor: str,
    issued_at: datetime,
    nonce: str | None = None,
) -> ActionSignature:
    """Sign one action for one workflow with the first key."""
    key_id = keys.signing_key_id
    nonce = nonce or secrets.token_urlsafe(18)
    message = _message(
        key_id=key_id,
        namespace=namespace,
        workflow_id=workflow_id,
        action=action,
        digest=argument_digest(argument),
        actor=actor,
        at=issued_at,
        nonce=nonce,
    )
    mac = keys.mac(key_id, message)
    assert mac is not None
    return ActionSignature(key_id=key_id, actor=actor, issued_at=issued_at, nonce=nonce, mac=mac)


Signable = TypeVar("Signable", ShieldingRequestInput, FormSubmission, ReviewDecision, UnshieldRequest)


def signed(
    argument: Signable,
    keys: ActionKeys,
    *,
    namespace: str,
    workflow_id: str,
    action: str,
    issued_at: datetime | None = None,
) -> Signable:
    """`argument` with the service's signature for `action` on `workflow_id`, for its own actor, made now."""
    signature = sign_action(
        keys,
        namespace=namespace,
        workflow_id=workflow_id,
        action=action,
        argument=argument,
        actor=argument.actor,
        issued_at=issued_at or datetime.now(UTC),
    )
    return argument.model_copy(update={"signature": signature})


def verify_action(
    signature: ActionSignature | None,
    *,
    namespace: str,
    workflow_id: str,
    action: str,
    argument: BaseModel,
    actor: str,
    now: datetime,
    seen_nonces: Collection[str] = (),
    keys: ActionKeys | None = None,
) -> str | None:
    """None if the service signed exactly this action for this workflow and person, recently, and only once;
    else the refusal. Deterministic: `now` is the workflow's clock and `seen_nonces` its carried state."""
    if signature is None:
        return messages.ACTION_UNSIGNED
    keys = keys or _configured
    if keys is None:
        return messages.ACTION_KEYS_MISSING
    message = _message(
        key_id=signature.key_id,
        namespace=namespace,
        workflow_id=workflow_id,
        action=action,
        digest=argument_digest(argument),
        actor=signature.actor,
        at=signature.issued_at,
        nonce=signature.nonce,
    )
    expected = keys.mac(signature.key_id, message)
    if expected is None:
        return messages.ACTION_UNKNOWN_KEY
    if not hmac.compare_digest(expected, signature.mac):
        return messages.ACTION_BAD_SIGNATURE
    if signature.actor != actor:
        return messages.ACTION_WRONG_ACTOR
    if abs(now - signature.issued_at) > MAX_SKEW:
        return messages.action_stale(int(MAX_SKEW.total_seconds() // 60))
    if signature.nonce in seen_nonces:
        return messages.ACTION_REPLAYED
    return None
