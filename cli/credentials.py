"""The saved session: the bearer token this person was issued at `shielding login`, in a file only they can read.

Default place: `$XDG_CONFIG_HOME/shielding/credentials.json` (else `~/.config/shielding/credentials.json`);
`SHIELDING_CREDENTIALS` names another. The file is created with mode 0600 from its first byte and replaced
atomically, so no other user ever sees a token, not even half of one.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ValidationError

from shielding.secrets import write_secret_file
from shielding.settings import Settings


class SavedSession(BaseModel):
    """Who signed in, where, and the token the service issued (the service holds only its digest)."""

    api_url: str
    name: str
    roles: list[str]
    token: str
    auth_method: str
    idle_timeout_minutes: float


def credentials_path(settings: Settings) -> Path:
    if settings.credentials is not None:
        return settings.credentials.expanduser()
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "shielding" / "credentials.json"


def load(settings: Settings) -> SavedSession | None:
    """The saved session, or None when there is none (or it cannot be read as one)."""
    try:
        return SavedSession.model_validate_json(credentials_path(settings).read_bytes())
    except (OSError, ValidationError, ValueError):
        return None


def save(settings: Settings, session: SavedSession) -> Path:
    path = credentials_path(settings)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_secret_file(path, session.model_dump_json(), replace=True)
    return path


def delete(settings: Settings) -> bool:
    """Remove the saved session; True if there was one."""
    try:
        credentials_path(settings).unlink()
    except FileNotFoundError:
        return False
    return True
