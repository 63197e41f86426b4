"""Secrets: files private from their first byte, and production reading every secret from a file.

- `write_secret_file` creates a file with mode 0600 at `open` (O_CREAT | O_EXCL), never written first and
  narrowed after: no other user can ever read it, not even for an instant. Every key, password and
  credential file the service writes goes through it (development keys, the service login's password, the
  sign-in secret, the CLI's saved session).
- Each secret setting has a `_FILE` twin (`SHIELDING_ENCRYPTION_KEYS_FILE=/run/secrets/encryption-keys`): the
  setting is read from that file (Docker secrets). In production a secret given as a plain environment
  variable is refused (`refuse_plain_secrets`): environment variables are shown by `docker inspect`, copied
  into child processes and crash reports; a file is not.
- `python -m shielding.secrets generate DIR` writes the files docker-compose.yml mounts as secrets.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shielding.settings import ConfigurationError

# Each secret setting: its plain variable and the variable naming the file that holds it.
SECRET_SETTINGS: dict[str, str] = {
    "encryption_keys": "SHIELDING_ENCRYPTION_KEYS",
    "action_keys": "SHIELDING_ACTION_KEYS",
    "audit_keys": "SHIELDING_AUDIT_KEYS",
    "session_secret": "SHIELDING_SESSION_SECRET",
    "oidc_client_secret": "SHIELDING_OIDC_CLIENT_SECRET",
    "service_db_password": "SHIELDING_SERVICE_DB_PASSWORD",
    "database_password": "SHIELDING_DATABASE_PASSWORD",
    "notify_api_key": "SHIELDING_NOTIFY_API_KEY",
}
SECRET_MODE = 0o600


def file_variable(field: str) -> str:
    return f"{SECRET_SETTINGS[field]}_FILE"


def write_secret_file(path: Path, content: str | bytes, *, replace: bool = False) -> bool:
    """Write `content` to a new file readable by its owner only (0600 from creation), fsynced.

    Without `replace`, an existing file is kept and False returned (another process made it first: use
    theirs). With `replace`, the file is written beside it under a temporary name and renamed over it, so a
    reader sees the old whole file or the new one, never half of either.
    """
    data = content.encode() if isinstance(content, str) else content
    if not replace:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_MODE)
        except FileExistsError:
            return False
        _write_all(fd, data)
        return True
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # left by a crashed run of this same process id
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_MODE)
    try:
        _write_all(fd, data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return True


def _write_all(fd: int, data: bytes) -> None:
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def read_or_create_secret(path: Path, make: str | None = None) -> str:
    """The secret in `path`, created 0600 with `make` (default: 32 random bytes, URL-safe) when missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_secret_file(path, (make or secrets.token_urlsafe(32)) + "\n")
    # A process that lost the race to create it may look before the winner has written it.
    for _ in range(40):
        value = path.read_text().strip()
        if value:
            return value
        time.sleep(0.05)
    raise ConfigurationError(f"{path} is empty; delete it and start again to generate a new one.")


def read_secret_file(variable: str, path: Path) -> str | None:
    """The secret in the file `variable` names (one value; surrounding whitespace and the newline dropped).
    An empty file leaves the setting unset (compose mounts `oidc-client-secret` empty without single sign-on)."""
    try:
        value = path.expanduser().read_text().strip()
    except OSError as err:
        raise ConfigurationError(f"{variable} names {path}, which cannot be read ({err.strerror or err}).") from None
    return value or None


def apply_secret_files(settings: Any) -> None:
    """Fill each secret setting from the file its `_file` twin names (Settings calls this once built)."""
    for field in SECRET_SETTINGS:
        path = getattr(settings, f"{field}_file", None)
        if path is None:
            continue
        value = read_secret_file(file_variable(field), Path(path))
        current = getattr(settings, field)
        if value is None:
            continue
        if current is not None and current != value:
            raise ConfigurationError(f"Set {SECRET_SETTINGS[field]} or {file_variable(field)}, not both.")
        setattr(settings, field, value)


def refuse_plain_secrets(from_environment: Mapping[str, Any], init_kwargs: Mapping[str, Any]) -> None:
    """In production, a secret given as a plain environment variable is refused, in one sentence naming the
    `_FILE` variable to use instead (values passed in code, as tests do, are not environment variables)."""
    environment = init_kwargs.get("environment") or from_environment.get("environment")
    if environment != "production":
        return
    for field, variable in SECRET_SETTINGS.items():
        if from_environment.get(field) and field not in init_kwargs:
            raise ConfigurationError(
                f"{variable} is set in the environment; in production give it as a file instead: "
                f"{variable}_FILE=/run/secrets/<name>."
            )
    url = from_environment.get("database_url") or from_environment.get("DATABASE_URL")
    if isinstance(url, str) and "database_url" not in init_kwargs and _has_password(url):
        raise ConfigurationError(
            "DATABASE_URL carries a password; in production leave it out of the URL and give it as a file: "
            "SHIELDING_DATABASE_PASSWORD_FILE=/run/secrets/<name>."
        )


def _has_password(url: str) -> bool:
    try:
        return bool(urlsplit(url).password)
    except ValueError:
        return False


def with_password(url: str, password: str | None) -> str:
    """`url` with `password` put in, unless it has one already (or no password is given)."""
    if not password or _has_password(url):
        return url
    from urllib.parse import quote, urlunsplit

    parts = urlsplit(url)
    if not parts.username or "@" not in parts.netloc:
        raise ConfigurationError("DATABASE_URL must name the user the database password is for (user@host).")
    user, _, host = parts.netloc.rpartition("@")
    netloc = f"{user}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# ------------------------------------------------------------------------------ files for docker-compose.yml

COMPOSE_SECRETS = {
    "encryption-keys": "encryption",
    "action-keys": "action",
    "audit-keys": "audit",
    "session-secret": "token",
    "service-db-password": "password",
    "app-db-password": "password",
    "oidc-client-secret": "empty",
    "notify-api-key": "empty",
}


def generate(directory: Path) -> list[Path]:
    """Write every secret docker-compose.yml mounts that is missing in `directory` (0700); returns those made.
    `oidc-client-secret` and `notify-api-key` are made empty (no single sign-on, no Notify): the identity
    provider's secret and Notify's key go there by hand."""
    import base64

    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d")
    made = []
    for name, kind in COMPOSE_SECRETS.items():
        if kind in ("encryption", "action", "audit"):
            value = f"{kind}-{stamp}:{base64.b64encode(os.urandom(32)).decode()}"
        elif kind == "token":
            value = secrets.token_urlsafe(48)
        elif kind == "empty":
            value = ""
        else:
            value = secrets.token_hex(24)  # URL-safe: it goes into connection strings
        if write_secret_file(directory / name, value + "\n" if value else ""):
            made.append(directory / name)
    return made


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "generate":
        print("usage: python -m shielding.secrets generate DIR", file=sys.stderr)
        return 2
    for path in generate(Path(argv[1])):
        print(f"wrote {path} (0600)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
