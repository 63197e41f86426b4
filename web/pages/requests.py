"""A shielding request's pages: find one by reference, the forms still due, and the request itself.

    GET  /requests                          find a request by its reference
    POST /requests                          the reference, in the body (so nothing typed lands in a URL)
    GET  /requests/awaiting-form            requests waiting for their written form, soonest deadline first
    GET  /requests/{request_id}             stage, children, deadlines, history; the form and unshield forms
    POST /requests/{request_id}/form        the written form and supporting documents (several files)
    POST /requests/{request_id}/unshield    lift the shield, with a reason

The request page offers only what the person may do: the form upload to intake officers while the form is due,
the unshield form to reviewers and child protection officers, never to the reviewer who took the request (the
service refuses it too: `shielding.access.NOT_ON_OWN_REQUEST`). Both posts answer with the request page itself,
saying what happened, or what to fix.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request, Response
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile

from shielding import store
from shielding.access import PERMISSIONS
from shielding.store import access_log, queues
from shielding.store.access_log import AccessKind
from starter import Document, Refusal, check_document, check_request_id
from starter.identity import Session
from starter.validation import describe_validation_error
from web.deps import PartsDep, reader
from web.pages.forms import Problems
from web.pages.intake import RequestIdDep
from web.pages.intake_form import sentence
from web.pages.pagination import numbered, page_count
from web.pages.rendering import redirect, render
from web.pages.request_views import (
    STAGE_LABELS,
    STAGE_TAG_CLASSES,
    audit_history,
    status_history,
    temporal_ui_link,
)
from web.pages.routing import page_router
from web.pages.session import may
from web.routes.requests import MAX_DOCUMENTS

router = page_router()

UNSHIELD_NEEDS_REASON = "Unshielding needs a reason."  # the API's words (web.routes.requests.unshield)
DOCUMENTS, UNSHIELD_REASON, REQUEST_ID = "documents", "unshield-reason", "request-id"


def size_text(size: int) -> str:
    """2097152 -> "2 MB"; 2048 -> "2 KB"."""
    for unit, scale in (("MB", 1024 * 1024), ("KB", 1024)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _may(session: Session, action: str) -> bool:
    return bool(session.roles & PERMISSIONS[action])


# ---------------------------------------------------------------------------------------------- finding


@router.get("/requests")
async def find_form(request: Request, session: Annotated[Session, may("status")]) -> Response:
    return render(request, "request_find.html", value="", forms_link=_may(session, "form"))


@router.post("/requests")
async def find(request: Request, p: PartsDep, session: Annotated[Session, may("status")]) -> Response:
    typed = _text(await request.form(), "request_id")
    request_id = typed.replace(" ", "").upper()
    problems = Problems()
    if not request_id:
        problems.add(REQUEST_ID, "Enter the request reference, for example SR-ABCDEFGH2345")
    else:
        try:
            check_request_id(request_id)
            if not await store.request_exists(p.pool, request_id):
                raise Refusal(f"There is no shielding request {request_id}.")
        except Refusal as refusal:
            problems.add(REQUEST_ID, sentence(str(refusal)))
    if problems:
        return render(
            request, "request_find.html", errors=problems, value=typed[:100], forms_link=_may(session, "form")
        )
    return redirect(f"/requests/{request_id}")


@router.get("/requests/awaiting-form")
async def awaiting_form(
    request: Request,
    p: PartsDep,
    session: Annotated[Session, may("form")],
    page: Annotated[str, Query(max_length=6)] = "1",
) -> Response:
    number = int(page) if page.isdigit() and 0 < int(page) < 100_000 else 1
    found = await queues.awaiting_form(p.pool, offset=(number - 1) * queues.PAGE_SIZE)
    if not found.items and number > 1:
        # Past the last page (the list shrank as forms arrived): the last page there is.
        return redirect(f"/requests/awaiting-form?page={page_count(found.total, queues.PAGE_SIZE)}")
    uids = [child.uid for item in found.items for child in item.children]
    await access_log.record(p.pool, reader(request, session), AccessKind.LIST, uids)
    return render(
        request,
        "requests_awaiting_form.html",
        waiting=found.items,
        total=found.total,
        first_shown=(number - 1) * queues.PAGE_SIZE + 1,
        pagination=numbered(number, found.total, queues.PAGE_SIZE, lambda n: f"/requests/awaiting-form?page={n}"),
    )


# -------------------------------------------------------------------------------------------- a request


async def _request_page(
    request: Request,
    p: PartsDep,
    session: Session,
    request_id: str,
    *,
    errors: Problems | None = None,
    done: str | None = None,
    unshield_reason: str = "",
) -> Response:
    try:
        status = await p.service.status(request_id)
    except Refusal as refusal:
        found = "There is no shielding request" in str(refusal)
        heading = "Request not found" if found else "Sorry, the request cannot be shown"
        return render(request, "problem.html", status_code=404 if found else 503, heading=heading, paragraphs=[refusal])
    record = await queues.request_record(p.pool, request_id)
    uids = [c.uid for c in record.children] if record is not None else list(status.children)
    await access_log.record(p.pool, reader(request, session), AccessKind.LIST, uids, request_id=request_id)
    if _may(session, "audit"):
        history, full_history = audit_history(await store.audit_entries(p.pool, request_id=request_id)), True
    else:
        history, full_history = status_history(status, record), False
    open_request = not status.stage.is_final and status.shielded_at is not None
    took_it = record is not None and record.received_by == session.name
    return render(
        request,
        "request.html",
        errors=errors or Problems(),
        status=status,
        record=record,
        stage_label=STAGE_LABELS[status.stage],
        stage_class=STAGE_TAG_CLASSES[status.stage],
        history=history,
        full_history=full_history,
        done=done,
        can_upload=_may(session, "form") and open_request and status.form_received_at is None,
        can_unshield=_may(session, "unshield") and open_request and not took_it,
        took_it=_may(session, "unshield") and open_request and took_it,
        unshield_reason=unshield_reason,
        max_document_size=size_text(p.settings.max_document_bytes),
        max_documents=MAX_DOCUMENTS,
        temporal_ui=temporal_ui_link(p.settings, request_id),
    )


@router.get("/requests/{request_id}")
async def request_page(
    request: Request, request_id: RequestIdDep, p: PartsDep, session: Annotated[Session, may("status")]
) -> Response:
    return await _request_page(request, p, session, request_id)


async def _documents(form: FormData, max_bytes: int) -> list[Document]:
    """The files chosen (a file input left empty sends one nameless empty part: nothing chosen), each checked."""
    uploads = [u for u in form.getlist(DOCUMENTS) if isinstance(u, UploadFile) and (u.filename or u.size)]
    if len(uploads) > MAX_DOCUMENTS:
        raise Refusal(f"A form can have at most {MAX_DOCUMENTS} documents; nothing was recorded.")
    documents = []
    for upload in uploads:
        filename = upload.filename or "document"
        if upload.size is not None:  # its real size, before reading any of it
            check_document(filename, upload.size, max_bytes)
        # One byte over the limit is enough to refuse: never hold more than that in memory.
        content = await upload.read(max_bytes + 1)
        check_document(filename, len(content), max_bytes)
        documents.append(Document(filename=filename, content=content))
    return documents


@router.post("/requests/{request_id}/form")
async def submit_form(
    request: Request, request_id: RequestIdDep, p: PartsDep, session: Annotated[Session, may("form")]
) -> Response:
    problems = Problems()
    try:
        documents = await _documents(await request.form(), p.settings.max_document_bytes)
        outcome = await p.service.submit_documents(request_id, documents, actor=session.name)
    except Refusal as refusal:
        problems.add(DOCUMENTS, sentence(str(refusal)))
        return await _request_page(request, p, session, request_id, errors=problems)
    if not outcome.accepted:
        problems.add(DOCUMENTS, sentence(outcome.message))
        return await _request_page(request, p, session, request_id, errors=problems)
    return await _request_page(request, p, session, request_id, done=outcome.message)


@router.post("/requests/{request_id}/unshield")
async def unshield(
    request: Request, request_id: RequestIdDep, p: PartsDep, session: Annotated[Session, may("unshield")]
) -> Response:
    reason = _text(await request.form(), "reason")
    problems = Problems()
    if not reason:
        problems.add(UNSHIELD_REASON, sentence(UNSHIELD_NEEDS_REASON))
    else:
        try:
            outcome = await p.service.unshield(request_id, reason=reason, actor=session.name)
        except ValidationError as err:
            problems.add(UNSHIELD_REASON, sentence("; ".join(describe_validation_error(err))))
        except Refusal as refusal:
            problems.add(UNSHIELD_REASON, sentence(str(refusal)))
        else:
            if outcome.accepted:
                return await _request_page(request, p, session, request_id, done=outcome.message)
            problems.add(UNSHIELD_REASON, sentence(outcome.message))
    return await _request_page(request, p, session, request_id, errors=problems, unshield_reason=reason[:5000])
