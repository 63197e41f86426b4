"""Shared steps for lifecycle tests: drafts and inputs, starting a request, signed actions, polling, skipping time,
the audit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from google.protobuf.empty_pb2 import Empty
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from shielding import action_auth
from shielding.action_auth import ActionKeys, Signable, SignedAction
from shielding.domain import (
    Criterion,
    FormSubmission,
    IntakeAcknowledgement,
    Requestor,
    RequestorType,
    RequestStatus,
    ReviewDecision,
    ShieldingRequestInput,
    Stage,
    StatusQuery,
    UnshieldRequest,
)
from shielding.lifecycle import ShieldingLifecycleInput
from starter import IntakeDraft, new_request_id
from tests.helpers.servers import TEST_ACTION_KEYS
from workflows.shielding_request import ShieldingRequestWorkflow

ACTIONS: dict[type, SignedAction] = {
    ShieldingRequestInput: SignedAction.INTAKE,
    FormSubmission: SignedAction.RECEIVE_FORM,
    ReviewDecision: SignedAction.DECIDE_REVIEW,
    UnshieldRequest: SignedAction.UNSHIELD,
}

REQUESTOR = Requestor(
    type=RequestorType.PROFESSIONAL,
    name="Dana Whitcombe",
    organisation="Westminster Children's Services",
    phone="020 7641 0000",
)


def draft(uids: list[str], **overrides: object) -> IntakeDraft:
    """What an intake officer would type for a refuge case; `overrides` replace single fields."""
    fields: dict[str, object] = {
        "children": uids,
        "criteria": ["refuge"],
        "reason": "Mother and children placed in a refuge after threats.",
        "requestor_type": "professional",
        "requestor_name": "Sam Achebe",
        "requestor_organisation": "Westminster Family Services",
        "requestor_phone": "020 7641 1899",
    }
    fields.update(overrides)
    return IntakeDraft(**fields)  # type: ignore[arg-type]


def intake(uids: list[str], called_at: datetime, **overrides: Any) -> ShieldingRequestInput:
    fields: dict[str, Any] = {
        "request_id": new_request_id(),
        "children": uids,
        "criteria": [Criterion.DOMESTIC_VIOLENCE],
        "reason": "Father subject to a non-molestation order; family moved to a refuge.",
        "requestor": REQUESTOR,
        "called_at": called_at,
        "actor": "officer-intake",
    }
    fields.update(overrides)
    return ShieldingRequestInput(**fields)


async def server_now(client: Client) -> datetime:
    """The Temporal server's clock: the time-skipping server's own (it skips ahead), else this machine's."""
    try:
        answer = await client.test_service.get_current_time(Empty())
    except RPCError:  # the dev server has no test service
        return datetime.now(UTC)
    return answer.time.ToDatetime().replace(tzinfo=UTC)


async def signed(
    client: Client,
    workflow_id: str,
    argument: Signable,
    *,
    keys: str = TEST_ACTION_KEYS,
    action: str | None = None,
    at: datetime | None = None,
) -> Signable:
    """`argument` signed as `ShieldingService` signs it; by default at the server's clock, which a workflow
    checks a staff action against (the time-skipping server's runs ahead of this machine's)."""
    return action_auth.signed(
        argument,
        ActionKeys.from_spec(keys),
        namespace=client.namespace,
        workflow_id=workflow_id,
        action=action or ACTIONS[type(argument)],
        issued_at=at or await server_now(client),
    )


async def send_signed(
    client: Client, handle: WorkflowHandle[Any, Any], signal: Any, argument: Signable, *, keys: str = TEST_ACTION_KEYS
) -> None:
    """A staff action through its signal twin (the time-skipping server has no updates), signed by "the service"."""
    await handle.signal(signal, await signed(client, handle.id, argument, keys=keys))


async def start(
    client: Client, task_queue: str, request: ShieldingRequestInput, *, keys: str | None = TEST_ACTION_KEYS
) -> tuple[WorkflowHandle[Any, Any], IntakeAcknowledgement]:
    """Start a lifecycle as the service's intake would (signed with `keys`; None sends it unsigned)."""
    if keys is not None:
        # The intake activity checks its signature against the worker's clock, not the workflow's.
        request = await signed(client, request.request_id, request, keys=keys, at=datetime.now(UTC))
    handle = await client.start_workflow(
        ShieldingRequestWorkflow.run,
        ShieldingLifecycleInput(request=request),
        id=request.request_id,
        task_queue=task_queue,
    )
    ack = await eventually(
        lambda: handle.query(ShieldingRequestWorkflow.intake_acknowledgement, StatusQuery()),
        lambda a: a.stage != Stage.INTAKE,
    )
    return handle, ack


async def status(handle: WorkflowHandle[Any, Any]) -> RequestStatus:
    return await handle.query(ShieldingRequestWorkflow.status, StatusQuery())


async def eventually(
    probe: Callable[[], Awaitable[Any]], accept: Callable[[Any], bool], *, timeout: float = 45.0
) -> Any:
    """Poll `probe` (real time) until `accept` holds; activities run in real time even when timers skip."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            value = await probe()
        except RPCError as err:
            # A query can time out while a loaded machine catches up; only the overall deadline counts.
            value = err
        else:
            if accept(value):
                return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition never held; last value: {value!r}")
        await asyncio.sleep(0.05)


async def status_where(handle: WorkflowHandle[Any, Any], accept: Callable[[RequestStatus], bool]) -> RequestStatus:
    return await eventually(lambda: status(handle), accept)  # type: ignore[no-any-return]


async def shielded_uids(pool: asyncpg.Pool, uids: list[str]) -> set[str]:
    rows = await pool.fetch(
        "SELECT uid FROM children WHERE uid = ANY($1::text[]) AND shield_request_id IS NOT NULL", uids
    )
    return {r["uid"] for r in rows}


async def actions(pool: asyncpg.Pool, request_id: str) -> list[str]:
    rows = await pool.fetch("SELECT action FROM audit_log WHERE request_id = $1 ORDER BY entry_id", request_id)
    return [r["action"] for r in rows]


async def env_now(env: WorkflowEnvironment) -> datetime:
    return await env.get_current_time()


async def advance_to(env: WorkflowEnvironment, instant: datetime, offset: timedelta = timedelta(0)) -> None:
    """Skip time until `instant + offset` (a negative offset stops just before it)."""
    remaining = instant + offset - await env_now(env)
    if remaining > timedelta(0):
        await env.sleep(remaining)


async def shielded_by(pool: asyncpg.Pool, uids: list[str]) -> dict[str, str]:
    """Which of these children are shielded, and under which request."""
    rows = await pool.fetch(
        "SELECT uid, shield_request_id FROM children WHERE uid = ANY($1::text[]) AND shield_request_id IS NOT NULL",
        uids,
    )
    return {r["uid"]: r["shield_request_id"] for r in rows}
