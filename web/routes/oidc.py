"""Single sign-on with the council's identity provider: the browser's code flow and the CLI's device flow.

- `GET /auth/oidc/login?next=/path[&fresh=1]` sends the browser to the provider; `fresh=1` (break-glass) makes
  the provider ask for the login again (`max_age=0`, `prompt=login`).
- `GET /auth/oidc/callback` finishes it: a cookie session (as a password sign-in sets it), or, after a fresh
  login, the browser's existing session is marked re-authenticated at the provider's `auth_time`.
- `POST /api/auth/device` starts a device sign-in for `shielding login`; the device code stays here (only a
  digest of the opaque handle the CLI gets is stored), and `POST /api/auth/device/token` polls it once.

The sign-in state lives in a signed cookie (`web.oidc`), never in this process, so any process can finish it.
Every route answers 404 when single sign-on is not set up.
"""

from __future__ import annotations

import html
import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from shielding.domain import AuditAction
from shielding.log import get_logger
from shielding.store import accounts
from starter.identity import NotSignedIn, Session, SignInFailed, digest
from web.deps import SESSION_COOKIE, PartsDep
from web.oidc import (
    SIGN_IN_MAX_AGE_SECONDS,
    SSO_ACTOR,
    DevicePending,
    IdTokenRefused,
    OidcClient,
    OidcError,
    PendingSignIn,
    ProviderUnavailable,
    SignInStateRefused,
    VerifiedIdentity,
)
from web.oidc_accounts import audit_sign_in, linked_account, sign_in
from web.routes.auth import set_session_cookie, signed_in
from web.schemas import DevicePoll, DeviceStart, SignedIn

log = get_logger(__name__)
router = APIRouter(tags=["single sign-on"])

STATE_COOKIE = "shielding_oidc_sign_in"
STATE_COOKIE_PATH = "/auth/oidc"
CALLBACK_PATH = "/auth/oidc/callback"
NOT_SET_UP = "Single sign-on is not set up on this service; sign in with a local account."
WAITING = "Waiting for you to approve the sign-in in your browser."


def _client(p: PartsDep) -> OidcClient:
    if p.oidc is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_SET_UP)
    return p.oidc


def _redirect_uri(request: Request, p: PartsDep) -> str:
    # Behind a proxy the request's own address is not the public one: SHIELDING_API_URL is (required in production).
    base = p.settings.api_url or str(request.base_url)
    return base.rstrip("/") + CALLBACK_PATH


def _local_path(next_path: str) -> str:
    """Only a path on this service (never `//host` or `/\\host`), so the sign-in is no open redirect."""
    if next_path.startswith("/") and not next_path.startswith(("//", "/\\")) and next_path.isprintable():
        return next_path
    return "/"


def _secure(p: PartsDep) -> bool:
    secure = p.settings.cookie_secure
    return p.settings.environment == "production" if secure is None else secure


def _unavailable(err: ProviderUnavailable) -> HTTPException:
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(err))


async def _live_session(request: Request, p: PartsDep) -> Session | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        return await p.identity.session(cookie, kind="cookie")
    except NotSignedIn:
        return None


def _refused(request: Request, code: int, message: str) -> Response:
    """A page for a browser, `{"detail": ...}` for anything else; the sign-in state is spent either way."""
    response: Response
    if "text/html" in request.headers.get("accept", ""):
        response = HTMLResponse(
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Not signed in</title></head>'
            f"<body><h1>You are not signed in</h1><p>{html.escape(message)}</p>"
            '<p><a href="/sign-in">Back to the sign-in page</a></p></body></html>\n',
            status_code=code,
        )
    else:
        response = JSONResponse({"detail": message}, status_code=code)
    response.delete_cookie(STATE_COOKIE, path=STATE_COOKIE_PATH)
    return response


# ------------------------------------------------------------------------------------------ code flow


@router.get("/auth/oidc/login", summary="Sign in with single sign-on (fresh=1: sign in again now, for break-glass)")
async def oidc_login(
    request: Request,
    p: PartsDep,
    next: Annotated[str, Query(max_length=2000)] = "/",
    fresh: bool = False,
) -> Response:
    oidc = _client(p)
    pending = PendingSignIn.new(next=_local_path(next), fresh=fresh)
    try:
        url = await oidc.authorization_url(_redirect_uri(request, p), pending)
    except ProviderUnavailable as err:
        return _refused(request, status.HTTP_503_SERVICE_UNAVAILABLE, str(err))
    response = RedirectResponse(url, status_code=status.HTTP_302_FOUND)
    response.set_cookie(
        STATE_COOKIE,
        oidc.seal(pending),
        max_age=SIGN_IN_MAX_AGE_SECONDS,
        path=STATE_COOKIE_PATH,
        httponly=True,
        secure=_secure(p),
        samesite="lax",  # sent on the provider's top-level redirect back, never on a cross-site post
    )
    return response


@router.get(CALLBACK_PATH, summary="Where the identity provider sends the browser back")
async def oidc_callback(
    request: Request,
    p: PartsDep,
    code: Annotated[str | None, Query(max_length=4000)] = None,
    state: Annotated[str | None, Query(max_length=200)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
    iss: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    oidc = _client(p)
    try:
        pending = oidc.unseal(request.cookies.get(STATE_COOKIE))
        if state is None or not secrets.compare_digest(state.encode(), pending.state.encode()):
            raise SignInStateRefused("This sign-in does not match the one this browser started: start it again.")
        if iss is not None and iss.rstrip("/") != oidc.issuer:  # RFC 9207: the answer is from our provider
            raise SignInStateRefused("This sign-in came back from another identity provider: start it again.")
        if error is not None or not code:
            log.info("oidc sign-in not completed", error="".join(ch for ch in error or "" if ch.isalnum() or ch in "_"))
            return _refused(
                request,
                status.HTTP_400_BAD_REQUEST,
                "The identity provider did not sign you in (it was cancelled or refused); start again.",
            )
        who = await oidc.redeem_code(code, _redirect_uri(request, p), pending)
        return await _finish(request, p, oidc, pending, who)
    except ProviderUnavailable as err:
        return _refused(request, status.HTTP_503_SERVICE_UNAVAILABLE, str(err))
    except IdTokenRefused as err:
        await audit_sign_in(p.pool, AuditAction.SIGN_IN_FAILED, SSO_ACTOR, "ID token refused: it did not verify")
        return _refused(request, status.HTTP_400_BAD_REQUEST, str(err))
    except OidcError as err:
        return _refused(request, status.HTTP_400_BAD_REQUEST, str(err))
    except SignInFailed as err:
        return _refused(request, status.HTTP_403_FORBIDDEN, str(err))


async def _finish(
    request: Request, p: PartsDep, oidc: OidcClient, pending: PendingSignIn, who: VerifiedIdentity
) -> Response:
    existing = await _live_session(request, p)
    if pending.fresh:
        within = timedelta(minutes=p.settings.fresh_auth_minutes)
        if datetime.now(UTC) - who.auth_time > within:
            return _refused(
                request,
                status.HTTP_401_UNAUTHORIZED,
                "The identity provider did not ask you to sign in again just now; start again from "
                "/auth/oidc/login?fresh=1.",
            )
        if existing is not None and await linked_account(p.pool, oidc, who) == existing.name:
            await p.identity.mark_reauthenticated(existing, who.auth_time)
            await audit_sign_in(
                p.pool, AuditAction.SIGNED_IN, existing.name, "signed in again (oidc, fresh, for break-glass)"
            )
            response = RedirectResponse(pending.next, status_code=status.HTTP_303_SEE_OTHER)
            response.delete_cookie(STATE_COOKIE, path=STATE_COOKIE_PATH)
            return response
    issued = await sign_in(p.pool, p.identity, oidc, who, kind="cookie")
    # A session this browser still held (another person's, on a shared computer) ends here.
    if existing is not None:
        await p.identity.sign_out(existing)
    response = RedirectResponse(pending.next, status_code=status.HTTP_303_SEE_OTHER)
    set_session_cookie(p, response, issued.token)
    response.delete_cookie(STATE_COOKIE, path=STATE_COOKIE_PATH)
    return response


# ------------------------------------------------------------------------------------------ device flow


@router.post("/api/auth/device", summary="Start a single sign-on device sign-in (`shielding login`)")
async def device_start(p: PartsDep) -> DeviceStart:
    oidc = _client(p)
    try:
        device = await oidc.start_device()
    except ProviderUnavailable as err:
        raise _unavailable(err) from None
    handle = secrets.token_urlsafe(32)
    expires_at = datetime.now(UTC) + timedelta(seconds=device.expires_in)
    await accounts.save_device_sign_in(p.pool, digest(handle), device.device_code, expires_at)
    return DeviceStart(
        handle=handle,
        user_code=device.user_code,
        verification_uri=device.verification_uri,
        verification_uri_complete=device.verification_uri_complete,
        interval=device.interval,
        expires_in=device.expires_in,
    )


@router.post(
    "/api/auth/device/token",
    summary="Poll a device sign-in once: 428 until it is approved, then a bearer token",
    responses={428: {"description": WAITING}},
)
async def device_token(body: DevicePoll, p: PartsDep) -> SignedIn:
    oidc = _client(p)
    handle_digest = digest(body.handle)
    device_code = await accounts.device_code(p.pool, handle_digest)
    if device_code is None:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, "This sign-in is unknown or has expired: run `shielding login` again."
        )
    try:
        who = await oidc.poll_device(device_code)
    except DevicePending as err:
        retry = "10" if err.slow_down else "5"
        raise HTTPException(status.HTTP_428_PRECONDITION_REQUIRED, WAITING, headers={"Retry-After": retry}) from None
    except ProviderUnavailable as err:
        raise _unavailable(err) from None
    except OidcError as err:  # expired, refused, or an ID token that did not verify
        await accounts.forget_device_sign_in(p.pool, handle_digest)
        if isinstance(err, IdTokenRefused):
            await audit_sign_in(p.pool, AuditAction.SIGN_IN_FAILED, SSO_ACTOR, "ID token refused: it did not verify")
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(err)) from None
    await accounts.forget_device_sign_in(p.pool, handle_digest)
    try:
        issued = await sign_in(p.pool, p.identity, oidc, who, kind="bearer")
    except SignInFailed as err:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(err)) from None
    return signed_in(p, issued, with_token=True)
