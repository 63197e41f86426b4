"""The Temporal visibility queries that find what needs a person, as operations staff type them into the
Web UI's list filter or `temporal workflow list --query`.

They read only the search attributes (ids, stages and dates: `shielding.temporal`), never a payload. The
README's operations section prints each one (`README_QUERIES` in tests/test_operations_queries.py checks
they match), and the test runs each against a dev server holding a request in every state.

Times are literal in a query (Temporal has no `now()`): `{now}` is the moment you run it, `{a_day_ago}` and
`{a_minute_ago}` and `{an_hour_ago}` that much before, `{in_two_days}` that much after, each as `2026-12-02T16:00:00Z`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class OperationsQuery:
    name: str
    finds: str
    template: str

    def at(self, now: datetime) -> str:
        """The query with its times filled in for `now`."""

        def stamp(instant: datetime) -> str:
            return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

        return self.template.format(
            now=stamp(now),
            a_day_ago=stamp(now - timedelta(days=1)),
            a_minute_ago=stamp(now - timedelta(minutes=1)),
            an_hour_ago=stamp(now - timedelta(hours=1)),
            in_two_days=stamp(now + timedelta(days=2)),
        )


_RUNNING_REQUESTS = "WorkflowType = 'ShieldingRequestWorkflow' AND ExecutionStatus = 'Running'"

QUERIES = (
    OperationsQuery(
        "reviews-due",
        "every review that has fallen due and waits for a reviewer (the records stay shielded)",
        f"{_RUNNING_REQUESTS} AND ShieldingStage = 'review-due'",
    ),
    OperationsQuery(
        "reviews-overdue",
        "reviews due for more than a day: the daily reminders have started",
        f"{_RUNNING_REQUESTS} AND ShieldingStage = 'review-due' AND NextReviewAt < '{{a_day_ago}}'",
    ),
    OperationsQuery(
        "forms-due-soon",
        "requests whose written form is due within two days",
        f"{_RUNNING_REQUESTS} AND ShieldingStage = 'awaiting-form' "
        "AND FormDueAt BETWEEN '{now}' AND '{in_two_days}'",
    ),
    OperationsQuery(
        "forms-past-due",
        "requests past their form deadline that have not lapsed: the worker is behind or down (should be none)",
        f"{_RUNNING_REQUESTS} AND ShieldingStage = 'awaiting-form' AND FormDueAt < '{{now}}'",
    ),
    OperationsQuery(
        "intakes-stuck",
        "calls still being taken after a minute: the records may not be shielded yet (should be none)",
        f"{_RUNNING_REQUESTS} AND ShieldingStage = 'intake' AND StartTime < '{{a_minute_ago}}'",
    ),
    OperationsQuery(
        "messages-retrying",
        "messages still being retried after an hour: the provider (Notify, SMTP) is down or refusing them",
        "WorkflowType = 'NotificationDeliveryWorkflow' AND ExecutionStatus = 'Running' AND StartTime < '{an_hour_ago}'",
    ),
    OperationsQuery(
        "failed-workflows",
        "any of our workflows that failed or timed out (a request, a notification, a scheduled job)",
        "ExecutionStatus = 'Failed' OR ExecutionStatus = 'TimedOut'",
    ),
)
