"""The start page: what the signed-in person's roles let them do, as links (nothing they would be refused)."""

from __future__ import annotations

from fastapi import Request, Response

from web.pages.rendering import render
from web.pages.routing import page_router
from web.pages.session import PageSessionDep
from web.pages.tasks import tasks_for

router = page_router()


@router.get("/")
async def start(request: Request, session: PageSessionDep) -> Response:
    return render(request, "start.html", tasks=tasks_for(session.roles))
