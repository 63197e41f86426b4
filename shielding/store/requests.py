"""Shielding requests: shielding the children at intake, lifting the shield, and the audited steps between.

Each write runs once per operation key (`db.once`): a retried activity gets its first result back.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from shielding import messages
from shielding.domain import AuditAction, ChildOutcome, ShieldingRequestInput, Stage
from shielding.steps import AuditedStep, LiftShield, RequestorMessage, ShieldChildren, ShieldResult, StepResult
from shielding.store.audit import MessageKind, append_audit, notify_requestor, notify_reviewers
from shielding.store.db import once

# The actor of the audit entry refusing an intake the service did not sign: whoever sent it is unknown.
UNAUTHENTICATED_ACTOR = "unauthenticated"


async def shield_request(pool: asyncpg.Pool, command: ShieldChildren, operation_key: str) -> ShieldResult:
    """Shield every named child not shielded yet, in one transaction; the caller is told only after commit."""

    async def operation(conn: asyncpg.Connection) -> ShieldResult:
        request = command.request
        uids = list(dict.fromkeys(request.children))
        shielded_at: datetime = await conn.fetchval("SELECT now()")
        # Lock the children so two requests for one child cannot both claim it.
        rows = await conn.fetch(
            "SELECT uid, shield_request_id FROM children WHERE uid = ANY($1::text[]) ORDER BY uid FOR UPDATE",
            uids,
        )
        current: dict[str, str | None] = {r["uid"]: r["shield_request_id"] for r in rows}
        await _insert_request(conn, request, uids)
        unknown = [uid for uid in uids if uid not in current]
        if unknown:
            return await _refuse_unknown(conn, request, unknown, shielded_at)
        outcomes = [await _shield_child(conn, request, uid, current[uid], shielded_at) for uid in uids]
        if all(o.existing_request_id for o in outcomes):
            existing_ids = sorted({o.existing_request_id for o in outcomes if o.existing_request_id})
            message = messages.already_shielded(existing_ids)
            await close_request(conn, request.request_id, Stage.DUPLICATE, message)
            return ShieldResult(stage=Stage.DUPLICATE, shielded_at=shielded_at, children=outcomes, message=message)
        await conn.execute(
            "UPDATE shielding_requests SET stage = $2, shielded_at = $3, form_due_at = $4 WHERE request_id = $1",
            request.request_id,
            Stage.AWAITING_FORM.value,
            shielded_at,
            command.form_due_at,
        )
        return ShieldResult(stage=Stage.AWAITING_FORM, shielded_at=shielded_at, children=outcomes)

    return await once(pool, operation_key, ShieldResult, operation)


async def refuse_unauthenticated(
    pool: asyncpg.Pool, command: ShieldChildren, operation_key: str, reason: str
) -> ShieldResult:
    """Refuse an intake the service did not sign: nothing is shielded and no request is recorded, only the refusal.

    The claimed actor is kept in the details, never as the entry's actor. Its own operation key, so a forged
    start can neither read nor take the place of the result of a genuine intake under the same request id.
    """

    async def operation(conn: asyncpg.Connection) -> ShieldResult:
        request = command.request
        at: datetime = await conn.fetchval("SELECT now()")
        await append_audit(
            conn,
            action=AuditAction.REFUSED,
            actor=UNAUTHENTICATED_ACTOR,
            request_id=request.request_id,
            reason=reason,
            details={"claimed_actor": request.actor, "children": list(dict.fromkeys(request.children))},
        )
        return ShieldResult(stage=Stage.REFUSED, shielded_at=at, children=[], message=reason)

    return await once(pool, f"{operation_key}:unauthenticated", ShieldResult, operation)


async def _insert_request(conn: asyncpg.Connection, request: ShieldingRequestInput, uids: list[str]) -> None:
    await conn.execute(
        """INSERT INTO shielding_requests (request_id, stage, criteria, other_description, reason, requestor,
                                           called_at, received_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        request.request_id,
        Stage.INTAKE.value,
        [c.value for c in request.criteria],
        request.other_description,
        request.reason,
        request.requestor.model_dump(mode="json", exclude_none=True),
        request.called_at,
        request.actor,
    )
    await append_audit(
        conn,
        action=AuditAction.RECEIVED,
        actor=request.actor,
        request_id=request.request_id,
        requestor=request.requestor,
        reason=request.reason,
        details={
            "criteria": [c.value for c in request.criteria],
            "children": uids,
            "called_at": request.called_at.isoformat(),
        },
    )


async def _refuse_unknown(
    conn: asyncpg.Connection, request: ShieldingRequestInput, unknown: list[str], at: datetime
) -> ShieldResult:
    message = messages.unknown_children(unknown)
    await close_request(conn, request.request_id, Stage.REFUSED, message)
    await append_audit(
        conn,
        action=AuditAction.REFUSED,
        actor=request.actor,
        request_id=request.request_id,
        requestor=request.requestor,
        reason=message,
        details={"unknown_children": unknown},
    )
    return ShieldResult(stage=Stage.REFUSED, shielded_at=at, children=[], message=message)


async def _shield_child(
    conn: asyncpg.Connection, request: ShieldingRequestInput, uid: str, existing: str | None, at: datetime
) -> ChildOutcome:
    if existing is None:
        await conn.execute("UPDATE children SET shield_request_id = $2 WHERE uid = $1", uid, request.request_id)
        await conn.execute(
            """INSERT INTO request_children (request_id, child_uid, outcome, shielded_at)
               VALUES ($1, $2, 'shielded', $3)""",
            request.request_id,
            uid,
            at,
        )
        await append_audit(
            conn,
            action=AuditAction.SHIELDED,
            actor=request.actor,
            request_id=request.request_id,
            child_uid=uid,
            reason=messages.SHIELDED_AT_INTAKE,
        )
        return ChildOutcome(uid=uid, shielded=True)
    await conn.execute(
        """INSERT INTO request_children (request_id, child_uid, outcome, existing_request_id)
           VALUES ($1, $2, 'duplicate', $3)""",
        request.request_id,
        uid,
        existing,
    )
    # Recorded against the lifecycle that already shields the child.
    await append_audit(
        conn,
        action=AuditAction.DUPLICATE,
        actor=request.actor,
        request_id=existing,
        child_uid=uid,
        requestor=request.requestor,
        reason=request.reason,
        details={"duplicate_request_id": request.request_id, "criteria": [c.value for c in request.criteria]},
    )
    return ChildOutcome(uid=uid, shielded=True, existing_request_id=existing)


async def close_request(conn: asyncpg.Connection, request_id: str, stage: Stage, reason: str) -> None:
    await conn.execute(
        "UPDATE shielding_requests SET stage = $2, closed_at = now(), closed_reason = $3 WHERE request_id = $1",
        request_id,
        stage.value,
        reason,
    )


async def lift_shield(pool: asyncpg.Pool, lift: LiftShield, operation_key: str) -> StepResult:
    """Unshield every child the request shields (lapse, review decision or change of circumstances)."""

    async def operation(conn: asyncpg.Connection) -> StepResult:
        rows = await conn.fetch(
            """UPDATE children SET shield_request_id = NULL, updated_at = now() WHERE shield_request_id = $1
               RETURNING uid""",
            lift.request_id,
        )
        uids = sorted(r["uid"] for r in rows)
        at: datetime = await conn.fetchval("SELECT now()")
        await conn.execute(
            """UPDATE request_children SET unshielded_at = $2
               WHERE request_id = $1 AND shielded_at IS NOT NULL AND unshielded_at IS NULL""",
            lift.request_id,
            at,
        )
        await close_request(conn, lift.request_id, lift.stage, lift.reason)
        # One entry per child unshielded, or one for the request when none was (a duplicate's children).
        for uid in uids or [None]:
            await append_audit(
                conn,
                action=lift.action,
                actor=lift.actor,
                request_id=lift.request_id,
                child_uid=uid,
                reason=lift.reason,
            )
        if lift.notify_requestor:
            subject = messages.requestor_subject(lift.request_id)
            kind = MessageKind.LAPSE if lift.action == AuditAction.LAPSED else MessageKind.GENERIC
            await notify_requestor(conn, lift.request_id, subject, lift.notify_requestor, template=kind)
        return StepResult(children=uids, at=at)

    return await once(pool, operation_key, StepResult, operation)


# The kind of message (its Notify template) each audited step sends its reviewers.
_STEP_MESSAGES = {AuditAction.REVIEW_DUE: MessageKind.REVIEW_DUE, AuditAction.REMINDER: MessageKind.REVIEW_REMINDER}


async def record_step(pool: asyncpg.Pool, step: AuditedStep, operation_key: str) -> StepResult:
    """An audited step that changes no shield: review due, reminder, approval."""

    async def operation(conn: asyncpg.Connection) -> StepResult:
        if step.stage is not None:
            await conn.execute(
                "UPDATE shielding_requests SET stage = $2 WHERE request_id = $1", step.request_id, step.stage.value
            )
        await append_audit(
            conn,
            action=step.action,
            actor=step.actor,
            request_id=step.request_id,
            reason=step.reason,
            details=step.details,
        )
        if step.reviewer_subject is not None:
            kind = _STEP_MESSAGES.get(step.action, MessageKind.GENERIC)
            await notify_reviewers(
                conn, step.request_id, step.reviewer_subject, step.reviewer_body or "", template=kind
            )
        return StepResult(at=await conn.fetchval("SELECT now()"))

    return await once(pool, operation_key, StepResult, operation)


async def send_requestor_message(pool: asyncpg.Pool, message: RequestorMessage, operation_key: str) -> StepResult:
    """Queue a message to the requestor's contact (never any child detail: the body is written by the caller)."""

    async def operation(conn: asyncpg.Connection) -> StepResult:
        # The one message a workflow sends its requestor directly: the receipt of the written form.
        await notify_requestor(
            conn, message.request_id, message.subject, message.body, template=MessageKind.FORM_RECEIPT
        )
        return StepResult()

    return await once(pool, operation_key, StepResult, operation)


# ---------------------------------------------------------------------------------------------- reading


async def request_exists(pool: asyncpg.Pool, request_id: str) -> bool:
    return bool(await pool.fetchval("SELECT 1 FROM shielding_requests WHERE request_id = $1", request_id))


class ClosedRequest:
    """A request whose lifecycle has ended: its final stage and the form deadline it had."""

    def __init__(self, stage: str, form_due_at: datetime | None) -> None:
        self.stage = stage
        self.form_due_at = form_due_at


async def closed_request(pool: asyncpg.Pool, request_id: str) -> ClosedRequest | None:
    """The closed request, or None while its lifecycle runs."""
    row = await pool.fetchrow(
        "SELECT stage, form_due_at FROM shielding_requests WHERE request_id = $1 AND closed_at IS NOT NULL",
        request_id,
    )
    return ClosedRequest(row["stage"], row["form_due_at"]) if row else None


async def received_by(pool: asyncpg.Pool, request_id: str) -> str | None:
    """Who took the request at intake (they may not decide its review)."""
    return await pool.fetchval(  # type: ignore[no-any-return]
        "SELECT received_by FROM shielding_requests WHERE request_id = $1", request_id
    )
