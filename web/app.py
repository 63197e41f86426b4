"""The web service: builds the FastAPI app, the one database pool and Temporal client staff actions use.

`create_app(settings)` connects at start-up (lifespan) as the service's own database login; every response
is `Cache-Control: no-store`, and errors are plain sentences (`web.errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shielding import store
from shielding.action_auth import action_keys_from_settings
from shielding.audit_signing import configure_audit_signing
from shielding.metrics import refresh_gauges
from shielding.settings import Settings
from shielding.store.documents import DocumentKeys, configure_document_keys
from shielding.temporal import connect
from starter import ShieldingService
from starter.identity import IdentityService
from web.deps import Parts
from web.errors import SECURITY_HEADERS, install_error_handlers
from web.oidc import oidc_client
from web.pages import install_pages
from web.routes import access_log, audit, auth, codec, contact, directory, health, messages, oidc, requests, users
from web.schemas import Problem

# What every route may answer besides success: one sentence (`web.errors`), declared so the OpenAPI document
# says what the service really sends (FastAPI's default 422 body is a list; ours is a sentence).
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": description}
    for code, description in (
        (401, "Not signed in, the session ended, or sign-in failed"),
        (403, "Not allowed for this person's roles (audited)"),
        (422, "Refused: what was wrong, in words"),
        (503, "The database or the workflow service is unavailable"),
    )
}


async def build_parts(settings: Settings) -> Parts:
    oidc_parts = oidc_client(settings)  # first: a misconfiguration stops the start before anything connects
    configure_audit_signing(settings)  # the audit key (required in production) and the anchor directory
    configure_document_keys(DocumentKeys.from_settings(settings))  # documents are sealed at rest with these
    pool = await store.create_pool(settings.resolved_database_url(), max_size=10)
    client = await connect(settings)
    service = ShieldingService(
        client,
        pool,
        task_queue=settings.task_queue,
        max_document_bytes=settings.max_document_bytes,
        intake_timeout=settings.intake_timeout_seconds,
        action_keys=action_keys_from_settings(settings),
    )
    identity = IdentityService(pool, idle_timeout=timedelta(minutes=settings.session_idle_minutes))
    return Parts(settings=settings, pool=pool, client=client, service=service, identity=identity, oidc=oidc_parts)


class SecurityHeaders:
    """Every response's security headers, unless the route set its own: plain ASGI, because Starlette's
    `BaseHTTPMiddleware` costs about a millisecond on every request."""

    _headers = [(name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend((name, value) for name, value in self._headers if name not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.parts = await build_parts(settings)
        gauges = asyncio.create_task(refresh_gauges(app.state.parts.pool, settings.metrics_refresh_seconds))
        try:
            yield
        finally:
            gauges.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gauges
            await app.state.parts.pool.close()

    app = FastAPI(
        title="Shielding service",
        summary="Shield children's records in the child directory: intake, forms, reviews, unshielding.",
        version="1.0",
        lifespan=lifespan,
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    install_error_handlers(app)

    app.add_middleware(SecurityHeaders)

    for module in (auth, requests, directory, contact, audit, access_log, users, messages, health):
        app.include_router(module.router, responses=PROBLEM_RESPONSES)
    app.include_router(oidc.router, responses=PROBLEM_RESPONSES)
    # The Temporal Web UI's codec endpoint: answers in the remote codec protocol, with CORS for the UI.
    app.include_router(codec.router)
    install_pages(app)
    return app
