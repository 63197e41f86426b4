"""The real web service for page tests, in this process: `create_app(settings)` under uvicorn on a free port.

    with RunningApp(settings) as app:        # settings: the test database and a Temporal server
        app.url                              # http://127.0.0.1:PORT

Lighter than a whole `shielding dev` stack (no worker, no second PostgreSQL): the pages need only the database
and a Temporal client. The server runs on its own thread and event loop; the test's loop stays free for
Playwright and the database fixtures. Also: staff with a password, as the store holds them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from types import TracebackType

import asyncpg
import uvicorn
from fastapi import APIRouter

from shielding.processes import free_ports
from shielding.settings import Settings
from shielding.store import accounts
from starter.identity import hash_password
from tests.helpers.people import grant_as_two_managers
from web.app import create_app

START_TIMEOUT_SECONDS = 60.0


class RunningApp:
    def __init__(self, settings: Settings, *, routers: Sequence[APIRouter] = ()) -> None:
        """`routers`: extra routes for the test only (a page behind a permission, say)."""
        self.settings = settings
        self.routers = routers
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RunningApp:
        for _ in range(3):
            (port,) = free_ports(1)
            if self._start(port):
                self.url = f"http://127.0.0.1:{port}"
                return self
        raise AssertionError("no free port for the web service after 3 tries")

    def _start(self, port: int) -> bool:
        app = create_app(self.settings)
        for router in self.routers:
            app.include_router(router)
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            lifespan="on",
            log_config=None,
            access_log=False,
        )
        server = uvicorn.Server(config)
        exit_codes: list[object] = []

        def run() -> None:
            try:
                server.run()
            except SystemExit as stopped:  # uvicorn exits 1 when the port is taken, 3 when start-up failed
                exit_codes.append(stopped.code)

        thread = threading.Thread(target=run, name=f"web-{port}", daemon=True)
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not server.started:
            server.should_exit = True
            thread.join(timeout=10)
            if exit_codes != [1]:
                raise AssertionError(f"the web service did not start (exit {exit_codes}; see uvicorn's log above)")
            return False
        self._server, self._thread = server, thread
        return True

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=30)


async def add_staff(pool: asyncpg.Pool, name: str, password: str, *roles: str, by: str = "test-setup") -> str:
    """An account that signs in with `password`, holding `roles` (granted directly in the store)."""
    password_hash = hash_password(password)
    async with pool.acquire() as conn, conn.transaction():
        await accounts.save_account(conn, name, created_by=by, password_hash=password_hash, oidc_subject=None)
        for role in roles:
            await grant_as_two_managers(conn, name, role, by=by)
    return name
