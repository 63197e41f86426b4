"""Signing in and out: local accounts by password (bearer token or session cookie), and who am I."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from starter.identity import IssuedSession
from web.deps import SESSION_COOKIE, PartsDep, SessionDep
from web.schemas import Me, SignedIn, SignIn

router = APIRouter(prefix="/api/auth", tags=["sign-in"])


def signed_in(p: PartsDep, issued: IssuedSession, *, with_token: bool) -> SignedIn:
    return SignedIn(
        name=issued.name,
        roles=sorted(issued.roles),
        token=issued.token if with_token else None,
        csrf_token=None if with_token else issued.csrf_token,
        idle_timeout_minutes=p.settings.session_idle_minutes,
    )


def set_session_cookie(p: PartsDep, response: Response, token: str) -> None:
    secure = p.settings.cookie_secure
    if secure is None:
        secure = p.settings.environment == "production"
    response.set_cookie(SESSION_COOKIE, token, httponly=True, secure=secure, samesite="lax", path="/")


@router.post("/login", summary="Sign in with a local account; returns a bearer token for the API")
async def login(body: SignIn, p: PartsDep) -> SignedIn:
    issued = await p.identity.sign_in_with_password(body.name, body.password, kind="bearer")
    return signed_in(p, issued, with_token=True)


@router.post("/session", summary="Sign in with a local account; sets the session cookie (the pages)")
async def cookie_login(body: SignIn, p: PartsDep, response: Response) -> SignedIn:
    issued = await p.identity.sign_in_with_password(body.name, body.password, kind="cookie")
    set_session_cookie(p, response, issued.token)
    return signed_in(p, issued, with_token=False)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, summary="End this session")
async def logout(session: SessionDep, p: PartsDep, response: Response) -> None:
    await p.identity.sign_out(session)
    response.delete_cookie(SESSION_COOKIE, path="/")


@router.get("/me", summary="Who is signed in, with which roles")
async def me(session: SessionDep) -> Me:
    return Me(name=session.name, roles=sorted(session.roles), auth_method=session.auth_method)
