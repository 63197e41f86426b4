"""The JSON API against a real `shielding dev`: the stack (with its web port), an HTTP client, sign-in, and staff.

`ApiStack` launches `shielding dev` as `tests.helpers.devstack.DevStack` does, with a free web port of its own
(`SHIELDING_DEV_WEB_PORT`), and reads what the stack wrote to `<data_dir>/stack.json`. Every response the
client receives is checked for `Cache-Control: no-store` as it arrives.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg
import httpx

from shielding import store
from shielding.domain import ChildRecord
from starter.identity import IdentityService
from tests.helpers.devstack import DevStack

PASSWORD_SUFFIX = "-correct-horse-battery"


class ApiStack(DevStack):
    """`shielding dev` (tests/helpers/devstack.py), whose announced web address must match its stack file."""

    @property
    def web_url(self) -> str:
        url = str(self.stack_file()["web_url"])
        assert f"web: {url}" in self.stdout().splitlines(), self.describe()
        return url


@contextlib.contextmanager
def running_stack(prefix: str) -> Iterator[ApiStack]:
    """A fresh `shielding dev` in a temporary directory, stopped (SIGTERM, exit 0) and removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    stack = ApiStack(root / "data")
    try:
        stack.start()
        yield stack
        code, _ = stack.stop()
        assert code == 0, f"`shielding dev` exited {code} on SIGTERM\n{stack.describe()}"
    finally:
        stack.ensure_stopped()
        shutil.rmtree(root, ignore_errors=True)


async def bootstrap_manager(database_url: str, name: str) -> None:
    """The first manager, made on the server with the service's own database login (never through the API)."""
    pool = await store.create_pool(database_url, max_size=2)
    try:
        await IdentityService(pool, idle_timeout=timedelta(minutes=15)).bootstrap_manager(name, password_for(name))
    finally:
        await pool.close()


def socket_of(database_url: str) -> tuple[str, int | None, str]:
    """The host (a socket directory for the embedded server), port and database name of a database URL."""
    parts = urlsplit(database_url)
    query = parse_qs(parts.query)
    host = query.get("host", [unquote(parts.hostname or "")])[0]
    port = int(query["port"][0]) if "port" in query else parts.port
    return host, port, parts.path.lstrip("/") or "postgres"


async def connect_as(database_url: str, user: str, password: str | None) -> asyncpg.Connection:
    """A direct connection to the stack's PostgreSQL as `user` (the same socket the service uses)."""
    host, port, database = socket_of(database_url)
    return await asyncpg.connect(host=host, port=port, database=database, user=user, password=password, timeout=10)


# ------------------------------------------------------------------------------------------------ HTTP


class CacheHeaderMissing(AssertionError):
    pass


def _no_store(response: httpx.Response) -> None:
    if response.headers.get("cache-control") != "no-store":
        raise CacheHeaderMissing(
            f"{response.request.method} {response.request.url.path} -> {response.status_code} "
            f"without Cache-Control: no-store ({response.headers.get('cache-control')!r})"
        )


def client(base_url: str, *, token: str | None = None, **kwargs: Any) -> httpx.Client:
    """An HTTP client on the service; every response must say `Cache-Control: no-store`."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(
        base_url=base_url, headers=headers, timeout=90.0, event_hooks={"response": [_no_store]}, **kwargs
    )


def sign_in(base_url: str, name: str, password: str) -> str:
    """A bearer token for `name`."""
    with client(base_url) as http:
        answer = http.post("/api/auth/login", json={"name": name, "password": password})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["token"])


def password_for(name: str) -> str:
    return f"{name}{PASSWORD_SUFFIX}"


@dataclass
class Staff:
    """A signed-in member of staff: name, password and a bearer-token client."""

    name: str
    password: str
    roles: tuple[str, ...]
    http: httpx.Client = field(repr=False)

    @property
    def token(self) -> str:
        return str(self.http.headers["Authorization"].removeprefix("Bearer "))


def add_staff(
    manager: httpx.Client, base_url: str, name: str, *roles: str, approver: httpx.Client | None = None
) -> Staff:
    """Add `name` with `roles` through the API (as `manager`), then sign them in. Roles that check each other
    (intake and reviewer) need `approver`, a second manager, to approve what `manager` asked for."""
    password = password_for(name)
    for role in roles:
        body = {"name": name, "role": role, "password": password}
        answer = manager.post("/api/users", json=body)
        if answer.status_code == 422 and approver is not None and "second manager" in answer.text:
            answer = approver.post("/api/users", json=body)
        assert answer.status_code == 201, answer.text
    return Staff(name, password, roles, client(base_url, token=sign_in(base_url, name, password)))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def jsonl(records: Iterable[ChildRecord]) -> bytes:
    return b"".join(r.model_dump_json(exclude_none=True).encode() + b"\n" for r in records)


def import_children(http: httpx.Client, records: Iterable[ChildRecord]) -> dict[str, Any]:
    answer = http.post(
        "/api/directory/import", content=jsonl(records), headers={"Content-Type": "application/x-ndjson"}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def intake_body(*uids: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "children": list(uids),
        "criteria": ["domestic-violence"],
        "reason": "Father subject to a non-molestation order; family in a refuge.",
        "requestor_type": "professional",
        "requestor_name": "Dana Whitcombe",
        "requestor_organisation": "Westminster Children's Services",
        "requestor_phone": "020 7641 0000",
    }
    body.update(overrides)
    return body


def take_request(intake: httpx.Client, *uids: str) -> dict[str, Any]:
    """Shield `uids` through the API; the answer comes once every child is shielded."""
    answer = intake.post("/api/requests", json=intake_body(*uids))
    assert answer.status_code == 200, answer.text
    ack = answer.json()
    assert ack["stage"] == "awaiting-form", ack
    return ack  # type: ignore[no-any-return]


def audit(manager: httpx.Client, **query: str) -> list[dict[str, Any]]:
    answer = manager.get("/api/audit", params=query)
    assert answer.status_code == 200, answer.text
    return answer.json()["entries"]  # type: ignore[no-any-return]
