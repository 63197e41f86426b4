"""web_intake: the intake page's POST, answered with its confirmation, beside the service call it wraps in the same run.

"web" is an HTTP request to the web service (`python -m web`: uvicorn, `web.app.create_app`) in a process of its
own on a free port, as deployed, sent by an httpx client on one keep-alive connection, signed in as an intake
officer; "service" is `ShieldingService.submit_request` called directly in this process with the same draft. Both
reach the same Temporal server, worker and PostgreSQL. Beside them, "signed_in_get" (`GET /api/auth/me` on the
same session) is the web layer's fixed cost alone. One in flight; the kinds alternate batch by batch (order
reversed every round), so a noisy neighbour hurts all alike. Goal: web p50 <= 1.10 x service p50.

What "web" sends is `WEB_INTAKE`, the one line to change. `PAGE_INTAKE` is the intake page: signed in with a
cookie and its CSRF token, it posts the form (`POST /requests/new`, the "Shield" button), whose answer is the
confirmation page (the same page `GET /requests/{id}/confirmation` shows again). `API_INTAKE` is the JSON API's
`POST /api/requests`, which wraps the same service call: what to measure when the page is missing or changing.
If the page's form changes, `PageIntake.form` is where its fields are named.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
import httpx

from bench.intake import Rig, draft
from bench.stack import PROJECT_ROOT, Managed, Stack, free_port
from bench.stats import ratio, summarize
from shielding import access
from shielding.domain import Stage
from shielding.settings import Settings
from shielding.store import accounts
from starter import new_request_id
from starter.identity import hash_password

KIND_WEB = "web"
KIND_SERVICE = "service"
# The web layer's fixed cost alone: a signed-in request that reaches no service (session lookup, HTTP, JSON).
KIND_SIGNED_IN_GET = "signed_in_get"
GOAL_RATIO_P50 = 1.10
INTAKE_OFFICER = "bench-web-intake"
READY_TIMEOUT = 90.0
WARM_UP = 20


class WebIntake(Protocol):
    """One way of taking an intake over HTTP: how to sign in, and the request(s) from submit to the answer."""

    target: str

    async def sign_in(self, client: httpx.AsyncClient, name: str, password: str) -> None: ...

    async def submit(self, client: httpx.AsyncClient, uid: str) -> dict[str, float]:
        """Take the intake of `uid`; the milliseconds of each of its requests when there are several."""
        ...


class ApiIntake:
    """The JSON API: `POST /api/requests` with a bearer token; the acknowledgement is the answer."""

    target = "POST /api/requests (JSON API)"

    async def sign_in(self, client: httpx.AsyncClient, name: str, password: str) -> None:
        answer = await client.post("/api/auth/login", json={"name": name, "password": password})
        answer.raise_for_status()
        client.headers["Authorization"] = f"Bearer {answer.json()['token']}"

    async def submit(self, client: httpx.AsyncClient, uid: str) -> dict[str, float]:
        answer = await client.post("/api/requests", json=draft(uid).model_dump(exclude_none=True))
        if answer.status_code != 200 or answer.json().get("stage") != Stage.AWAITING_FORM.value:
            raise RuntimeError(f"API intake of {uid}: {answer.status_code} {answer.text[:300]}")
        return {}


class PageIntake:
    """The intake page: a cookie session with its CSRF token; the form's POST, answered with the confirmation."""

    target = "POST /requests/new (page), answered with the confirmation"
    path = "/requests/new"

    def __init__(self) -> None:
        self.csrf_token = ""

    async def sign_in(self, client: httpx.AsyncClient, name: str, password: str) -> None:
        answer = await client.post("/api/auth/session", json={"name": name, "password": password})
        answer.raise_for_status()  # the session cookie stays in the client's jar
        self.csrf_token = answer.json()["csrf_token"]

    def form(self, uid: str) -> dict[str, str | list[str]]:
        """The page's fields for the same draft the service is given (web/templates/intake.html: the API's names,
        the reference the form page would have made, and the "Shield" button's action)."""
        fields: dict[str, str | list[str]] = {
            "csrf_token": self.csrf_token,
            "request_id": new_request_id(),
            "action": "shield",
        }
        for name, value in draft(uid).model_dump(exclude_none=True).items():
            fields[name] = [str(v) for v in value] if isinstance(value, list) else str(value)
        return fields

    async def submit(self, client: httpx.AsyncClient, uid: str) -> dict[str, float]:
        posted = await client.post(self.path, data=self.form(uid))
        if posted.status_code != 200 or "govuk-panel--confirmation" not in posted.text:
            raise RuntimeError(f"intake page for {uid}: {posted.status_code} (a form problem?) {posted.text[:300]}")
        return {}


API_INTAKE = ApiIntake()
PAGE_INTAKE = PageIntake()
# The one line to change: PAGE_INTAKE (the intake page, the goal's figure) or API_INTAKE (the JSON API).
WEB_INTAKE: WebIntake = PAGE_INTAKE


@dataclass
class WebServer:
    managed: Managed
    url: str


async def add_intake_officer(pool: asyncpg.Pool, name: str) -> str:
    """An account with the intake role and a fresh password (as `shielding users add` leaves it)."""
    password = secrets.token_urlsafe(24)
    async with pool.acquire() as conn, conn.transaction():
        await accounts.save_account(
            conn, name, created_by="bench", password_hash=hash_password(password), oidc_subject=None
        )
        await access.grant_role(conn, name, "intake", by="bench")
    return password


async def start_web(stack: Stack, settings: Settings, temporal_address: str) -> WebServer:
    """`python -m web` on a free port, on the bench's database, Temporal server, task queue and keys."""
    port = free_port()
    assert settings.encryption_keys and settings.action_keys, "the bench's settings carry both sets of keys"
    env = dict(os.environ) | {
        "DATABASE_URL": settings.resolved_database_url(),
        "TEMPORAL_ADDRESS": temporal_address,
        "SHIELDING_TASK_QUEUE": settings.task_queue,
        "SHIELDING_ENCRYPTION_KEYS": settings.encryption_keys,
        "SHIELDING_ACTION_KEYS": settings.action_keys,
        "SHIELDING_DATA_DIR": str(stack.root / "web-data"),
        "SHIELDING_WEB_HOST": "127.0.0.1",
        "SHIELDING_WEB_PORT": str(port),
        # As the service runs in production: one JSON line per intake, to its log file here.
        "SHIELDING_LOG_LEVEL": "INFO",
        "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    managed = Managed("web", [sys.executable, "-m", "web"], stack.root / "web.log", env=env, cwd=stack.root)
    managed.start()
    stack.processes.append(managed)  # stopped and cleaned up with the rest of the stack
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT
    async with httpx.AsyncClient(base_url=url) as client:
        while True:
            if not managed.alive():
                raise RuntimeError(f"the web service exited early:\n{managed.log_tail()}")
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return WebServer(managed, url)
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the web service did not start in {READY_TIMEOUT:.0f}s:\n{managed.log_tail()}")
            await asyncio.sleep(0.2)


async def _timed(call: Callable[[], Awaitable[None]]) -> float:
    t0 = time.perf_counter()
    await call()
    return (time.perf_counter() - t0) * 1000


async def web_intake(
    rig: Rig,
    pool: asyncpg.Pool,
    stack: Stack,
    settings: Settings,
    temporal_address: str,
    plan: tuple[int, int],
    progress: Callable[[str], None],
    web: WebIntake = WEB_INTAKE,
) -> dict[str, Any]:
    """`plan`: (requests per kind, batch size); one in flight. Returns each kind's summary and the ratios."""
    per_kind, batch = plan
    load_before = os.getloadavg()[0]
    server = await start_web(stack, settings, temporal_address)
    password = await add_intake_officer(pool, INTAKE_OFFICER)
    async with httpx.AsyncClient(base_url=server.url, timeout=60.0) as client:
        await web.sign_in(client, INTAKE_OFFICER, password)

        parts: dict[str, list[float]] = {}

        async def via_web() -> None:
            for part, ms in (await web.submit(client, next(rig.children))).items():
                parts.setdefault(part, []).append(ms)

        async def via_service() -> None:
            uid = next(rig.children)
            ack = await rig.service.submit_request(draft(uid), actor=INTAKE_OFFICER, request_id=new_request_id())
            if ack.stage != Stage.AWAITING_FORM:
                raise RuntimeError(f"intake of {uid} ended {ack.stage.value}: {ack.message}")

        async def signed_in_get() -> None:
            (await client.get("/api/auth/me")).raise_for_status()

        calls = {KIND_WEB: via_web, KIND_SERVICE: via_service, KIND_SIGNED_IN_GET: signed_in_get}
        for kind in calls:  # first requests open connections, fill caches and import lazily
            for _ in range(WARM_UP):
                await calls[kind]()
        parts.clear()
        latencies: dict[str, list[float]] = {kind: [] for kind in calls}
        rounds = -(-per_kind // batch)
        for round_no in range(rounds):
            order = list(calls) if round_no % 2 == 0 else list(calls)[::-1]
            for kind in order:
                for _ in range(min(batch, per_kind - len(latencies[kind]))):
                    latencies[kind].append(await _timed(calls[kind]))
    stack.stop(server.managed)
    figures = {kind: summarize(values) for kind, values in latencies.items()}
    web_p50, service_p50 = figures[KIND_WEB]["p50_ms"], figures[KIND_SERVICE]["p50_ms"]
    ratio_p50 = ratio(web_p50, service_p50)
    web_parts = {part: summarize(values) for part, values in parts.items()}
    result: dict[str, Any] = {
        "target": web.target,
        "concurrency": 1,
        KIND_WEB: figures[KIND_WEB],
        KIND_SERVICE: figures[KIND_SERVICE],
        KIND_SIGNED_IN_GET: figures[KIND_SIGNED_IN_GET],
        "web_parts": web_parts,
        "ratio_p50": ratio_p50,
        "ratio_p99": ratio(figures[KIND_WEB]["p99_ms"], figures[KIND_SERVICE]["p99_ms"]),
        "added_p50_ms": round(web_p50 - service_p50, 2),
        "goal_ratio_p50": GOAL_RATIO_P50,
        # Other work on the machine moves both kinds, and the web one more (two processes to schedule, not one).
        "load_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    verdict = "ok" if ratio_p50 is not None and ratio_p50 <= GOAL_RATIO_P50 else "MISSED"
    progress(
        f"web_intake ({web.target}): web p50 {web_p50:.1f} / p99 {figures[KIND_WEB]['p99_ms']:.1f} ms, "
        f"service p50 {service_p50:.1f} / p99 {figures[KIND_SERVICE]['p99_ms']:.1f} ms; "
        f"ratio p50 {ratio_p50} (goal <= {GOAL_RATIO_P50}: {verdict}), p99 {result['ratio_p99']}; "
        f"a signed-in GET alone p50 {figures[KIND_SIGNED_IN_GET]['p50_ms']:.2f} ms"
        + "".join(f"; {part} p50 {summary['p50_ms']:.1f} ms" for part, summary in web_parts.items())
    )
    return result
