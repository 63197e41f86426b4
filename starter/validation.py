"""Intake validation: what the intake officer typed (a draft of plain strings) into a `ShieldingRequestInput`.

Each rule is a small check that names its problem in words an intake officer understands; a refusal lists
every problem at once, except an objection in principle, which is refused on its own with the seed's words.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, Field, ValidationError

from shielding import deadlines, messages
from shielding.domain import (
    MAX_CHILDREN_PER_REQUEST,
    MAX_TEXT,
    OBJECTION_IN_PRINCIPLE,
    OBJECTION_IN_PRINCIPLE_EXPLANATION,
    Criterion,
    Requestor,
    RequestorType,
    ShieldingRequestInput,
    no_control_chars,
)
from shielding.store.directory import RelatedDecision, RelatedRecord
from starter.errors import Refusal

# A call logged a few minutes "in the future" is clock skew between machines, not an error.
CLOCK_SKEW = timedelta(minutes=5)


class RelatedDraft(BaseModel):
    """The intake officer's decision about a record that shares an address or a carer with a child in the
    request: "added" (to the request, under siblings/family members) or "not-added" with the reason why."""

    uid: str
    decision: str
    reason: str | None = None


class IntakeDraft(BaseModel):
    """What the intake officer typed, unchecked."""

    children: list[str] = Field(default_factory=list)
    criteria: list[str] = Field(default_factory=list)
    other_description: str | None = None
    reason: str | None = None
    requestor_type: str | None = None
    requestor_name: str | None = None
    requestor_organisation: str | None = None
    requestor_phone: str | None = None
    requestor_email: str | None = None
    called_at: str | datetime | None = None
    related_records: list[RelatedDraft] = Field(default_factory=list)


_FIELD_NAMES = {
    "children": "child identifier",
    "criteria": "criterion",
    "reason": "reason",
    "other_description": "description of the other circumstances",
    "type": "requestor type",
    "name": "requestor name",
    "organisation": "requestor organisation",
    "phone": "requestor phone number",
    "email": "requestor email address",
    "called_at": "time of the call",
}

_PYDANTIC_WORDS = {
    "string_pattern_mismatch": "is not in the expected format",
    "string_too_long": "is too long",
    "too_long": "is too long",
    "string_unicode": "is not valid text",
    "string_too_short": "is missing",
    "missing": "is missing",
}


def describe_validation_error(error: ValidationError) -> list[str]:
    """Pydantic's complaints as an intake officer reads them ("the requestor phone number is too long")."""
    problems = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"] if not isinstance(part, int)]
        field = _FIELD_NAMES.get(loc[-1] if loc else "", loc[-1] if loc else "input")
        message = _PYDANTIC_WORDS.get(item["type"]) or item["msg"].removeprefix("Value error, ")
        problems.append(f"the {field} {message}")
    return problems


def parse_instant(value: str | datetime, what: str = "time") -> datetime:
    """An ISO 8601 instant with its UTC offset; an instant without one is ambiguous and refused."""
    if isinstance(value, datetime):
        parsed = value
        shown = str(value)
    else:
        text = shown = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            # fromisoformat ignores one trailing NUL (CPython 3.11); no ISO 8601 text holds a control character.
            if not text.isprintable():
                raise ValueError(text)
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise Refusal(
                f"The {what} {value!r} is not an ISO 8601 date and time (for example 2026-11-24T10:30:00+00:00)."
            ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise Refusal(f"The {what} {shown} has no UTC offset, so it is ambiguous; add one, for example +00:00 or Z.")
    return parsed


# ------------------------------------------------------------------------------------------- the checks


def refuse_objection_in_principle(draft: IntakeDraft) -> None:
    if any(code.strip().lower() == OBJECTION_IN_PRINCIPLE for code in draft.criteria):
        raise Refusal(
            "Refused: an objection to the directory in principle is not a shielding criterion. "
            + OBJECTION_IN_PRINCIPLE_EXPLANATION
        )


def check_children(draft: IntakeDraft, problems: list[str]) -> None:
    if not draft.children:
        problems.append("at least one child identifier is needed")
    elif len(draft.children) > MAX_CHILDREN_PER_REQUEST:
        problems.append(
            f"a request can name at most {MAX_CHILDREN_PER_REQUEST} children (this one names {len(draft.children)})"
        )


def check_criteria(draft: IntakeDraft, problems: list[str]) -> list[Criterion]:
    if not draft.criteria:
        problems.append("at least one shielding criterion is needed")
    criteria: list[Criterion] = []
    for code in draft.criteria:
        try:
            criteria.append(Criterion(code.strip().lower()))
        except ValueError:
            valid = ", ".join(c.value for c in Criterion)
            problems.append(f"{code!r} is not a shielding criterion (valid criteria: {valid})")
    if Criterion.OTHER_SIGNIFICANT_HARM in criteria and not (draft.other_description or "").strip():
        problems.append("the criterion other-significant-harm needs a description of the circumstances")
    return list(dict.fromkeys(criteria))


def check_contact(draft: IntakeDraft, problems: list[str]) -> None:
    if not draft.requestor_phone and not draft.requestor_email:
        problems.append("the requestor's phone number or email address is needed so they can be contacted")
    if (draft.requestor_type or "").strip().lower() == RequestorType.PROFESSIONAL and not draft.requestor_organisation:
        problems.append("a professional requestor's organisation is needed")


def check_called_at(draft: IntakeDraft, now: datetime, problems: list[str]) -> datetime | None:
    if draft.called_at is None:
        return now
    try:
        called_at = parse_instant(draft.called_at, "time of the call")
    except Refusal as refusal:
        problems.append(str(refusal).rstrip("."))
        return None
    if called_at > now + CLOCK_SKEW:
        problems.append("the time of the call is in the future")
        return called_at
    try:
        deadline_passed = deadlines.form_due_at(called_at) <= now
    except (ValueError, OverflowError):
        # Before the bank-holiday calendar (2000) or before year 1 in UTC: long past any deadline.
        deadline_passed = True
    if deadline_passed:
        problems.append("the call was more than 7 working days ago, so the deadline for the written form has passed")
    return called_at


def check_requestor(draft: IntakeDraft, problems: list[str]) -> Requestor | None:
    try:
        return Requestor(
            type=(draft.requestor_type or "").strip().lower(),  # type: ignore[arg-type]
            name=draft.requestor_name or "",
            organisation=draft.requestor_organisation or None,
            phone=draft.requestor_phone or None,
            email=draft.requestor_email or None,
        )
    except ValidationError as err:
        problems.extend(
            p.replace("the requestor type Input should be", "the requestor type must be")
            for p in describe_validation_error(err)
        )
        return None


def check_related(draft: IntakeDraft, problems: list[str]) -> None:
    for item in draft.related_records[:MAX_CHILDREN_PER_REQUEST]:
        if item.decision not in ("added", "not-added"):
            problems.append(f"the decision about record {item.uid!r} must be added or not-added")
        reason = (item.reason or "").strip()
        if len(reason) > MAX_TEXT:
            problems.append(f"the reason for not adding record {item.uid!r} is too long")
        else:
            try:
                no_control_chars(reason)
            except ValueError:
                problems.append(f"the reason for not adding record {item.uid!r} must not contain control characters")
    if len(draft.related_records) > MAX_CHILDREN_PER_REQUEST:
        problems.append(f"at most {MAX_CHILDREN_PER_REQUEST} decisions about related records can be given")


def with_added_related(draft: IntakeDraft) -> IntakeDraft:
    """The draft with each related record the officer added among its children, under siblings/family members."""
    added = [d.uid.strip() for d in draft.related_records if d.decision == "added" and d.uid.strip()]
    if not added:
        return draft
    children = list(dict.fromkeys([*draft.children, *added]))
    criteria = list(draft.criteria)
    if Criterion.SIBLING_FAMILY_MEMBER.value not in {c.strip().lower() for c in criteria}:
        criteria.append(Criterion.SIBLING_FAMILY_MEMBER.value)
    return draft.model_copy(update={"children": children, "criteria": criteria})


class RelatedRecordsUndecided(Refusal):
    """Records share an address or a carer with a child in the request and have no decision yet: the message
    names them (uid and name) and asks for one; `records` lets a page offer the choice."""

    def __init__(self, records: Sequence[RelatedRecord]) -> None:
        super().__init__(messages.related_records_undecided([(r.uid, r.name) for r in records]))
        self.records = list(records)


def decide_related(
    draft: IntakeDraft, request: ShieldingRequestInput, related: Sequence[RelatedRecord]
) -> list[RelatedDecision]:
    """The decision about every related record, or RelatedRecordsUndecided naming those without one (a record
    not added needs its reason). Decisions about records that share nothing are not kept."""
    reasons = {
        d.uid.strip(): (d.reason or "").strip()
        for d in draft.related_records
        if d.decision == "not-added" and (d.reason or "").strip()
    }
    undecided = [r for r in related if r.uid not in reasons]
    if undecided:
        raise RelatedRecordsUndecided(undecided)
    added = {d.uid.strip() for d in draft.related_records if d.decision == "added"} & set(request.children)
    return [RelatedDecision(uid=uid, decision="added") for uid in sorted(added)] + [
        RelatedDecision(uid=r.uid, decision="not-added", reason=reasons[r.uid]) for r in related
    ]


def _refused(problems: list[str]) -> Refusal:
    return Refusal("Refused: " + "; ".join(dict.fromkeys(problems)) + ".")


def validate_intake(draft: IntakeDraft, *, request_id: str, actor: str, now: datetime) -> ShieldingRequestInput:
    refuse_objection_in_principle(draft)
    problems: list[str] = []
    check_children(draft, problems)
    criteria = check_criteria(draft, problems)
    check_contact(draft, problems)
    called_at = check_called_at(draft, now, problems)
    requestor = check_requestor(draft, problems)
    check_related(draft, problems)
    if problems or requestor is None or called_at is None:
        raise _refused(problems)
    try:
        return ShieldingRequestInput(
            request_id=request_id,
            children=[c.strip() for c in draft.children],
            criteria=criteria,
            other_description=draft.other_description or None,
            reason=draft.reason or "",
            requestor=requestor,
            called_at=called_at,
            actor=actor,
        )
    except ValidationError as err:
        raise _refused(describe_validation_error(err)) from None
