"""The lifecycle's carried state and its pure rules: the next timer, what is due now, the derived stage.

The workflow asks these methods and orchestrates the answer; nothing here touches Temporal, so every rule is
unit-tested without a server. The models live outside `workflows/` so the worker's sandbox imports them once
(passed through) instead of rebuilding the pydantic classes for every new workflow.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from pydantic import BaseModel, Field

from shielding import deadlines, messages
from shielding.domain import (
    IntakeAcknowledgement,
    ReviewDecision,
    ReviewDecisionKind,
    ReviewKind,
    ReviewRecord,
    ShieldingRequestInput,
    Stage,
)

REMINDER_INTERVAL = timedelta(days=1)
# Keep the last few decisions in the carried state; the audit log holds them all.
REVIEWS_KEPT = 6
# Nonces of the signed actions accepted last. A nonce only has to be remembered while its signature is fresh
# (shielding.action_auth.MAX_SKEW, 5 minutes either way), and no request sees this many actions in that time.
NONCES_KEPT = 64


def review_kind(index: int) -> ReviewKind:
    return ReviewKind.SEVEN_DAY if index == 0 else ReviewKind.SIX_MONTH


def review_due_at(shielded_at: datetime, index: int) -> datetime:
    """Review 0 is the 7-day review; review n >= 1 is the nth six-monthly review, counted from shielding."""
    if index == 0:
        return deadlines.review_7_day_at(shielded_at)
    return deadlines.review_6_month_at(shielded_at, index)


class Due(StrEnum):
    """What a timer firing at `now` means for the request."""

    NOTHING = "nothing"
    LAPSE = "lapse"
    REVIEW = "review"
    REMINDER = "reminder"


class NextTimer(NamedTuple):
    at: datetime
    name: str


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
    # The signed actions already accepted (their nonces), so a captured one cannot be sent again.
    accepted_nonces: list[str] = Field(default_factory=list)

    # ------------------------------------------------------------------------------------------ timers

    @property
    def next_review_kind(self) -> ReviewKind:
        return review_kind(self.next_review_index)

    def next_review_at(self) -> datetime | None:
        if self.shielded_at is None or self.stage.is_final:
            return None
        return review_due_at(self.shielded_at, self.next_review_index)

    def next_timer(self) -> NextTimer | None:
        """The earliest instant at which something may fall due (the form deadline, a review or a reminder),
        with the name the Temporal UI shows for its timer."""
        candidates: list[NextTimer] = []
        if self.form_received_at is None and self.form_due_at is not None:
            candidates.append(NextTimer(self.form_due_at, messages.TIMER_FORM_DEADLINE))
        if self.review_due_since is None:
            next_review = self.next_review_at()
            if next_review is not None:
                candidates.append(NextTimer(next_review, messages.review_timer(self.next_review_kind)))
        elif self.next_reminder_at is not None:
            candidates.append(NextTimer(self.next_reminder_at, messages.TIMER_REMINDER))
        # The earliest; on a tie the first listed (the form deadline before a review).
        return min(candidates, key=lambda timer: timer.at) if candidates else None

    def next_timer_at(self) -> datetime | None:
        timer = self.next_timer()
        return None if timer is None else timer.at

    def time_to_next_timer(self, now: datetime) -> timedelta | None:
        at = self.next_timer_at()
        return None if at is None else max(at - now, timedelta(0))

    def due(self, now: datetime, *, form_arriving: bool = False) -> Due:
        """What falls due at `now`. A form being recorded holds off the lapse it would otherwise race."""
        if self.stage.is_final:
            return Due.NOTHING
        if (
            self.form_received_at is None
            and not form_arriving
            and self.form_due_at is not None
            and now >= self.form_due_at
        ):
            return Due.LAPSE
        next_review = self.next_review_at()
        if self.review_due_since is None and next_review is not None and now >= next_review:
            return Due.REVIEW
        if self.next_reminder_at is not None and now >= self.next_reminder_at:
            return Due.REMINDER
        return Due.NOTHING

    def derived_stage(self) -> Stage:
        if self.stage.is_final or self.stage == Stage.INTAKE:
            return self.stage
        if self.review_due_since is not None:
            return Stage.REVIEW_DUE
        if self.form_received_at is None:
            return Stage.AWAITING_FORM
        return Stage.SHIELDED

    def form_due_shown(self) -> datetime | None:
        """The form deadline while it still matters (the FormDueAt search attribute), else None."""
        if self.form_due_at is None or self.form_received_at is not None or self.stage.is_final:
            return None
        return self.form_due_at

    def operations_details(self, children: int) -> str:
        """What the Temporal UI shows as the workflow's current details: the stage and the next deadline in
        words, the request id and how many children (ids, counts and dates only: never a child's details)."""
        stage = self.derived_stage()
        return messages.operations_details(
            self.request_id,
            stage,
            children=children,
            form_due_at=self.form_due_shown(),
            review_kind=self.next_review_kind,
            next_review_at=self.next_review_at(),
            review_due_since=self.review_due_since,
        )

    # --------------------------------------------------------------------------------------- refusals

    def form_refusal(self, now: datetime, *, form_arriving: bool) -> str | None:
        if self.stage == Stage.INTAKE:
            return messages.still_being_taken(self.request_id)
        if self.stage.is_final:
            return messages.form_on_closed_request(self.request_id, self.stage)
        if self.form_received_at is not None or form_arriving:
            return messages.form_already_received(self.request_id)
        assert self.form_due_at is not None
        if now >= self.form_due_at:
            return messages.form_after_deadline(self.request_id, self.form_due_at)
        return None

    def review_refusal(self, decision: ReviewDecision) -> str | None:
        if self.stage.is_final:
            return messages.nothing_to_review_closed(self.request_id, self.stage)
        if self.review_due_since is None:
            return messages.no_review_due(self.request_id, self.next_review_kind, self.next_review_at())
        if decision.decision == ReviewDecisionKind.UNSHIELD and not decision.reason:
            return messages.UNSHIELD_NEEDS_REASON
        if decision.actor == self.received_by:
            return messages.OWN_REQUEST_REVIEW
        return None

    def unshield_refusal(self) -> str | None:
        if self.stage.is_final:
            return messages.already_closed(self.request_id, self.stage)
        if self.stage == Stage.INTAKE:
            return messages.still_being_taken(self.request_id)
        return None

    # -------------------------------------------------------------------------------------- transitions

    def record_decision(self, decision: ReviewDecision, now: datetime) -> ReviewKind:
        """Keep the decision on the review that is due; returns that review's kind."""
        assert self.review_due_since is not None
        kind = self.next_review_kind
        record = ReviewRecord(
            kind=kind, due_at=self.review_due_since, decided_at=now, decision=decision.decision, actor=decision.actor
        )
        self.reviews = [*self.reviews, record][-REVIEWS_KEPT:]
        return kind

    def remember_nonce(self, nonce: str) -> None:
        """Spend a signed action's nonce: the same signature is refused from now on."""
        self.accepted_nonces = [*self.accepted_nonces, nonce][-NONCES_KEPT:]

    def approve_review(self) -> None:
        self.next_review_index += 1
        self.review_due_since = None
        self.next_reminder_at = None

    def review_fell_due(self, due_at: datetime) -> None:
        self.review_due_since = due_at
        self.next_reminder_at = due_at + REMINDER_INTERVAL
        self.reminders_sent = 0

    def reminder_sent(self, now: datetime) -> None:
        assert self.next_reminder_at is not None
        self.reminders_sent += 1
        # A full interval after this one, even if the worker was down for a while (no burst of reminders).
        self.next_reminder_at = max(self.next_reminder_at, now) + REMINDER_INTERVAL

    def close(self, stage: Stage, reason: str) -> None:
        self.stage = stage
        self.closed_reason = reason
        self.review_due_since = None
        self.next_reminder_at = None


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
