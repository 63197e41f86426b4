"""All settings, read from the environment in one place.

With no settings at all, every command finds a running `shielding dev` through the stack file it writes
under the data dir; `TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE` and `DATABASE_URL` point elsewhere.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

STACK_FILE = "stack.json"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    environment: Literal["development", "production"] = Field(
        default="development", validation_alias=AliasChoices("SHIELDING_ENVIRONMENT")
    )
    data_dir: Path = Field(default=Path(".data"), validation_alias=AliasChoices("SHIELDING_DATA_DIR"))
    temporal_address: str | None = Field(default=None, validation_alias=AliasChoices("TEMPORAL_ADDRESS"))
    temporal_namespace: str = Field(default="default", validation_alias=AliasChoices("TEMPORAL_NAMESPACE"))
    database_url: str | None = Field(default=None, validation_alias=AliasChoices("DATABASE_URL"))
    task_queue: str = Field(default="shielding", validation_alias=AliasChoices("SHIELDING_TASK_QUEUE"))
    actor: str | None = Field(default=None, validation_alias=AliasChoices("SHIELDING_ACTOR"))
    # Comma-separated "key-id:base64-32-byte-key"; the first is used to encrypt, all of them decrypt.
    encryption_keys: str | None = Field(default=None, validation_alias=AliasChoices("SHIELDING_ENCRYPTION_KEYS"))
    codec_token: str | None = Field(default=None, validation_alias=AliasChoices("SHIELDING_CODEC_TOKEN"))
    codec_cors_origin: str = Field(
        default="http://localhost:8233", validation_alias=AliasChoices("SHIELDING_CODEC_CORS_ORIGIN")
    )
    max_document_bytes: int = Field(
        default=20 * 1024 * 1024, validation_alias=AliasChoices("SHIELDING_MAX_DOCUMENT_BYTES")
    )
    intake_timeout_seconds: float = Field(
        default=45.0, validation_alias=AliasChoices("SHIELDING_INTAKE_TIMEOUT_SECONDS")
    )
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("SHIELDING_LOG_LEVEL"))
    dev_temporal_port: int = Field(default=7233, validation_alias=AliasChoices("SHIELDING_DEV_TEMPORAL_PORT"))
    dev_ui_port: int = Field(default=8233, validation_alias=AliasChoices("SHIELDING_DEV_UI_PORT"))
    max_cached_workflows: int = Field(default=1000, validation_alias=AliasChoices("SHIELDING_MAX_CACHED_WORKFLOWS"))

    def stack_file(self) -> Path:
        return self.data_dir / STACK_FILE

    def _stack(self) -> dict[str, str]:
        path = self.stack_file()
        if path.is_file():
            try:
                loaded = json.loads(path.read_text())
            except (OSError, ValueError):
                return {}
            return {k: str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}
        return {}

    def resolved_temporal_address(self) -> str:
        return self.temporal_address or self._stack().get("temporal_address") or "localhost:7233"

    def resolved_database_url(self) -> str:
        url = self.database_url or self._stack().get("database_url")
        if not url:
            raise ConfigurationError(
                "No database configured: start `shielding dev`, or set DATABASE_URL to the directory database."
            )
        return url


class ConfigurationError(Exception):
    """A setting is missing or wrong; the message says which and how to fix it."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
