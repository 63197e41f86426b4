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
from shielding import store
from shielding.log import get_logger

log = get_logger(__name__)


class ShieldingActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn
    async def shield_record(self, params: ShieldRecordInput) -> ShieldResult:
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
