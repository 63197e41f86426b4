"""What intake officers work from: the requests still waiting for their written form, and one request's record.

Read from the `shielding_requests` table (not from Temporal visibility and its `ShieldingStage` attribute): the
table is written in the same transaction as the step it records (a request is shielded with its form deadline;
a form is received with its `form-received` audit entry), so the list is never behind what the officer was just
told, it is sorted and limited in PostgreSQL, and it does not empty when the workflow service is unreachable.

A received form sets `form_received_at` (not the stage), so "waiting for the form" is: open, shielded, a
deadline, no form yet. Children come as their uids and names only (what every role may see of a shielded
record); nothing here reads an address, a carer, a school or a GP.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
from pydantic import BaseModel, ConfigDict

# The forms-due list a page at a time (a council can have hundreds waiting after a busy week).
PAGE_SIZE = 50


class ChildName(BaseModel):
    model_config = ConfigDict(frozen=True)

    uid: str
    given_name: str
    family_name: str


class AwaitingForm(BaseModel):
    """A request whose written form has not arrived: when the call was, when it was shielded, when the form is due."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    called_at: datetime
    shielded_at: datetime
    form_due_at: datetime
    received_by: str
    children: list[ChildName]


class RequestChild(BaseModel):
    """What intake did for one child named on a request: shielded by it, or already shielded by another."""

    model_config = ConfigDict(frozen=True)

    uid: str
    given_name: str
    family_name: str
    outcome: str  # 'shielded', 'duplicate' or 'linked-duplicate-record'
    existing_request_id: str | None = None
    unshielded_at: datetime | None = None


class RequestRecord(BaseModel):
    """The request's own row: who took it and when it closed (the workflow's status does not carry these)."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    stage: str
    received_by: str
    received_at: datetime
    called_at: datetime
    shielded_at: datetime | None = None
    form_due_at: datetime | None = None
    closed_at: datetime | None = None
    closed_reason: str | None = None
    children: list[RequestChild]


class AwaitingFormPage(BaseModel):
    """One page of the requests waiting for their form, and how many wait in all."""

    model_config = ConfigDict(frozen=True)

    items: list[AwaitingForm]
    total: int


# Open, shielded, with a deadline and no form yet: the partial index shielding_requests_awaiting_form (0015).
_AWAITING_FORM = """r.closed_at IS NULL AND r.shielded_at IS NOT NULL AND r.form_due_at IS NOT NULL
                    AND r.form_received_at IS NULL"""
AWAITING_FORM_COUNT = f"SELECT count(*) FROM shielding_requests r WHERE {_AWAITING_FORM}"  # noqa: S608 (constant)
AWAITING_FORM_PAGE = f"""SELECT r.request_id, r.called_at, r.shielded_at, r.form_due_at, r.received_by,
          coalesce(
            (SELECT jsonb_agg(jsonb_build_object('uid', c.uid, 'given_name', c.given_name,
                                                 'family_name', c.family_name)
                              ORDER BY lower(c.family_name), lower(c.given_name), c.uid)
             FROM request_children rc JOIN children c ON c.uid = rc.child_uid
             WHERE rc.request_id = r.request_id AND rc.outcome <> 'duplicate'),
            '[]'::jsonb) AS children
   FROM shielding_requests r
   WHERE {_AWAITING_FORM}
   ORDER BY r.form_due_at, r.request_id
   LIMIT $1 OFFSET $2"""  # noqa: S608 (a constant)


async def awaiting_form(pool: asyncpg.Pool, *, limit: int = PAGE_SIZE, offset: int = 0) -> AwaitingFormPage:
    """Open requests with no form yet, the soonest deadline first (request id breaks ties, so pages are stable)."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        # One snapshot for the count and the page: "21 to 40 of 45" is never made of two moments.
        total = await conn.fetchval(AWAITING_FORM_COUNT)
        rows = await conn.fetch(AWAITING_FORM_PAGE, limit, offset)
    return AwaitingFormPage(items=[AwaitingForm.model_validate(dict(row)) for row in rows], total=total)


async def child_names(pool: asyncpg.Pool, uids: list[str]) -> dict[str, tuple[str, str]]:
    """Given and family names by uid (identity fields, shown for shielded children too)."""
    rows = await pool.fetch("SELECT uid, given_name, family_name FROM children WHERE uid = ANY($1::text[])", uids)
    return {row["uid"]: (row["given_name"], row["family_name"]) for row in rows}


async def request_record(pool: asyncpg.Pool, request_id: str) -> RequestRecord | None:
    """The request's row and its children (uids, names, outcomes), or None when no request has this id.

    One statement (the children aggregated beside the row): every request page, and the intake confirmation
    while the caller waits, reads it."""
    row = await pool.fetchrow(
        """SELECT r.request_id, r.stage, r.received_by, r.received_at, r.called_at, r.shielded_at, r.form_due_at,
                  r.closed_at, r.closed_reason,
                  coalesce(
                    (SELECT jsonb_agg(jsonb_build_object(
                                'uid', rc.child_uid, 'given_name', c.given_name, 'family_name', c.family_name,
                                'outcome', rc.outcome, 'existing_request_id', rc.existing_request_id,
                                'unshielded_at', rc.unshielded_at)
                              ORDER BY lower(c.family_name), lower(c.given_name), rc.child_uid)
                     FROM request_children rc JOIN children c ON c.uid = rc.child_uid
                     WHERE rc.request_id = r.request_id),
                    '[]'::jsonb) AS children
           FROM shielding_requests r WHERE r.request_id = $1""",
        request_id,
    )
    return RequestRecord.model_validate(dict(row)) if row is not None else None
