"""ShieldingRequestWorkflow: one shielding request, from the phone call to its last review.

The record is shielded first, before the intake update returns. Then the workflow waits, durably, for
three things at once: the written form (or its deadline), the next review, and an unshield at any time.
Silence never unshields: an overdue review only sends reminders.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.shielding import (
        FormInput,
        LiftShieldInput,
        RequestorNotice,
        ShieldingActivities,
        ShieldRecordInput,
        StepInput,
    )
    from shielding import deadlines
    from shielding.domain import (
        AuditAction,
        ChildOutcome,
        FormOutcome,
        FormSubmission,
        IntakeAcknowledgement,
        RequestStatus,
        ReviewDecision,
        ReviewDecisionKind,
        ReviewKind,
        ReviewOutcome,
        ReviewRecord,
        ShieldingRequestInput,
        Stage,
        StatusQuery,
        UnshieldOutcome,
        UnshieldRequest,
    )
    from shielding.lifecycle import (
        AcknowledgeIntake,
        LifecycleState,
        ShieldingLifecycleInput,
        ShieldingLifecycleResult,
    )
    from shielding.store import ShieldResult, StepResult
    from shielding.temporal import FORM_DUE_AT_ATTRIBUTE, NEXT_REVIEW_AT_ATTRIBUTE, STAGE_ATTRIBUTE

REMINDER_INTERVAL = timedelta(days=1)
# Version 2 tells the requestor their form arrived. Lifecycles that received a form under version 1 replay
# without this step (workflow.patched is false for them); new ones take it.
FORM_RECEIPT_PATCH = "form-receipt-to-requestor"
# Version 3 shields at intake in a local activity (one server round trip fewer while the caller waits).
LOCAL_SHIELD_PATCH = "shield-in-local-activity"
# Keep the last few decisions in the carried state; the audit log holds them all.
REVIEWS_KEPT = 6
ACTIVITY_TIMEOUT = timedelta(seconds=30)
# Retry for as long as it takes: a shield or unshield must not be abandoned because the database blinked.
ACTIVITY_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=5))


def review_kind(index: int) -> ReviewKind:
    return ReviewKind.SEVEN_DAY if index == 0 else ReviewKind.SIX_MONTH


def review_due_at(shielded_at: datetime, index: int) -> datetime:
    """Review 0 is the 7-day review; review n >= 1 is the nth six-monthly review, counted from shielding."""
    if index == 0:
        return deadlines.review_7_day_at(shielded_at)
    return deadlines.review_6_month_at(shielded_at, index)


@workflow.defn
class ShieldingRequestWorkflow:
    @workflow.init
    def __init__(self, params: ShieldingLifecycleInput) -> None:
        if params.state is not None:
            self._state = params.state
        elif params.request is not None:
            self._state = LifecycleState(
                request_id=params.request.request_id,
                received_by=params.request.actor,
                called_at=params.request.called_at,
            )
        else:
            raise ApplicationError("a lifecycle needs a request or a carried state", non_retryable=True)
        self._lock = asyncio.Lock()
        self._wake = False
        self._form_arriving = False
        self._continue_as_new = False
        self._last_message: str | None = None

    # ------------------------------------------------------------------------------------------ main loop

    @workflow.run
    async def run(self, params: ShieldingLifecycleInput) -> ShieldingLifecycleResult:
        if params.state is None:
            assert params.request is not None
            await self._shield(params.request)
        else:
            self._publish()
        while not self._state.stage.is_final:
            # A timeout means a deadline or review time has come: handled below.
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._wake or self._state.stage.is_final or self._continue_as_new,
                    timeout=self._time_to_next_timer(),
                )
            self._wake = False
            if self._continue_as_new:
                break
            async with self._lock:
                await self._on_timers()
            if workflow.info().is_continue_as_new_suggested() and not self._state.stage.is_final:
                self._continue_as_new = True
                break
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._continue_as_new and not self._state.stage.is_final:
            workflow.continue_as_new(ShieldingLifecycleInput(state=self._state))
        return ShieldingLifecycleResult(
            request_id=self._state.request_id,
            stage=self._state.stage,
            closed_reason=self._state.closed_reason,
        )

    async def _activity(self, activity: Any, argument: Any) -> Any:
        """Run one of our activities with the lifecycle's timeout and its retry-until-done policy."""
        return await workflow.execute_activity_method(
            activity, argument, start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=ACTIVITY_RETRY
        )

    def _next_key(self, step: str) -> str:
        self._state.operations += 1
        return f"{self._state.request_id}:{self._state.operations}:{step}"

    async def _shield(self, request: ShieldingRequestInput) -> None:
        state = self._state
        form_due_at = deadlines.form_due_at(request.called_at)
        shield = ShieldRecordInput(request=request, form_due_at=form_due_at, operation_key=self._next_key("shield"))
        result: ShieldResult
        if workflow.patched(LOCAL_SHIELD_PATCH):
            # The caller is on the phone waiting: a local activity saves a round trip through the server.
            result = await workflow.execute_local_activity_method(
                ShieldingActivities.shield_record,
                shield,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=ACTIVITY_RETRY,
            )
        else:
            result = await self._activity(
                ShieldingActivities.shield_record,
                shield,
            )
        state.stage = result.stage
        state.children = [c.uid for c in result.children if c.existing_request_id is None]
        ack = IntakeAcknowledgement(
            request_id=state.request_id,
            stage=result.stage,
            children=result.children or [ChildOutcome(uid=uid, shielded=False) for uid in request.children],
            message=result.message,
        )
        if result.stage == Stage.AWAITING_FORM:
            state.shielded_at = result.shielded_at
            state.form_due_at = form_due_at
            ack = ack.model_copy(
                update={
                    "form_due_at": deadlines.to_london(form_due_at),
                    "review_7_day_at": deadlines.to_london(review_due_at(result.shielded_at, 0)),
                    "review_6_month_at": deadlines.to_london(review_due_at(result.shielded_at, 1)),
                    "message": "Shielded. The written form and supporting documents are due by "
                    + deadlines.describe(form_due_at)
                    + ".",
                }
            )
        else:
            state.closed_reason = result.message
        state.acknowledgement = ack
        self._publish()

    def _next_review_at(self) -> datetime | None:
        if self._state.shielded_at is None or self._state.stage.is_final:
            return None
        return review_due_at(self._state.shielded_at, self._state.next_review_index)

    def _time_to_next_timer(self) -> timedelta | None:
        now = workflow.now()
        candidates: list[datetime] = []
        state = self._state
        if state.form_received_at is None and state.form_due_at is not None:
            candidates.append(state.form_due_at)
        if state.review_due_since is None:
            next_review = self._next_review_at()
            if next_review is not None:
                candidates.append(next_review)
        elif state.next_reminder_at is not None:
            candidates.append(state.next_reminder_at)
        if not candidates:
            return None
        return max(min(candidates) - now, timedelta(0))

    async def _on_timers(self) -> None:
        state = self._state
        if state.stage.is_final:
            return
        now = workflow.now()
        if (
            state.form_received_at is None
            and not self._form_arriving
            and state.form_due_at is not None
            and now >= state.form_due_at
        ):
            await self._lapse()
            return
        next_review = self._next_review_at()
        if state.review_due_since is None and next_review is not None and now >= next_review:
            await self._review_falls_due(next_review)
        elif state.next_reminder_at is not None and now >= state.next_reminder_at:
            await self._remind()

    async def _lapse(self) -> None:
        state = self._state
        due = deadlines.to_london(state.form_due_at) if state.form_due_at else None
        reason = (
            "The written form and supporting documents were not received by "
            + (deadlines.describe(due) if due else "the deadline")
            + "; the request is unsuccessful and the records are no longer shielded."
        )
        await self._lift(
            action=AuditAction.LAPSED,
            stage=Stage.LAPSED,
            actor="system",
            reason=reason,
            notify_requestor=(
                f"Your shielding request {state.request_id} was unsuccessful: the completed form and "
                "supporting documents were not received within 7 working days of your call. Please call the "
                "Integrated Working Team if the child is still at risk."
            ),
        )

    async def _lift(
        self,
        *,
        action: AuditAction,
        stage: Stage,
        actor: str,
        reason: str,
        notify_requestor: str | None = None,
    ) -> None:
        await self._activity(
            ShieldingActivities.unshield_record,
            LiftShieldInput(
                request_id=self._state.request_id,
                action=action,
                stage=stage,
                actor=actor,
                reason=reason,
                operation_key=self._next_key(stage.value),
                notify_requestor=notify_requestor,
            ),
        )
        self._state.stage = stage
        self._state.closed_reason = reason
        self._state.review_due_since = None
        self._state.next_reminder_at = None
        self._publish()

    async def _step(self, params: StepInput) -> StepResult:
        return await self._activity(
            ShieldingActivities.record_step,
            params,
        )

    async def _review_falls_due(self, due_at: datetime) -> None:
        state = self._state
        kind = review_kind(state.next_review_index)
        await self._step(
            StepInput(
                request_id=state.request_id,
                action=AuditAction.REVIEW_DUE,
                actor="system",
                reason=f"{kind.value} review due",
                operation_key=self._next_key("review-due"),
                stage=Stage.REVIEW_DUE,
                details={"review": kind.value, "due_at": due_at.isoformat()},
                reviewer_subject=f"{kind.value} review due: shielding request {state.request_id}",
                reviewer_body=(
                    f"The {kind.value} review of shielding request {state.request_id} fell due on "
                    f"{deadlines.describe(due_at)}. The record stays shielded until a reviewer "
                    f"decides: shielding review {state.request_id} --approve | --unshield --reason TEXT"
                ),
            )
        )
        state.review_due_since = due_at
        state.next_reminder_at = due_at + REMINDER_INTERVAL
        state.reminders_sent = 0
        self._publish()

    async def _remind(self) -> None:
        state = self._state
        kind = review_kind(state.next_review_index)
        await self._step(
            StepInput(
                request_id=state.request_id,
                action=AuditAction.REMINDER,
                actor="system",
                reason=f"{kind.value} review overdue; the record stays shielded",
                operation_key=self._next_key("reminder"),
                details={"review": kind.value, "reminder": state.reminders_sent + 1},
                reviewer_subject=f"Reminder: overdue {kind.value} review of shielding request {state.request_id}",
                reviewer_body=(
                    f"The {kind.value} review of shielding request {state.request_id} is overdue. The record "
                    "remains shielded; please decide."
                ),
            )
        )
        state.reminders_sent += 1
        assert state.next_reminder_at is not None
        # A full interval after this one, even if the worker was down for a while (no burst of reminders).
        state.next_reminder_at = max(state.next_reminder_at, workflow.now()) + REMINDER_INTERVAL
        self._publish()

    # ------------------------------------------------------------------------------------ stage publishing

    def _current_stage(self) -> Stage:
        state = self._state
        if state.stage.is_final or state.stage == Stage.INTAKE:
            return state.stage
        if state.review_due_since is not None:
            return Stage.REVIEW_DUE
        if state.form_received_at is None:
            return Stage.AWAITING_FORM
        return Stage.SHIELDED

    def _publish(self) -> None:
        """Keep the stage and the search attributes current (ids and dates only, never child data)."""
        state = self._state
        state.stage = self._current_stage()
        next_review = self._next_review_at()
        updates: list[SearchAttributeUpdate[Any]] = [
            STAGE_ATTRIBUTE.value_set(state.stage.value),
            FORM_DUE_AT_ATTRIBUTE.value_set(state.form_due_at)
            if state.form_due_at is not None and state.form_received_at is None and not state.stage.is_final
            else FORM_DUE_AT_ATTRIBUTE.value_unset(),
            NEXT_REVIEW_AT_ATTRIBUTE.value_set(next_review)
            if next_review is not None
            else NEXT_REVIEW_AT_ATTRIBUTE.value_unset(),
        ]
        workflow.upsert_search_attributes(updates)

    # ------------------------------------------------------------------------------------------- intake

    @workflow.update
    async def acknowledge_intake(self, _: AcknowledgeIntake) -> IntakeAcknowledgement:
        await workflow.wait_condition(lambda: self._state.acknowledgement is not None)
        assert self._state.acknowledgement is not None
        return self._state.acknowledgement

    @workflow.query
    def intake_acknowledgement(self, _: StatusQuery) -> IntakeAcknowledgement:
        return self._state.acknowledgement or IntakeAcknowledgement(
            request_id=self._state.request_id, stage=Stage.INTAKE
        )

    # --------------------------------------------------------------------------------------------- form

    def _form_refusal(self) -> str | None:
        state = self._state
        if state.stage == Stage.INTAKE:
            return f"Request {state.request_id} is still being taken; try again in a moment."
        if state.stage.is_final:
            return f"Request {state.request_id} is closed ({state.stage.value}); a form can no longer be accepted."
        if state.form_received_at is not None or self._form_arriving:
            return f"The form for request {state.request_id} has already been received."
        assert state.form_due_at is not None
        if workflow.now() >= state.form_due_at:
            return (
                f"The form for request {state.request_id} arrived after its deadline ("
                + deadlines.describe(state.form_due_at)
                + "); it cannot be accepted."
            )
        return None

    async def _receive_form(self, submission: FormSubmission) -> FormOutcome:
        refusal = self._form_refusal()
        if refusal is None:
            # Claimed before any await, so the form deadline cannot lapse the request while it is recorded.
            self._form_arriving = True
        async with self._lock:
            if refusal is None and self._state.stage.is_final:
                # Closed (unshielded, say) while this form waited for the lock: it must not be accepted.
                self._form_arriving = False
                refusal = (
                    f"Request {self._state.request_id} is closed ({self._state.stage.value}); "
                    "a form can no longer be accepted."
                )
            if refusal is not None:
                await self._activity(
                    ShieldingActivities.refuse_form,
                    FormInput(
                        request_id=self._state.request_id,
                        document_ids=submission.document_ids,
                        actor=submission.actor,
                        operation_key=self._next_key("form-refused"),
                        refusal_reason=refusal,
                    ),
                )
                self._last_message = refusal
                return FormOutcome(accepted=False, message=refusal)
            try:
                result: StepResult = await self._activity(
                    ShieldingActivities.accept_form,
                    FormInput(
                        request_id=self._state.request_id,
                        document_ids=submission.document_ids,
                        actor=submission.actor,
                        operation_key=self._next_key("form-received"),
                    ),
                )
            finally:
                self._form_arriving = False
            self._state.form_received_at = result.at or workflow.now()
            if workflow.patched(FORM_RECEIPT_PATCH):
                await self._activity(
                    ShieldingActivities.notify_requestor,
                    RequestorNotice(
                        request_id=self._state.request_id,
                        subject=f"Shielding request {self._state.request_id}: form received",
                        body=(
                            f"We have received the written form and supporting documents for shielding request "
                            f"{self._state.request_id}. The record stays shielded and will be reviewed."
                        ),
                        operation_key=self._next_key("form-receipt"),
                    ),
                )
            self._publish()
            self._wake = True
            message = f"Form received for request {self._state.request_id}; the record stays shielded."
            self._last_message = message
            return FormOutcome(accepted=True, message=message, received_at=self._state.form_received_at)

    @workflow.update
    async def receive_form(self, submission: FormSubmission) -> FormOutcome:
        outcome = await self._receive_form(submission)
        if not outcome.accepted:
            raise ApplicationError(outcome.message, type="FormRefused", non_retryable=True)
        return outcome

    @workflow.signal
    async def form_received(self, submission: FormSubmission) -> None:
        """The same as the update, for senders that cannot wait (a document scanning system)."""
        await self._receive_form(submission)

    # ------------------------------------------------------------------------------------------ reviews

    def _review_refusal(self, decision: ReviewDecision) -> str | None:
        state = self._state
        if state.stage.is_final:
            return f"Request {state.request_id} is closed ({state.stage.value}); there is nothing to review."
        if state.review_due_since is None:
            next_review = self._next_review_at()
            when = deadlines.describe(next_review) if next_review else "not scheduled"
            return (
                f"No review is due for request {state.request_id}; the next "
                f"({review_kind(state.next_review_index).value}) review falls due at {when}."
            )
        if decision.decision == ReviewDecisionKind.UNSHIELD and not decision.reason:
            return "A decision to unshield needs a reason."
        if decision.actor == state.received_by:
            return "A reviewer cannot decide the review of a request they took themselves."
        return None

    @workflow.update
    async def decide_review(self, decision: ReviewDecision) -> ReviewOutcome:
        outcome = await self._decide_review(decision)
        if not outcome.accepted:
            raise ApplicationError(outcome.message, type="ReviewRefused", non_retryable=True)
        return outcome

    @decide_review.validator
    def _validate_review(self, decision: ReviewDecision) -> None:
        refusal = self._review_refusal(decision)
        if refusal is not None:
            raise ApplicationError(refusal, type="ReviewRefused", non_retryable=True)

    @workflow.signal
    async def review_decided(self, decision: ReviewDecision) -> None:
        await self._decide_review(decision)

    async def _decide_review(self, decision: ReviewDecision) -> ReviewOutcome:
        async with self._lock:
            state = self._state
            refusal = self._review_refusal(decision)
            if refusal is not None:
                self._last_message = refusal
                return ReviewOutcome(accepted=False, message=refusal, stage=state.stage)
            assert state.review_due_since is not None
            kind = review_kind(state.next_review_index)
            now = workflow.now()
            state.reviews = [
                *state.reviews,
                ReviewRecord(
                    kind=kind,
                    due_at=state.review_due_since,
                    decided_at=now,
                    decision=decision.decision,
                    actor=decision.actor,
                ),
            ][-REVIEWS_KEPT:]
            if decision.decision == ReviewDecisionKind.UNSHIELD:
                assert decision.reason is not None
                await self._lift(
                    action=AuditAction.UNSHIELDED,
                    stage=Stage.UNSHIELDED,
                    actor=decision.actor,
                    reason=decision.reason,
                )
                message = f"Request {state.request_id} unshielded after its {kind.value} review."
                self._last_message = message
                return ReviewOutcome(accepted=True, message=message, stage=state.stage)
            state.next_review_index += 1
            state.review_due_since = None
            state.next_reminder_at = None
            next_review = self._next_review_at()
            await self._step(
                StepInput(
                    request_id=state.request_id,
                    action=AuditAction.APPROVED,
                    actor=decision.actor,
                    reason=decision.reason or f"{kind.value} review approved; the record stays shielded",
                    operation_key=self._next_key("approved"),
                    stage=Stage.SHIELDED if state.form_received_at else Stage.AWAITING_FORM,
                    details={
                        "review": kind.value,
                        "next_review_at": next_review.isoformat() if next_review else None,
                    },
                )
            )
            self._publish()
            self._wake = True
            # From the six-month review on, each approval starts a fresh run so history stays bounded.
            if kind == ReviewKind.SIX_MONTH:
                self._continue_as_new = True
            message = (
                f"{kind.value} review approved; request {state.request_id} stays shielded. Next review: "
                + (deadlines.describe(next_review) if next_review else "none")
                + "."
            )
            self._last_message = message
            return ReviewOutcome(
                accepted=True,
                message=message,
                stage=state.stage,
                next_review_at=deadlines.to_london(next_review) if next_review else None,
            )

    # ----------------------------------------------------------------------------------------- unshield

    def _unshield_refusal(self) -> str | None:
        if self._state.stage.is_final:
            return f"Request {self._state.request_id} is already closed ({self._state.stage.value})."
        if self._state.stage == Stage.INTAKE:
            return f"Request {self._state.request_id} is still being taken; try again in a moment."
        return None

    @workflow.update
    async def unshield(self, request: UnshieldRequest) -> UnshieldOutcome:
        outcome = await self._unshield(request)
        if not outcome.accepted:
            raise ApplicationError(outcome.message, type="UnshieldRefused", non_retryable=True)
        return outcome

    @unshield.validator
    def _validate_unshield(self, request: UnshieldRequest) -> None:
        refusal = self._unshield_refusal()
        if refusal is not None:
            raise ApplicationError(refusal, type="UnshieldRefused", non_retryable=True)

    @workflow.signal
    async def unshield_requested(self, request: UnshieldRequest) -> None:
        await self._unshield(request)

    async def _unshield(self, request: UnshieldRequest) -> UnshieldOutcome:
        async with self._lock:
            refusal = self._unshield_refusal()
            if refusal is not None:
                self._last_message = refusal
                return UnshieldOutcome(accepted=False, message=refusal, stage=self._state.stage)
            await self._lift(
                action=AuditAction.UNSHIELDED,
                stage=Stage.UNSHIELDED,
                actor=request.actor,
                reason=request.reason,
            )
            message = f"Request {self._state.request_id} closed; its records are no longer shielded."
            self._last_message = message
            return UnshieldOutcome(accepted=True, message=message, stage=self._state.stage)

    # ------------------------------------------------------------------------------------------- status

    @workflow.query
    def status(self, _: StatusQuery) -> RequestStatus:
        state = self._state
        next_review = self._next_review_at()
        return RequestStatus(
            request_id=state.request_id,
            stage=state.stage,
            children=state.children,
            called_at=state.called_at,
            shielded_at=state.shielded_at,
            form_due_at=state.form_due_at,
            form_received_at=state.form_received_at,
            next_review_at=next_review,
            next_review_kind=review_kind(state.next_review_index) if next_review else None,
            review_due_since=state.review_due_since,
            reminders_sent=state.reminders_sent,
            reviews=state.reviews,
            closed_reason=state.closed_reason,
            last_message=self._last_message,
        )
