"""Secrets: every key and credential file private from creation; production reads secrets only from files.

Files are checked under umask 0, where anything written first and narrowed after (`write_text` then
`chmod`) would be created world-readable: only a file opened 0600 comes out 0600.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli import credentials
from shielding import secrets as shielding_secrets
from shielding.dblogins import secret_file
from shielding.devstack import DevStack, ensure_encryption_keys
from shielding.secrets import SECRET_SETTINGS, file_variable, generate, with_password, write_secret_file
from shielding.settings import ConfigurationError, Settings

ROOT = Path(__file__).resolve().parent.parent


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    before = os.umask(0)
    try:
        yield
    finally:
        os.umask(before)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No setting from the developer's environment leaks into these checks."""
    for name in list(os.environ):
        if name.startswith("SHIELDING_") or name in ("DATABASE_URL", "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE"):
            monkeypatch.delenv(name)
    return monkeypatch


# ------------------------------------------------------------------------------------ a. files made 0600


def test_a_secret_file_is_private_from_creation_and_never_overwritten(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "k"
    assert write_secret_file(path, "first\n") is True
    assert mode(path) == 0o600 and path.read_text() == "first\n"
    assert write_secret_file(path, "second\n") is False  # another process made it first: theirs is kept
    assert path.read_text() == "first\n"
    # The other side: what the helper replaced (write, then chmod) comes out world-readable under this umask.
    careless = tmp_path / "careless"
    careless.write_text("x")
    assert mode(careless) & 0o077


def test_replacing_a_secret_file_keeps_it_private_and_whole(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "credentials.json"
    write_secret_file(path, "old")
    assert write_secret_file(path, "new", replace=True) is True
    assert path.read_text() == "new" and mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["credentials.json"]  # no temporary file left


def test_every_key_and_credential_file_the_service_writes_is_0600(tmp_path: Path, open_umask: None) -> None:
    keys = ensure_encryption_keys(tmp_path)
    password = tmp_path / "db-service.password"
    secret_file(password)
    settings = Settings(data_dir=tmp_path, credentials=tmp_path / "cfg" / "credentials.json")
    saved = credentials.save(
        settings,
        credentials.SavedSession(
            api_url="http://x", name="ivy", roles=["intake"], token="t", auth_method="local", idle_timeout_minutes=15
        ),
    )
    stack = DevStack(settings)
    stack._write_stack_file("127.0.0.1:7233", "postgresql://shielding_service:pw@localhost/shielding")
    for path in (keys, password, saved, settings.stack_file()):
        assert mode(path) == 0o600, path
    assert mode(saved.parent) == 0o700
    # Made once, then read: the same value every time.
    assert secret_file(password) == password.read_text().strip()
    before = keys.read_text()
    assert ensure_encryption_keys(tmp_path).read_text() == before


def test_generated_compose_secrets_are_private_and_kept(tmp_path: Path, open_umask: None) -> None:
    folder = tmp_path / "secrets"
    made = generate(folder)
    assert {p.name for p in made} == set(shielding_secrets.COMPOSE_SECRETS)
    assert mode(folder) == 0o700 and all(mode(p) == 0o600 for p in made)
    assert (folder / "oidc-client-secret").read_text() == ""
    assert (folder / "encryption-keys").read_text().startswith("encryption-")
    first = (folder / "encryption-keys").read_text()
    assert generate(folder) == [] and (folder / "encryption-keys").read_text() == first


# ------------------------------------------------------------------------ b. production reads only files


@pytest.mark.parametrize("field", sorted(SECRET_SETTINGS))
def test_each_secret_is_read_from_its_file(field: str, tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    path = tmp_path / field
    path.write_text(f"value-of-{field}\n")
    clean_env.setenv(file_variable(field), str(path))
    for environment in ("development", "production"):
        clean_env.setenv("SHIELDING_ENVIRONMENT", environment)
        assert getattr(Settings(), field) == f"value-of-{field}"


@pytest.mark.parametrize("field", sorted(SECRET_SETTINGS))
def test_production_refuses_a_secret_in_a_plain_variable(field: str, clean_env: pytest.MonkeyPatch) -> None:
    variable = SECRET_SETTINGS[field]
    clean_env.setenv(variable, "in-clear")
    clean_env.setenv("SHIELDING_ENVIRONMENT", "development")
    assert getattr(Settings(), field) == "in-clear"  # development: a plain variable is fine
    clean_env.setenv("SHIELDING_ENVIRONMENT", "production")
    with pytest.raises(ConfigurationError, match=f"{variable} is set in the environment.*{variable}_FILE="):
        Settings()
    # Passed in code (as tests do) is not an environment variable.
    in_code: dict[str, Any] = {field: "in-code"}
    assert getattr(Settings(**in_code), field) == "in-code"


def test_the_database_password_comes_from_a_file_not_the_url(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SHIELDING_ENVIRONMENT", "production")
    clean_env.setenv("DATABASE_URL", "postgresql://shielding_service:in-clear@app-db:5432/shielding")
    with pytest.raises(ConfigurationError, match="DATABASE_URL carries a password.*SHIELDING_DATABASE_PASSWORD_FILE"):
        Settings()
    clean_env.setenv("DATABASE_URL", "postgresql://shielding_service@app-db:5432/shielding")
    password = tmp_path / "service-db-password"
    password.write_text("p@ss/word\n")
    clean_env.setenv("SHIELDING_DATABASE_PASSWORD_FILE", str(password))
    url = Settings().resolved_database_url()
    assert url == "postgresql://shielding_service:p%40ss%2Fword@app-db:5432/shielding"
    # A URL that has its password already keeps it (development's stack file).
    assert with_password("postgresql://u:mine@h/db", "other") == "postgresql://u:mine@h/db"


def test_secret_files_that_cannot_be_used_are_refused_in_one_sentence(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("SHIELDING_ACTION_KEYS_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match=r"^SHIELDING_ACTION_KEYS_FILE names .*missing, which cannot be read"):
        Settings()
    empty = tmp_path / "empty"
    empty.write_text("\n")
    clean_env.setenv("SHIELDING_ACTION_KEYS_FILE", str(empty))
    assert Settings().action_keys is None  # an empty file leaves the setting unset
    full = tmp_path / "full"
    full.write_text("from-file")
    clean_env.setenv("SHIELDING_ACTION_KEYS_FILE", str(full))
    clean_env.setenv("SHIELDING_ACTION_KEYS", "from-variable")
    with pytest.raises(ConfigurationError, match="Set SHIELDING_ACTION_KEYS or SHIELDING_ACTION_KEYS_FILE, not both"):
        Settings()


def test_a_command_in_production_with_a_plain_secret_stops_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIELDING_") and k != "DATABASE_URL"}
    env.update(SHIELDING_ENVIRONMENT="production", SHIELDING_ENCRYPTION_KEYS="k:AAAA", SHIELDING_DATA_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", "from cli.app import main; main()", "migrate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: SHIELDING_ENCRYPTION_KEYS is set in the environment; in production give it as a file instead: "
        "SHIELDING_ENCRYPTION_KEYS_FILE=/run/secrets/<name>."
    ]


# ---------------------------------------------------------------------------- docker-compose.yml secrets


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


APP_SECRETS = {
    "migrate": {"SHIELDING_DATABASE_PASSWORD_FILE", "SHIELDING_SERVICE_DB_PASSWORD_FILE"},
    "worker": {
        "SHIELDING_DATABASE_PASSWORD_FILE",
        "SHIELDING_ENCRYPTION_KEYS_FILE",
        "SHIELDING_ACTION_KEYS_FILE",
        "SHIELDING_AUDIT_KEYS_FILE",
    },
    "web": {
        "SHIELDING_DATABASE_PASSWORD_FILE",
        "SHIELDING_ENCRYPTION_KEYS_FILE",
        "SHIELDING_ACTION_KEYS_FILE",
        "SHIELDING_AUDIT_KEYS_FILE",
        "SHIELDING_SESSION_SECRET_FILE",
        "SHIELDING_OIDC_CLIENT_SECRET_FILE",
    },
}


def _environment(service: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (service.get("environment") or {}).items()}


def test_compose_gives_the_app_its_secrets_as_docker_secrets(compose: dict[str, Any]) -> None:
    declared = compose["secrets"]
    assert set(declared) >= set(shielding_secrets.COMPOSE_SECRETS)
    for name, spec in declared.items():
        assert spec == {"file": f"${{SHIELDING_SECRETS_DIR:-./secrets}}/{name}"}, name
    plain = {variable for variable in SECRET_SETTINGS.values()}
    for service_name, wanted in APP_SECRETS.items():
        service = compose["services"][service_name]
        env = _environment(service)
        assert not plain & set(env), f"{service_name} passes a secret as a plain variable"
        assert wanted <= set(env), service_name
        mounted = set(service["secrets"])
        for variable in wanted:
            path = env[variable]
            assert path.startswith("/run/secrets/") and path.removeprefix("/run/secrets/") in mounted, variable
        # No password inside a connection string.
        assert "@" in env["DATABASE_URL"] and ":" not in env["DATABASE_URL"].split("//", 1)[1].split("@", 1)[0]
    app_db = _environment(compose["services"]["app-db"])
    assert "POSTGRES_PASSWORD" not in app_db and app_db["POSTGRES_PASSWORD_FILE"] == "/run/secrets/app-db-password"
