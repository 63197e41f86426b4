"""Reviews: the reviewers' queue and the decision on one request's review.

    GET  /reviews                  the queue (MOJ "Filter a list"): reviews overdue and due, and requests still
                                   waiting for their written form; filtered, sorted and paged on the server
    GET  /reviews/{request_id}     the request and, when a review is due and the person did not take the request,
                                   the decision form
    POST /reviews/{request_id}     the decision: keep the record shielded (approve), or end the shielding with a
                                   reason; then back to the queue, which says what was done

The queue comes from the store (`shielding.store.reviews`: why there, and not Temporal visibility, is in its
docstring). The filters are query parameters with fixed values (and the start of a request id), so a queue's
address can be shared and carries nothing about a child.

Who took a request never decides its review (`shielding.access.NOT_ON_OWN_REQUEST`): the queue and the request's
page offer them no way to, and the POST is checked by `may("review")` with the request id, which refuses it
and records the attempt in the audit log. The workflow refuses it as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Form, Query, Request, Response

from shielding import access, messages
from shielding.domain import CRITERION_LABELS, REQUEST_ID_PATTERN, AuditAction, Criterion, ReviewKind, Stage
from shielding.lifecycle import review_due_at
from shielding.settings import Settings
from shielding.store import access_log
from shielding.store import reviews as review_store
from shielding.store.access_log import AccessKind
from shielding.store.reviews import QueueQuery, QueueSort, QueueStatus
from starter import Refusal
from starter.identity import Session
from web.deps import PartsDep, reader
from web.pages.forms import Problems
from web.pages.pagination import numbered
from web.pages.rendering import redirect, render
from web.pages.routing import page_router
from web.pages.session import PageAccessDenied, PageSessionDep, may

router = page_router()

QUEUE_PATH = "/reviews"
MAX_REASON = 5000  # as the API allows (web.schemas.Review)
APPROVE, UNSHIELD = "approve", "unshield"

STATUS_LABELS = {QueueStatus.OVERDUE: "Overdue", QueueStatus.DUE: "Due", QueueStatus.FORM: "Waiting for form"}
# The filter's checkbox labels (plural: what the list will show).
STATUS_FILTER_LABELS = {
    QueueStatus.OVERDUE: "Overdue reviews",
    QueueStatus.DUE: "Reviews due",
    QueueStatus.FORM: "Waiting for the written form",
}
STATUS_TAGS = {
    QueueStatus.OVERDUE: "govuk-tag--red",
    QueueStatus.DUE: "govuk-tag--yellow",
    QueueStatus.FORM: "govuk-tag--grey",
}
REVIEW_LABELS = {ReviewKind.SEVEN_DAY: "7-day review", ReviewKind.SIX_MONTH: "6-month review"}
STAGE_LABELS = {
    Stage.INTAKE: "Being taken",
    Stage.AWAITING_FORM: "Shielded, waiting for the written form",
    Stage.SHIELDED: "Shielded",
    Stage.REVIEW_DUE: "Shielded, review due",
    Stage.REFUSED: "Refused",
    Stage.DUPLICATE: "Already shielded under another request",
    Stage.LAPSED: "Lapsed: the form did not arrive in time",
    Stage.UNSHIELDED: "No longer shielded",
}
SORT_LABELS = {
    (QueueSort.DUE, False): "due date, earliest first",
    (QueueSort.DUE, True): "due date, latest first",
    (QueueSort.REQUEST, False): "request id, A to Z",
    (QueueSort.REQUEST, True): "request id, Z to A",
}
# Which Temporal stage each status is (the ShieldingStage search attribute), for the Web UI link.
TEMPORAL_STAGES = {QueueStatus.OVERDUE: "review-due", QueueStatus.DUE: "review-due", QueueStatus.FORM: "awaiting-form"}

NO_DECISION = "Select whether to keep the record shielded or end the shielding"
NO_REASON = "Enter why the shielding should end"
LONG_REASON = f"The reason must be {MAX_REASON:,} characters or fewer"


# ------------------------------------------------------------------------------------------------ the queue


@dataclass(frozen=True)
class QueueFilters:
    """What the person chose, read leniently from the query (an unknown value is left out, not an error)."""

    statuses: tuple[QueueStatus, ...] = ()
    request_id: str = ""
    hide_mine: bool = False
    sort: QueueSort = QueueSort.DUE
    descending: bool = False
    page: int = 1

    @classmethod
    def read(cls, status: list[str], request: str, mine: str, sort: str, order: str, page: str) -> QueueFilters:
        chosen = [s for s in QueueStatus if s.value in status]
        wanted = "".join(ch for ch in request.strip().upper() if ch.isalnum() or ch == "-")[:16]
        return cls(
            statuses=tuple(chosen),
            request_id=wanted,
            hide_mine=mine == "hide",
            sort=QueueSort(sort) if sort in {s.value for s in QueueSort} else QueueSort.DUE,
            descending=order == "desc",
            page=int(page) if page.isdigit() and 0 < int(page) < 100_000 else 1,
        )

    def query(self, session: Session) -> QueueQuery:
        return QueueQuery(
            statuses=frozenset(self.statuses or QueueStatus),
            request_id=self.request_id or None,
            not_taken_by=session.name if self.hide_mine else None,
            sort=self.sort,
            descending=self.descending,
            limit=review_store.PAGE_SIZE,
            offset=(self.page - 1) * review_store.PAGE_SIZE,
        )

    def params(self, **changes: Any) -> list[tuple[str, str]]:
        values = {**self.__dict__, **changes}
        pairs = [("status", s.value) for s in values["statuses"]]
        if values["request_id"]:
            pairs.append(("request", values["request_id"]))
        if values["hide_mine"]:
            pairs.append(("mine", "hide"))
        if values["sort"] != QueueSort.DUE or values["descending"]:
            pairs.append(("sort", values["sort"].value))
        if values["descending"]:
            pairs.append(("order", "desc"))
        if values["page"] != 1:
            pairs.append(("page", str(values["page"])))
        return pairs

    def url(self, **changes: Any) -> str:
        """This queue with some choices changed (a new filter or order starts again at page 1)."""
        changes.setdefault("page", 1)
        pairs = self.params(**changes)
        return QUEUE_PATH + (f"?{urlencode(pairs)}" if pairs else "")

    @property
    def any_chosen(self) -> bool:
        return bool(self.statuses or self.request_id or self.hide_mine)


def _sort_link(filters: QueueFilters, sort: QueueSort) -> dict[str, Any]:
    """A column heading that sorts the list (on the server); `aria-sort` says how it is sorted now."""
    current = filters.sort == sort
    descending = not filters.descending if current else False
    return {
        "href": filters.url(sort=sort, descending=descending),
        "aria_sort": ("descending" if filters.descending else "ascending") if current else None,
        "arrow": ("▼" if filters.descending else "▲") if current else "",
    }


def _selected_filters(filters: QueueFilters) -> list[dict[str, Any]]:
    """The MOJ filter's "Selected filters": each tag's link removes that one choice."""
    categories = []
    if filters.statuses:
        items = [
            {
                "text": STATUS_FILTER_LABELS[s],
                "href": filters.url(statuses=tuple(x for x in filters.statuses if x != s)),
            }
            for s in filters.statuses
        ]
        categories.append({"heading": "Status", "items": items})
    if filters.request_id:
        categories.append(
            {"heading": "Request id", "items": [{"text": filters.request_id, "href": filters.url(request_id="")}]}
        )
    if filters.hide_mine:
        categories.append(
            {"heading": "Who took it", "items": [{"text": "Not taken by you", "href": filters.url(hide_mine=False)}]}
        )
    return categories


def temporal_ui_url(settings: Settings, statuses: tuple[QueueStatus, ...]) -> str | None:
    """The same requests in the Temporal Web UI (`ShieldingStage` filter), for operations staff, where the UI's
    address is known (`SHIELDING_TEMPORAL_UI_URL`, or `shielding dev`'s own on `SHIELDING_DEV_UI_PORT`)."""
    base = settings.resolved_temporal_ui_url()
    if base is None:
        return None
    stages = sorted({TEMPORAL_STAGES[s] for s in statuses or tuple(QueueStatus)})
    query = " OR ".join(f'ShieldingStage="{stage}"' for stage in stages)
    namespace = quote(settings.temporal_namespace, safe="")
    return f"{base}/namespaces/{namespace}/workflows?query={quote(query, safe='')}"


def _banner(decision: review_store.Decision | None, request_id: str, session: Session) -> dict[str, str] | None:
    """What the person has just decided on `request_id`, in the service's words; nothing for anyone else's."""
    if decision is None or decision.actor != session.name:
        return None
    if decision.action == AuditAction.APPROVED and decision.review is not None:
        return {
            "heading": "The record stays shielded",
            "text": messages.review_approved(request_id, decision.review, decision.next_review_at),
        }
    if decision.action == AuditAction.UNSHIELDED:
        return {"heading": "Shielding ended", "text": messages.unshielded(request_id)}
    return None


async def require_role(p: PartsDep, session: Session, action: str) -> None:
    """The role check alone (refused and audited like `may`), for a page that only shows a request."""
    try:
        await access.require(p.pool, session.name, action, roles=session.roles)
    except access.AccessDenied as err:
        raise PageAccessDenied(str(err), action=action) from None


@router.get(QUEUE_PATH)
async def queue(
    request: Request,
    session: Annotated[Session, may("review")],
    p: PartsDep,
    status: Annotated[list[str] | None, Query(max_length=10)] = None,
    request_id: Annotated[str, Query(alias="request", max_length=64)] = "",
    mine: Annotated[str, Query(max_length=10)] = "",
    sort: Annotated[str, Query(max_length=10)] = "",
    order: Annotated[str, Query(max_length=10)] = "",
    page: Annotated[str, Query(max_length=6)] = "1",
    decided: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    filters = QueueFilters.read(status or [], request_id, mine, sort, order, page)
    found = await review_store.review_queue(p.pool, filters.query(session))
    uids = [uid for item in found.items for uid in item.children]
    await access_log.record(p.pool, reader(request, session), AccessKind.LIST, uids)
    banner = None
    if REQUEST_ID_PATTERN.fullmatch(decided):
        banner = _banner(await review_store.latest_decision(p.pool, decided), decided, session)
    return render(
        request,
        "reviews.html",
        filters=filters,
        items=found.items,
        total=found.total,
        banner=banner,
        status_items=[{"value": s.value, "text": STATUS_FILTER_LABELS[s]} for s in QueueStatus],
        checked_statuses=[s.value for s in filters.statuses],
        status_labels=STATUS_LABELS,
        status_tags=STATUS_TAGS,
        review_labels=REVIEW_LABELS,
        selected=_selected_filters(filters),
        clear_href=filters.url(statuses=(), request_id="", hide_mine=False),
        sort_due=_sort_link(filters, QueueSort.DUE),
        sort_request=_sort_link(filters, QueueSort.REQUEST),
        sorted_by=SORT_LABELS[(filters.sort, filters.descending)],
        pagination=numbered(filters.page, found.total, review_store.PAGE_SIZE, lambda n: filters.url(page=n)),
        sort_fields=[p for p in filters.params() if p[0] in ("sort", "order")],
        temporal_ui_href=temporal_ui_url(p.settings, filters.statuses),
        first_shown=(filters.page - 1) * review_store.PAGE_SIZE + 1,
    )


# ------------------------------------------------------------------------------------------- one request


@dataclass
class DecisionForm:
    decision: str = ""
    reason: str = ""
    errors: Problems = field(default_factory=Problems)


def _criteria_text(codes: list[str], other: str | None) -> list[str]:
    labels = []
    for code in codes:
        try:
            label = CRITERION_LABELS[Criterion(code)]
        except ValueError:
            label = code
        if code == Criterion.OTHER_SIGNIFICANT_HARM.value and other:
            label = f"{label}: {other}"
        labels.append(label)
    return labels


def _subject_uids(subject: review_store.ReviewSubject) -> list[str]:
    return list(subject.children)


async def _request_page(
    request: Request, p: PartsDep, session: Session, request_id: str, form: DecisionForm, *, status_code: int = 200
) -> Response:
    subject = await review_store.review_subject(p.pool, request_id)
    if subject is None:
        return render(
            request,
            "problem.html",
            status_code=404,
            heading="There is no such request",
            paragraphs=[f"There is no shielding request {request_id}. Check the request id and try again."],
        )
    await access_log.record(
        p.pool, reader(request, session), AccessKind.LIST, _subject_uids(subject), request_id=request_id
    )
    took_it = subject.received_by == session.name
    next_review_at = None
    if subject.review is None and subject.closed_at is None and subject.shielded_at is not None:
        # What the last approval scheduled, else the first (7-day) review.
        next_review_at = subject.next_review_at or review_due_at(subject.shielded_at, 0)
    return render(
        request,
        "review_decide.html",
        status_code=status_code,
        errors=form.errors,
        subject=subject,
        stage_label=STAGE_LABELS.get(subject.stage, subject.stage.value),
        criteria=_criteria_text(subject.criteria, subject.other_description),
        review_label=REVIEW_LABELS[subject.review] if subject.review else None,
        next_review_at=next_review_at,
        can_decide=subject.review is not None and not took_it,
        took_it=took_it,
        values={"decision": form.decision, "reason": form.reason},
        max_reason=MAX_REASON,
        approve=APPROVE,
        unshield=UNSHIELD,
    )


@router.get(QUEUE_PATH + "/{request_id}")
async def review_request(request: Request, request_id: str, session: PageSessionDep, p: PartsDep) -> Response:
    # The role only: looking at a request one took is no attempt to decide it (the POST checks that, audited).
    await require_role(p, session, "review")
    if not REQUEST_ID_PATTERN.fullmatch(request_id):
        return render(
            request,
            "problem.html",
            status_code=404,
            heading="There is no such request",
            paragraphs=["Request ids look like SR-CA2KWYSUB552. Check the request id and try again."],
        )
    return await _request_page(request, p, session, request_id, DecisionForm())


@router.post(QUEUE_PATH + "/{request_id}")
async def decide(
    request: Request,
    request_id: str,
    session: Annotated[Session, may("review")],
    p: PartsDep,
    decision: Annotated[str, Form(max_length=20)] = "",
    reason: Annotated[str, Form(max_length=MAX_REASON * 2)] = "",
) -> Response:
    if not REQUEST_ID_PATTERN.fullmatch(request_id):
        return render(request, "problem.html", status_code=404, heading="There is no such request", paragraphs=[])
    form = DecisionForm(decision=decision if decision in (APPROVE, UNSHIELD) else "", reason=reason)
    reason = reason.strip()
    if form.decision == "":
        form.errors.add("review", NO_DECISION)
    elif form.decision == UNSHIELD and not reason:
        form.errors.add("reason", NO_REASON)
    if len(reason) > MAX_REASON:
        form.errors.add("reason", LONG_REASON)
    if not form.errors:
        try:
            await p.service.decide_review(
                request_id, approve=form.decision == APPROVE, reason=reason or None, actor=session.name
            )
        except Refusal as refusal:
            # The lifecycle's own sentence (no review is due any more, the request has closed, ...), at the
            # summary of the request, which says where it is now.
            form.errors.add("review", str(refusal))
    if form.errors:
        return await _request_page(request, p, session, request_id, form)
    return redirect(f"{QUEUE_PATH}?{urlencode({'decided': request_id})}")
