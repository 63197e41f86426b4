"""Page routes: every failure a page meets becomes a page (never the API's JSON), so each page handles only its form.

    router = page_router()

    @router.get("/reviews")
    async def reviews(request: Request, session: Annotated[Session, may("review")]) -> Response: ...

- not signed in, or the session ended: 303 to /sign-in (saying the session ended when there was one);
- a POST whose CSRF token (or, on sign-in, pre-session token) is missing or wrong: 403 "This form could not be
  checked", and nothing is changed;
- a permission refusal (`AccessDenied`, already audited): 403, the access-denied page;
- page not found, a form that cannot be read, the database or Temporal unreachable, anything unexpected: a page
  with the status and what to do.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from temporalio.service import RPCError

from shielding.access import PERMISSIONS, AccessDenied
from shielding.log import get_logger
from starter.identity import NotSignedIn
from web.deps import SESSION_COOKIE, CsrfRefused
from web.pages.rendering import redirect, render, roles_text, signed_in, with_article
from web.pages.session import PageAccessDenied
from web.pages.tasks import ACTION_TEXT

log = get_logger(__name__)

SIGN_IN_PATH = "/sign-in"
SESSION_ENDED_PATH = SIGN_IN_PATH + "?session=ended"
SIGNED_OUT_PATH = SIGN_IN_PATH + "?session=signed-out"


class FormNotChecked(Exception):
    """A form post without the token that proves it came from this service's own page (login CSRF)."""


def _problem(request: Request, status_code: int, heading: str, *paragraphs: str) -> Response:
    return render(request, "problem.html", status_code=status_code, heading=heading, paragraphs=paragraphs)


def page_not_found(request: Request) -> Response:
    return _problem(
        request,
        404,
        "Page not found",
        "If you typed the web address, check it is correct.",
        "If you pasted the web address, check you copied the entire address.",
    )


def _access_denied(request: Request, err: AccessDenied) -> Response:
    action = err.action if isinstance(err, PageAccessDenied) else None
    session = signed_in(request)
    # Refused for want of a role (say which roles may), or for another reason (taking part in the request):
    # then the reason recorded in the audit log says it.
    needed = PERMISSIONS.get(action or "", frozenset())
    explanation = None
    if needed and action in ACTION_TEXT and session is not None and not session.roles & needed:
        held = f"is set up as {with_article(roles_text(session.roles))}" if session.roles else "has no role yet"
        explanation = (
            f"Only {with_article(roles_text(needed, 'or'))} can {ACTION_TEXT[action or '']}. Your account {held}."
        )
    return render(request, "access_denied.html", status_code=403, reason=str(err), explanation=explanation)


def _page_for(request: Request, err: Exception) -> Response:  # noqa: C901 - one branch an outcome
    if isinstance(err, FormNotChecked):
        return render(request, "form_not_checked.html", status_code=403, signing_in=True)
    if isinstance(err, CsrfRefused):
        return render(request, "form_not_checked.html", status_code=403, signing_in=False)
    if isinstance(err, NotSignedIn):
        if SESSION_COOKIE not in request.cookies:
            return redirect(SIGN_IN_PATH)
        response = redirect(SESSION_ENDED_PATH)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response
    if isinstance(err, AccessDenied):
        return _access_denied(request, err)
    if isinstance(err, HTTPException) and err.status_code == 404:
        return page_not_found(request)
    if isinstance(err, HTTPException):
        raise err
    if isinstance(err, RequestValidationError):
        return _problem(request, 400, "This form could not be read", "Go back, check what you entered and try again.")
    if isinstance(err, (asyncpg.PostgresConnectionError, RPCError, ConnectionError)):
        return _problem(
            request,
            503,
            "Sorry, the service is unavailable",
            "Part of the service cannot be reached. Nothing was changed. Try again in a few minutes.",
        )
    # The type only: an exception's text can carry what a record holds.
    log.error("page failed", path=request.url.path, error=type(err).__name__)
    return _problem(
        request,
        500,
        "Sorry, there is a problem with the service",
        "Nothing further was changed. Try again later; if it keeps happening, tell the operations team.",
    )


class PageRoute(APIRoute):
    """An API route whose failures (in its dependencies too) are rendered as pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as err:  # noqa: BLE001 - every failure becomes a page
                return _page_for(request, err)

        return page_handler


def page_router() -> APIRouter:
    """A router for pages: HTML responses, failures as pages, left out of the API's OpenAPI document."""
    return APIRouter(route_class=PageRoute, include_in_schema=False, default_response_class=HTMLResponse)
