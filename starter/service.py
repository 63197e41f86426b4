"""`ShieldingService`: what intake officers and reviewers do, over an injected Temporal client and pool.

Every front end (CLI, web) calls this and nothing below it: it validates, records refusals, starts or updates
the request's lifecycle, and turns every failure into a `Refusal` worded for the person at the keyboard.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from shielding import messages, metrics, store
from shielding.action_auth import ActionKeys, Signable, SignedAction, signed
from shielding.domain import (
    REQUEST_ID_PATTERN,
    FormOutcome,
    FormSubmission,
    IntakeAcknowledgement,
    RequestStatus,
    ReviewDecision,
    ReviewDecisionKind,
    ReviewOutcome,
    ShieldingRequestInput,
    Stage,
    StatusQuery,
    UnshieldOutcome,
    UnshieldRequest,
)
from shielding.lifecycle import AcknowledgeIntake, ShieldingLifecycleInput
from shielding.log import get_logger
from shielding.steps import FormDocuments
from shielding.store.directory import record_related_decisions, related_records
from shielding.temporal import STAGE_ATTRIBUTE
from starter.brokering import ContactBrokering
from starter.documents import Document, check_document, read_documents
from starter.errors import IntakeTimeout, Refusal
from starter.validation import IntakeDraft, decide_related, validate_intake, with_added_related
from workflows.shielding_request import ShieldingRequestWorkflow

log = get_logger(__name__)

_ID_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
# What a database that is down or restarting raises (its socket gone, refused, or "shutting down").
DATABASE_UNAVAILABLE = (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError)
_REQUESTOR_FIELDS = {
    "requestor_type",
    "requestor_name",
    "requestor_organisation",
    "requestor_phone",
    "requestor_email",
}


def new_request_id() -> str:
    """Random, so a workflow id never carries anything about the child."""
    return "SR-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


def check_request_id(request_id: str) -> None:
    if not REQUEST_ID_PATTERN.fullmatch(request_id):
        raise Refusal(f"{request_id!r} is not a shielding request id (they look like SR-ABCDEFGH2345).")


def _update_failure_message(err: WorkflowUpdateFailedError) -> str:
    cause = err.cause
    while cause is not None:
        if isinstance(cause, ApplicationError):
            return cause.message
        cause = cause.__cause__  # type: ignore[assignment]
    return "The request could not be completed."


def _read_start_outcome(start: WithStartWorkflowOperation[Any, Any]) -> None:
    """Read the start operation's outcome after a failed or abandoned update-with-start.

    The SDK leaves it on a future nobody reads; unread, asyncio logs "Future exception was never retrieved"
    whenever the garbage collector gets to it, formatting a traceback (with ast.parse) wherever that happens.
    """
    outcome = start.workflow_handle()
    try:
        outcome.send(None)  # a settled future completes without suspending
    except BaseException:  # the stored outcome itself (StopIteration when the start succeeded): now read
        return
    outcome.close()  # not settled: nothing to read


def _closed_or_unreachable(request_id: str, err: RPCError) -> Refusal:
    if err.status == RPCStatusCode.NOT_FOUND:
        return Refusal(f"Request {request_id} is closed or has no running lifecycle.")
    return Refusal(f"The workflow service could not be reached for request {request_id}; try again shortly.")


class ShieldingService(ContactBrokering):
    """What intake officers and reviewers do, over a Temporal client and the store (both injected); and brokering
    contact with a shielded child (`starter.brokering.ContactBrokering`).

    It is the only legitimate sender of intakes and staff actions: each one is signed with the first of
    `action_keys` (shielding.action_auth), which the worker holds too and Temporal never sees.
    """

    def __init__(
        self,
        client: Client,
        pool: asyncpg.Pool,
        *,
        task_queue: str,
        max_document_bytes: int,
        action_keys: str,
        intake_timeout: float | None = None,
    ) -> None:
        self._client = client
        self._pool = pool
        self._action_keys = ActionKeys.from_spec(action_keys)
        self._task_queue = task_queue
        self._max_document_bytes = max_document_bytes
        # Seconds submit_request waits for the acknowledgement; None waits for as long as it takes.
        self._intake_timeout = intake_timeout

    # ------------------------------------------------------------------------------------------- intake

    async def submit_request(
        self, draft: IntakeDraft, *, actor: str, request_id: str | None = None, now: datetime | None = None
    ) -> IntakeAcknowledgement:
        request_id = request_id or new_request_id()
        arrived = time.monotonic()
        now = now or datetime.now(UTC)
        draft = with_added_related(draft)
        try:
            request = validate_intake(draft, request_id=request_id, actor=actor, now=now)
        except Refusal as refusal:
            await store.record_refusal(
                self._pool,
                request_id=request_id,
                actor=actor,
                reason=str(refusal),
                requestor=draft.model_dump(include=_REQUESTOR_FIELDS, exclude_none=True),
                details={"criteria": draft.criteria[:50], "children": draft.children[:50]},
            )
            log.info("intake refused", request_id=request_id)
            raise
        # One bound for the whole call, whatever it waits for: the directory database, then the workflow service.
        deadline = None if self._intake_timeout is None else asyncio.get_running_loop().time() + self._intake_timeout
        await self._decide_related(draft, request, actor=actor, deadline=deadline)
        request = self._signed(request, SignedAction.INTAKE, request_id)
        start = WithStartWorkflowOperation(
            ShieldingRequestWorkflow.run,
            ShieldingLifecycleInput(request=request),
            id=request_id,
            task_queue=self._task_queue,
            # A repeat of a running intake joins it; an id whose lifecycle has ended is never reused.
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes([SearchAttributePair(STAGE_ATTRIBUTE, Stage.INTAKE.value)]),
            # The line the Temporal UI's list shows (the request id and how many children; encrypted like
            # every payload). The workflow keeps its current details up to date from here on.
            static_summary=messages.operations_summary(request_id, len(request.children)),
        )
        ack = await self._acknowledged(start, request_id, deadline)
        if {c.uid for c in ack.children} != set(request.children):
            # The id was reused for a different request while the first one runs: never report it as done.
            raise Refusal(
                f"Request id {request_id} belongs to a request for other children; take this call as a new request."
            )
        log.info("intake acknowledged", request_id=request_id, stage=ack.stage.value)
        if ack.stage == Stage.AWAITING_FORM:
            metrics.time_to_shield(timedelta(seconds=time.monotonic() - arrived))
        if ack.stage == Stage.REFUSED:
            raise Refusal(f"Refused: {ack.message}")
        return ack

    async def _decide_related(
        self, draft: IntakeDraft, request: ShieldingRequestInput, *, actor: str, deadline: float | None
    ) -> None:
        """Every record sharing an address or a carer with a child in the request: added, or not and why (asked
        for before anything is started; the decisions are audited, their reasons never logged). A database
        outage is waited out until the intake's bound, then the caller is told to try again: nothing was started."""
        loop = asyncio.get_running_loop()
        delay = 0.2
        while True:
            try:
                related = await related_records(self._pool, request.children)
                decisions = decide_related(draft, request, related)
                await record_related_decisions(self._pool, request.request_id, decisions, actor=actor)
                return
            except DATABASE_UNAVAILABLE:
                if deadline is not None and loop.time() + delay >= deadline:
                    log.warning("intake not confirmed in time", request_id=request.request_id)
                    raise self._not_confirmed(request.request_id) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _not_confirmed(self, request_id: str) -> IntakeTimeout:
        return IntakeTimeout(
            f"Request {request_id} was not confirmed within {self._intake_timeout:g} seconds: the workflow "
            "service or the directory database may be unavailable. The request may still be completed when "
            f"they recover; check its status (shielding status {request_id}) and, if it is unknown, submit "
            "it again under the same request id."
        )

    async def _acknowledged(
        self, start: WithStartWorkflowOperation[Any, Any], request_id: str, deadline: float | None
    ) -> IntakeAcknowledgement:
        bound = asyncio.timeout_at(deadline)
        try:
            async with bound:
                return await self._client.execute_update_with_start_workflow(
                    ShieldingRequestWorkflow.acknowledge_intake, AcknowledgeIntake(), start_workflow_operation=start
                )
        except WorkflowAlreadyStartedError:
            _read_start_outcome(start)
            raise Refusal(
                f"Request {request_id} has already ended; take this call as a new request (without --request-id)."
            ) from None
        except BaseException as err:
            _read_start_outcome(start)
            # The SDK turns the cancellation of its update poll into its own error, so test the bound itself.
            if not (bound.expired() and isinstance(err, TimeoutError | WorkflowUpdateRPCTimeoutOrCancelledError)):
                raise
            log.warning("intake not confirmed in time", request_id=request_id)
            raise self._not_confirmed(request_id) from None

    # --------------------------------------------------------------------------------------------- form

    async def submit_form(self, request_id: str, paths: Sequence[str | Path], *, actor: str) -> FormOutcome:
        await self._known_request(request_id)
        return await self._submit(request_id, read_documents(paths, self._max_document_bytes), actor=actor)

    async def submit_documents(self, request_id: str, documents: Sequence[Document], *, actor: str) -> FormOutcome:
        """Documents already in memory (an upload); the same limits as documents read from disk."""
        await self._known_request(request_id)
        if not documents:
            raise Refusal("A form needs at least one document (the completed form, then any supporting documents).")
        for document in documents:
            check_document(document.filename, len(document.content), self._max_document_bytes)
        return await self._submit(request_id, documents, actor=actor)

    async def _submit(self, request_id: str, documents: Sequence[Document], *, actor: str) -> FormOutcome:
        closed = await store.closed_request(self._pool, request_id)
        if closed is not None:
            # The lifecycle has ended (a lapsed request, say): refuse and audit here, keeping no documents.
            reason = messages.late_form_on_closed_request(request_id, closed.stage, closed.form_due_at)
            refusal = FormDocuments(request_id=request_id, document_ids=[], actor=actor, refusal_reason=reason)
            await store.refuse_form(self._pool, refusal, f"{request_id}:late-form:{secrets.token_hex(8)}")
            raise Refusal(reason)
        document_ids = await store.stage_documents(self._pool, request_id, [(d.filename, d.content) for d in documents])
        submission = self._signed(
            FormSubmission(document_ids=document_ids, actor=actor), SignedAction.RECEIVE_FORM, request_id
        )
        try:
            return await self._handle(request_id).execute_update(ShieldingRequestWorkflow.receive_form, submission)
        except WorkflowUpdateFailedError as err:
            raise Refusal(_update_failure_message(err)) from None
        except RPCError as err:
            # Only when the lifecycle is certainly gone: after a timeout the update may still be accepted.
            if err.status == RPCStatusCode.NOT_FOUND:
                await store.discard_staged_documents(self._pool, document_ids)
            raise _closed_or_unreachable(request_id, err) from None

    # ------------------------------------------------------------------------------- review and unshield

    async def decide_review(self, request_id: str, *, approve: bool, reason: str | None, actor: str) -> ReviewOutcome:
        decision = ReviewDecision(
            decision=ReviewDecisionKind.APPROVE if approve else ReviewDecisionKind.UNSHIELD,
            reason=reason or None,
            actor=actor,
        )
        decision = self._signed(decision, SignedAction.DECIDE_REVIEW, request_id)
        return await self._update(request_id, ShieldingRequestWorkflow.decide_review, decision)  # type: ignore[no-any-return]

    async def unshield(self, request_id: str, *, reason: str, actor: str) -> UnshieldOutcome:
        request = self._signed(UnshieldRequest(reason=reason, actor=actor), SignedAction.UNSHIELD, request_id)
        return await self._update(request_id, ShieldingRequestWorkflow.unshield, request)  # type: ignore[no-any-return]

    async def status(self, request_id: str) -> RequestStatus:
        await self._known_request(request_id)
        try:
            return await self._handle(request_id).query(ShieldingRequestWorkflow.status, StatusQuery())
        except RPCError as err:
            raise _closed_or_unreachable(request_id, err) from None

    # ------------------------------------------------------------------------------------------ helpers

    def _signed(self, argument: Signable, action: SignedAction, request_id: str) -> Signable:
        """`argument` as only this service can send it: signed for this request and action, by its actor, now."""
        return signed(
            argument, self._action_keys, namespace=self._client.namespace, workflow_id=request_id, action=action
        )

    async def _known_request(self, request_id: str) -> None:
        check_request_id(request_id)
        if not await store.request_exists(self._pool, request_id):
            raise Refusal(f"There is no shielding request {request_id}.")

    def _handle(self, request_id: str) -> WorkflowHandle[Any, Any]:
        return self._client.get_workflow_handle_for(ShieldingRequestWorkflow.run, request_id)

    async def _update(self, request_id: str, update: Any, argument: Any) -> Any:
        await self._known_request(request_id)
        try:
            return await self._handle(request_id).execute_update(update, argument)
        except WorkflowUpdateFailedError as err:
            raise Refusal(_update_failure_message(err)) from None
        except RPCError as err:
            raise _closed_or_unreachable(request_id, err) from None
