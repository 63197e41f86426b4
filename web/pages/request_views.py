"""How the request pages show things: stages as words, children by their identity only, and the history.

A child is shown by uid, names, aliases, gender and date of birth (`ChildIdentity`): what every role may see of a
shielded record, and what the directory search shows. The search answers an unshielded record in full, so its
results pass through `ChildIdentity` before a template sees them: no address, carer, school or GP reaches a page.

The history is the audit trail (MOJ Timeline) for those who may read the audit log; for the others who may see a
request's status (intake officers) it is the steps the status itself shows: the call, the shielding, the form,
the review decisions and the close.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

from shielding.deadlines import long_date
from shielding.domain import RequestStatus, Stage
from shielding.settings import Settings
from shielding.store.queues import RequestRecord
from web.pages.rendering import GENDER_LABELS

STAGE_LABELS = {
    Stage.INTAKE: "Being taken",
    Stage.AWAITING_FORM: "Awaiting form",
    Stage.SHIELDED: "Shielded",
    Stage.REVIEW_DUE: "Review due",
    Stage.REFUSED: "Refused",
    Stage.DUPLICATE: "Already shielded",
    Stage.LAPSED: "Lapsed",
    Stage.UNSHIELDED: "Unshielded",
}
STAGE_TAG_CLASSES = {
    Stage.INTAKE: "govuk-tag--grey",
    Stage.AWAITING_FORM: "govuk-tag--yellow",
    Stage.SHIELDED: "govuk-tag--green",
    Stage.REVIEW_DUE: "govuk-tag--orange",
    Stage.REFUSED: "govuk-tag--red",
    Stage.DUPLICATE: "govuk-tag--grey",
    Stage.LAPSED: "govuk-tag--red",
    Stage.UNSHIELDED: "govuk-tag--grey",
}
AUDIT_LABELS = {
    "received": "Request taken",
    "refused": "Request refused",
    "shielded": "Record shielded",
    "duplicate": "Request recorded against this one",
    "form-received": "Written form received",
    "form-refused": "Written form refused",
    "lapsed": "Lapsed: no written form",
    "review-due": "Review due",
    "reminder": "Review reminder sent",
    "approved": "Review approved",
    "unshielded": "Record unshielded",
    "override-viewed": "Break-glass view of a record",
    "unauthorised": "Access refused",
}


@dataclass(frozen=True)
class ChildIdentity:
    """What any role may see of a child: never an address, a carer, a school or a GP."""

    uid: str
    given_name: str
    family_name: str
    aliases: tuple[str, ...]
    gender: str
    date_of_birth: date
    shielded: bool

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> ChildIdentity:
        born = record["date_of_birth"]
        return cls(
            uid=str(record["uid"]),
            given_name=str(record["given_name"]),
            family_name=str(record["family_name"]),
            aliases=tuple(str(a) for a in record.get("aliases") or ()),
            gender=GENDER_LABELS.get(str(record["gender"]), str(record["gender"])),
            date_of_birth=born if isinstance(born, date) else date.fromisoformat(str(born)),
            shielded=bool(record["shielded"]),
        )

    @property
    def name(self) -> str:
        return f"{self.given_name} {self.family_name}"

    @property
    def born(self) -> str:
        return long_date(self.date_of_birth)


@dataclass(frozen=True)
class HistoryItem:
    at: datetime
    title: str
    byline: str | None = None
    description: str | None = None


def _instant(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def audit_history(entries: Iterable[Mapping[str, Any]]) -> list[HistoryItem]:
    """The audit trail, newest first, as the CLI's `audit` shows it: what, who, when, the child, the reason.

    `entries` come in the log's own order (oldest first); entries of one transaction share their time, so the
    order is the log's, reversed, never a sort by time.
    """
    items = []
    for entry in entries:
        child = entry.get("child_uid")
        reason = str(entry.get("reason") or "")
        reason = reason[:1].upper() + reason[1:]
        description = f"{child}: {reason}" if child and reason else (child or reason or None)
        items.append(
            HistoryItem(
                at=_instant(entry["at"]),
                title=AUDIT_LABELS.get(str(entry["action"]), str(entry["action"]).replace("-", " ").capitalize()),
                byline=str(entry["actor"]),
                description=description,
            )
        )
    return items[::-1]


def status_history(status: RequestStatus, record: RequestRecord | None) -> list[HistoryItem]:
    """The steps the request's status shows, newest first (for those who may not read the audit log)."""
    items = []
    if status.called_at is not None:
        taken_by = record.received_by if record else None
        items.append(HistoryItem(status.called_at, "Call taken", byline=taken_by))
    if status.shielded_at is not None:
        uids = ", ".join(status.children)
        items.append(HistoryItem(status.shielded_at, "Records shielded", description=uids or None))
    if status.form_received_at is not None:
        items.append(HistoryItem(status.form_received_at, "Written form received"))
    if status.review_due_since is not None:
        items.append(HistoryItem(status.review_due_since, "Review due"))
    for review in status.reviews:
        if review.decided_at is not None:
            decision = "approved" if review.decision and review.decision.value == "approve" else "decided: unshield"
            items.append(HistoryItem(review.decided_at, f"{review.kind.value} review {decision}", byline=review.actor))
    if record is not None and record.closed_at is not None:
        items.append(
            HistoryItem(record.closed_at, f"Closed: {STAGE_LABELS[status.stage].lower()}", None, record.closed_reason)
        )
    return sorted(items, key=lambda item: item.at, reverse=True)


def temporal_ui_link(settings: Settings, request_id: str) -> str | None:
    """The request's workflow in the Temporal Web UI (`SHIELDING_TEMPORAL_UI_URL`, or `shielding dev`'s own)."""
    base = settings.resolved_temporal_ui_url()
    if base is None:
        return None
    namespace = quote(settings.temporal_namespace, safe="")
    return f"{base}/namespaces/{namespace}/workflows/{quote(request_id, safe='')}"
