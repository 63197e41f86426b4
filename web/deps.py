"""Typed dependencies: the service's parts, the signed-in session, CSRF, and the permission each route needs.

Identity comes only from the session this service issued: a bearer token (API, CLI) or a session cookie
(pages). A cookie session must also present its CSRF token on every state-changing request.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from temporalio.client import Client

from shielding import access, store
from shielding.domain import AuditAction
from shielding.settings import Settings
from shielding.store.access_log import FrontEnd, Reader
from starter import ShieldingService
from starter.identity import IdentityService, NotSignedIn, Session
from web.oidc import OidcClient

SESSION_COOKIE = "shielding_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class Parts:
    """The one pool, Temporal client and services of this process, built at start-up."""

    settings: Settings
    pool: asyncpg.Pool
    client: Client
    service: ShieldingService
    identity: IdentityService
    # Single sign-on's provider client; None when it is not set up.
    oidc: OidcClient | None = None


class CsrfRefused(access.AccessDenied):
    """A state-changing request on a cookie session without its CSRF token."""


async def audit_csrf_refusal(pool: asyncpg.Pool, name: str, path: str) -> None:
    """A state-changing request on someone's session without its token: a forged cross-site post, perhaps."""
    async with pool.acquire() as conn, conn.transaction():
        await store.append_audit(
            conn,
            action=AuditAction.UNAUTHORISED,
            actor=name,
            request_id=None,
            reason="refused: a state-changing request without its CSRF token",
            details={"attempted": "csrf", "path": path[:200]},
        )


def parts(request: Request) -> Parts:
    return request.app.state.parts  # type: ignore[no-any-return]


PartsDep = Annotated[Parts, Depends(parts)]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def _csrf_presented(request: Request) -> str:
    presented = request.headers.get(CSRF_HEADER)
    if presented is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        presented = value if isinstance(value, str) else None
    return presented or ""


async def current_session(request: Request, p: PartsDep) -> Session:
    token = bearer_token(request)
    if token is not None:
        return await p.identity.session(token, kind="bearer")
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise NotSignedIn("You are not signed in: sign in first (`shielding login`).")
    session = await p.identity.session(cookie, kind="cookie")
    if request.method not in SAFE_METHODS:
        presented = await _csrf_presented(request)
        if not secrets.compare_digest(presented.encode(), session.csrf_token.encode()):
            await audit_csrf_refusal(p.pool, session.name, request.url.path)
            raise CsrfRefused("This form could not be checked (its security token is missing or out of date).")
    return session


SessionDep = Annotated[Session, Depends(current_session)]


def allowed(action: str) -> object:
    """A dependency: the signed-in user may take `action` (on the path's request or child); audited if not."""

    async def check(request: Request, session: SessionDep, p: PartsDep) -> Session:
        await access.require(
            p.pool,
            session.name,
            action,
            request_id=request.path_params.get("request_id"),
            child_uid=request.path_params.get("uid"),
            roles=session.roles,
        )
        return session

    return Depends(check)


def reader(request: Request, session: Session) -> Reader:
    """Who reads, through which front end, for the access log: the signed-in person, from their session; the
    pages are "web", the API "api", or "cli" when the `shielding` command says it is the caller (the channel is
    only a label beside who: identity never comes from it)."""
    if not request.url.path.startswith("/api/") and session.kind == "cookie":
        front_end = FrontEnd.WEB
    elif request.headers.get("user-agent", "").startswith("shielding-cli"):
        front_end = FrontEnd.CLI
    else:
        front_end = FrontEnd.API
    return Reader(actor=session.name, front_end=front_end, request_id=request.path_params.get("request_id"))
