"""What reviewers work from: open requests whose review has fallen due, and requests still waiting for their
written form, with the dates that matter; filtered, sorted and paged in PostgreSQL.

Read from the `shielding_requests` table, not from Temporal visibility, because:
- it is written in the same transaction as the step it records (a review falls due: the stage and the
  `review-due` audit entry together; an approval: the stage and the `approved` entry), so the queue is never
  behind the audit log, whereas visibility is updated after the workflow task, eventually;
- PostgreSQL filters, sorts and pages on the server (`ORDER BY`, `LIMIT`), which Temporal's SQL visibility does
  not offer (no `ORDER BY` without Elasticsearch), and it holds who took each request (the own-request rule);
- the pages need no visibility query per page view, and a Temporal outage does not empty the queue.

The table keeps `stage` as the activities set it; a received form sets `form_received_at` (not the stage), and a
review's due time is in its `review-due` audit entry (`details.due_at`), so those are read from there. Nothing
here reads a child's record: only request ids, child uids, people's names and dates.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from shielding.domain import AuditAction, ReviewKind, Stage

# Reviews are reminded daily from a day after they fall due (shielding.lifecycle.REMINDER_INTERVAL): overdue.
OVERDUE_AFTER = timedelta(days=1)
PAGE_SIZE = 20


class QueueStatus(StrEnum):
    OVERDUE = "overdue"  # a review due for more than a day: the daily reminders have started
    DUE = "due"  # a review that has fallen due and is waiting for a decision
    FORM = "form"  # no review due; the written form has not arrived yet


class QueueSort(StrEnum):
    DUE = "due"  # when the review fell due, or when the form is due
    REQUEST = "request"


class QueueQuery(BaseModel):
    model_config = ConfigDict(frozen=True)

    statuses: frozenset[QueueStatus] = frozenset(QueueStatus)
    # The start of a request id (case-insensitive), to find one request.
    request_id: str | None = None
    # Leave out the requests this person took (they cannot decide those reviews).
    not_taken_by: str | None = None
    sort: QueueSort = QueueSort.DUE
    descending: bool = False
    limit: int = Field(default=PAGE_SIZE, ge=1, le=500)
    offset: int = Field(default=0, ge=0)


class QueueItem(BaseModel):
    request_id: str
    status: QueueStatus
    # When the review fell due; for a request waiting for its form, when the form is due.
    due_at: datetime
    review: ReviewKind | None = None
    form_due_at: datetime | None = None
    form_received_at: datetime | None = None
    received_by: str
    shielded_at: datetime
    children: list[str] = Field(default_factory=list)
    reminders: int = 0


class QueuePage(BaseModel):
    items: list[QueueItem]
    total: int


class ReviewSubject(BaseModel):
    """One request as a reviewer sees it before deciding: what was asked, when, by whom, and what is due."""

    request_id: str
    stage: Stage
    criteria: list[str]
    other_description: str | None = None
    reason: str
    received_by: str
    called_at: datetime
    shielded_at: datetime | None = None
    form_due_at: datetime | None = None
    form_received_at: datetime | None = None
    closed_at: datetime | None = None
    closed_reason: str | None = None
    children: list[str] = Field(default_factory=list)
    # The review that has fallen due (None when none is due), and the reminders sent since.
    review: ReviewKind | None = None
    review_due_at: datetime | None = None
    reminders: int = 0
    # The next review the last approval scheduled (None before the first approval).
    next_review_at: datetime | None = None


class Decision(BaseModel):
    """The latest review decision or unshielding recorded on a request."""

    action: AuditAction
    actor: str
    at: datetime
    review: ReviewKind | None = None
    next_review_at: datetime | None = None


_OPEN = """
    SELECT r.request_id, r.stage, r.received_by, r.shielded_at, r.form_due_at, r.form_received_at,
           due.entry_id AS review_entry, due.due_at AS review_due_at, due.review,
           (SELECT array_agg(c.child_uid ORDER BY c.child_uid) FROM request_children c
             WHERE c.request_id = r.request_id AND c.outcome <> 'duplicate' AND c.unshielded_at IS NULL) AS children
    FROM shielding_requests r
    LEFT JOIN LATERAL (
        SELECT a.entry_id, (a.details->>'due_at')::timestamptz AS due_at, a.details->>'review' AS review
        FROM audit_log a
        WHERE a.request_id = r.request_id AND a.action = 'review-due'
        ORDER BY a.entry_id DESC LIMIT 1
    ) due ON r.stage = 'review-due'
"""

_QUEUE = f"""
WITH open_requests AS (
    {_OPEN}
    WHERE r.closed_at IS NULL AND r.shielded_at IS NOT NULL
      AND (r.stage = 'review-due' OR r.form_received_at IS NULL)
), queue AS (
    SELECT o.*,
           CASE WHEN o.stage <> 'review-due' THEN 'form'
                WHEN coalesce(o.review_due_at, o.shielded_at) + $1::interval <= $2::timestamptz THEN 'overdue'
                ELSE 'due' END AS status,
           CASE WHEN o.stage = 'review-due' THEN coalesce(o.review_due_at, o.shielded_at)
                ELSE o.form_due_at END AS due_at
    FROM open_requests o
)
SELECT q.*, count(*) OVER () AS total,
       (SELECT count(*) FROM audit_log a WHERE a.request_id = q.request_id AND a.action = 'reminder'
           AND a.entry_id > q.review_entry) AS reminders
FROM queue q
WHERE q.status = ANY($3::text[])
  AND ($4::text IS NULL OR q.request_id LIKE $4 || '%')
  AND ($5::text IS NULL OR q.received_by <> $5)
"""

# Only these orderings, so nothing a person sends reaches the SQL text; the request id breaks ties.
_ORDER = {
    (QueueSort.DUE, False): "ORDER BY q.due_at ASC NULLS LAST, q.request_id ASC",
    (QueueSort.DUE, True): "ORDER BY q.due_at DESC NULLS LAST, q.request_id ASC",
    (QueueSort.REQUEST, False): "ORDER BY q.request_id ASC",
    (QueueSort.REQUEST, True): "ORDER BY q.request_id DESC",
}


async def queue_counts(pool: asyncpg.Pool, *, now: datetime | None = None) -> dict[str, int]:
    """How many requests the reviewers' queue holds of each status ('due', 'overdue', 'form'), for the gauges."""
    rows = await pool.fetch(
        f"SELECT status, count(*) AS n FROM ({_QUEUE}) counted GROUP BY status",
        OVERDUE_AFTER,
        now or datetime.now(UTC),
        sorted(s.value for s in QueueStatus),
        None,
        None,
    )
    return {row["status"]: int(row["n"]) for row in rows}


def _like_prefix(text: str | None) -> str | None:
    if not text:
        return None
    return text.strip().upper().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") or None


async def review_queue(pool: asyncpg.Pool, query: QueueQuery, *, now: datetime | None = None) -> QueuePage:
    """One page of the queue: reviews due (overdue first when sorted by date) and requests waiting for a form."""
    sql = f"{_QUEUE} {_ORDER[(query.sort, query.descending)]} LIMIT $6 OFFSET $7"
    rows = await pool.fetch(
        sql,
        OVERDUE_AFTER,
        now or datetime.now(UTC),
        sorted(s.value for s in query.statuses),
        _like_prefix(query.request_id),
        query.not_taken_by,
        query.limit,
        query.offset,
    )
    total = rows[0]["total"] if rows else 0
    if not rows and query.offset:
        # A page past the end (the list shrank since the link was made): say how many there are.
        count = await pool.fetchval(
            f"SELECT count(*) FROM ({_QUEUE}) counted",
            OVERDUE_AFTER,
            now or datetime.now(UTC),
            sorted(s.value for s in query.statuses),
            _like_prefix(query.request_id),
            query.not_taken_by,
        )
        total = int(count or 0)
    items = [
        QueueItem(
            request_id=r["request_id"],
            status=QueueStatus(r["status"]),
            due_at=r["due_at"],
            review=ReviewKind(r["review"]) if r["review"] else None,
            form_due_at=r["form_due_at"] if r["form_received_at"] is None else None,
            form_received_at=r["form_received_at"],
            received_by=r["received_by"],
            shielded_at=r["shielded_at"],
            children=list(r["children"] or []),
            reminders=r["reminders"],
        )
        for r in rows
        if r["due_at"] is not None
    ]
    return QueuePage(items=items, total=int(total))


async def review_subject(pool: asyncpg.Pool, request_id: str) -> ReviewSubject | None:
    """The request as the decision page shows it; None when there is no such request."""
    row = await pool.fetchrow(
        f"""WITH one AS ({_OPEN} WHERE r.request_id = $1)
            SELECT one.*, s.criteria, s.other_description, s.reason, s.called_at, s.closed_at, s.closed_reason,
                   (SELECT count(*) FROM audit_log a WHERE a.request_id = one.request_id AND a.action = 'reminder'
                       AND a.entry_id > one.review_entry) AS reminders,
                   (SELECT (a.details->>'next_review_at')::timestamptz FROM audit_log a
                     WHERE a.request_id = one.request_id AND a.action = 'approved'
                     ORDER BY a.entry_id DESC LIMIT 1) AS next_review_at
            FROM one JOIN shielding_requests s USING (request_id)""",
        request_id,
    )
    if row is None:
        return None
    due = row["stage"] == Stage.REVIEW_DUE.value
    return ReviewSubject(
        request_id=row["request_id"],
        stage=Stage(row["stage"]),
        criteria=list(row["criteria"]),
        other_description=row["other_description"],
        reason=row["reason"],
        received_by=row["received_by"],
        called_at=row["called_at"],
        shielded_at=row["shielded_at"],
        form_due_at=row["form_due_at"],
        form_received_at=row["form_received_at"],
        closed_at=row["closed_at"],
        closed_reason=row["closed_reason"],
        children=list(row["children"] or []),
        review=ReviewKind(row["review"]) if due and row["review"] else None,
        review_due_at=(row["review_due_at"] or row["shielded_at"]) if due else None,
        reminders=row["reminders"] if due else 0,
        next_review_at=row["next_review_at"],
    )


async def latest_decision(pool: asyncpg.Pool, request_id: str) -> Decision | None:
    """The newest approval or unshielding on the request (what a reviewer has just done, after a decision)."""
    row = await pool.fetchrow(
        """SELECT action, actor, at, details->>'review' AS review,
                  (details->>'next_review_at')::timestamptz AS next_review_at
           FROM audit_log WHERE request_id = $1 AND action = ANY($2::text[])
           ORDER BY entry_id DESC LIMIT 1""",
        request_id,
        [AuditAction.APPROVED.value, AuditAction.UNSHIELDED.value],
    )
    if row is None:
        return None
    return Decision(
        action=AuditAction(row["action"]),
        actor=row["actor"],
        at=row["at"],
        review=ReviewKind(row["review"]) if row["review"] else None,
        next_review_at=row["next_review_at"],
    )
