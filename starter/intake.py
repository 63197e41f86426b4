"""The service's front door: intake, forms, reviews, unshield and status, over an injectable Temporal client.

Everything a person types arrives here as a draft of plain strings; `validate_intake` turns it into a
`ShieldingRequestInput` or refuses it with every problem named in words an intake officer understands.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import BaseModel, Field, ValidationError
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
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

from shielding import deadlines, store
from shielding.domain import (
    MAX_CHILDREN_PER_REQUEST,
    OBJECTION_IN_PRINCIPLE,
    OBJECTION_IN_PRINCIPLE_EXPLANATION,
    REQUEST_ID_PATTERN,
    Criterion,
    FormOutcome,
    FormSubmission,
    IntakeAcknowledgement,
    Requestor,
    RequestStatus,
    ReviewDecision,
    ReviewDecisionKind,
    ReviewOutcome,
    ShieldingRequestInput,
    StatusQuery,
    UnshieldOutcome,
    UnshieldRequest,
)
from shielding.log import get_logger
from shielding.temporal import STAGE_ATTRIBUTE
from workflows.shielding_request import (
    AcknowledgeIntake,
    ShieldingLifecycleInput,
    ShieldingRequestWorkflow,
)

log = get_logger(__name__)

# A call logged a few minutes "in the future" is clock skew between machines, not an error.
CLOCK_SKEW = timedelta(minutes=5)
_ID_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


class Refusal(Exception):
    """A request the service will not carry out; the message is for the person at the keyboard."""


class IntakeTimeout(TimeoutError):
    """An intake not confirmed within the service's bound; its lifecycle may still complete it."""


def new_request_id() -> str:
    """Random, so a workflow id never carries anything about the child."""
    return "SR-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


class IntakeDraft(BaseModel):
    """What the intake officer typed, unchecked."""

    children: list[str] = Field(default_factory=list)
    criteria: list[str] = Field(default_factory=list)
    other_description: str | None = None
    reason: str | None = None
    requestor_type: str | None = None
    requestor_name: str | None = None
    requestor_organisation: str | None = None
    requestor_phone: str | None = None
    requestor_email: str | None = None
    called_at: str | datetime | None = None


_FIELD_NAMES = {
    "children": "child identifier",
    "criteria": "criterion",
    "reason": "reason",
    "other_description": "description of the other circumstances",
    "type": "requestor type",
    "name": "requestor name",
    "organisation": "requestor organisation",
    "phone": "requestor phone number",
    "email": "requestor email address",
    "called_at": "time of the call",
}


def _describe(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"] if not isinstance(part, int)]
        field = _FIELD_NAMES.get(loc[-1] if loc else "", loc[-1] if loc else "input")
        message = item["msg"]
        if item["type"] == "string_pattern_mismatch":
            message = "is not in the expected format"
        elif item["type"] in {"string_too_long", "too_long"}:
            message = "is too long"
        elif item["type"] == "string_unicode":
            message = "is not valid text"
        elif item["type"] in {"string_too_short", "missing"}:
            message = "is missing"
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        problems.append(f"the {field} {message}")
    return problems


def parse_instant(value: str | datetime, what: str = "time") -> datetime:
    """An ISO 8601 instant with its UTC offset; an instant without one is ambiguous and refused."""
    if isinstance(value, datetime):
        parsed = value
    else:
        text = value.strip()
        shown = text
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            # fromisoformat ignores one trailing NUL (CPython 3.11); no ISO 8601 text holds a control character.
            if not text.isprintable():
                raise ValueError(text)
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise Refusal(
                f"The {what} {value!r} is not an ISO 8601 date and time (for example 2026-11-24T10:30:00+00:00)."
            ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        shown = shown if isinstance(value, str) else str(value)
        raise Refusal(f"The {what} {shown} has no UTC offset, so it is ambiguous; add one, for example +00:00 or Z.")
    return parsed


def validate_intake(draft: IntakeDraft, *, request_id: str, actor: str, now: datetime) -> ShieldingRequestInput:
    problems: list[str] = []
    if not draft.children:
        problems.append("at least one child identifier is needed")
    elif len(draft.children) > MAX_CHILDREN_PER_REQUEST:
        problems.append(
            f"a request can name at most {MAX_CHILDREN_PER_REQUEST} children (this one names {len(draft.children)})"
        )
    criteria: list[Criterion] = []
    if not draft.criteria:
        problems.append("at least one shielding criterion is needed")
    for code in draft.criteria:
        normalised = code.strip().lower()
        if normalised == OBJECTION_IN_PRINCIPLE:
            raise Refusal(
                "Refused: an objection to the directory in principle is not a shielding criterion. "
                + OBJECTION_IN_PRINCIPLE_EXPLANATION
            )
        try:
            criteria.append(Criterion(normalised))
        except ValueError:
            problems.append(
                f"{code!r} is not a shielding criterion (valid criteria: " + ", ".join(c.value for c in Criterion) + ")"
            )
    if Criterion.OTHER_SIGNIFICANT_HARM in criteria and not (draft.other_description or "").strip():
        problems.append("the criterion other-significant-harm needs a description of the circumstances")
    if not draft.requestor_phone and not draft.requestor_email:
        problems.append("the requestor's phone number or email address is needed so they can be contacted")
    if (draft.requestor_type or "").strip().lower() == "professional" and not draft.requestor_organisation:
        problems.append("a professional requestor's organisation is needed")
    called_at: datetime | None = None
    if draft.called_at is None:
        called_at = now
    else:
        try:
            called_at = parse_instant(draft.called_at, "time of the call")
        except Refusal as refusal:
            problems.append(str(refusal).rstrip("."))
    if called_at is not None:
        if called_at > now + CLOCK_SKEW:
            problems.append("the time of the call is in the future")
        else:
            try:
                deadline_passed = deadlines.form_due_at(called_at) <= now
            except (ValueError, OverflowError):
                # Before the bank-holiday calendar (2000) or before year 1 in UTC: long past any deadline.
                deadline_passed = True
            if deadline_passed:
                problems.append(
                    "the call was more than 7 working days ago, so the deadline for the written form has passed"
                )
    try:
        requestor = Requestor(
            type=(draft.requestor_type or "").strip().lower(),  # type: ignore[arg-type]
            name=draft.requestor_name or "",
            organisation=draft.requestor_organisation or None,
            phone=draft.requestor_phone or None,
            email=draft.requestor_email or None,
        )
    except ValidationError as err:
        problems.extend(
            p.replace("the requestor type Input should be", "the requestor type must be") for p in _describe(err)
        )
        requestor = None
    if problems or requestor is None or called_at is None:
        raise Refusal("Refused: " + "; ".join(dict.fromkeys(problems)) + ".")
    try:
        return ShieldingRequestInput(
            request_id=request_id,
            children=[c.strip() for c in draft.children],
            criteria=list(dict.fromkeys(criteria)),
            other_description=draft.other_description or None,
            reason=draft.reason or "",
            requestor=requestor,
            called_at=called_at,
            actor=actor,
        )
    except ValidationError as err:
        raise Refusal("Refused: " + "; ".join(dict.fromkeys(_describe(err))) + ".") from None


def _update_failure_message(err: WorkflowUpdateFailedError) -> str:
    cause = err.cause
    while cause is not None:
        if isinstance(cause, ApplicationError):
            return cause.message
        cause = cause.__cause__  # type: ignore[assignment]
    return "The request could not be completed."


def _check_request_id(request_id: str) -> None:
    if not REQUEST_ID_PATTERN.fullmatch(request_id):
        raise Refusal(f"{request_id!r} is not a shielding request id (they look like SR-ABCDEFGH2345).")


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


@dataclass
class Document:
    filename: str
    content: bytes


def read_documents(paths: Sequence[str | Path], max_bytes: int) -> list[Document]:
    if not paths:
        raise Refusal("A form needs at least one document (the completed form, then any supporting documents).")
    documents = []
    for raw in paths:
        path = Path(raw)
        try:
            if not path.is_file():
                raise Refusal(f"The document {path.name!r} cannot be found or is not a file.")
            size = path.stat().st_size
        except OSError as err:
            raise Refusal(f"The document {path.name!r} cannot be read ({err.strerror or 'unreadable'}).") from None
        if size == 0:
            raise Refusal(f"The document {path.name!r} is empty; nothing was recorded.")
        if size > max_bytes:
            raise Refusal(
                f"The document {path.name!r} is {size:,} bytes, over the {max_bytes:,}-byte limit; "
                "nothing was recorded."
            )
        try:
            content = path.read_bytes()
        except OSError as err:
            raise Refusal(f"The document {path.name!r} cannot be read ({err.strerror or 'unreadable'}).") from None
        documents.append(Document(filename=path.name, content=content))
    return documents


class ShieldingService:
    """What intake officers and reviewers do, over a Temporal client and the store (both injected)."""

    def __init__(
        self,
        client: Client,
        pool: asyncpg.Pool,
        *,
        task_queue: str,
        max_document_bytes: int,
        intake_timeout: float | None = None,
    ) -> None:
        self._client = client
        self._pool = pool
        self._task_queue = task_queue
        self._max_document_bytes = max_document_bytes
        # Seconds submit_request waits for the acknowledgement; None waits for as long as it takes.
        self._intake_timeout = intake_timeout

    async def submit_request(
        self, draft: IntakeDraft, *, actor: str, request_id: str | None = None, now: datetime | None = None
    ) -> IntakeAcknowledgement:
        request_id = request_id or new_request_id()
        now = now or datetime.now(UTC)
        try:
            request = validate_intake(draft, request_id=request_id, actor=actor, now=now)
        except Refusal as refusal:
            await store.record_refusal(
                self._pool,
                request_id=request_id,
                actor=actor,
                reason=str(refusal),
                requestor=draft.model_dump(
                    include={
                        "requestor_type",
                        "requestor_name",
                        "requestor_organisation",
                        "requestor_phone",
                        "requestor_email",
                    },
                    exclude_none=True,
                ),
                details={"criteria": draft.criteria[:50], "children": draft.children[:50]},
            )
            log.info("intake refused", request_id=request_id)
            raise
        start = WithStartWorkflowOperation(
            ShieldingRequestWorkflow.run,
            ShieldingLifecycleInput(request=request),
            id=request_id,
            task_queue=self._task_queue,
            # A repeat of a running intake joins it; an id whose lifecycle has ended is never reused.
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes([SearchAttributePair(STAGE_ATTRIBUTE, "intake")]),
        )
        bound = asyncio.timeout(self._intake_timeout)
        try:
            async with bound:
                ack = await self._client.execute_update_with_start_workflow(
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
            raise IntakeTimeout(
                f"Request {request_id} was not confirmed within {self._intake_timeout:g} seconds: the workflow "
                "service or the directory database may be unavailable. The request may still be completed when "
                f"they recover; check its status (shielding status {request_id}) and, if it is unknown, submit "
                "it again under the same request id."
            ) from None
        if {c.uid for c in ack.children} != set(request.children):
            # The id was reused for a different request while the first one runs: never report it as done.
            raise Refusal(
                f"Request id {request_id} belongs to a request for other children; take this call as a new request."
            )
        log.info("intake acknowledged", request_id=request_id, stage=ack.stage.value)
        if ack.stage.value == "refused":
            raise Refusal(f"Refused: {ack.message}")
        return ack

    async def _known_request(self, request_id: str) -> None:
        _check_request_id(request_id)
        if not await store.request_exists(self._pool, request_id):
            raise Refusal(f"There is no shielding request {request_id}.")

    async def submit_form(self, request_id: str, paths: Sequence[str | Path], *, actor: str) -> FormOutcome:
        await self._known_request(request_id)
        documents = read_documents(paths, self._max_document_bytes)
        closed = await store.closed_stage(self._pool, request_id)
        if closed is not None:
            # The lifecycle has ended (a lapsed request, say): refuse and audit here, keeping no documents.
            stage, due = closed
            reason = f"Request {request_id} is closed ({stage}); the form cannot be accepted." + (
                " Its deadline was " + deadlines.describe(datetime.fromisoformat(due)) + "." if due else ""
            )
            await store.refuse_form(
                self._pool,
                request_id=request_id,
                document_ids=[],
                actor=actor,
                reason=reason,
                operation_key=f"{request_id}:late-form:{secrets.token_hex(8)}",
            )
            raise Refusal(reason)
        document_ids = await store.stage_documents(self._pool, request_id, [(d.filename, d.content) for d in documents])
        handle = self._client.get_workflow_handle_for(ShieldingRequestWorkflow.run, request_id)
        try:
            return await handle.execute_update(
                ShieldingRequestWorkflow.receive_form, FormSubmission(document_ids=document_ids, actor=actor)
            )
        except WorkflowUpdateFailedError as err:
            raise Refusal(_update_failure_message(err)) from None
        except RPCError as err:
            # Only when the lifecycle is certainly gone: after a timeout the update may still be accepted.
            if err.status == RPCStatusCode.NOT_FOUND:
                await store.discard_staged_documents(self._pool, document_ids)
            raise self._closed_or_unreachable(request_id, err) from None

    async def decide_review(self, request_id: str, *, approve: bool, reason: str | None, actor: str) -> ReviewOutcome:
        await self._known_request(request_id)
        decision = ReviewDecision(
            decision=ReviewDecisionKind.APPROVE if approve else ReviewDecisionKind.UNSHIELD,
            reason=reason or None,
            actor=actor,
        )
        handle = self._client.get_workflow_handle_for(ShieldingRequestWorkflow.run, request_id)
        try:
            return await handle.execute_update(ShieldingRequestWorkflow.decide_review, decision)
        except WorkflowUpdateFailedError as err:
            raise Refusal(_update_failure_message(err)) from None
        except RPCError as err:
            raise self._closed_or_unreachable(request_id, err) from None

    async def unshield(self, request_id: str, *, reason: str, actor: str) -> UnshieldOutcome:
        await self._known_request(request_id)
        handle = self._client.get_workflow_handle_for(ShieldingRequestWorkflow.run, request_id)
        try:
            return await handle.execute_update(
                ShieldingRequestWorkflow.unshield, UnshieldRequest(reason=reason, actor=actor)
            )
        except WorkflowUpdateFailedError as err:
            raise Refusal(_update_failure_message(err)) from None
        except RPCError as err:
            raise self._closed_or_unreachable(request_id, err) from None

    async def status(self, request_id: str) -> RequestStatus:
        await self._known_request(request_id)
        handle = self._client.get_workflow_handle_for(ShieldingRequestWorkflow.run, request_id)
        try:
            return await handle.query(ShieldingRequestWorkflow.status, StatusQuery())
        except RPCError as err:
            raise self._closed_or_unreachable(request_id, err) from None

    @staticmethod
    def _closed_or_unreachable(request_id: str, err: RPCError) -> Refusal:
        if err.status == RPCStatusCode.NOT_FOUND:
            return Refusal(f"Request {request_id} is closed or has no running lifecycle.")
        return Refusal(f"The workflow service could not be reached for request {request_id}; try again shortly.")
