"""Taking a call: find the children, say why and who is asking, shield; then the confirmation to read out.

    GET  /requests/new                          an empty intake form (a fresh request reference in it)
    POST /requests/new                          find a child, add or remove one, or shield (the button says which)
    GET  /requests/{request_id}/confirmation    the reference, the form deadline and the review dates

The form keeps one request reference from first showing to shielding, so sending it twice (a double click, the
back button, a retry after the service was slow) joins the same request instead of starting another: the service
takes a repeat of a running intake under its id as the same intake. After a refusal the reference stays, unless
the service has used it up (a request was recorded under it), when the form gets a new one.

Every record that shares an address or a carer with a chosen child needs a decision before anything is shielded:
the service names them, and the form lists each with "add to this request" or "do not add" and the reason why
(hidden fields carry their uids, like the chosen children's). A search names a name and a date of birth and
counts against the officer's allowance of directory reads.

Shielding answers only once every child's record is shielded (`ShieldingService.submit_request`); the POST's
answer is the confirmation (reloading it posts the same reference again, which changes nothing), and the
confirmation's own address reads the request back.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Response

from shielding import access, store
from shielding.domain import CRITERION_LABELS, OBJECTION_IN_PRINCIPLE, REQUEST_ID_PATTERN, IntakeAcknowledgement, Stage
from shielding.lifecycle import review_due_at
from shielding.store import access_log, queues
from shielding.store.access_log import AccessKind
from starter import IntakeTimeout, Refusal, new_request_id, validate_intake
from starter.identity import Session
from starter.validation import RelatedRecordsUndecided
from web.deps import PartsDep, reader
from web.pages.children import reads_refused
from web.pages.intake_form import (
    CALLED_AT,
    REASON,
    REASON_MISSING,
    RELATED,
    SUBMIT,
    FormProblems,
    IntakeForm,
    refusal_problems,
)
from web.pages.rendering import redirect, render
from web.pages.request_views import ChildIdentity
from web.pages.routing import page_router
from web.pages.session import may

router = page_router()

NEW_PATH = "/requests/new"
CRITERIA = [(criterion.value, label) for criterion, label in CRITERION_LABELS.items()]
SEARCH_LIMIT = store.directory.SEARCH_PAGE
TIMED_OUT = (
    "The records have not been confirmed as shielded yet: the service is slow or part of it cannot be reached. "
    "Keep the caller on the line if you can and select the button again; the request keeps its reference, so it "
    "will not be recorded twice"
)


def checked_request_id(request_id: str) -> str:
    """A path's request id, or 404 before anything else (a permission check included) looks at it."""
    if not REQUEST_ID_PATTERN.fullmatch(request_id):
        raise HTTPException(status_code=404)
    return request_id


RequestIdDep = Annotated[str, Depends(checked_request_id)]


async def _identities(
    request: Request, p: PartsDep, session: Session, uids: list[str]
) -> list[tuple[str, ChildIdentity | None]]:
    """Each chosen child as every role may see them (the redacting view); None for a uid the directory lacks."""
    found = []
    for uid in uids:
        record = await store.view_child(p.pool, uid)
        found.append((uid, ChildIdentity.of(record) if record else None))
    if uids:
        await access_log.record(p.pool, reader(request, session), AccessKind.LIST, uids)
    return found


async def _search(
    request: Request, p: PartsDep, session: Session, form: IntakeForm, problems: FormProblems
) -> list[ChildIdentity] | Response | None:
    """The children found, or the page saying the officer has searched too often, or None (nothing searched)."""
    query = form.search(problems)
    if query is None:
        return None
    await access.require(p.pool, session.name, "search", roles=session.roles)
    refused = await reads_refused(request, p, session)
    if refused is not None:
        return refused
    query = query.model_copy(update={"limit": SEARCH_LIMIT})
    found = await store.search_children(p.pool, query)
    await access_log.record(p.pool, reader(request, session), AccessKind.SEARCH, [r["uid"] for r in found])
    return [ChildIdentity.of(record) for record in found]


async def _form_page(
    request: Request,
    p: PartsDep,
    session: Session,
    form: IntakeForm,
    *,
    problems: FormProblems | None = None,
    results: list[ChildIdentity] | None = None,
) -> Response:
    return render(
        request,
        "intake.html",
        errors=(problems or FormProblems()).problems(),
        form=form,
        chosen=await _identities(request, p, session, form.children),
        related=[
            (uid, child)
            for uid, child in await _identities(request, p, session, form.related)
            if uid not in form.children
        ],
        results=results,
        results_capped=results is not None and len(results) >= SEARCH_LIMIT,
        criteria=CRITERIA,
        objection=OBJECTION_IN_PRINCIPLE,
    )


@router.get(NEW_PATH)
async def new_request(request: Request, p: PartsDep, session: Annotated[Session, may("request")]) -> Response:
    return await _form_page(request, p, session, IntakeForm())


@router.post(NEW_PATH)
async def intake_step(request: Request, p: PartsDep, session: Annotated[Session, may("request")]) -> Response:
    posted = await request.form()
    form = IntakeForm.from_form(posted)
    action = posted.get("action")
    added, removed = posted.get("add"), posted.get("remove")
    problems = FormProblems()
    if isinstance(added, str) or isinstance(removed, str):
        form = form.with_child(added) if isinstance(added, str) else form.without_child(str(removed))
        # The search stays on screen, so a brother or sister in the same results can be added next.
        found = await _search(request, p, session, form, FormProblems()) if form.has_search_terms() else None
        if isinstance(found, Response):
            return found
        return await _form_page(request, p, session, form, results=found)
    if action == "shield":
        return await _shield(request, p, session, form)
    # "Find child", and Enter in any field (the form's first button): search, keeping everything typed.
    found = await _search(request, p, session, form, problems)
    if isinstance(found, Response):
        return found
    return await _form_page(request, p, session, form, problems=problems, results=found)


async def _shield(request: Request, p: PartsDep, session: Session, form: IntakeForm) -> Response:
    now = datetime.now(UTC)
    problems = FormProblems()
    called_at, time_problem = form.called_at(now)
    if time_problem is not None:
        # Never sent without the time it was given (the service would take the call as now), but every other
        # problem is named with it, in the service's words, by the same checks (nothing is recorded).
        problems.add(CALLED_AT, time_problem)
        try:
            validate_intake(form.draft(None), request_id=form.request_id, actor=session.name, now=now)
        except Refusal as refusal:
            problems.extend(refusal_problems(str(refusal))[0])
        return await _form_page(request, p, session, form, problems=problems)
    # The names the confirmation shows are read while the workflow shields (identity fields only), so the answer
    # costs no read after the service's.
    names = asyncio.create_task(queues.child_names(p.pool, form.all_children()))
    names.add_done_callback(lambda task: task.cancelled() or task.exception())
    try:
        ack = await p.service.submit_request(form.draft(called_at), actor=session.name, request_id=form.request_id)
    except IntakeTimeout:
        names.cancel()
        problems.add(SUBMIT, TIMED_OUT)
        return await _form_page(request, p, session, form, problems=problems)
    except RelatedRecordsUndecided as undecided:
        names.cancel()
        form = form.with_related(r.uid for r in undecided.records)
        problems.add(RELATED, str(undecided))
        for uid in form.related_undecided():
            problems.add(f"related-{uid}-reason", "Enter the reason for not adding this record to the request")
        return await _form_page(request, p, session, form, problems=problems)
    except Refusal as refusal:
        names.cancel()
        found, listed = refusal_problems(str(refusal))
        problems.extend(found)
        # The service names a missing reason only once the other problems are fixed: name it now.
        if listed and not form.reason:
            problems.add(REASON, REASON_MISSING)
        if await store.request_exists(p.pool, form.request_id):
            form.request_id = new_request_id()
        return await _form_page(request, p, session, form, problems=problems)
    # The confirmation is the POST's own answer (no redirect and second request while the caller waits). A
    # refresh posts the same request reference again, which joins the same request and shows this page again.
    named = await names
    if any(child.uid not in named for child in ack.children):
        return await _confirmation_page(request, p, session, ack.request_id)
    await access_log.record(
        p.pool, reader(request, session), AccessKind.LIST, [c.uid for c in ack.children], request_id=ack.request_id
    )
    return _confirmation_from(request, ack, named)


def _confirmation_from(request: Request, ack: IntakeAcknowledgement, names: dict[str, tuple[str, str]]) -> Response:
    """The confirmation from the service's answer: what it shielded, what was already shielded, the dates."""
    children = sorted(
        (
            {
                "uid": child.uid,
                "given_name": names[child.uid][0],
                "family_name": names[child.uid][1],
                "existing_request_id": child.existing_request_id,
            }
            for child in ack.children
        ),
        key=lambda c: (str(c["family_name"]).lower(), str(c["given_name"]).lower(), c["uid"]),
    )
    return render(
        request,
        "intake_confirmation.html",
        status={"request_id": ack.request_id, "stage": ack.stage, "form_due_at": _utc(ack.form_due_at)},
        shielded=[c for c in children if c["existing_request_id"] is None],
        already=[c for c in children if c["existing_request_id"] is not None],
        # As the confirmation's own address shows them: the form deadline as stored, the reviews in London time.
        review_7_day_at=ack.review_7_day_at,
        review_6_month_at=ack.review_6_month_at,
    )


def _utc(instant: datetime | None) -> datetime | None:
    return instant.astimezone(UTC) if instant is not None else None


@router.get("/requests/{request_id}/confirmation")
async def confirmation(
    request: Request, request_id: RequestIdDep, p: PartsDep, session: Annotated[Session, may("request")]
) -> Response:
    return await _confirmation_page(request, p, session, request_id)


async def _confirmation_page(request: Request, p: PartsDep, session: Session, request_id: str) -> Response:
    # From the request's row, written in the transaction that shielded the children: no workflow query needed.
    record = await queues.request_record(p.pool, request_id)
    if record is not None:
        uids = [c.uid for c in record.children]
        await access_log.record(p.pool, reader(request, session), AccessKind.LIST, uids, request_id=request_id)
    if record is None:
        refusal = f"There is no shielding request {request_id}."
        return render(request, "problem.html", status_code=404, heading="Request not found", paragraphs=[refusal])
    if record.shielded_at is None and record.stage != Stage.DUPLICATE:
        return redirect(f"/requests/{request_id}")
    shielded = [c for c in record.children if c.existing_request_id is None]
    already = [c for c in record.children if c.existing_request_id is not None]
    return render(
        request,
        "intake_confirmation.html",
        status=record,
        shielded=shielded,
        already=already,
        review_7_day_at=review_due_at(record.shielded_at, 0) if record.shielded_at else None,
        review_6_month_at=review_due_at(record.shielded_at, 1) if record.shielded_at else None,
    )
