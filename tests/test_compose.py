"""The production stack (docker-compose.yml, Dockerfile), checked as files: no Docker engine runs here.

The app services' environment is compared with what shielding.settings.Settings reads, and the search
attributes registered by admin-tools with shielding.temporal.SEARCH_ATTRIBUTES, so code and stack cannot drift.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from shielding.settings import Settings
from shielding.temporal import SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

TEMPORAL_DB = "temporal-db"
TEMPORAL_SCHEMA = "temporal-schema"
TEMPORAL = "temporal"
ADMIN_TOOLS = "temporal-admin-tools"
UI = "temporal-ui"
APP_DB = "app-db"
MIGRATE = "migrate"
WORKER = "worker"
WEB = "web"
EXPECTED_SERVICES = {TEMPORAL_DB, TEMPORAL_SCHEMA, TEMPORAL, ADMIN_TOOLS, UI, APP_DB, MIGRATE, WORKER, WEB}
APP_SERVICES = (MIGRATE, WORKER, WEB)
# Every process that talks to Temporal, and the certificate (`shielding certs generate`) it mounts.
TLS_CLIENTS = {WORKER: "worker", WEB: "web", UI: "ui", ADMIN_TOOLS: "admin"}
CERTS_DIR = "${SHIELDING_CERTS_DIR:-./certs}"
DATABASES = (TEMPORAL_DB, APP_DB)
HEALTHY = "service_healthy"
COMPLETED = "service_completed_successfully"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def dockerfile() -> str:
    assert DOCKERFILE.is_file(), "the worker image needs a Dockerfile at the project root"
    return DOCKERFILE.read_text()


def settings_env_names() -> set[str]:
    """What Settings reads: SHIELDING_<FIELD>, or a field's alias (the three standard variables)."""
    prefix = Settings.model_config.get("env_prefix", "")
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            names.add(f"{prefix}{name}".upper())
        else:
            assert hasattr(alias, "choices"), "aliases are AliasChoices"
            names.update(choice for choice in alias.choices if isinstance(choice, str))
    return names


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def command_text(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return "\n".join(command) if isinstance(command, list) else str(command)


def command_list(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    return command if isinstance(command, list) else str(command).split()


def depends(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):  # short syntax: no condition at all
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def image_tag(image: str) -> str | None:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def test_all_services_present(services: dict[str, dict[str, Any]]) -> None:
    assert not EXPECTED_SERVICES - set(services), f"missing: {sorted(EXPECTED_SERVICES - set(services))}"


def test_every_image_is_pinned(services: dict[str, dict[str, Any]]) -> None:
    images = {name: svc["image"] for name, svc in services.items() if "image" in svc}
    assert set(images) == set(services), "every service names its image (the app ones as the built tag)"
    for name, image in images.items():
        tag = image_tag(image)
        assert tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest" and "latest" not in tag, f"{name}: {image!r} is not pinned"
        assert re.search(r"\d", tag), f"{name}: tag of {image!r} names no version"
    assert "latest" not in COMPOSE_FILE.read_text()


def test_no_auto_setup_image(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        assert "auto-setup" not in svc.get("image", ""), f"{name} uses the deprecated auto-setup image"
    assert services[TEMPORAL]["image"].startswith("temporalio/server:")


def test_temporal_images_match_versions(services: dict[str, dict[str, Any]]) -> None:
    server_version = image_tag(services[TEMPORAL]["image"])
    assert server_version and re.fullmatch(r"\d+\.\d+\.\d+", server_version)
    for name in (TEMPORAL_SCHEMA, ADMIN_TOOLS):
        image = services[name]["image"]
        assert image.startswith("temporalio/admin-tools:"), name
        tag = image_tag(image) or ""
        assert tag == server_version or tag.startswith(server_version + "-"), (
            f"{name}: admin-tools {tag} must match server {server_version} (schema version)"
        )
    assert services[UI]["image"].startswith("temporalio/ui:")


def test_databases_are_pinned_postgres_with_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    # The application's database runs the embedded server's major version (18); Temporal's stays on 16.
    majors = {APP_DB: "18", "temporal-db": "16"}
    for name in DATABASES:
        svc = services[name]
        major = majors[name]
        assert re.fullmatch(rf"postgres:{major}\.\d+", svc["image"]), f"{name}: {svc['image']}"
        test = svc.get("healthcheck", {}).get("test")
        assert test, f"{name} has no healthcheck"
        assert "pg_isready" in (" ".join(test) if isinstance(test, list) else test)
        assert svc.get("volumes"), f"{name} keeps its data in a volume"


def test_temporal_server_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    test = services[TEMPORAL].get("healthcheck", {}).get("test")
    assert test
    text = " ".join(test) if isinstance(test, list) else test
    assert "cluster health" in text or "grpc" in text
    env = environment(services[TEMPORAL])
    assert env["DB"] == "postgres12"
    assert env["POSTGRES_SEEDS"] == TEMPORAL_DB


def test_schema_setup_covers_both_temporal_databases(services: dict[str, dict[str, Any]]) -> None:
    script = command_text(services[TEMPORAL_SCHEMA])
    assert "temporal-sql-tool" in script
    for db, schema_dir in (("temporal", "temporal"), ("temporal_visibility", "visibility")):
        assert re.search(rf"--db {db} setup-schema", script), db
        assert re.search(rf"--db {db} update-schema -d \S+/postgresql/v12/{schema_dir}/versioned", script), db


def test_admin_tools_create_namespace_and_every_search_attribute(services: dict[str, dict[str, Any]]) -> None:
    admin = services[ADMIN_TOOLS]
    script = command_text(admin)
    assert "temporal operator namespace create" in script
    assert environment(admin)["TEMPORAL_NAMESPACE"] == environment(services[WORKER])["TEMPORAL_NAMESPACE"]
    assert "temporal operator search-attribute create" in script
    for name, kind in SEARCH_ATTRIBUTES.items():
        assert re.search(rf"--name {name} --type {kind}\b", script), f"{name} ({kind}) is not registered"
    registered = set(re.findall(r"--name (\w+) --type", script))
    assert registered == set(SEARCH_ATTRIBUTES), "admin-tools registers exactly the service's search attributes"


def test_app_environment_is_what_settings_reads(services: dict[str, dict[str, Any]]) -> None:
    known = settings_env_names()
    assert {"TEMPORAL_ADDRESS", "DATABASE_URL", "SHIELDING_ENCRYPTION_KEYS"} <= known  # the derivation works
    for name in APP_SERVICES:
        unknown = set(environment(services[name])) - known
        assert not unknown, f"{name} sets variables no setting reads: {sorted(unknown)}"
    for name in (WORKER, MIGRATE):
        env = environment(services[name])
        assert {"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "DATABASE_URL"} <= set(env), name
        assert env["TEMPORAL_ADDRESS"] == f"{TEMPORAL}:7233"
        assert f"@{APP_DB}:5432/" in env["DATABASE_URL"]
        assert env["DATABASE_URL"].startswith("postgresql://")


def test_app_services_run_in_production_with_required_secrets(services: dict[str, dict[str, Any]]) -> None:
    for name in APP_SERVICES:
        assert environment(services[name])["SHIELDING_ENVIRONMENT"] == "production", name
    # Keys as Docker secrets (files; compose refuses to start when one is missing), never plain variables.
    for name in (WORKER, WEB):
        env = environment(services[name])
        assert env["SHIELDING_ENCRYPTION_KEYS_FILE"] == "/run/secrets/encryption-keys", name
        assert env["SHIELDING_ACTION_KEYS_FILE"] == "/run/secrets/action-keys", name
        assert "SHIELDING_ENCRYPTION_KEYS" not in env and "SHIELDING_ACTION_KEYS" not in env, name
    assert "SHIELDING_ENCRYPTION_KEYS_FILE" not in environment(services[MIGRATE]), "the migration needs no keys"


def test_only_the_migration_connects_as_the_database_owner(services: dict[str, dict[str, Any]]) -> None:
    # The user in the URL; its password from a Docker secret (SHIELDING_DATABASE_PASSWORD_FILE).
    assert environment(services[MIGRATE])["DATABASE_URL"].startswith("postgresql://shielding@")
    for name in (WORKER, WEB):
        assert environment(services[name])["DATABASE_URL"].startswith("postgresql://shielding_service@"), name


def test_the_web_service_is_served_with_a_health_check(services: dict[str, dict[str, Any]]) -> None:
    web = services[WEB]
    assert command_list(web) == ["shielding", "serve"]
    assert "/readyz" in " ".join(web["healthcheck"]["test"])
    assert environment(web)["SHIELDING_WEB_HOST"] == "0.0.0.0"
    assert depends(web) == {MIGRATE: COMPLETED, ADMIN_TOOLS: COMPLETED}


def test_app_services_use_the_project_image(services: dict[str, dict[str, Any]]) -> None:
    images = {services[name]["image"] for name in APP_SERVICES}
    assert len(images) == 1
    for name in APP_SERVICES:
        build = services[name].get("build")
        context = build.get("context") if isinstance(build, dict) else build
        assert context == ".", f"{name} is built from the project's Dockerfile"
    assert command_list(services[MIGRATE]) == ["shielding", "migrate"]
    assert command_list(services[WORKER]) == ["shielding", "worker"]


def test_there_is_no_codec_server_with_a_shared_token(services: dict[str, dict[str, Any]], dockerfile: str) -> None:
    assert "codec-server" not in services and "codec-server" not in COMPOSE_FILE.read_text()
    assert "SHIELDING_CODEC_TOKEN" not in COMPOSE_FILE.read_text()
    assert "SHIELDING_CODEC_TOKEN" not in settings_env_names()
    assert "8081" not in dockerfile


def test_the_ui_is_read_only_and_decodes_through_the_web_service(services: dict[str, dict[str, Any]]) -> None:
    ui = services[UI]
    assert "8233:8080" in [str(port) for port in ui.get("ports", [])]
    env = environment(ui)
    assert env["TEMPORAL_ADDRESS"] == f"{TEMPORAL}:7233"
    # Enforced by the UI server (every write is answered 405), not only hidden buttons.
    assert env["TEMPORAL_DISABLE_WRITE_ACTIONS"] == "true"
    # The browser calls the web service's /codec with the session cookie; no token is handed to it.
    endpoint = env["TEMPORAL_CODEC_ENDPOINT"]
    assert endpoint.endswith(":8000}/codec") or endpoint.endswith(":8000/codec"), endpoint
    assert env["TEMPORAL_CODEC_INCLUDE_CREDENTIALS"] == "true"
    assert env.get("TEMPORAL_CODEC_PASS_ACCESS_TOKEN", "false") == "false"
    # The web service answers the UI's origin only, and the UI's own origin is that one.
    web_origin = environment(services[WEB])["SHIELDING_CODEC_CORS_ORIGIN"]
    assert web_origin.endswith(":-http://localhost:8233}") and env["TEMPORAL_CORS_ORIGINS"] == "http://localhost:8233"
    assert any(str(port).endswith(":8000") for port in services[WEB].get("ports", []))


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path of a service's read-only bind mounts (`host:container:ro`)."""
    found = {}
    for volume in service.get("volumes") or []:
        source, target, mode = str(volume).rsplit(":", 2) if str(volume).count(":") >= 2 else ("", "", "")
        if mode == "ro":
            found[target] = source
    return found


def test_temporal_requires_client_certificates(services: dict[str, dict[str, Any]]) -> None:
    env = environment(services[TEMPORAL])
    assert env["TEMPORAL_TLS_REQUIRE_CLIENT_AUTH"] == "true"
    assert env["TEMPORAL_TLS_FRONTEND_CERT"] == env["TEMPORAL_TLS_SERVER_CERT"] == "/certs/server/cert.pem"
    assert env["TEMPORAL_TLS_FRONTEND_KEY"] == env["TEMPORAL_TLS_SERVER_KEY"] == "/certs/server/key.pem"
    assert env["TEMPORAL_TLS_CLIENT1_CA_CERT"] == env["TEMPORAL_TLS_SERVER_CA_CERT"] == "/certs/ca.pem"
    assert env["TEMPORAL_TLS_FRONTEND_SERVER_NAME"] == env["TEMPORAL_TLS_INTERNODE_SERVER_NAME"] == TEMPORAL
    assert env["TEMPORAL_TLS_FRONTEND_DISABLE_HOST_VERIFICATION"] == "false"
    assert mounts(services[TEMPORAL]) == {
        "/certs/server": f"{CERTS_DIR}/temporal",
        "/certs/ca.pem": f"{CERTS_DIR}/ca.pem",
    }
    # Its own health check has to present a certificate too.
    check = " ".join(services[TEMPORAL]["healthcheck"]["test"])
    assert "--tls-cert-path /certs/server/cert.pem" in check and "--tls-server-name temporal" in check


@pytest.mark.parametrize("name", sorted(TLS_CLIENTS))
def test_every_temporal_client_mounts_only_its_own_certificate(services: dict[str, dict[str, Any]], name: str) -> None:
    assert mounts(services[name]) == {
        "/certs/client": f"{CERTS_DIR}/{TLS_CLIENTS[name]}",
        "/certs/ca.pem": f"{CERTS_DIR}/ca.pem",
    }
    assert "ca-key.pem" not in str(services[name].get("volumes")), "the CA's key is never mounted"


def test_the_worker_and_web_service_connect_over_mutual_tls(services: dict[str, dict[str, Any]]) -> None:
    for name in (WORKER, WEB):
        env = environment(services[name])
        assert env["SHIELDING_TEMPORAL_TLS_CERT"] == "/certs/client/cert.pem", name
        assert env["SHIELDING_TEMPORAL_TLS_KEY"] == "/certs/client/key.pem", name
        assert env["SHIELDING_TEMPORAL_TLS_CA"] == "/certs/ca.pem", name
        assert env["SHIELDING_TEMPORAL_TLS_SERVER_NAME"] == TEMPORAL, name
    ui = environment(services[UI])
    assert (ui["TEMPORAL_TLS_CERT"], ui["TEMPORAL_TLS_KEY"]) == ("/certs/client/cert.pem", "/certs/client/key.pem")
    assert ui["TEMPORAL_TLS_CA"] == "/certs/ca.pem" and ui["TEMPORAL_TLS_SERVER_NAME"] == TEMPORAL
    assert ui["TEMPORAL_TLS_ENABLE_HOST_VERIFICATION"] == "true"
    # Every admin-tools call goes through the function that adds the certificate.
    script = command_text(services[ADMIN_TOOLS])
    assert re.search(r"temporal\(\) \{\s*command temporal \"\$\$@\" --tls-server-name temporal", script)
    assert "--tls-cert-path /certs/client/cert.pem" in script


def test_start_order(services: dict[str, dict[str, Any]]) -> None:
    expected = {
        TEMPORAL_SCHEMA: {TEMPORAL_DB: HEALTHY},
        TEMPORAL: {TEMPORAL_SCHEMA: COMPLETED},
        ADMIN_TOOLS: {TEMPORAL: HEALTHY},
        UI: {TEMPORAL: HEALTHY},
        MIGRATE: {APP_DB: HEALTHY},
        WORKER: {MIGRATE: COMPLETED, ADMIN_TOOLS: COMPLETED},
    }
    for name, deps in expected.items():
        assert depends(services[name]) == deps, name


def test_dependency_conditions_are_meaningful(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for dep, condition in depends(svc).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert condition in (HEALTHY, COMPLETED), f"{name} -> {dep}: {condition} waits for nothing"
            if condition == HEALTHY:
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy; it has no check"
            else:
                assert "restart" not in services[dep], f"{dep} is one-shot and must not restart"


def test_worker_transitively_waits_for_both_databases(services: dict[str, dict[str, Any]]) -> None:
    seen: set[str] = set()
    stack = [WORKER]
    while stack:
        for dep in depends(services[stack.pop()]):
            if dep not in seen:
                seen.add(dep)
                stack.append(dep)
    assert {TEMPORAL_DB, TEMPORAL_SCHEMA, TEMPORAL, ADMIN_TOOLS, APP_DB, MIGRATE} <= seen
    assert WORKER not in seen, "dependency cycle"


def test_dockerfile_pinned_python_non_root(dockerfile: str) -> None:
    bases = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", dockerfile, re.MULTILINE)
    assert bases, "no FROM"
    # The final image is Python; the only build stage is the pages' front end (Node), both pinned.
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", bases[-1][0]), f"unpinned base image {bases[-1][0]}"
    for base, stage in bases[:-1]:
        assert stage == "frontend" and re.fullmatch(r"node:\d+\.\d+\.\d+-\w+-slim", base), base
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1] not in ("root", "0", "0:0"), "the image must run as a non-root user"
    assert re.search(r"^RUN .*pip install \.(\s|$)", dockerfile, re.MULTILINE)
    assert "[test]" not in dockerfile
    assert re.search(r'^CMD \["shielding", "worker"\]', dockerfile, re.MULTILINE)


# The services that run one job and exit (schema, namespace and migrations) are neither restarted nor checked.
ONE_SHOT = {"temporal-schema", "temporal-admin-tools", "migrate"}


def test_every_long_running_service_restarts_and_has_a_health_check(services: dict[str, dict[str, Any]]) -> None:
    long_running = set(services) - ONE_SHOT
    assert {WORKER, "web", TEMPORAL, "temporal-ui", APP_DB} <= long_running
    for name in sorted(long_running):
        assert services[name].get("restart") == "unless-stopped", f"{name} is not restarted when it dies"
        test = services[name].get("healthcheck", {}).get("test")
        assert test and test != ["NONE"], f"{name} has no health check"
    for name in ONE_SHOT:
        assert "restart" not in services[name], f"{name} runs once: restarting it would run it again"


def test_the_worker_and_web_service_serve_metrics_inside_the_network_only(services: dict[str, dict[str, Any]]) -> None:
    for name in (WORKER, "web"):
        address = environment(services[name])["SHIELDING_METRICS_ADDRESS"]
        port = address.rsplit(":", 1)[1]
        published = " ".join(str(p) for p in services[name].get("ports", []))
        assert f":{port}" not in published, f"{name} publishes its metrics port to the host"
    assert "9464/metrics" in " ".join(services[WORKER]["healthcheck"]["test"])


def test_the_worker_is_given_a_message_provider(services: dict[str, dict[str, Any]]) -> None:
    """The relay runs in the worker: Notify's key as a Docker secret (empty: none), its templates and SMTP from
    the environment; the web service only writes the outbox, so it holds no provider's key."""
    env = environment(services[WORKER])
    assert env["SHIELDING_NOTIFY_API_KEY_FILE"] == "/run/secrets/notify-api-key"
    assert "notify-api-key" in services[WORKER]["secrets"]
    assert "SHIELDING_NOTIFY_API_KEY" not in env
    for name in ("SHIELDING_NOTIFY_TEMPLATES", "SHIELDING_SMTP_HOST", "SHIELDING_SMTP_PORT", "SHIELDING_SMTP_FROM"):
        assert env[name].startswith(f"${{{name}:-"), f"{name} comes from the host's environment"
    assert "notify-api-key" not in services[WEB].get("secrets", [])
