"""simulated_lifecycle: one request from intake through 18 months of reviews on the time-skipping server.

The time-skipping server has no updates, so (as in tests/test_lifecycle.py) the lifecycle is started
directly and the form and review decisions arrive through the workflow's signals. The worker runs in this
process against the benchmark's PostgreSQL; activities run in real time while timers are skipped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.shielding import ShieldingActivities
from bench.stack import binary
from shielding import store
from shielding.action_auth import ActionKeys, SignedAction, action_keys_from_settings, signed
from shielding.domain import (
    Criterion,
    FormSubmission,
    Requestor,
    RequestorType,
    RequestStatus,
    ReviewDecision,
    ReviewDecisionKind,
    ShieldingRequestInput,
    Stage,
    StatusQuery,
)
from shielding.settings import Settings
from shielding.temporal import data_converter, register_search_attributes
from starter import new_request_id
from worker.main import build_worker
from workflows.shielding_request import ShieldingLifecycleInput, ShieldingRequestWorkflow, review_due_at

TASK_QUEUE = "bench-simulated"
REVIEWS = 4  # 7-day, 6-, 12- and 18-month
MINUTE = timedelta(minutes=1)


async def _eventually(probe: Callable[[], Awaitable[Any]], accept: Callable[[Any], bool], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    value: Any = None
    while True:
        try:
            value = await probe()
            if accept(value):
                return value
        except RPCError:
            pass  # a run handing over to its continuation, say
        if time.monotonic() > deadline:
            raise RuntimeError(f"simulated lifecycle: condition never held; last value {value!r}")
        await asyncio.sleep(0.02)


async def _status(handle: WorkflowHandle[Any, Any]) -> RequestStatus:
    return await handle.query(ShieldingRequestWorkflow.status, StatusQuery())


async def simulated_lifecycle(settings: Settings, pool: Any, uid: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server"), data_converter=data_converter(settings)
    )
    server_start_s = time.perf_counter() - t0
    try:
        await register_search_attributes(env.client)
        # Signed as the service signs them: the intake at this machine's clock (the intake activity checks it
        # against the worker's), the signals at the time-skipping server's (the workflow checks them against it).
        keys = ActionKeys.from_spec(action_keys_from_settings(settings))
        namespace = env.client.namespace
        worker = build_worker(
            env.client, ShieldingActivities(pool), settings.model_copy(update={"task_queue": TASK_QUEUE})
        )
        async with worker:
            t1 = time.perf_counter()
            began: datetime = await env.get_current_time()
            request = ShieldingRequestInput(
                request_id=new_request_id(),
                children=[uid],
                criteria=[Criterion.REFUGE],
                reason="Mother and children placed in a refuge after threats.",
                requestor=Requestor(
                    type=RequestorType.PROFESSIONAL,
                    name="Sam Achebe",
                    organisation="Westminster Family Services",
                    phone="020 7641 1899",
                ),
                called_at=began,
                actor="bench-intake",
            )
            request = signed(
                request, keys, namespace=namespace, workflow_id=request.request_id, action=SignedAction.INTAKE
            )
            handle = await env.client.start_workflow(
                ShieldingRequestWorkflow.run,
                ShieldingLifecycleInput(request=request),
                id=request.request_id,
                task_queue=TASK_QUEUE,
            )
            status = await _eventually(lambda: _status(handle), lambda s: s.stage != Stage.INTAKE)
            if status.stage != Stage.AWAITING_FORM or status.shielded_at is None:
                raise RuntimeError(f"simulated intake ended {status.stage.value}")
            shielded_at = status.shielded_at
            intake_s = time.perf_counter() - t1
            documents = await store.stage_documents(pool, request.request_id, [("form.pdf", b"%PDF-1.7 form")])
            form = FormSubmission(document_ids=documents, actor="bench-officer")
            form = signed(
                form,
                keys,
                namespace=namespace,
                workflow_id=request.request_id,
                action=SignedAction.RECEIVE_FORM,
                issued_at=await env.get_current_time(),
            )
            await handle.signal(ShieldingRequestWorkflow.form_received, form)
            await _eventually(lambda: _status(handle), lambda s: s.form_received_at is not None)
            latest = env.client.get_workflow_handle(request.request_id)  # follows continue-as-new
            for index in range(REVIEWS):
                due = review_due_at(shielded_at, index)
                remaining = due + MINUTE - await env.get_current_time()
                if remaining > timedelta(0):
                    await env.sleep(remaining)
                await _eventually(lambda: _status(latest), lambda s: s.stage == Stage.REVIEW_DUE)
                decision = signed(
                    ReviewDecision(decision=ReviewDecisionKind.APPROVE, actor="bench-reviewer"),
                    keys,
                    namespace=namespace,
                    workflow_id=request.request_id,
                    action=SignedAction.DECIDE_REVIEW,
                    issued_at=await env.get_current_time(),
                )
                await latest.signal(ShieldingRequestWorkflow.review_decided, decision)
                following = review_due_at(shielded_at, index + 1)

                def approved(s: RequestStatus, following: datetime = following) -> bool:
                    return s.stage == Stage.SHIELDED and s.next_review_at == following

                await _eventually(lambda: _status(latest), approved)
            wall_s = time.perf_counter() - t1
            ended: datetime = await env.get_current_time()
            # The raw call: the time-skipping server's search attribute encoding trips the SDK's describe().
            raw = await env.client.workflow_service.describe_workflow_execution(
                DescribeWorkflowExecutionRequest(
                    namespace=env.client.namespace, execution=WorkflowExecution(workflow_id=request.request_id)
                )
            )
            latest_run_id = raw.workflow_execution_info.execution.run_id
    finally:
        await env.shutdown()
    return {
        "wall_s": round(wall_s, 3),
        "intake_s": round(intake_s, 3),
        "server_start_s": round(server_start_s, 3),
        "reviews_approved": REVIEWS,
        "simulated_days": round((ended - began) / timedelta(days=1), 1),
        "continued_as_new": latest_run_id != handle.result_run_id,
    }
