"""Shielding requests: intake (taken by phone), the written form, status, review decisions and unshielding."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Request, UploadFile
from fastapi.responses import JSONResponse

from shielding.domain import FormOutcome, IntakeAcknowledgement, RequestStatus, ReviewOutcome, UnshieldOutcome
from shielding.store import access_log
from shielding.store.access_log import AccessKind
from starter import Document, IntakeDraft, Refusal
from starter.identity import Session
from starter.validation import RelatedRecordsUndecided
from web.deps import PartsDep, allowed, reader
from web.schemas import Intake, Review, Unshield

router = APIRouter(prefix="/api/requests", tags=["requests"])
MAX_DOCUMENTS = 50


@router.post(
    "",
    summary="Take a shielding request; answers once every child is shielded",
    response_model=IntakeAcknowledgement,
)
async def take_request(
    body: Intake, p: PartsDep, session: Annotated[Session, allowed("request")]
) -> IntakeAcknowledgement | JSONResponse:
    draft = IntakeDraft(**body.model_dump(exclude={"request_id"}))
    if body.request_id is not None:
        from starter import check_request_id

        check_request_id(body.request_id)
    try:
        return await p.service.submit_request(draft, actor=session.name, request_id=body.request_id)
    except RelatedRecordsUndecided as undecided:
        # The sentence, and the records (identity only) so a client can ask about each: send them back in
        # `related_records` with a decision.
        related = [
            {"uid": r.uid, "given_name": r.given_name, "family_name": r.family_name, "shares": r.shares}
            for r in undecided.records
        ]
        return JSONResponse({"detail": str(undecided), "related_records": related}, status_code=422)


@router.get("/{request_id}", summary="Stage, deadlines and decisions so far")
async def request_status(
    request_id: str, request: Request, p: PartsDep, session: Annotated[Session, allowed("status")]
) -> RequestStatus:
    status = await p.service.status(request_id)
    await access_log.record(p.pool, reader(request, session), AccessKind.LIST, status.children)
    return status


async def _read(upload: UploadFile, limit: int) -> Document:
    # One byte over the limit is enough to refuse: never hold more than that in memory.
    content = await upload.read(limit + 1)
    return Document(filename=upload.filename or "document", content=content)


@router.post("/{request_id}/form", summary="Record the written form and its supporting documents")
async def submit_form(
    request_id: str,
    p: PartsDep,
    documents: Annotated[list[UploadFile], File(description="The completed form, then any supporting documents")],
    session: Annotated[Session, allowed("form")],
) -> FormOutcome:
    if len(documents) > MAX_DOCUMENTS:
        raise Refusal(f"A form can have at most {MAX_DOCUMENTS} documents; nothing was recorded.")
    read = [await _read(d, p.settings.max_document_bytes) for d in documents]
    return await p.service.submit_documents(request_id, read, actor=session.name)


@router.post("/{request_id}/review", summary="Decide a review that has fallen due")
async def decide_review(
    request_id: str, body: Review, p: PartsDep, session: Annotated[Session, allowed("review")]
) -> ReviewOutcome:
    if body.decision == "unshield" and not (body.reason or "").strip():
        raise Refusal("A decision to unshield needs a reason.")
    return await p.service.decide_review(
        request_id, approve=body.decision == "approve", reason=body.reason, actor=session.name
    )


@router.post("/{request_id}/unshield", summary="Lift the shield because circumstances changed")
async def unshield(
    request_id: str, body: Unshield, p: PartsDep, session: Annotated[Session, allowed("unshield")]
) -> UnshieldOutcome:
    if not body.reason.strip():
        raise Refusal("Unshielding needs a reason.")
    return await p.service.unshield(request_id, reason=body.reason, actor=session.name)
