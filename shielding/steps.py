"""What each lifecycle step asks of the store, and what the store reports back.

The activities' inputs extend these with the idempotency key the workflow builds (`activities.models`), so
each field is declared once and the store takes the model it is given. Field names are part of recorded
workflow histories: add fields with defaults, never rename one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from shielding.domain import AuditAction, ChildOutcome, ShieldingRequestInput, Stage


class ShieldChildren(BaseModel):
    """Shield every child a new request names (intake), with the form deadline it was given."""

    request: ShieldingRequestInput
    form_due_at: datetime


class LiftShield(BaseModel):
    """Unshield every child of a request and close it: a lapse, a review decision or changed circumstances."""

    request_id: str
    action: AuditAction
    stage: Stage
    actor: str
    reason: str
    notify_requestor: str | None = None


class FormDocuments(BaseModel):
    """Staged documents to link to a request as its written form, or to discard with the refusal's reason."""

    request_id: str
    document_ids: list[str]
    actor: str
    refusal_reason: str | None = None


class AuditedStep(BaseModel):
    """An audited step that changes no shield (review due, reminder, approval), optionally telling reviewers."""

    request_id: str
    action: AuditAction
    actor: str
    reason: str
    stage: Stage | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    reviewer_subject: str | None = None
    reviewer_body: str | None = None


class RequestorMessage(BaseModel):
    """A message to the requestor's own contact; the body never carries a child's details."""

    request_id: str
    subject: str
    body: str


class ShieldResult(BaseModel):
    stage: Stage
    shielded_at: datetime
    children: list[ChildOutcome]
    message: str = ""


class StepResult(BaseModel):
    done: bool = True
    children: list[str] = []
    at: datetime | None = None
