"""The staff pages: server-rendered GOV.UK Design System pages beside the JSON API, on the same sessions.

`install_pages(app)` (called by `web.app.create_app`) mounts the static assets and includes every page router.
Adding a page:

1. a module here with `router = page_router()` (`web.pages.routing`: failures become pages), its handlers taking
   `may("action")` or `PageSessionDep` (`web.pages.session`) and answering with `render(request, "x.html", ...)`
   or `redirect(...)` (`web.pages.rendering`); a form's problems as `web.pages.forms.Problems`;
2. a template in `web/templates/` that `{% extends "layout.html" %}` and fills `title` and `content`
   (forms: `method="post" novalidate` and the hidden `csrf_token`);
3. the module in `PAGE_ROUTERS` below, and its task's path in `web.pages.tasks` if the start page links to it;
4. a browser test (`tests/helpers/browser.py`: axe on every page, a screenshot of each new page).
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from starlette.exceptions import HTTPException

from web.pages import (
    access_log,
    audit_log,
    break_glass,
    children,
    contact,
    intake,
    managers,
    messages,
    requests,
    reviews,
    sign_in,
    start,
)
from web.pages.routing import page_not_found
from web.pages.static import mount_assets

PAGE_ROUTERS = (
    sign_in.router,
    start.router,
    children.router,
    intake.router,
    requests.router,
    reviews.router,
    break_glass.router,
    contact.router,
    managers.router,
    messages.router,
    audit_log.router,
    access_log.router,
)


# Addresses whose callers are programs: an unknown one there answers the API's JSON, not a page.
PROGRAM_PREFIXES = ("/api/", "/codec/", "/auth/", "/healthz", "/readyz", "/metrics", "/assets/")


def install_pages(app: FastAPI) -> None:
    mount_assets(app)
    for router in PAGE_ROUTERS:
        app.include_router(router)

    @app.exception_handler(HTTPException)
    async def not_a_page(request: Request, err: HTTPException) -> Response:
        """An address no route answers, typed or followed by a person: the "Page not found" page."""
        if err.status_code in (404, 405) and not request.url.path.startswith(PROGRAM_PREFIXES):
            return page_not_found(request)
        return await http_exception_handler(request, err)
