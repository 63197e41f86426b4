"""Activities of the shielding lifecycle: each one changes the store and its audit log in one transaction.

Every input carries an `operation_key` built by the workflow from the request id and the step, so a retried
activity returns its first result instead of acting (and auditing) twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel, Field
from temporalio import activity

from shielding import store
from shielding.domain import AuditAction, ShieldingRequestInput, Stage
from shielding.log import get_logger

log = get_logger(__name__)


class ShieldRecordInput(BaseModel):
    request: ShieldingRequestInput
    form_due_at: datetime
    operation_key: str


class LiftShieldInput(BaseModel):
    request_id: str
    action: AuditAction
    stage: Stage
    actor: str
    reason: str
    operation_key: str
    notify_requestor: str | None = None


class FormInput(BaseModel):
    request_id: str
    document_ids: list[str]
    actor: str
    operation_key: str
    refusal_reason: str | None = None


class StepInput(BaseModel):
    request_id: str
    action: AuditAction
    actor: str
    reason: str
    operation_key: str
    stage: Stage | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    reviewer_subject: str | None = None
    reviewer_body: str | None = None


class RequestorNotice(BaseModel):
    request_id: str
    subject: str
    body: str
    operation_key: str


class ShieldingActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn
    async def shield_record(self, params: ShieldRecordInput) -> store.ShieldResult:
        result = await store.shield_request(self._pool, params.request, params.operation_key, params.form_due_at)
        log.info(
            "intake",
            request_id=params.request.request_id,
            stage=result.stage.value,
            children=len(params.request.children),
        )
        return result

    @activity.defn
    async def unshield_record(self, params: LiftShieldInput) -> store.StepResult:
        result = await store.lift_shield(
            self._pool,
            request_id=params.request_id,
            action=params.action,
            stage=params.stage,
            actor=params.actor,
            reason=params.reason,
            operation_key=params.operation_key,
            notify_requestor=params.notify_requestor,
        )
        log.info("unshielded", request_id=params.request_id, action=params.action.value, count=len(result.children))
        return result

    @activity.defn
    async def accept_form(self, params: FormInput) -> store.StepResult:
        result = await store.accept_form(
            self._pool,
            request_id=params.request_id,
            document_ids=params.document_ids,
            actor=params.actor,
            operation_key=params.operation_key,
        )
        log.info("form accepted", request_id=params.request_id, documents=len(params.document_ids))
        return result

    @activity.defn
    async def refuse_form(self, params: FormInput) -> store.StepResult:
        result = await store.refuse_form(
            self._pool,
            request_id=params.request_id,
            document_ids=params.document_ids,
            actor=params.actor,
            reason=params.refusal_reason or "form refused",
            operation_key=params.operation_key,
        )
        log.info("form refused", request_id=params.request_id)
        return result

    @activity.defn
    async def record_step(self, params: StepInput) -> store.StepResult:
        reviewers = (
            (params.reviewer_subject, params.reviewer_body or "") if params.reviewer_subject is not None else None
        )
        result = await store.record_step(
            self._pool,
            request_id=params.request_id,
            action=params.action,
            actor=params.actor,
            reason=params.reason,
            operation_key=params.operation_key,
            stage=params.stage,
            details=params.details,
            notify_reviewers=reviewers,
        )
        log.info("step", request_id=params.request_id, action=params.action.value)
        return result

    @activity.defn
    async def notify_requestor(self, params: RequestorNotice) -> store.StepResult:
        return await store.notify_requestor(
            self._pool,
            request_id=params.request_id,
            subject=params.subject,
            body=params.body,
            operation_key=params.operation_key,
        )

    def all(self) -> list[Any]:
        return [
            self.shield_record,
            self.unshield_record,
            self.accept_form,
            self.refuse_form,
            self.record_step,
            self.notify_requestor,
        ]
