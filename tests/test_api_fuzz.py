"""The JSON API fuzzed from its own OpenAPI document (schemathesis), against a real `shielding dev`.

Every operation gets schema-driven cases (valid and invalid; coverage cases, then up to MAX_EXAMPLES generated
ones, derandomised so every run sends the same requests), sent with the bearer token of one person holding every
role. Each response must: not be a 5xx; match the schema the document declares for its status; say nothing of
the code behind it (no traceback, no exception class name); and say `Cache-Control: no-store`.

The document is built from the app at import (`create_app(...).openapi()`, no server needed), so pytest can
collect one test per operation; `test_the_served_document_is_the_one_fuzzed` checks that the running service
serves exactly it at /api/openapi.json. (schemathesis' fixture-based lazy loader does not run under pytest 9:
it sets `Function._nodeid`, which pytest 9 no longer has.)

`POST /api/auth/logout` would end the fuzzing session: it is fuzzed with a token of its own each time.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.config import HealthCheck
from schemathesis.specs.openapi.checks import response_schema_conformance

from shielding.access import ROLES
from shielding.settings import Settings
from tests.helpers.api import (
    ApiStack,
    add_staff,
    bootstrap_manager,
    client,
    import_children,
    password_for,
    running_stack,
    sign_in,
)
from tests.helpers.records import make_child
from web.app import create_app

pytestmark = pytest.mark.devserver

MAX_EXAMPLES = 25
LOGOUT = "/api/auth/logout"
SIGN_IN = ("/api/auth/login", "/api/auth/session")
TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "/', '.py", line ')
# The packages whose exceptions could surface in an answer: none of their class names may appear in one.
_EXCEPTION_SOURCES = (
    "asyncpg",
    "pydantic",
    "fastapi",
    "starlette",
    "temporalio.client",
    "temporalio.service",
    "temporalio.exceptions",
    "argon2.exceptions",
    "shielding.access",
    "shielding.importer",
    "shielding.settings",
    "starter",
    "starter.identity",
    "web.deps",
    "web.errors",
)


def _exception_names() -> frozenset[str]:
    for module in _EXCEPTION_SOURCES:
        importlib.import_module(module)
    seen: set[type[BaseException]] = set()
    pending: list[type[BaseException]] = [BaseException]
    while pending:
        cls = pending.pop()
        if cls not in seen:
            seen.add(cls)
            pending.extend(cls.__subclasses__())
    # CamelCase names and every *Error/*Exception: an ordinary word ("Warning") is no tell.
    return frozenset(
        c.__name__
        for c in seen
        if re.fullmatch(r"[A-Z][a-z0-9]+[A-Z]\w*", c.__name__) or c.__name__.endswith(("Error", "Exception"))
    )


EXCEPTION_NAMES = _exception_names()
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def code_details(text: str) -> list[str]:
    """What in a response body tells of the code behind it: traceback lines, exception class names."""
    found = [marker for marker in TRACEBACK_MARKERS if marker in text]
    return found + sorted({w for w in WORD.findall(text) if w in EXCEPTION_NAMES})


def says_nothing_of_the_code(ctx: Any, response: Any, case: Any) -> bool | None:
    details = code_details(response.text or "")
    if details:
        raise AssertionError(f"the answer tells of the code behind it ({', '.join(details)}): {response.text[:500]}")
    return None


def says_no_store(ctx: Any, response: Any, case: Any) -> bool | None:
    # schemathesis gives headers with lowercase names and a list of values each.
    if response.headers.get("cache-control") != ["no-store"]:
        raise AssertionError(f"no `Cache-Control: no-store` on a {response.status_code}: {response.headers}")
    return None


def conforms_where_the_error_shape_is_right(ctx: Any, response: Any, case: Any) -> bool | None:
    # The document declares FastAPI's default 422 body ({"detail": [{"loc", "msg", "type"}]}) while the service
    # answers {"detail": "a sentence"} (web/errors.py): that mismatch is test_errors_match_the_document below,
    # so that it does not drown what else the fuzzing finds.
    if response.status_code == 422:
        return None
    return response_schema_conformance(ctx, response, case)


CHECKS = [not_a_server_error, conforms_where_the_error_shape_is_right, says_nothing_of_the_code, says_no_store]


# ------------------------------------------------------------------------------------------ the stack


@dataclass
class Target:
    stack: ApiStack
    base: str
    token: str
    every_role: str


@pytest.fixture(scope="module")
def stack() -> Iterator[ApiStack]:
    with running_stack("shielding-fuzz-") as running:
        yield running


@pytest.fixture(scope="module")
async def target(stack: ApiStack) -> Target:
    base = stack.web_url
    await bootstrap_manager(stack.database_url, "fuzz.boss")
    with client(base, token=sign_in(base, "fuzz.boss", password_for("fuzz.boss"))) as boss:
        second = add_staff(boss, base, "fuzz.second", "manager")
        everything = add_staff(boss, base, "fuzz.everything", *ROLES, approver=second.http)
        everything.http.close()
        second.http.close()
        import_children(boss, [make_child(uid=f"CP-{n:04d}-FZ") for n in range(5)])
    return Target(stack, base, everything.token, everything.name)


@schemathesis.serializer("application/x-ndjson")
def _json_lines(ctx: Any, value: Any) -> bytes:
    """The import's body is declared as one string (the JSON Lines file); anything else is sent as one line."""
    if isinstance(value, bytes):
        return value
    return value.encode() if isinstance(value, str) else json.dumps(value).encode() + b"\n"


DOCUMENT = create_app(Settings()).openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.config.update(request_timeout=90, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True, database="none")


@pytest.fixture(scope="module")
def http_session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture(scope="module")
def service_db(stack: ApiStack) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        yield conn


def test_the_served_document_is_the_one_fuzzed(target: Target) -> None:
    with client(target.base) as http:
        assert http.get("/api/openapi.json").json() == DOCUMENT


@schema.parametrize()
def test_api_fuzz(
    case: Any, target: Target, http_session: requests.Session, service_db: psycopg.Connection[Any]
) -> None:
    if case.path in SIGN_IN:
        # Generated names repeat, and repeated failures for a name are slowed (up to 30 s an attempt; tested in
        # test_api.py): every case starts with none recorded, so the run stays short and the same every time.
        service_db.execute("DELETE FROM sign_in_failures")
    token = target.token
    if case.path == LOGOUT:
        # Its own session each time, so the fuzzing session itself is never ended.
        token = sign_in(target.base, target.every_role, password_for(target.every_role))
    response = case.call(base_url=target.base, session=http_session, headers={"Authorization": f"Bearer {token}"})
    case.validate_response(response, checks=CHECKS)


# --------------------------------------------------------------------------------- what fuzzing skips


def test_the_fuzzing_session_outlived_the_fuzzing(target: Target) -> None:
    with client(target.base, token=target.token) as http:
        answer = http.get("/api/auth/me")
    assert answer.status_code == 200, answer.text
    assert answer.json()["roles"] == sorted(ROLES)


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("POST", "/api/requests", {"json": {"children": "not a list"}}),
        ("POST", "/api/users", {"json": {"role": "intake"}}),
        ("GET", "/api/children", {"params": {"date_of_birth": "yesterday"}}),
        ("POST", "/api/auth/login", {"json": {"name": 1}}),
    ],
)
def test_errors_match_the_document(target: Target, method: str, path: str, kwargs: dict[str, Any]) -> None:
    """An invalid request's 422 answer has the shape the OpenAPI document declares for it."""
    with client(target.base, token=target.token) as http:
        document = http.get("/api/openapi.json").json()
        answer = http.request(method, path, **kwargs)
    assert answer.status_code == 422, answer.text
    declared = document["paths"][path][method.lower()]["responses"]["422"]["content"]["application/json"]["schema"]
    schema = _resolve(document, declared)
    problems = _mismatches(document, schema, answer.json())
    assert not problems, f"{method} {path} 422 body {answer.json()} does not match its declared schema: {problems}"


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _mismatches(document: dict[str, Any], schema: dict[str, Any], value: Any, where: str = "body") -> list[str]:
    """A small structural check (types, required keys, items) of `value` against `schema`."""
    schema = _resolve(document, schema)
    kind = schema.get("type")
    python = {"object": dict, "array": list, "string": str, "integer": int, "boolean": bool}
    if kind in python and not isinstance(value, python[kind]):
        return [f"{where} is {type(value).__name__}, declared {kind}"]
    problems: list[str] = []
    if kind == "object":
        problems += [f"{where}.{key} is missing" for key in schema.get("required", []) if key not in value]
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                problems += _mismatches(document, sub, value[key], f"{where}.{key}")
    if kind == "array" and "items" in schema:
        for n, item in enumerate(value):
            problems += _mismatches(document, schema["items"], item, f"{where}[{n}]")
    return problems


def test_a_body_naming_code_is_caught() -> None:
    """The check itself: it finds what it looks for, and passes an ordinary refusal."""
    assert code_details("Unexpected failure (CharacterNotInRepertoireError); nothing further was changed.") == [
        "CharacterNotInRepertoireError"
    ]
    assert code_details('Traceback (most recent call last):\n  File "/work/web/app.py", line 3') != []
    assert code_details("The request is not valid: name: Field required.") == []
    assert code_details("'x' (practitioner) may not audit; that needs the role manager") == []
