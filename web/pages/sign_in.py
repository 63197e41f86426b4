"""Signing in and out on the pages: the sign-in form (local accounts; a link to single sign-on when it is set up),
and the sign-out button every page's banner has.

The sign-in post has no session yet, so it carries the pre-session token instead of a CSRF token
(`web.pages.session`); a post without it is refused before the password is even looked at.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Query, Request, Response

from starter.identity import SIGN_IN_FAILED, IssuedSession, NotSignedIn, Session, SignInFailed
from web.deps import SESSION_COOKIE, PartsDep
from web.pages.forms import Problems
from web.pages.rendering import redirect, render
from web.pages.routing import SIGNED_OUT_PATH, FormNotChecked, page_router
from web.pages.session import (
    PRE_SESSION_FIELD,
    PageSessionDep,
    clear_pre_session_cookie,
    pre_session_matches,
    pre_session_token,
    set_pre_session_cookie,
)
from web.routes.auth import set_session_cookie

router = page_router()

SINGLE_SIGN_ON_PATH = "/auth/oidc/login"
# Why the sign-in page was shown: after signing out, or after a session ended (idle, or ended elsewhere).
NOTICES = frozenset({"signed-out", "ended"})
# As the API's sign-in body allows (web.schemas.SignIn); longer is simply not right.
MAX_NAME, MAX_PASSWORD = 200, 1000


async def _live_session(request: Request, p: PartsDep) -> Session | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        return await p.identity.session(cookie, kind="cookie")
    except NotSignedIn:
        return None


def _sign_in_page(
    request: Request, p: PartsDep, *, name: str = "", errors: Problems | None = None, notice: str | None = None
) -> Response:
    token = pre_session_token(request)
    response = render(
        request,
        "sign_in.html",
        errors=errors or Problems(),
        values={"name": name},
        notice=notice,
        idle_minutes=f"{p.settings.session_idle_minutes:g}",
        pre_session_field=PRE_SESSION_FIELD,
        pre_session_token=token,
        single_sign_on_href=SINGLE_SIGN_ON_PATH if p.settings.oidc_issuer else None,
    )
    set_pre_session_cookie(p, response, token)
    return response


@router.get("/sign-in")
async def sign_in_form(
    request: Request, p: PartsDep, session: Annotated[str | None, Query(max_length=20)] = None
) -> Response:
    if await _live_session(request, p) is not None:
        return redirect("/")
    return _sign_in_page(request, p, notice=session if session in NOTICES else None)


async def _check_password(p: PartsDep, name: str, password: str) -> IssuedSession:
    # No account has such a name or password, and PostgreSQL cannot even hold a NUL to look one up.
    if len(name) > MAX_NAME or len(password) > MAX_PASSWORD or "\x00" in name + password:
        raise SignInFailed(SIGN_IN_FAILED)
    return await p.identity.sign_in_with_password(name, password, kind="cookie")


@router.post("/sign-in")
async def sign_in(
    request: Request,
    p: PartsDep,
    name: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    token: Annotated[str, Form(alias=PRE_SESSION_FIELD)] = "",
) -> Response:
    if not pre_session_matches(request, token):
        raise FormNotChecked("the sign-in form's pre-session token is missing or does not match its cookie")
    name = name.strip()
    problems = Problems()
    if not name:
        problems.add("name", "Enter your user name")
    if not password:
        problems.add("password", "Enter your password")
    issued = None
    if not problems:
        try:
            issued = await _check_password(p, name, password)
        except SignInFailed as err:
            # At the password: the field to fill in again (the name stays as typed, to be checked).
            problems.add("password", str(err))
    if issued is None:
        return _sign_in_page(request, p, name=name[:MAX_NAME].replace("\x00", ""), errors=problems)
    # A session this browser still held (another person's, on a shared computer) ends here.
    previous = await _live_session(request, p)
    if previous is not None:
        await p.identity.sign_out(previous)
    response = redirect("/")
    set_session_cookie(p, response, issued.token)
    clear_pre_session_cookie(response)
    return response


@router.post("/sign-out")
async def sign_out(session: PageSessionDep, p: PartsDep) -> Response:
    await p.identity.sign_out(session)
    response = redirect(SIGNED_OUT_PATH)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
