"""ShieldingRequestWorkflow: one shielding request, from the phone call to its last review.

The record is shielded first, before the intake update returns. Then the workflow waits, durably, for
three things at once: the written form (or its deadline), the next review, and an unshield at any time.
Silence never unshields: an overdue review only sends reminders. The rules (what is due, what is refused)
are methods of `LifecycleState`; the words are in `shielding.messages`; this module orchestrates.

The module is longer than our others because a workflow's handlers, validators and the lock they share must be
methods of the one class; each handler is short and the rules live elsewhere.
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
    from activities.models import (
        FormInput,
        LiftShieldInput,
        RequestorNotice,
        ShieldRecordInput,
        ShieldResult,
        StepInput,
        StepResult,
    )
    from activities.shielding import ShieldingActivities
    from shielding import action_auth, deadlines, messages
    from shielding.action_auth import SignedAction
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
        ShieldingRequestInput,
        Stage,
        StatusQuery,
        UnshieldOutcome,
        UnshieldRequest,
    )
    from shielding.lifecycle import (
        AcknowledgeIntake,
        Due,
        LifecycleState,
        ShieldingLifecycleInput,
        ShieldingLifecycleResult,
        review_due_at,
    )
    from shielding.temporal import FORM_DUE_AT_ATTRIBUTE, NEXT_REVIEW_AT_ATTRIBUTE, STAGE_ATTRIBUTE

# Version 2 tells the requestor their form arrived. Lifecycles that received a form under version 1 replay
# without this step (workflow.patched is false for them); new ones take it.
FORM_RECEIPT_PATCH = "form-receipt-to-requestor"
# Version 3 shields at intake in a local activity (one server round trip fewer while the caller waits).
LOCAL_SHIELD_PATCH = "shield-in-local-activity"
# Version 4 ignores a signal the service did not sign. An unsigned signal replayed from a history recorded before
# it was acted on, so it still is: workflow.patched tells the two apart. Each unsigned signal of a run asks under
# its own patch id (the first few; the rest share the last), so one old signal replayed with "not patched" does
# not decide for the forged ones that come after it; the cap bounds the markers (and TemporalChangeVersion).
SIGNED_SIGNALS_PATCH = "signed-signals"
UNSIGNED_SIGNAL_PATCHES = 8
UNAUTHENTICATED = "Unauthenticated"
# What staff send a lifecycle; each carries the actor and the service's signature.
StaffAction = FormSubmission | ReviewDecision | UnshieldRequest
ACTIVITY_TIMEOUT = timedelta(seconds=30)
# Retry for as long as it takes: a shield or unshield must not be abandoned because the database blinked.
ACTIVITY_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=5))


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
        self._unsigned_signals = 0
        # How many children the request names (for the Temporal UI; never who they are).
        self._children = len(params.request.children) if params.request is not None else len(self._state.children)

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
            timer = self._state.next_timer()
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._wake or self._state.stage.is_final or self._continue_as_new,
                    timeout=None if timer is None else max(timer.at - workflow.now(), timedelta(0)),
                    # The timeline in the Temporal UI names the timer ("form deadline"), not "1 (7d)".
                    timeout_summary=None if timer is None else timer.name,
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

    async def _activity(self, activity: Any, argument: Any, summary: str) -> Any:
        """Run one of our activities with the lifecycle's timeout and its retry-until-done policy; the summary
        names it in the Temporal UI's timeline."""
        return await workflow.execute_activity_method(
            activity, argument, start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=ACTIVITY_RETRY, summary=summary
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
                summary=messages.ACTIVITY_SHIELD,
            )
        else:
            result = await self._activity(ShieldingActivities.shield_record, shield, messages.ACTIVITY_SHIELD)
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
                    "message": messages.shielded_form_due(form_due_at),
                }
            )
        else:
            state.closed_reason = result.message
        state.acknowledgement = ack
        self._publish()

    async def _on_timers(self) -> None:
        due = self._state.due(workflow.now(), form_arriving=self._form_arriving)
        if due == Due.LAPSE:
            await self._lapse()
        elif due == Due.REVIEW:
            next_review = self._state.next_review_at()
            assert next_review is not None
            await self._review_falls_due(next_review)
        elif due == Due.REMINDER:
            await self._remind()

    async def _lapse(self) -> None:
        state = self._state
        due = deadlines.to_london(state.form_due_at) if state.form_due_at else None
        await self._lift(
            action=AuditAction.LAPSED,
            stage=Stage.LAPSED,
            actor="system",
            reason=messages.lapse_reason(due),
            notify_requestor=messages.lapse_notice_to_requestor(state.request_id),
        )

    async def _lift(
        self, *, action: AuditAction, stage: Stage, actor: str, reason: str, notify_requestor: str | None = None
    ) -> None:
        lift = LiftShieldInput(
            request_id=self._state.request_id,
            action=action,
            stage=stage,
            actor=actor,
            reason=reason,
            operation_key=self._next_key(stage.value),
            notify_requestor=notify_requestor,
        )
        await self._activity(ShieldingActivities.unshield_record, lift, messages.ACTIVITY_UNSHIELD)
        self._state.close(stage, reason)
        self._publish()

    async def _step(self, params: StepInput, summary: str = messages.ACTIVITY_STEP) -> StepResult:
        return await self._activity(ShieldingActivities.record_step, params, summary)

    async def _review_falls_due(self, due_at: datetime) -> None:
        state = self._state
        kind = state.next_review_kind
        await self._step(
            StepInput(
                request_id=state.request_id,
                action=AuditAction.REVIEW_DUE,
                actor="system",
                reason=messages.review_due_audit(kind),
                operation_key=self._next_key("review-due"),
                stage=Stage.REVIEW_DUE,
                details={"review": kind.value, "due_at": due_at.isoformat()},
                reviewer_subject=messages.review_due_subject(kind, state.request_id),
                reviewer_body=messages.review_due_body(kind, state.request_id, due_at),
            ),
            messages.ACTIVITY_REVIEW_DUE,
        )
        state.review_fell_due(due_at)
        self._publish()

    async def _remind(self) -> None:
        state = self._state
        kind = state.next_review_kind
        await self._step(
            StepInput(
                request_id=state.request_id,
                action=AuditAction.REMINDER,
                actor="system",
                reason=messages.reminder_audit(kind),
                operation_key=self._next_key("reminder"),
                details={"review": kind.value, "reminder": state.reminders_sent + 1},
                reviewer_subject=messages.reminder_subject(kind, state.request_id),
                reviewer_body=messages.reminder_body(kind, state.request_id),
            ),
            messages.ACTIVITY_REMINDER,
        )
        state.reminder_sent(workflow.now())
        self._publish()

    def _publish(self) -> None:
        """Keep the stage and the search attributes current (ids and dates only, never child data)."""
        state = self._state
        state.stage = state.derived_stage()
        form_due = state.form_due_shown()
        next_review = state.next_review_at()
        updates: list[SearchAttributeUpdate[Any]] = [
            STAGE_ATTRIBUTE.value_set(state.stage.value),
            FORM_DUE_AT_ATTRIBUTE.value_set(form_due) if form_due is not None else FORM_DUE_AT_ATTRIBUTE.value_unset(),
            NEXT_REVIEW_AT_ATTRIBUTE.value_set(next_review)
            if next_review is not None
            else NEXT_REVIEW_AT_ATTRIBUTE.value_unset(),
        ]
        workflow.upsert_search_attributes(updates)
        # The Temporal UI's "current details": the stage and the next deadline in words (encrypted by the codec
        # like every payload; read through the authorised codec endpoint).
        workflow.set_current_details(state.operations_details(self._children))

    # ------------------------------------------------------------------------------------ authentication

    def _action_refusal(self, action: SignedAction, argument: StaffAction) -> str | None:
        info = workflow.info()
        return action_auth.verify_action(
            argument.signature,
            namespace=info.namespace,
            workflow_id=info.workflow_id,
            action=action,
            argument=argument,
            actor=argument.actor,
            now=workflow.now(),
            seen_nonces=self._state.accepted_nonces,
        )

    def _authenticate_update(self, action: SignedAction, argument: StaffAction) -> None:
        """For a validator: refuse what the service did not sign (a rejected update leaves nothing in history)."""
        refusal = self._action_refusal(action, argument)
        if refusal is not None:
            raise ApplicationError(refusal, type=UNAUTHENTICATED, non_retryable=True)

    def _spend_nonce(self, argument: StaffAction) -> None:
        """First in an update's handler, before any await: the validator of a second copy already sees it."""
        if argument.signature is not None:
            self._state.remember_nonce(argument.signature.nonce)

    def _authentic_signal(self, signal: str, action: SignedAction, argument: StaffAction) -> bool:
        """Whether to act on a signal: signed by the service, or an unsigned one recorded before version 4."""
        if argument.signature is None:
            index = min(self._unsigned_signals, UNSIGNED_SIGNAL_PATCHES)
            self._unsigned_signals += 1
            if not workflow.patched(f"{SIGNED_SIGNALS_PATCH}-{index}"):
                return True
        refusal = self._action_refusal(action, argument)
        if refusal is not None:
            # A signal cannot be rejected, only ignored: it stays in history and changes nothing.
            request_id = self._state.request_id
            workflow.logger.warning(
                "signal %s ignored on request %s: it failed authentication",
                signal,
                request_id,
                extra={"request_id": request_id},
            )
            return False
        self._spend_nonce(argument)
        return True

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

    async def _receive_form(self, submission: FormSubmission) -> FormOutcome:
        state = self._state
        refusal = state.form_refusal(workflow.now(), form_arriving=self._form_arriving)
        if refusal is None:
            # Claimed before any await, so the form deadline cannot lapse the request while it is recorded.
            self._form_arriving = True
        async with self._lock:
            if refusal is None and state.stage.is_final:
                # Closed (unshielded, say) while this form waited for the lock: it must not be accepted.
                self._form_arriving = False
                refusal = messages.form_on_closed_request(state.request_id, state.stage)
            if refusal is not None:
                await self._refuse_form(submission, refusal)
                return FormOutcome(accepted=False, message=refusal)
            return await self._accept_form(submission)

    async def _refuse_form(self, submission: FormSubmission, refusal: str) -> None:
        form = FormInput(
            request_id=self._state.request_id,
            document_ids=submission.document_ids,
            actor=submission.actor,
            operation_key=self._next_key("form-refused"),
            refusal_reason=refusal,
        )
        await self._activity(ShieldingActivities.refuse_form, form, messages.ACTIVITY_FORM)
        self._last_message = refusal

    async def _accept_form(self, submission: FormSubmission) -> FormOutcome:
        state = self._state
        form = FormInput(
            request_id=state.request_id,
            document_ids=submission.document_ids,
            actor=submission.actor,
            operation_key=self._next_key("form-received"),
        )
        try:
            result: StepResult = await self._activity(ShieldingActivities.accept_form, form, messages.ACTIVITY_FORM)
        finally:
            self._form_arriving = False
        state.form_received_at = result.at or workflow.now()
        if workflow.patched(FORM_RECEIPT_PATCH):
            notice = RequestorNotice(
                request_id=state.request_id,
                subject=messages.form_receipt_subject(state.request_id),
                body=messages.form_receipt_body(state.request_id),
                operation_key=self._next_key("form-receipt"),
            )
            await self._activity(ShieldingActivities.notify_requestor, notice, messages.ACTIVITY_REQUESTOR)
        self._publish()
        self._wake = True
        message = messages.form_accepted(state.request_id)
        self._last_message = message
        return FormOutcome(accepted=True, message=message, received_at=state.form_received_at)

    @workflow.update
    async def receive_form(self, submission: FormSubmission) -> FormOutcome:
        self._spend_nonce(submission)
        outcome = await self._receive_form(submission)
        if not outcome.accepted:
            raise ApplicationError(outcome.message, type="FormRefused", non_retryable=True)
        return outcome

    @receive_form.validator
    def _validate_form(self, submission: FormSubmission) -> None:
        self._authenticate_update(SignedAction.RECEIVE_FORM, submission)

    @workflow.signal
    async def form_received(self, submission: FormSubmission) -> None:
        """The same as the update, for senders that cannot wait (a document scanning system)."""
        if self._authentic_signal("form_received", SignedAction.RECEIVE_FORM, submission):
            await self._receive_form(submission)

    # ------------------------------------------------------------------------------------------ reviews

    @workflow.update
    async def decide_review(self, decision: ReviewDecision) -> ReviewOutcome:
        self._spend_nonce(decision)
        outcome = await self._decide_review(decision)
        if not outcome.accepted:
            raise ApplicationError(outcome.message, type="ReviewRefused", non_retryable=True)
        return outcome

    @decide_review.validator
    def _validate_review(self, decision: ReviewDecision) -> None:
        self._authenticate_update(SignedAction.DECIDE_REVIEW, decision)
        refusal = self._state.review_refusal(decision)
        if refusal is not None:
            raise ApplicationError(refusal, type="ReviewRefused", non_retryable=True)

    @workflow.signal
    async def review_decided(self, decision: ReviewDecision) -> None:
        if self._authentic_signal("review_decided", SignedAction.DECIDE_REVIEW, decision):
            await self._decide_review(decision)

    async def _decide_review(self, decision: ReviewDecision) -> ReviewOutcome:
        async with self._lock:
            state = self._state
            refusal = state.review_refusal(decision)
            if refusal is not None:
                self._last_message = refusal
                return ReviewOutcome(accepted=False, message=refusal, stage=state.stage)
            kind = state.record_decision(decision, workflow.now())
            if decision.decision == ReviewDecisionKind.UNSHIELD:
                assert decision.reason is not None
                await self._lift(
                    action=AuditAction.UNSHIELDED, stage=Stage.UNSHIELDED, actor=decision.actor, reason=decision.reason
                )
                message = messages.unshielded_after_review(state.request_id, kind)
                self._last_message = message
                return ReviewOutcome(accepted=True, message=message, stage=state.stage)
            return await self._approve(decision, kind)

    async def _approve(self, decision: ReviewDecision, kind: ReviewKind) -> ReviewOutcome:
        state = self._state
        state.approve_review()
        next_review = state.next_review_at()
        await self._step(
            StepInput(
                request_id=state.request_id,
                action=AuditAction.APPROVED,
                actor=decision.actor,
                reason=decision.reason or messages.approval_audit(kind),
                operation_key=self._next_key("approved"),
                stage=Stage.SHIELDED if state.form_received_at else Stage.AWAITING_FORM,
                details={"review": kind.value, "next_review_at": next_review.isoformat() if next_review else None},
            )
        )
        self._publish()
        self._wake = True
        # From the six-month review on, each approval starts a fresh run so history stays bounded.
        if kind == ReviewKind.SIX_MONTH:
            self._continue_as_new = True
        message = messages.review_approved(state.request_id, kind, next_review)
        self._last_message = message
        return ReviewOutcome(
            accepted=True,
            message=message,
            stage=state.stage,
            next_review_at=deadlines.to_london(next_review) if next_review else None,
        )

    # ----------------------------------------------------------------------------------------- unshield

    @workflow.update
    async def unshield(self, request: UnshieldRequest) -> UnshieldOutcome:
        self._spend_nonce(request)
        outcome = await self._unshield(request)
        if not outcome.accepted:
            raise ApplicationError(outcome.message, type="UnshieldRefused", non_retryable=True)
        return outcome

    @unshield.validator
    def _validate_unshield(self, request: UnshieldRequest) -> None:
        self._authenticate_update(SignedAction.UNSHIELD, request)
        refusal = self._state.unshield_refusal()
        if refusal is not None:
            raise ApplicationError(refusal, type="UnshieldRefused", non_retryable=True)

    @workflow.signal
    async def unshield_requested(self, request: UnshieldRequest) -> None:
        if self._authentic_signal("unshield_requested", SignedAction.UNSHIELD, request):
            await self._unshield(request)

    async def _unshield(self, request: UnshieldRequest) -> UnshieldOutcome:
        async with self._lock:
            refusal = self._state.unshield_refusal()
            if refusal is not None:
                self._last_message = refusal
                return UnshieldOutcome(accepted=False, message=refusal, stage=self._state.stage)
            await self._lift(
                action=AuditAction.UNSHIELDED, stage=Stage.UNSHIELDED, actor=request.actor, reason=request.reason
            )
            message = messages.unshielded(self._state.request_id)
            self._last_message = message
            return UnshieldOutcome(accepted=True, message=message, stage=self._state.stage)

    # ------------------------------------------------------------------------------------------- status

    @workflow.query
    def status(self, _: StatusQuery) -> RequestStatus:
        state = self._state
        next_review = state.next_review_at()
        return RequestStatus(
            request_id=state.request_id,
            stage=state.stage,
            children=state.children,
            called_at=state.called_at,
            shielded_at=state.shielded_at,
            form_due_at=state.form_due_at,
            form_received_at=state.form_received_at,
            next_review_at=next_review,
            next_review_kind=state.next_review_kind if next_review else None,
            review_due_since=state.review_due_since,
            reminders_sent=state.reminders_sent,
            reviews=state.reviews,
            closed_reason=state.closed_reason,
            last_message=self._last_message,
        )
