"""Brokering contact with a shielded child: what `ShieldingService` does for it (a mixin over its client and pool).

Who may do what (`shielding.access.PERMISSIONS`): "ask contact" (practitioners, intake, reviewers,
child protection, managers) asks; "broker contact" (managers) lists, takes, sees the hidden details and closes.
A manager may not take a request they asked for themselves, and only the manager who took a request sees what
the record hides (each view audited) and closes it. The person who asked sees their own request's progress and
outcome, never the record's details nor who was reached. Every refusal is audited and explained.

Staff act in PostgreSQL (`shielding.store.brokering`), then wake the request's workflow (its `changed` signal
carries nothing; the workflow reads the store). The actor is always the signed-in person the front end names.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import asyncpg
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.service import RPCError

from shielding import access, messages, store
from shielding.brokering import (
    CONTACT_REQUEST_ID_PATTERN,
    BrokeringInput,
    ContactOutcome,
    ContactRequestView,
    Urgency,
    new_contact_request_id,
)
from shielding.domain import MAX_TEXT, UID_PATTERN, AuditAction, no_control_chars
from shielding.log import get_logger
from shielding.store import brokering
from shielding.store.access_log import Reader
from shielding.store.brokering import ContactProblem, ContactRequest, NotTaker
from starter.errors import Refusal
from workflows.contact_brokering import ContactBrokeringWorkflow

log = get_logger(__name__)

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE = re.compile(r"^\+?[0-9 ()-]{6,24}$")


def check_contact_request_id(contact_request_id: str) -> None:
    if not CONTACT_REQUEST_ID_PATTERN.fullmatch(contact_request_id):
        shown = contact_request_id if contact_request_id.isprintable() and len(contact_request_id) <= 64 else "That"
        raise Refusal(f"{shown!r} is not a contact request id (they look like CR-ABCDEFGH2345).")


def _text(value: str | None, what: str, *, needed: str) -> str:
    text = (value or "").strip()
    if not text:
        raise Refusal(needed)
    if len(text) > MAX_TEXT:
        raise Refusal(f"The {what} is too long: use at most {MAX_TEXT} characters.")
    try:
        no_control_chars(text)
    except ValueError:
        raise Refusal(f"The {what} holds a control character; type it again as plain text.") from None
    return text


def check_contact_details(email: str | None, phone: str | None) -> tuple[str | None, str | None]:
    email, phone = (email or "").strip() or None, (phone or "").strip() or None
    if email is None and phone is None:
        raise Refusal("Give your email address or phone number (or both), so the team can tell you the outcome.")
    if email is not None and not EMAIL.fullmatch(email):
        raise Refusal("Enter an email address in the correct format, like name@example.org.")
    if phone is not None and not PHONE.fullmatch(phone):
        raise Refusal(
            "Enter a phone number with 6 to 24 digits (spaces, brackets and dashes allowed), like 020 7946 0000."
        )
    return email, phone


def view_for(request: ContactRequest, *, manager: bool, hidden: dict[str, Any] | None = None) -> ContactRequestView:
    fields: dict[str, Any] = {
        "contact_request_id": request.contact_request_id,
        "child_uid": request.child_uid,
        "urgency": request.urgency,
        "status": request.status,
        "asked_at": request.asked_at,
        "reminders": request.reminders,
        "last_reminded_at": request.last_reminded_at,
        "taken": request.taken_by is not None,
        "outcome": request.outcome,
        "closed_at": request.closed_at,
        "message": messages.contact_outcome_for_asker(
            request.outcome.value if request.outcome else None, request.taken_by is not None
        ),
    }
    if manager:
        fields.update(
            asked_by=request.asked_by,
            taken_by=request.taken_by,
            taken_at=request.taken_at,
            outcome_reason=request.outcome_reason,
        )
    if hidden is not None:
        fields.update(
            purpose=request.purpose,
            contact_email=request.contact_email,
            contact_phone=request.contact_phone,
            hidden=hidden,
        )
    return ContactRequestView(**fields)


class ContactBrokering:
    """Mixed into `ShieldingService`, which provides the Temporal client, the pool and the task queue."""

    _client: Client
    _pool: asyncpg.Pool
    _task_queue: str

    async def ask_contact(
        self,
        uid: str,
        *,
        purpose: str | None,
        urgency: Urgency | str,
        email: str | None,
        phone: str | None,
        actor: str,
        roles: frozenset[str] | None = None,
    ) -> ContactRequestView:
        await access.require(self._pool, actor, "ask contact", child_uid=uid[:64], roles=roles)
        if not UID_PATTERN.fullmatch(uid):
            raise Refusal("That is not a child's identifier (letters, digits and dashes, like CP-1004-ZO).")
        try:
            urgency = Urgency(urgency)
        except ValueError:
            raise Refusal("Select whether the request is urgent or routine.") from None
        text = _text(purpose, "purpose", needed="Enter why you need to contact the child or their family.")
        email, phone = check_contact_details(email, phone)
        try:
            await brokering.check_askable(self._pool, uid)
        except ContactProblem as problem:
            raise Refusal(str(problem)) from None
        contact_request_id = new_contact_request_id()
        # The workflow first, then the request: a request is never recorded without its reminders. Should the
        # request then not be recorded, the workflow is ended (and, were that lost too, its first reminder finds
        # no request and ends it).
        try:
            handle = await self._client.start_workflow(
                ContactBrokeringWorkflow.run,
                BrokeringInput(contact_request_id=contact_request_id, urgency=urgency),
                id=contact_request_id,
                task_queue=self._task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                static_summary=f"Contact request ({urgency.value})",
            )
        except RPCError:
            raise Refusal(
                "The workflow service cannot be reached, so the request was not sent; nothing was recorded. "
                "Try again in a few minutes."
            ) from None
        try:
            request = await brokering.ask_contact(
                self._pool,
                contact_request_id=contact_request_id,
                uid=uid,
                urgency=urgency,
                purpose=text,
                email=email,
                phone=phone,
                actor=actor,
            )
        except BaseException as err:
            with contextlib.suppress(RPCError):
                await handle.terminate(reason="the contact request was not recorded")
            if isinstance(err, ContactProblem):
                raise Refusal(str(err)) from None
            raise
        log.info("contact asked", request_id=contact_request_id, child_uid=uid)
        return view_for(request, manager=False)

    async def contact_requests(self, *, actor: str, roles: frozenset[str]) -> list[ContactRequestView]:
        """Managers: the queue (open first, urgent first, oldest first). Others: the requests they asked for."""
        if roles & access.PERMISSIONS["broker contact"]:
            return [view_for(r, manager=True) for r in await brokering.contact_requests(self._pool)]
        await access.require(self._pool, actor, "ask contact", roles=roles)
        return [view_for(r, manager=False) for r in await brokering.contact_requests_asked_by(self._pool, actor)]

    async def contact_request(
        self, contact_request_id: str, *, actor: str, roles: frozenset[str], reader: Reader | None = None
    ) -> ContactRequestView:
        """One request: the asker's view, a manager's, or (the manager who took it, while open) with the hidden
        details, that view audited."""
        request = await self._request(contact_request_id)
        if roles & access.PERMISSIONS["broker contact"]:
            if request.taken_by == actor and request.closed_at is None:
                hidden = await brokering.hidden_details(self._pool, contact_request_id, actor, reader=reader)
                return view_for(request, manager=True, hidden=hidden)
            return view_for(request, manager=True)
        if request.asked_by == actor:
            return view_for(request, manager=False)
        await _refuse(
            self._pool, actor, "see a contact request", messages.contact_not_yours(actor, contact_request_id), request
        )
        raise AssertionError("unreachable")

    async def take_contact(
        self, contact_request_id: str, *, actor: str, roles: frozenset[str], reader: Reader | None = None
    ) -> ContactRequestView:
        request = await self._permitted(contact_request_id, actor, roles)
        if request.asked_by == actor:
            await _refuse(
                self._pool, actor, "broker contact", messages.contact_own_request(actor, contact_request_id), request
            )
        try:
            request = await brokering.take(self._pool, contact_request_id, actor)
        except ContactProblem as problem:
            raise Refusal(str(problem)) from None
        await self._wake(contact_request_id)
        hidden = await brokering.hidden_details(self._pool, contact_request_id, actor, reader=reader)
        return view_for(request, manager=True, hidden=hidden)

    async def close_contact(
        self,
        contact_request_id: str,
        *,
        outcome: ContactOutcome | str,
        reason: str | None,
        actor: str,
        roles: frozenset[str],
    ) -> ContactRequestView:
        request = await self._permitted(contact_request_id, actor, roles)
        try:
            outcome = ContactOutcome(outcome)
        except ValueError:
            raise Refusal("Select the outcome: passed-on or declined.") from None
        text = _text(reason, "reason", needed="Enter the reason for the outcome.")
        try:
            request = await brokering.close(self._pool, contact_request_id, actor, outcome, text)
        except NotTaker as refused:
            await _refuse(self._pool, actor, "broker contact", str(refused), request)
        except ContactProblem as problem:
            raise Refusal(str(problem)) from None
        await self._wake(contact_request_id)
        return view_for(request, manager=True)

    async def _permitted(self, contact_request_id: str, actor: str, roles: frozenset[str]) -> ContactRequest:
        """The request, if `actor` may broker contact; refused (audited under the request and its child) if not,
        whether or not the request exists."""
        check_contact_request_id(contact_request_id)
        try:
            request: ContactRequest | None = await brokering.contact_request(self._pool, contact_request_id)
        except ContactProblem:
            request = None
        await access.require(
            self._pool,
            actor,
            "broker contact",
            request_id=contact_request_id,
            child_uid=request.child_uid if request else None,
            roles=roles,
        )
        if request is None:
            raise Refusal(messages.contact_not_found(contact_request_id))
        return request

    async def _request(self, contact_request_id: str) -> ContactRequest:
        check_contact_request_id(contact_request_id)
        try:
            return await brokering.contact_request(self._pool, contact_request_id)
        except ContactProblem as problem:
            raise Refusal(str(problem)) from None

    async def _wake(self, contact_request_id: str) -> None:
        """Tell the workflow to look again. Best effort: the store has the change, and the workflow reads it at
        its next reminder anyway (which then is not sent), so a lost signal costs at most one check."""
        try:
            await self._client.get_workflow_handle(contact_request_id).signal(ContactBrokeringWorkflow.changed)
        except RPCError:
            log.warning("contact request workflow not told", request_id=contact_request_id)


async def _refuse(pool: asyncpg.Pool, actor: str, attempted: str, message: str, request: ContactRequest) -> None:
    """Refused (audited under the child and the contact request, like `shielding.access`'s refusals)."""
    async with pool.acquire() as conn, conn.transaction():
        await store.append_audit(
            conn,
            action=AuditAction.UNAUTHORISED,
            actor=actor,
            request_id=request.contact_request_id,
            child_uid=request.child_uid,
            reason=message,
            details={"attempted": attempted},
        )
    raise access.AccessDenied(message)
