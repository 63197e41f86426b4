"""Brokering contact with a shielded child: the vocabulary, the models that cross Temporal, and the pure
reminder rules.

Nothing here carries what a record hides or why contact is wanted: a contact request crosses Temporal as its
id, its urgency and counts; its purpose and the asker's contact details stay in PostgreSQL
(`shielding.store.brokering`).

Reminders: a routine request not yet taken is reminded to the managers two working days after it was asked
(the same London time; weekends and England and Wales bank holidays do not count), an urgent one an hour after.
Each further period without a manager taking it sends another reminder, numbered, to the managers ("escalating":
the count and the time waited grow, and from the second reminder the subject says it is escalated), for as long
as it takes: silence never closes a request.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel

from shielding import deadlines

CONTACT_REQUEST_ID_PATTERN = re.compile(r"^CR-[A-Z0-9]{12}$")
_ID_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
URGENT_REMINDER_PERIOD = timedelta(hours=1)
ROUTINE_REMINDER_WORKING_DAYS = 2


def new_contact_request_id() -> str:
    """Random, so a workflow id or URL never carries anything about the child or the asker."""
    return "CR-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


class Urgency(StrEnum):
    URGENT = "urgent"
    ROUTINE = "routine"


class ContactOutcome(StrEnum):
    PASSED_ON = "passed-on"
    DECLINED = "declined"


class ContactStatus(StrEnum):
    WAITING = "waiting"
    TAKEN = "taken"
    CLOSED = "closed"


def reminder_due_at(urgency: Urgency, since: datetime, number: int) -> datetime:
    """When reminder `number` (1, 2, ...) falls due for a request asked for at `since`, not yet taken.

    Counted from `since` each time (never from when the last reminder went), so the times never drift.
    """
    if number < 1:
        raise ValueError("reminders are numbered from 1")
    if urgency == Urgency.URGENT:
        return since + URGENT_REMINDER_PERIOD * number
    return deadlines.working_days_later(since, ROUTINE_REMINDER_WORKING_DAYS * number)


# ------------------------------------------------------------------------------ what crosses Temporal
# Field names are part of recorded histories: add with defaults, never rename.


class BrokeringState(BaseModel):
    """The whole state of a ContactBrokeringWorkflow (what continue-as-new carries): ids, counts, flags."""

    contact_request_id: str
    urgency: Urgency
    # When the workflow started (workflow time): reminders are counted from it.
    since: AwareDatetime
    reminders: int = 0
    taken: bool = False
    closed: bool = False
    outcome: ContactOutcome | None = None

    def next_reminder_at(self) -> datetime | None:
        """None once a manager has taken it (or it is closed): taking stops the reminders."""
        if self.taken or self.closed:
            return None
        return reminder_due_at(self.urgency, self.since, self.reminders + 1)


class BrokeringInput(BaseModel):
    contact_request_id: str
    urgency: Urgency
    # Carried by continue-as-new; None for a new request.
    state: BrokeringState | None = None


class BrokeringResult(BaseModel):
    contact_request_id: str
    outcome: ContactOutcome | None = None
    reminders: int = 0


class StateInput(BaseModel):
    contact_request_id: str


class ContactState(BaseModel):
    """Where a contact request is, as PostgreSQL holds it (the workflow trusts no signal for it)."""

    exists: bool = True
    taken: bool = False
    closed: bool = False
    outcome: ContactOutcome | None = None


class ReminderInput(BaseModel):
    contact_request_id: str
    number: int
    operation_key: str


class ReminderResult(ContactState):
    sent: bool = False


# ------------------------------------------------------------------------------ what people are shown


class ContactRequestView(BaseModel):
    """A contact request as one person may see it: the person who asked sees its progress and outcome; managers
    see the queue's fields; the manager who took it, while it is open, also the purpose, the asker's contact
    details and what the record hides (`hidden`, each view audited)."""

    contact_request_id: str
    child_uid: str
    urgency: Urgency
    status: ContactStatus
    asked_at: datetime
    reminders: int = 0
    last_reminded_at: datetime | None = None
    taken: bool = False
    outcome: ContactOutcome | None = None
    closed_at: datetime | None = None
    # What the person who asked is told of it.
    message: str
    # Managers only.
    asked_by: str | None = None
    taken_by: str | None = None
    taken_at: datetime | None = None
    outcome_reason: str | None = None
    # The manager who took it, while it is open.
    purpose: str | None = None
    contact_email: str | None = None
    contact_phone: str | None = None
    hidden: dict[str, Any] | None = None


class ContactRequestList(BaseModel):
    contact_requests: list[ContactRequestView]
