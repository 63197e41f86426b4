"""All settings, read from the environment in one place (`SHIELDING_*`, plus three standard variables).

With no settings at all, every command finds a running `shielding dev` through the stack file it writes
under the data dir; `TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE` and `DATABASE_URL` point elsewhere. Nothing
else in the service reads `os.environ`.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

STACK_FILE = "stack.json"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHIELDING_", extra="ignore", populate_by_name=True)

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path(".data")
    # The three standard variables, without our prefix.
    temporal_address: str | None = Field(default=None, validation_alias=AliasChoices("TEMPORAL_ADDRESS"))
    temporal_namespace: str = Field(default="default", validation_alias=AliasChoices("TEMPORAL_NAMESPACE"))
    database_url: str | None = Field(default=None, validation_alias=AliasChoices("DATABASE_URL"))
    task_queue: str = "shielding"
    # Where this process serves Prometheus metrics (the SDK's and ours), e.g. "0.0.0.0:9464"; unset: none.
    metrics_address: str | None = None
    # How often the web service reads the queue gauges (reviews due and overdue, forms awaited) from PostgreSQL.
    metrics_refresh_seconds: float = 30.0
    # Comma-separated "key-id:base64-32-byte-key"; the first is used to encrypt, all of them decrypt.
    encryption_keys: str | None = None
    # Comma-separated "key-id:base64-32-byte-key" for signing staff actions sent to workflows (HMAC-SHA256);
    # the first signs, all of them verify. Held by the service and the worker, never by Temporal.
    action_keys: str | None = None
    # Comma-separated "key-id:base64-32-byte-key" the service signs each audit entry and anchor line with
    # (HMAC-SHA256); the first signs, all of them verify. Never stored in the database.
    audit_keys: str | None = None
    # The directory of the append-only anchor files (`audit.anchor`): the audit log's signed head, kept outside
    # the database. Unset: the data dir. The web service and the worker must share it.
    audit_anchor_dir: Path | None = None
    # How often the worker's Temporal Schedule verifies the audit log and anchors its head.
    audit_anchor_minutes: float = 60.0
    # The Temporal Web UI's origin: the only one allowed to call the web service's /codec endpoint.
    codec_cors_origin: str = "http://localhost:8233"
    # Mutual TLS to Temporal (`shielding certs generate`): this process's certificate and key, the CA that
    # signed the frontend's certificate, and the name it was issued for. Required in production.
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_tls_ca: Path | None = None
    temporal_tls_server_name: str | None = None
    max_document_bytes: int = 20 * 1024 * 1024
    # Directory reads (searches and views by uid) one person may make in each window, shared by every process.
    directory_reads_per_window: int = 60
    directory_read_window_seconds: int = 300
    intake_timeout_seconds: float = 45.0
    # Unset: services log INFO, commands that speak to people log only warnings and errors.
    log_level: str | None = None
    # Print a stack trace after a command's one-line error (for developers only).
    debug: bool = False
    # The web service (`shielding serve`, and `shielding dev` starts it too).
    web_host: str = "127.0.0.1"
    web_port: int = 8000
    dev_web_port: int = 8000
    # Where the CLI finds the service, and where it keeps its session (default: the user's config dir).
    api_url: str | None = None
    credentials: Path | None = None
    session_idle_minutes: float = 15.0
    # Re-authentication within this many minutes is "fresh" enough for break-glass.
    fresh_auth_minutes: float = 5.0
    # Secure cookies; unset: on in production, off in development (plain http://localhost).
    cookie_secure: bool | None = None
    # Signs the short-lived sign-in state cookie (OpenID Connect redirects); generated in development.
    session_secret: str | None = None
    # OpenID Connect single sign-on; unset: local accounts only.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    # Roles from a claim of the ID token ("group=role,group=role"), beside roles granted in the users table.
    oidc_groups_claim: str = "groups"
    oidc_group_roles: str | None = None
    # Given to `shielding migrate`: the password it sets on the service's own database login (production).
    service_db_password: str | None = None
    dev_temporal_port: int = 7233
    dev_ui_port: int = 8233
    # Where staff's browsers reach the Temporal Web UI, for the pages' links to a request's workflow and to a
    # stage's list; unset: `shielding dev`'s own UI in development, no links in production.
    temporal_ui_url: str | None = None
    max_cached_workflows: int = 1000
    # Supporting documents of a closed request keep their content this many days after it closed, then a
    # daily Temporal Schedule removes it (name, size and digest stay, with the time it was removed).
    document_retention_days: float = 30.0
    # How long the access log keeps who looked at what (then the retention schedule removes it, audited).
    access_log_retention_days: float = 730.0
    # Views in a day of one shielded child's record, by someone with no request or brokering link to the child,
    # after which the managers are told (a flag, not a block).
    shielded_views_per_day: int = 3
    # Delivering the outbox (shielding.delivery): how often the relay's Temporal Schedule looks for new messages,
    # and the first wait before a failed delivery is tried again (doubling, to 10 minutes; given up after 3 days).
    notification_relay_seconds: float = 30.0
    notification_retry_seconds: float = 5.0
    # GOV.UK Notify (production): the API key (a secret), its base URL, and the template id of each message kind
    # as JSON {"kind": "template-id"}, with a "generic" entry for every kind not named. Unset key: SMTP below.
    notify_api_key: str | None = None
    notify_base_url: str = "https://api.notifications.service.gov.uk"
    notify_templates: str | None = None
    # SMTP (development, and where there is no Notify): email only, no SMS. `shielding dev` runs a local sink.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_from: str = "shielding@localhost"
    # STARTTLS before sending (a council's relay; the local sink of `shielding dev` speaks plain SMTP).
    smtp_starttls: bool = False
    dev_smtp_port: int = 8025
    # The daily digest to reviewers of the reviews due and overdue (Europe/London).
    review_digest_hour: int = 8
    # The password of DATABASE_URL's user when the URL has none (production: from a file, below).
    database_password: str | None = None
    # Every secret can be read from a file (Docker secrets): SHIELDING_<NAME>_FILE, e.g. /run/secrets/<name>.
    # Production refuses the plain variables (shielding.secrets).
    encryption_keys_file: Path | None = None
    action_keys_file: Path | None = None
    audit_keys_file: Path | None = None
    session_secret_file: Path | None = None
    oidc_client_secret_file: Path | None = None
    service_db_password_file: Path | None = None
    database_password_file: Path | None = None
    notify_api_key_file: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        from shielding.secrets import refuse_plain_secrets

        init_kwargs = getattr(init_settings, "init_kwargs", {})

        class CheckedEnvironment(PydanticBaseSettingsSource):
            """The environment, refused in production when it holds a secret in clear."""

            def get_field_value(self, field: object, field_name: str) -> tuple[object, str, bool]:
                return None, field_name, False

            def __call__(self) -> dict[str, object]:
                values = env_settings()
                refuse_plain_secrets(values, init_kwargs)
                return values

        return init_settings, CheckedEnvironment(settings_cls), dotenv_settings, file_secret_settings

    @model_validator(mode="after")
    def _read_secret_files(self) -> Settings:
        from shielding.secrets import apply_secret_files

        apply_secret_files(self)
        return self

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

    def resolved_temporal_ui_url(self) -> str | None:
        if self.temporal_ui_url:
            return self.temporal_ui_url.rstrip("/")
        return f"http://localhost:{self.dev_ui_port}" if self.environment == "development" else None

    def resolved_temporal_address(self) -> str:
        return self.temporal_address or self._stack().get("temporal_address") or "localhost:7233"

    def resolved_database_url(self) -> str:
        url = self.database_url or self._stack().get("database_url")
        if not url:
            raise ConfigurationError(
                "No database configured: start `shielding dev`, or set DATABASE_URL to the directory database."
            )
        from shielding.secrets import with_password

        return with_password(url, self.database_password)


class ConfigurationError(Exception):
    """A setting is missing or wrong; the message says which and how to fix it."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
