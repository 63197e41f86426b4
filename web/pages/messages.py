"""The managers' Messages page: the outbox and how each message's delivery went (shielding.delivery).

    GET /managers/messages             the newest messages: status (queued, sent, failed with its reason, not
                                       possible), each recipient's delivery and when, the subject and the body
    GET /managers/messages?failed=yes  only those that failed

Managers only (the "users" permission, as the alerts page). Recipients' addresses are shown masked
(`r…@council.example`, `… 123`): enough to tell which one a failure is about, not a list of addresses.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request, Response

from shielding.store import outbox
from starter.identity import Session
from web.deps import PartsDep
from web.pages.rendering import render
from web.pages.routing import page_router
from web.pages.session import may

router = page_router()

MESSAGES_PATH = "/managers/messages"


@router.get(MESSAGES_PATH)
async def messages_page(
    request: Request,
    session: Annotated[Session, may("users")],
    p: PartsDep,
    failed: Annotated[str | None, Query(max_length=8)] = None,
) -> Response:
    only_failed = failed in ("yes", "true", "1")
    shown = await outbox.outbox(p.pool, failed_only=only_failed)
    return render(
        request,
        "messages.html",
        messages=[m.masked() for m in shown],
        only_failed=only_failed,
        limit=outbox.OUTBOX_SHOWN,
    )
