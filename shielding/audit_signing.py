"""Signed, anchored audit streams: what makes a quiet rewrite of the audit log show.

The database's hash chain (a trigger) orders entries, but whoever owns the tables can disable the trigger,
edit entries and recompute every hash. So the service also signs each entry (HMAC-SHA256 with a key it holds
and the database never sees), and `verify` checks it in Python, not with a function the database owner could
replace. Each signature covers the entry's number, time, content and the previous entry's hash, so an entry
cannot be changed, moved, renumbered or slipped in without a key; an entry written straight into the table
(the service's own database login could do that, under any actor) carries no valid signature and fails verify.

What a signature cannot show is the newest entries removed, with the chain head put back. So the head is also
anchored: appended, signed, to a file outside the database (`<anchor dir>/audit.anchor`, opened O_APPEND,
0600) at every verify and on the worker's schedule; verify then fails when an anchored entry is gone or differs.

A stream is a table of the same shape (`AuditStream`): `audit_log` now, an access log later. Keys look like
the action keys, `key-id:base64-32-bytes,older-id:...`: the first signs, every one verifies; a retired key must
stay listed for as long as entries signed with it are kept.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import json
import os
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shielding.settings import ConfigurationError, Settings, get_settings

AUDIT_KEYS_FILE = "audit.keys"
KEY_BYTES = 32
ENTRY_SCHEME = "shielding-audit-entry-v1"
ANCHOR_SCHEME = "shielding-audit-anchor-v1"
GENESIS = "0" * 64
_KEY_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


@dataclass(frozen=True)
class AuditStream:
    """A signed, hash-chained, append-only table: its head table, its content columns in digest order (those
    holding jsonb named in `json_columns`) and its anchor file's name."""

    table: str
    head_table: str
    columns: tuple[str, ...]
    json_columns: frozenset[str]
    anchor_name: str
    # How a verdict names it ("audit log BROKEN at entry 7 ...").
    label: str = "audit log"
    # Entries may be removed from its start by retention (the head says where the kept log starts).
    pruned: bool = False


AUDIT_LOG = AuditStream(
    table="audit_log",
    head_table="audit_chain_head",
    columns=("action", "actor", "request_id", "child_uid", "requestor", "reason", "details"),
    json_columns=frozenset({"requestor", "details"}),
    anchor_name="audit.anchor",
)

# Who looked at which child (shielding.store.access_log): the same protections, its own chain and anchor file.
ACCESS_LOG = AuditStream(
    table="access_log",
    head_table="access_chain_head",
    columns=("actor", "front_end", "kind", "request_id", "child_uids", "details"),
    json_columns=frozenset({"child_uids", "details"}),
    anchor_name="access.anchor",
    label="access log",
    pruned=True,
)


# ---------------------------------------------------------------------------------------------- keys


class AuditKeys:
    """Parsed audit keys: the first signs, every one verifies."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise ConfigurationError("At least one audit key is needed (SHIELDING_AUDIT_KEYS).")
        self._signing_key_id = keys[0][0]
        self._keys = dict(keys)
        if len(self._keys) != len(keys):
            raise ConfigurationError("SHIELDING_AUDIT_KEYS names the same key id twice.")

    @classmethod
    def from_spec(cls, spec: str) -> AuditKeys:
        return cls(parse_audit_keys(spec))

    @property
    def signing_key_id(self) -> str:
        return self._signing_key_id

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    def mac(self, key_id: str, message: bytes) -> str | None:
        """The hex HMAC-SHA256 of `message` under `key_id`, or None if no such key is held."""
        key = self._keys.get(key_id)
        return None if key is None else hmac.new(key, message, hashlib.sha256).hexdigest()

    def check(self, key_id: str | None, message: bytes, mac: str | None) -> bool:
        expected = self.mac(key_id, message) if key_id else None
        return expected is not None and mac is not None and hmac.compare_digest(expected, mac)

    def __repr__(self) -> str:  # never the key material
        return f"AuditKeys(key_ids={self.key_ids!r})"


def parse_audit_keys(spec: str) -> list[tuple[str, bytes]]:
    """Parse "key-id:base64key,older-id:base64key" (the first signs)."""
    keys = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        key_id, sep, encoded = item.partition(":")
        if not sep or not key_id or len(key_id) > 64 or not set(key_id) <= _KEY_ID_CHARS or key_id[0] in "._-":
            raise ConfigurationError(
                "SHIELDING_AUDIT_KEYS entries look like key-id:base64-key (key ids: letters, digits, . _ -)"
            )
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except ValueError as err:
            raise ConfigurationError(f"audit key {key_id!r} is not valid base64") from err
        if len(key) != KEY_BYTES:
            raise ConfigurationError(f"audit key {key_id!r} must be {KEY_BYTES} bytes")
        keys.append((key_id, key))
    if not keys:
        raise ConfigurationError("SHIELDING_AUDIT_KEYS holds no key.")
    return keys


def generate_audit_key_spec(key_id: str) -> str:
    return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"


def ensure_dev_audit_keys(data_dir: Path) -> Path:
    """`<data_dir>/audit.keys`, made with a new key if missing: readable by its owner only from the start."""
    from shielding.secrets import write_secret_file

    path = data_dir / AUDIT_KEYS_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        # False: another process made it first; theirs is used.
        write_secret_file(path, generate_audit_key_spec("dev-audit-" + time.strftime("%Y%m%d")) + "\n")
    return path


def _read_keys_file(path: Path) -> str:
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(f"{path} can be read by other users; make it private (chmod 600 {path}).")
    for _ in range(40):  # a process that lost the race to create it may look before the winner wrote it
        spec = path.read_text().strip()
        if spec:
            return spec
        time.sleep(0.05)
    raise ConfigurationError(f"{path} is empty; delete it and start again to generate a development key.")


def audit_keys_from_settings(settings: Settings) -> str:
    """SHIELDING_AUDIT_KEYS, else (development only) the generated file under the data dir."""
    if settings.audit_keys:
        return settings.audit_keys
    if settings.environment == "production":
        raise ConfigurationError(
            "SHIELDING_AUDIT_KEYS is required in production: without it the audit log could be rewritten unseen."
        )
    return _read_keys_file(ensure_dev_audit_keys(settings.data_dir))


@dataclass(frozen=True)
class AuditSigning:
    """What this process signs and anchors with."""

    keys: AuditKeys
    anchor_dir: Path

    def anchor_path(self, stream: AuditStream = AUDIT_LOG) -> Path:
        return self.anchor_dir / stream.anchor_name


_configured: AuditSigning | None = None


def configure_audit_signing(settings: Settings) -> AuditSigning:
    """The process's audit keys and anchor directory, set once (the first configuration stays: a process that
    signed with one key never switches to another mid-run). Raises ConfigurationError in production without keys."""
    global _configured
    if _configured is None:
        _configured = AuditSigning(
            AuditKeys.from_spec(audit_keys_from_settings(settings)), settings.audit_anchor_dir or settings.data_dir
        )
    return _configured


def set_audit_signing(spec: str, anchor_dir: Path) -> AuditSigning:
    """Replace the process's audit keys and anchor directory (tests, and tools that name them explicitly)."""
    global _configured
    _configured = AuditSigning(AuditKeys.from_spec(spec), anchor_dir)
    return _configured


def audit_signing() -> AuditSigning:
    """The configured signing, else the one the environment's settings give."""
    return _configured or configure_audit_signing(get_settings())


# ------------------------------------------------------------------------------------------ entries


def _instant(at: datetime) -> str:
    if at.utcoffset() is None:
        raise ValueError("an audit entry's time must carry its UTC offset")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def entry_message(
    stream: AuditStream, *, key_id: str, entry_id: int, at: datetime, prev_hash: str, content: Mapping[str, Any]
) -> bytes:
    """What an entry's signature covers: the stream, key, number, time, every content column (json columns as
    PostgreSQL gives them back) and the previous entry's hash."""
    fields = [ENTRY_SCHEME, stream.table, key_id, entry_id, _instant(at), prev_hash]
    fields.extend(content.get(column) for column in stream.columns)
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign_entry(
    keys: AuditKeys,
    stream: AuditStream,
    *,
    entry_id: int,
    at: datetime,
    prev_hash: str,
    content: Mapping[str, Any],
) -> tuple[str, str]:
    """(key id, mac) for one entry, with the first key."""
    key_id = keys.signing_key_id
    message = entry_message(stream, key_id=key_id, entry_id=entry_id, at=at, prev_hash=prev_hash, content=content)
    mac = keys.mac(key_id, message)
    assert mac is not None
    return key_id, mac


def chain_digest(stream: AuditStream, *, entry_id: int, at: datetime, prev_hash: str, texts: Sequence[str]) -> str:
    """The chain hash the trigger computes (`audit_entry_digest`), recomputed here: sha256 over
    id|time|content columns as text (json columns in PostgreSQL's text form, NULL as '')|prev_hash."""
    stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return hashlib.sha256("|".join([str(entry_id), stamp, *texts, prev_hash]).encode()).hexdigest()


# ------------------------------------------------------------------------------------------- anchors


class AnchorError(Exception):
    """The anchor file cannot be trusted: a line the service did not sign, or a file others can read."""


@dataclass(frozen=True)
class Anchor:
    """One anchored head: at `at`, entry `entry_id` had hash `head_hash`; entries from `signed_from` on are
    signed."""

    at: datetime
    entry_id: int
    head_hash: str
    signed_from: int


def _anchor_message(stream: AuditStream, key_id: str, anchor: Anchor) -> bytes:
    fields = [ANCHOR_SCHEME, stream.table, key_id, _instant(anchor.at), anchor.entry_id, anchor.head_hash]
    fields.append(anchor.signed_from)
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode()


def read_anchors(path: Path, stream: AuditStream, keys: AuditKeys) -> list[Anchor]:
    """Every anchored head in `path` (none if it does not exist yet); AnchorError if any line fails."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return []
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AnchorError(f"the anchor file {path} can be read or changed by other users (chmod 600 {path})")
    anchors = []
    for number, line in enumerate(path.read_text(encoding="ascii", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            at, entry_id, head_hash, signed_from, key_id, mac = line.split(" ")
            anchor = Anchor(datetime.fromisoformat(at), int(entry_id), head_hash, int(signed_from))
        except ValueError:
            raise AnchorError(f"line {number} of the anchor file {path} is not an anchor") from None
        if not keys.check(key_id, _anchor_message(stream, key_id, anchor), mac):
            raise AnchorError(f"line {number} of the anchor file {path} was not signed by the service")
        anchors.append(anchor)
    return anchors


def append_anchor(path: Path, stream: AuditStream, keys: AuditKeys, anchor: Anchor) -> None:
    """Append one signed line (O_APPEND, 0600, under an exclusive lock, synced before returning)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key_id = keys.signing_key_id
    mac = keys.mac(key_id, _anchor_message(stream, key_id, anchor))
    line = f"{_instant(anchor.at)} {anchor.entry_id} {anchor.head_hash} {anchor.signed_from} {key_id} {mac}\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
