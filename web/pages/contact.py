"""Brokering contact with a shielded child, as pages.

    GET/POST /children/{uid}/contact            ask the team (purpose, urgency, how to reach you); anyone who may
                                                ask for contact ("ask contact")
    GET      /contact-requests                  managers: the queue (open first, urgent first); others: their own
    GET      /contact-requests/{id}             the asker: progress and outcome; managers: the queue's fields; the
                                                manager who took it, while open: the hidden details (each view
                                                audited) and the form to close it
    POST     /contact-requests/{id}/take        a manager takes it (never one they asked for)
    POST     /contact-requests/{id}/close       the manager who took it records the outcome

URLs carry only the child's uid and the contact request's id. Every page is `Cache-Control: no-store`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Form, Request, Response

from shielding import messages, store
from shielding.access import PERMISSIONS
from shielding.brokering import CONTACT_REQUEST_ID_PATTERN, ContactRequestView
from shielding.domain import UID_PATTERN
from shielding.store import access_log
from shielding.store.access_log import AccessKind
from starter import Refusal
from starter.brokering import EMAIL, PHONE
from starter.identity import Session
from web.deps import PartsDep, reader
from web.pages.break_glass import identity, withheld
from web.pages.forms import Problems
from web.pages.rendering import redirect, render
from web.pages.routing import page_router
from web.pages.session import PageSessionDep, may

router = page_router()

ASK_PATH = "/children/{uid}/contact"
QUEUE_PATH = "/contact-requests"
REQUEST_PATH = QUEUE_PATH + "/{contact_request_id}"
MAX_TEXT = 2000

NO_PURPOSE = "Enter why you need to contact the child or their family"
LONG_PURPOSE = f"The reason must be {MAX_TEXT:,} characters or fewer"
NO_URGENCY = "Select whether the request is urgent or routine"
NO_CONTACT = "Enter your email address or phone number, so the team can tell you the outcome"
BAD_EMAIL = "Enter an email address in the correct format, like name@example.org"
BAD_PHONE = "Enter a phone number, like 020 7946 0000"
NO_OUTCOME = "Select the outcome"
NO_REASON = "Enter the reason for the outcome"
LONG_REASON = f"The reason must be {MAX_TEXT:,} characters or fewer"


def _no_child(request: Request, uid: str) -> Response:
    return render(
        request,
        "problem.html",
        status_code=404,
        heading="No child has this record number",
        paragraphs=[f"No child in the directory has the record number {uid[:64]}. Check it and try again."],
    )


async def _shielded_child(
    request: Request, p: PartsDep, session: Session, uid: str
) -> tuple[dict[str, Any] | None, Response | None]:
    """The shielded record asked about, as every role may see it (the page names the child: a logged view)."""
    if not UID_PATTERN.fullmatch(uid):
        return None, _no_child(request, uid)
    who = reader(request, session)
    read = store.view_child(p.pool, uid)
    record = await access_log.viewed(p.pool, who, uid, read)
    if record is None:
        return None, _no_child(request, uid)
    if not record["shielded"]:
        return None, render(
            request,
            "problem.html",
            status_code=422,
            heading="This record is not shielded",
            paragraphs=[messages.contact_not_shielded(record["uid"])],
        )
    return record, None


def _ask_page(
    request: Request, record: dict[str, Any], *, values: dict[str, str], errors: Problems | None = None
) -> Response:
    return render(
        request,
        "contact_ask.html",
        status_code=422 if errors else 200,
        errors=errors or Problems(),
        child=identity(record),
        values=values,
        action=ASK_PATH.format(uid=record["uid"]),
    )


@router.get(ASK_PATH)
async def ask_form(
    request: Request, uid: str, p: PartsDep, session: Annotated[Session, may("ask contact")]
) -> Response:
    record, page = await _shielded_child(request, p, session, uid)
    if page is not None:
        return page
    assert record is not None
    return _ask_page(request, record, values={"purpose": "", "urgency": "", "email": "", "phone": ""})


@router.post(ASK_PATH)
async def ask(
    request: Request,
    uid: str,
    p: PartsDep,
    session: Annotated[Session, may("ask contact")],
    purpose: Annotated[str, Form(max_length=MAX_TEXT * 2)] = "",
    urgency: Annotated[str, Form(max_length=20)] = "",
    email: Annotated[str, Form(max_length=300)] = "",
    phone: Annotated[str, Form(max_length=60)] = "",
) -> Response:
    record, page = await _shielded_child(request, p, session, uid)
    if page is not None:
        return page
    assert record is not None
    values = {"purpose": purpose.strip(), "urgency": urgency, "email": email.strip(), "phone": phone.strip()}
    problems = Problems()
    if not values["purpose"]:
        problems.add("purpose", NO_PURPOSE)
    elif len(values["purpose"]) > MAX_TEXT:
        problems.add("purpose", LONG_PURPOSE)
    if urgency not in ("urgent", "routine"):
        problems.add("urgency", NO_URGENCY)
    if not values["email"] and not values["phone"]:
        problems.add("email", NO_CONTACT)
    if values["email"] and not EMAIL.fullmatch(values["email"]):
        problems.add("email", BAD_EMAIL)
    if values["phone"] and not PHONE.fullmatch(values["phone"]):
        problems.add("phone", BAD_PHONE)
    if problems:
        return _ask_page(request, record, values=values, errors=problems)
    try:
        view = await p.service.ask_contact(
            uid,
            purpose=values["purpose"],
            urgency=urgency,
            email=values["email"] or None,
            phone=values["phone"] or None,
            actor=session.name,
            roles=session.roles,
        )
    except Refusal as refusal:
        problems.add("purpose", str(refusal))
        return _ask_page(request, record, values=values, errors=problems)
    return redirect(REQUEST_PATH.format(contact_request_id=view.contact_request_id) + "?asked=1")


@router.get(QUEUE_PATH)
async def queue(request: Request, p: PartsDep, session: PageSessionDep) -> Response:
    found = await p.service.contact_requests(actor=session.name, roles=session.roles)
    await access_log.record(p.pool, reader(request, session), AccessKind.LIST, [r.child_uid for r in found])
    manager = bool(session.roles & PERMISSIONS["broker contact"])
    return render(
        request,
        "contact_requests.html",
        requests=found,
        manager=manager,
        open_count=sum(1 for r in found if r.status.value != "closed"),
    )


def _request_page(
    request: Request,
    session: Session,
    view: ContactRequestView,
    *,
    errors: Problems | None = None,
    values: dict[str, str] | None = None,
    asked: bool = False,
) -> Response:
    manager = bool(session.roles & PERMISSIONS["broker contact"])
    return render(
        request,
        "contact_request.html",
        status_code=422 if errors else 200,
        errors=errors or Problems(),
        view=view,
        manager=manager,
        may_take=manager and view.status.value == "waiting" and view.asked_by != session.name,
        own_request=view.asked_by == session.name,
        details=withheld(view.hidden) if view.hidden else None,
        values=values or {"outcome": "", "reason": ""},
        asked=asked,
        take_action=REQUEST_PATH.format(contact_request_id=view.contact_request_id) + "/take",
        close_action=REQUEST_PATH.format(contact_request_id=view.contact_request_id) + "/close",
    )


def _checked_id(request: Request, contact_request_id: str) -> Response | None:
    if CONTACT_REQUEST_ID_PATTERN.fullmatch(contact_request_id):
        return None
    return render(
        request,
        "problem.html",
        status_code=404,
        heading="There is no such contact request",
        paragraphs=["Contact request numbers look like CR-ABCDEFGH2345. Check it and try again."],
    )


async def _view(
    request: Request, p: PartsDep, session: Session, contact_request_id: str
) -> tuple[ContactRequestView | None, Response | None]:
    bad = _checked_id(request, contact_request_id)
    if bad is not None:
        return None, bad
    try:
        who = reader(request, session)
        view = await p.service.contact_request(contact_request_id, actor=session.name, roles=session.roles, reader=who)
        return view, None
    except Refusal as refusal:
        return None, render(
            request,
            "problem.html",
            status_code=404,
            heading="There is no such contact request",
            paragraphs=[str(refusal)],
        )


@router.get(REQUEST_PATH)
async def contact_request(
    request: Request, contact_request_id: str, p: PartsDep, session: PageSessionDep, asked: str | None = None
) -> Response:
    view, page = await _view(request, p, session, contact_request_id)
    if page is not None:
        return page
    assert view is not None
    return _request_page(request, session, view, asked=asked == "1")


@router.post(REQUEST_PATH + "/take")
async def take(
    request: Request, contact_request_id: str, p: PartsDep, session: Annotated[Session, may("broker contact")]
) -> Response:
    bad = _checked_id(request, contact_request_id)
    if bad is not None:
        return bad
    try:
        who = reader(request, session)
        view = await p.service.take_contact(contact_request_id, actor=session.name, roles=session.roles, reader=who)
    except Refusal as refusal:
        current, page = await _view(request, p, session, contact_request_id)
        if page is not None:
            return page
        assert current is not None
        problems = Problems()
        problems.add("take", str(refusal))
        return _request_page(request, session, current, errors=problems)
    # The answer to the POST itself shows what the record hides (that view audited); the request's own page
    # shows it again to this manager while the request is open (each view audited).
    return _request_page(request, session, view)


@router.post(REQUEST_PATH + "/close")
async def close(
    request: Request,
    contact_request_id: str,
    p: PartsDep,
    session: Annotated[Session, may("broker contact")],
    outcome: Annotated[str, Form(max_length=20)] = "",
    reason: Annotated[str, Form(max_length=MAX_TEXT * 2)] = "",
) -> Response:
    bad = _checked_id(request, contact_request_id)
    if bad is not None:
        return bad
    values = {"outcome": outcome, "reason": reason.strip()}
    problems = Problems()
    if outcome not in ("passed-on", "declined"):
        problems.add("outcome", NO_OUTCOME)
    if not values["reason"]:
        problems.add("reason", NO_REASON)
    elif len(values["reason"]) > MAX_TEXT:
        problems.add("reason", LONG_REASON)
    if not problems:
        try:
            await p.service.close_contact(
                contact_request_id, outcome=outcome, reason=values["reason"], actor=session.name, roles=session.roles
            )
        except Refusal as refusal:
            problems.add("outcome", str(refusal))
        else:
            return redirect(REQUEST_PATH.format(contact_request_id=contact_request_id))
    current, page = await _view(request, p, session, contact_request_id)
    if page is not None:
        return page
    assert current is not None
    return _request_page(request, session, current, errors=problems, values=values)
