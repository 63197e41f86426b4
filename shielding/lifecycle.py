"""The lifecycle's own models: its carried state, its input and result, and the intake update's argument.

They live outside `workflows/` so the worker's sandbox imports them once (passed through) instead of
rebuilding the pydantic classes for every new workflow, which was most of an intake's worker time.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from shielding.domain import IntakeAcknowledgement, ReviewRecord, ShieldingRequestInput, Stage


class LifecycleState(BaseModel):
    """Everything the lifecycle needs to carry on; what continue-as-new hands to the next run."""

    request_id: str
    stage: Stage = Stage.INTAKE
    received_by: str = "intake"
    children: list[str] = Field(default_factory=list)
    called_at: datetime | None = None
    shielded_at: datetime | None = None
    form_due_at: datetime | None = None
    form_received_at: datetime | None = None
    next_review_index: int = 0
    review_due_since: datetime | None = None
    next_reminder_at: datetime | None = None
    reminders_sent: int = 0
    reviews: list[ReviewRecord] = Field(default_factory=list)
    operations: int = 0
    closed_reason: str | None = None
    acknowledgement: IntakeAcknowledgement | None = None


class ShieldingLifecycleInput(BaseModel):
    """A new request (`request`), or a lifecycle carried over by continue-as-new (`state`)."""

    request: ShieldingRequestInput | None = None
    state: LifecycleState | None = None


class AcknowledgeIntake(BaseModel):
    """The intake update's argument: nothing today, a model so fields can be added."""


class ShieldingLifecycleResult(BaseModel):
    request_id: str
    stage: Stage
    closed_reason: str | None = None
