"""Activities of the shielding lifecycle: each one changes the store and its audit log in one transaction."""

from __future__ import annotations

from typing import Any

import asyncpg
from temporalio import activity

from activities.models import (
    FormInput,
    LiftShieldInput,
    RequestorNotice,
    ShieldRecordInput,
    ShieldResult,
    StepInput,
    StepResult,
)
from shielding import action_auth, messages, store
from shielding.action_auth import SignedAction
from shielding.domain import ShieldingRequestInput
from shielding.log import get_logger
from shielding.store.requests import refuse_unauthenticated

log = get_logger(__name__)


def intake_refusal(request: ShieldingRequestInput) -> str | None:
    """Why this intake's start cannot be trusted (None: the service signed it, for this workflow, just now).

    Checked here rather than in the workflow, so the workflow issues the commands it always has. The time is
    when the workflow first scheduled this activity, so a retry (the database was down) is not made stale.
    """
    info = activity.info()
    return action_auth.verify_action(
        request.signature,
        namespace=info.workflow_namespace or "",
        workflow_id=info.workflow_id or "",
        action=SignedAction.INTAKE,
        argument=request,
        actor=request.actor,
        now=info.scheduled_time,
    )


class ShieldingActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn
    async def shield_record(self, params: ShieldRecordInput) -> ShieldResult:
        refusal = intake_refusal(params.request)
        if refusal is not None:
            reason = messages.intake_unauthenticated(refusal)
            result = await refuse_unauthenticated(self._pool, params, params.operation_key, reason)
            log.warning("intake refused: not signed by the service", request_id=params.request.request_id)
            return result
        result = await store.shield_request(self._pool, params, params.operation_key)
        log.info(
            "intake",
            request_id=params.request.request_id,
            stage=result.stage.value,
            children=len(params.request.children),
        )
        return result

    @activity.defn
    async def unshield_record(self, params: LiftShieldInput) -> StepResult:
        result = await store.lift_shield(self._pool, params, params.operation_key)
        log.info("unshielded", request_id=params.request_id, action=params.action.value, count=len(result.children))
        return result

    @activity.defn
    async def accept_form(self, params: FormInput) -> StepResult:
        result = await store.accept_form(self._pool, params, params.operation_key)
        log.info("form accepted", request_id=params.request_id, documents=len(params.document_ids))
        return result

    @activity.defn
    async def refuse_form(self, params: FormInput) -> StepResult:
        result = await store.refuse_form(self._pool, params, params.operation_key)
        log.info("form refused", request_id=params.request_id)
        return result

    @activity.defn
    async def record_step(self, params: StepInput) -> StepResult:
        result = await store.record_step(self._pool, params, params.operation_key)
        log.info("step", request_id=params.request_id, action=params.action.value)
        return result

    @activity.defn
    async def notify_requestor(self, params: RequestorNotice) -> StepResult:
        return await store.send_requestor_message(self._pool, params, params.operation_key)

    def all(self) -> list[Any]:
        return [
            self.shield_record,
            self.unshield_record,
            self.accept_form,
            self.refuse_form,
            self.record_step,
            self.notify_requestor,
        ]
