"""Brokering contact with a shielded child: ask the team (anyone who works with children's records), and the
managers' queue: take a request (then see what the record hides, audited), close it with its outcome.

URLs carry only ids (a child's uid, a contact request's CR-… id); the purpose and contact details travel in the
body. Who is acting comes from the session, never from the body.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request

from shielding.brokering import ContactRequestList, ContactRequestView
from shielding.store import access_log
from shielding.store.access_log import AccessKind
from starter.identity import Session
from web.deps import PartsDep, allowed, reader
from web.schemas import ContactAsk, ContactClose, Problem

router = APIRouter(tags=["contact"])
HIDDEN_SHOWN = "The record's hidden details are in `hidden` for the manager who took the request (each view audited)"


@router.post(
    "/api/children/{uid}/contact-requests",
    summary="Ask the team to broker contact with a shielded child; the managers are told",
    status_code=201,
    response_model=ContactRequestView,
)
async def ask_contact(
    uid: str, body: ContactAsk, p: PartsDep, session: Annotated[Session, allowed("ask contact")]
) -> ContactRequestView:
    return await p.service.ask_contact(
        uid,
        purpose=body.purpose,
        urgency=body.urgency,
        email=body.email,
        phone=body.phone,
        actor=session.name,
        roles=session.roles,
    )


@router.get(
    "/api/contact-requests",
    summary="Managers: every contact request (open first, urgent first); others: the ones they asked for",
)
async def contact_requests(
    http: Request, p: PartsDep, session: Annotated[Session, allowed("ask contact")]
) -> ContactRequestList:
    found = await p.service.contact_requests(actor=session.name, roles=session.roles)
    # The uids of the children asked about (each one shielded): a list like any other, in the access log.
    await access_log.record(p.pool, reader(http, session), AccessKind.LIST, [r.child_uid for r in found])
    return ContactRequestList(contact_requests=found)


@router.get(
    "/api/contact-requests/{request_id}",
    summary="One contact request: its progress (the asker), its queue fields (managers), the hidden details "
    "(the manager who took it, audited)",
    responses={403: {"model": Problem, "description": "Neither the person who asked nor a manager (audited)"}},
)
async def contact_request(
    request_id: str, http: Request, p: PartsDep, session: Annotated[Session, allowed("ask contact")]
) -> ContactRequestView:
    who = reader(http, session)
    return await p.service.contact_request(request_id, actor=session.name, roles=session.roles, reader=who)


@router.post(
    "/api/contact-requests/{request_id}/take",
    summary="A manager takes the request (never their own); answers with what the record hides",
    description=HIDDEN_SHOWN,
)
async def take_contact(
    request_id: str, http: Request, p: PartsDep, session: Annotated[Session, allowed("broker contact")]
) -> ContactRequestView:
    who = reader(http, session)
    return await p.service.take_contact(request_id, actor=session.name, roles=session.roles, reader=who)


@router.post(
    "/api/contact-requests/{request_id}/close",
    summary="The manager who took it records the outcome; the person who asked is told it (never the details)",
)
async def close_contact(
    request_id: str, body: ContactClose, p: PartsDep, session: Annotated[Session, allowed("broker contact")]
) -> ContactRequestView:
    return await p.service.close_contact(
        request_id, outcome=body.outcome, reason=body.reason, actor=session.name, roles=session.roles
    )
