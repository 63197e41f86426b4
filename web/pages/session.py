"""Who is signed in on a page, what they may do there, and the pre-session token that guards the sign-in form.

Pages use the API's cookie session and CSRF check (`web.deps.current_session`): every POST form carries
`csrf_token`. A page handler takes `PageSessionDep` (anyone signed in) or `may("action")` (someone whose roles
allow it; refused and audited otherwise, shown as the access-denied page by `web.pages.routing.PageRoute`).

Before sign-in there is no session to tie a CSRF token to, so the sign-in form is guarded against login CSRF
(a forged cross-site post signing the victim in as the attacker) by a double submit: a random value in a
short-lived, HttpOnly, SameSite=Strict cookie that only the sign-in path receives, repeated in a hidden field.
Another site can neither read the cookie nor set the field to match it, so its post is refused.
"""

from __future__ import annotations

import re
import secrets
from typing import Annotated, Any

from fastapi import Depends, Request, Response

from shielding import access
from starter.identity import Session
from web.deps import PartsDep, current_session

PRE_SESSION_COOKIE = "shielding_pre_session"
PRE_SESSION_FIELD = "pre_session_token"
PRE_SESSION_PATH = "/sign-in"
PRE_SESSION_MAX_AGE_SECONDS = 30 * 60
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


class PageAccessDenied(access.AccessDenied):
    """A page's permission check refused (already audited); `action` lets the page say what was refused."""

    def __init__(self, message: str, *, action: str) -> None:
        super().__init__(message)
        self.action = action


async def page_session(request: Request, p: PartsDep) -> Session:
    """The signed-in person (CSRF checked on a POST), kept on the request for the layout's banner."""
    session = await current_session(request, p)
    request.state.session = session
    return session


PageSessionDep = Annotated[Session, Depends(page_session)]


def may(action: str) -> Any:
    """A dependency: the signed-in person may take `action` (on the path's request or child); audited if not."""

    async def check(request: Request, session: PageSessionDep, p: PartsDep) -> Session:
        try:
            await access.require(
                p.pool,
                session.name,
                action,
                request_id=request.path_params.get("request_id"),
                child_uid=request.path_params.get("uid"),
                roles=session.roles,
            )
        except access.AccessDenied as err:
            raise PageAccessDenied(str(err), action=action) from None
        return session

    return Depends(check)


# ------------------------------------------------------------------------------------ pre-session token


def pre_session_token(request: Request) -> str:
    """The token already in this browser's cookie (so two open sign-in tabs both work), else a new one."""
    existing = request.cookies.get(PRE_SESSION_COOKIE, "")
    return existing if _TOKEN_SHAPE.fullmatch(existing) else secrets.token_urlsafe(32)


def set_pre_session_cookie(p: PartsDep, response: Response, token: str) -> None:
    secure = p.settings.cookie_secure
    if secure is None:
        secure = p.settings.environment == "production"
    response.set_cookie(
        PRE_SESSION_COOKIE,
        token,
        max_age=PRE_SESSION_MAX_AGE_SECONDS,
        path=PRE_SESSION_PATH,
        httponly=True,
        secure=secure,
        samesite="strict",
    )


def clear_pre_session_cookie(response: Response) -> None:
    response.delete_cookie(PRE_SESSION_COOKIE, path=PRE_SESSION_PATH)


def pre_session_matches(request: Request, presented: str) -> bool:
    """The hidden field repeats the cookie (both present, well formed and equal, compared in constant time)."""
    cookie = request.cookies.get(PRE_SESSION_COOKIE, "")
    if not (_TOKEN_SHAPE.fullmatch(cookie) and _TOKEN_SHAPE.fullmatch(presented)):
        return False
    return secrets.compare_digest(cookie.encode(), presented.encode())
