"""Contact requests for shielded children: asking, reminding, taking, the audited view of what the record hides,
and closing with an outcome. Each change and its audit entry (under the child and the contact request) and its
outbox message are written in one transaction.

The purpose and the asker's contact details are read here only for the manager who took the request; the
messages queued carry only the contact request's id, urgency, reminder number and outcome.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from shielding import messages
from shielding.brokering import ContactOutcome, ContactState, ContactStatus, ReminderResult, Urgency
from shielding.domain import AuditAction
from shielding.store import access_log
from shielding.store.access_log import AccessKind, FrontEnd, Reader
from shielding.store.audit import RecipientKind, append_audit
from shielding.store.db import jsonable_row, once
from shielding.store.directory import full_child

PRACTITIONER_KIND = RecipientKind.PRACTITIONER.value
QUEUE_SHOWN = 200


class ContactProblem(Exception):
    """A contact request that cannot be made or changed as asked; the message says why, in words."""


class NotTaker(ContactProblem):
    """Someone other than the manager who took it asked to see its details or to close it."""

    def __init__(self, message: str, *, child_uid: str) -> None:
        super().__init__(message)
        self.child_uid = child_uid


class ContactRequest(BaseModel):
    """A contact request as the store holds it (the service decides what each person is shown of it)."""

    contact_request_id: str
    child_uid: str
    shield_request_id: str | None = None
    urgency: Urgency
    purpose: str
    contact_email: str | None = None
    contact_phone: str | None = None
    asked_by: str
    asked_at: datetime
    reminders: int = 0
    last_reminded_at: datetime | None = None
    taken_by: str | None = None
    taken_at: datetime | None = None
    outcome: ContactOutcome | None = None
    outcome_reason: str | None = None
    closed_by: str | None = None
    closed_at: datetime | None = None

    @property
    def status(self) -> ContactStatus:
        if self.closed_at is not None:
            return ContactStatus.CLOSED
        return ContactStatus.TAKEN if self.taken_by else ContactStatus.WAITING


async def _notify(
    conn: asyncpg.Connection,
    *,
    kind: str,
    recipient: str,
    contact_request_id: str,
    template: str,
    subject: str,
    body: str,
) -> None:
    await conn.execute(
        """INSERT INTO notifications (recipient_kind, recipient, contact_request_id, template, subject, body)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        kind,
        recipient,
        contact_request_id,
        template,
        subject,
        body,
    )


async def _row(conn: asyncpg.Connection | asyncpg.Pool, contact_request_id: str, *, lock: bool) -> ContactRequest:
    row = await conn.fetchrow(
        "SELECT * FROM contact_requests WHERE contact_request_id = $1" + (" FOR UPDATE" if lock else ""),
        contact_request_id,
    )
    if row is None:
        raise ContactProblem(messages.contact_not_found(contact_request_id))
    return ContactRequest(**dict(row))


async def _askable(conn: asyncpg.Connection | asyncpg.Pool, uid: str, *, lock: bool = False) -> str:
    """The request shielding `uid`; refused in words when there is no such child or it is not shielded."""
    child = await conn.fetchrow(
        "SELECT shield_request_id FROM children WHERE uid = $1" + (" FOR SHARE" if lock else ""), uid
    )
    if child is None:
        raise ContactProblem(f"No child in the directory has the identifier {uid}.")
    if child["shield_request_id"] is None:
        raise ContactProblem(messages.contact_not_shielded(uid))
    return str(child["shield_request_id"])


async def check_askable(pool: asyncpg.Pool, uid: str) -> None:
    await _askable(pool, uid)


async def ask_contact(
    pool: asyncpg.Pool,
    *,
    contact_request_id: str,
    uid: str,
    urgency: Urgency,
    purpose: str,
    email: str | None,
    phone: str | None,
    actor: str,
) -> ContactRequest:
    """Record the ask (audited under the child and the request) and tell the managers, in one transaction."""
    managers = RecipientKind.MANAGERS.value
    async with pool.acquire() as conn, conn.transaction():
        shield_request_id = await _askable(conn, uid, lock=True)
        row = await conn.fetchrow(
            """INSERT INTO contact_requests (contact_request_id, child_uid, shield_request_id, urgency, purpose,
                                             contact_email, contact_phone, asked_by)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *""",
            contact_request_id,
            uid,
            shield_request_id,
            urgency.value,
            purpose,
            email,
            phone,
            actor,
        )
        await append_audit(
            conn,
            action=AuditAction.CONTACT_ASKED,
            actor=actor,
            request_id=contact_request_id,
            child_uid=uid,
            reason=messages.contact_asked_audit(urgency.value),
            details={"urgency": urgency.value, "shield_request_id": shield_request_id},
        )
        await _notify(
            conn,
            kind=managers,
            recipient=managers,
            contact_request_id=contact_request_id,
            template="contact-request",
            subject=messages.contact_asked_subject(contact_request_id, urgency.value),
            body=messages.contact_asked_body(contact_request_id, urgency.value),
        )
    return ContactRequest(**dict(row))


async def contact_request(pool: asyncpg.Pool, contact_request_id: str) -> ContactRequest:
    return await _row(pool, contact_request_id, lock=False)


async def contact_requests(pool: asyncpg.Pool, *, limit: int = QUEUE_SHOWN) -> list[ContactRequest]:
    """The managers' queue: open requests first (waiting before taken), urgent first, oldest first; then the
    most recently closed."""
    rows = await pool.fetch(
        """SELECT * FROM contact_requests
           ORDER BY (closed_at IS NOT NULL), (taken_by IS NOT NULL), (urgency <> 'urgent'),
                    CASE WHEN closed_at IS NULL THEN asked_at END ASC, closed_at DESC
           LIMIT $1""",
        limit,
    )
    return [ContactRequest(**dict(r)) for r in rows]


async def contact_requests_asked_by(
    pool: asyncpg.Pool, actor: str, *, limit: int = QUEUE_SHOWN
) -> list[ContactRequest]:
    rows = await pool.fetch(
        "SELECT * FROM contact_requests WHERE asked_by = $1 ORDER BY asked_at DESC LIMIT $2", actor, limit
    )
    return [ContactRequest(**dict(r)) for r in rows]


async def contact_state(pool: asyncpg.Pool, contact_request_id: str) -> ContactState:
    row = await pool.fetchrow(
        "SELECT taken_by, closed_at, outcome FROM contact_requests WHERE contact_request_id = $1", contact_request_id
    )
    if row is None:
        return ContactState(exists=False, closed=True)
    return ContactState(taken=row["taken_by"] is not None, closed=row["closed_at"] is not None, outcome=row["outcome"])


async def remind_managers(
    pool: asyncpg.Pool, contact_request_id: str, number: int, operation_key: str
) -> ReminderResult:
    """Reminder `number` to the managers, once per operation key, unless a manager has taken it meanwhile."""

    async def remind(conn: asyncpg.Connection) -> ReminderResult:
        row = await conn.fetchrow(
            "SELECT * FROM contact_requests WHERE contact_request_id = $1 FOR UPDATE", contact_request_id
        )
        if row is None:
            return ReminderResult(exists=False, closed=True)
        request = ContactRequest(**dict(row))
        if request.taken_by is not None or request.closed_at is not None:
            return ReminderResult(taken=request.taken_by is not None, closed=request.closed_at is not None)
        await conn.execute(
            """UPDATE contact_requests SET reminders = greatest(reminders, $2), last_reminded_at = now()
               WHERE contact_request_id = $1""",
            contact_request_id,
            number,
        )
        urgency = request.urgency.value
        await append_audit(
            conn,
            action=AuditAction.CONTACT_REMINDER,
            actor="system",
            request_id=contact_request_id,
            child_uid=request.child_uid,
            reason=messages.contact_reminder_audit(urgency, number),
            details={"reminder": number, "urgency": urgency},
        )
        managers = RecipientKind.MANAGERS.value
        await _notify(
            conn,
            kind=managers,
            recipient=managers,
            contact_request_id=contact_request_id,
            template="contact-reminder",
            subject=messages.contact_reminder_subject(contact_request_id, urgency, number),
            body=messages.contact_reminder_body(
                contact_request_id, urgency, number, messages.contact_waited(urgency, number)
            ),
        )
        return ReminderResult(sent=True)

    return await once(pool, operation_key, ReminderResult, remind)


async def take(pool: asyncpg.Pool, contact_request_id: str, actor: str) -> ContactRequest:
    """The manager `actor` takes the request (the caller has checked they may, and that they did not ask for it).
    Taking it again by the same manager changes nothing."""
    async with pool.acquire() as conn, conn.transaction():
        request = await _row(conn, contact_request_id, lock=True)
        if request.closed_at is not None:
            raise ContactProblem(messages.contact_already_closed(contact_request_id))
        if request.taken_by == actor:
            return request
        if request.taken_by is not None:
            raise ContactProblem(messages.contact_already_taken(contact_request_id, request.taken_by))
        row = await conn.fetchrow(
            """UPDATE contact_requests SET taken_by = $2, taken_at = now() WHERE contact_request_id = $1
               RETURNING *""",
            contact_request_id,
            actor,
        )
        await append_audit(
            conn,
            action=AuditAction.CONTACT_TAKEN,
            actor=actor,
            request_id=contact_request_id,
            child_uid=request.child_uid,
            reason=messages.CONTACT_TAKEN_AUDIT,
        )
    return ContactRequest(**dict(row))


async def hidden_details(
    pool: asyncpg.Pool, contact_request_id: str, actor: str, *, reader: Reader | None = None
) -> dict[str, Any]:
    """What the record hides, for the manager who took the request while it is open: each view audited as a
    brokering view (under the child and the contact request), and written to the access log (who looked, through
    which front end), in the same transaction as the read."""
    async with pool.acquire() as conn, conn.transaction():
        request = await _row(conn, contact_request_id, lock=False)
        if request.taken_by != actor or request.closed_at is not None:
            raise NotTaker(
                messages.contact_not_taker(actor, contact_request_id, request.taken_by or "the manager who takes it"),
                child_uid=request.child_uid,
            )
        await append_audit(
            conn,
            action=AuditAction.CONTACT_DETAILS_VIEWED,
            actor=actor,
            request_id=contact_request_id,
            child_uid=request.child_uid,
            reason=messages.CONTACT_DETAILS_VIEWED_AUDIT,
        )
        who = reader or Reader(actor=actor, front_end=FrontEnd.API)
        await access_log.record(conn, who, AccessKind.BROKERING, [request.child_uid], request_id=contact_request_id)
    record = await full_child(pool, request.child_uid)
    return record or {}


async def close(
    pool: asyncpg.Pool, contact_request_id: str, actor: str, outcome: ContactOutcome, reason: str
) -> ContactRequest:
    """Record the outcome (by the manager who took it), and tell the asker at the address they gave."""
    async with pool.acquire() as conn, conn.transaction():
        request = await _row(conn, contact_request_id, lock=True)
        if request.closed_at is not None:
            raise ContactProblem(messages.contact_already_closed(contact_request_id))
        if request.taken_by is None:
            raise ContactProblem(messages.contact_not_taken(contact_request_id))
        if request.taken_by != actor:
            raise NotTaker(
                messages.contact_not_taker(actor, contact_request_id, request.taken_by), child_uid=request.child_uid
            )
        row = await conn.fetchrow(
            """UPDATE contact_requests SET outcome = $2, outcome_reason = $3, closed_by = $4, closed_at = now()
               WHERE contact_request_id = $1 RETURNING *""",
            contact_request_id,
            outcome.value,
            reason,
            actor,
        )
        await append_audit(
            conn,
            action=AuditAction.CONTACT_CLOSED,
            actor=actor,
            request_id=contact_request_id,
            child_uid=request.child_uid,
            reason=messages.contact_closed_audit(outcome.value, reason),
            details={"outcome": outcome.value},
        )
        await _notify(
            conn,
            kind=PRACTITIONER_KIND,
            recipient=request.contact_email or request.contact_phone or "unknown",
            contact_request_id=contact_request_id,
            template="contact-outcome",
            subject=messages.contact_outcome_subject(contact_request_id),
            body=messages.contact_outcome_body(contact_request_id, outcome.value),
        )
    return ContactRequest(**dict(row))


async def contact_notifications(pool: asyncpg.Pool, contact_request_id: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT * FROM notifications WHERE contact_request_id = $1 ORDER BY notification_id", contact_request_id
    )
    return [jsonable_row(r) for r in rows]
