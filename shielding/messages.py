"""Every sentence the service tells a caller, reviewer, requestor or manager, in one place.

The workflow and the store only orchestrate; the words are here so they can be read, reviewed and changed
together. No sentence may carry a child's details or the reason for shielding: only ids, stages and dates.
"""

from __future__ import annotations

from datetime import datetime

from shielding import deadlines
from shielding.domain import ReviewKind, Stage

# ------------------------------------------------------------------------------------------- intake


def shielded_form_due(form_due_at: datetime) -> str:
    return f"Shielded. The written form and supporting documents are due by {deadlines.describe(form_due_at)}."


def unknown_children(uids: list[str]) -> str:
    return (
        "No child in the directory has the identifier "
        + ", ".join(uids)
        + ". Check the identifier with the caller; nothing has been shielded."
    )


def already_shielded(existing_request_ids: list[str]) -> str:
    return (
        "Already shielded under request "
        + ", ".join(existing_request_ids)
        + "; this request has been recorded against it and no new shielding was started."
    )


SHIELDED_AT_INTAKE = "shielded at intake"


# --------------------------------------------------------------------------------------------- lapse


def lapse_reason(form_due_at: datetime | None) -> str:
    due = deadlines.describe(form_due_at) if form_due_at else "the deadline"
    return (
        f"The written form and supporting documents were not received by {due}; the request is unsuccessful "
        "and the records are no longer shielded."
    )


def lapse_notice_to_requestor(request_id: str) -> str:
    return (
        f"Your shielding request {request_id} was unsuccessful: the completed form and supporting documents were "
        "not received within 7 working days of your call. Please call the Integrated Working Team if the child "
        "is still at risk."
    )


def requestor_subject(request_id: str) -> str:
    return f"Shielding request {request_id}"


# ---------------------------------------------------------------------------------------------- form


def still_being_taken(request_id: str) -> str:
    return f"Request {request_id} is still being taken; try again in a moment."


def form_on_closed_request(request_id: str, stage: Stage | str) -> str:
    value = stage.value if isinstance(stage, Stage) else stage
    return f"Request {request_id} is closed ({value}); a form can no longer be accepted."


def form_already_received(request_id: str) -> str:
    return f"The form for request {request_id} has already been received."


def form_after_deadline(request_id: str, form_due_at: datetime) -> str:
    return (
        f"The form for request {request_id} arrived after its deadline ({deadlines.describe(form_due_at)}); "
        "it cannot be accepted."
    )


def late_form_on_closed_request(request_id: str, stage: str, form_due_at: datetime | None) -> str:
    """A form for a lifecycle that has ended (a lapsed request): refused before any workflow is asked."""
    message = f"Request {request_id} is closed ({stage}); the form cannot be accepted."
    if form_due_at is not None:
        message += f" Its deadline was {deadlines.describe(form_due_at)}."
    return message


def form_accepted(request_id: str) -> str:
    return f"Form received for request {request_id}; the record stays shielded."


FORM_RECEIVED_AUDIT = "written form and supporting documents received"


def documents_removed_audit(count: int, days: float) -> str:
    """The retention job's audit entry: how many documents' content it removed (their names, sizes and digests stay)."""
    noun = "document" if count == 1 else "documents"
    return f"{count} supporting {noun} removed, {days:g} days after the request closed (name, size and digest kept)"


def form_receipt_subject(request_id: str) -> str:
    return f"Shielding request {request_id}: form received"


def form_receipt_body(request_id: str) -> str:
    return (
        f"We have received the written form and supporting documents for shielding request {request_id}. "
        "The record stays shielded and will be reviewed."
    )


# ------------------------------------------------------------------------------------------- reviews


def review_due_audit(kind: ReviewKind) -> str:
    return f"{kind.value} review due"


def review_due_subject(kind: ReviewKind, request_id: str) -> str:
    return f"{kind.value} review due: shielding request {request_id}"


def review_due_body(kind: ReviewKind, request_id: str, due_at: datetime) -> str:
    return (
        f"The {kind.value} review of shielding request {request_id} fell due on {deadlines.describe(due_at)}. "
        f"The record stays shielded until a reviewer decides: shielding review {request_id} --approve | "
        "--unshield --reason TEXT"
    )


def reminder_audit(kind: ReviewKind) -> str:
    return f"{kind.value} review overdue; the record stays shielded"


def reminder_subject(kind: ReviewKind, request_id: str) -> str:
    return f"Reminder: overdue {kind.value} review of shielding request {request_id}"


def reminder_body(kind: ReviewKind, request_id: str) -> str:
    return (
        f"The {kind.value} review of shielding request {request_id} is overdue. The record remains shielded; "
        "please decide."
    )


def nothing_to_review_closed(request_id: str, stage: Stage) -> str:
    return f"Request {request_id} is closed ({stage.value}); there is nothing to review."


def no_review_due(request_id: str, kind: ReviewKind, next_review_at: datetime | None) -> str:
    when = deadlines.describe(next_review_at) if next_review_at else "not scheduled"
    return f"No review is due for request {request_id}; the next ({kind.value}) review falls due: {when}."


UNSHIELD_NEEDS_REASON = "A decision to unshield needs a reason."
OWN_REQUEST_REVIEW = "A reviewer cannot decide the review of a request they took themselves."


def unshielded_after_review(request_id: str, kind: ReviewKind) -> str:
    return f"Request {request_id} unshielded after its {kind.value} review."


def approval_audit(kind: ReviewKind) -> str:
    return f"{kind.value} review approved; the record stays shielded"


def review_approved(request_id: str, kind: ReviewKind, next_review_at: datetime | None) -> str:
    when = deadlines.describe(next_review_at) if next_review_at else "none"
    return f"{kind.value} review approved; request {request_id} stays shielded. Next review: {when}."


# ------------------------------------------------------------------------------------------ unshield


def already_closed(request_id: str, stage: Stage) -> str:
    return f"Request {request_id} is already closed ({stage.value})."


def unshielded(request_id: str) -> str:
    return f"Request {request_id} closed; its records are no longer shielded."


# ------------------------------------------------------------------------------------------ directory

IMPORTED_DUPLICATE_AUDIT = "an imported record matches a shielded child; shielded at once and linked for review"


def duplicate_record_subject(request_id: str) -> str:
    return f"Possible duplicate record linked to shielding request {request_id}"


def duplicate_record_body(uid: str, request_id: str) -> str:
    return (
        f"A record imported into the directory (uid {uid}) matches a child shielded under request {request_id}. "
        "It has been shielded and linked to that request. Please check it."
    )


SHARED_DETAILS_FLAGGED_AUDIT = (
    "an imported record shares an address or a carer with a shielded record; its address and carers are withheld"
)


def shared_details_subject(request_id: str) -> str:
    return f"A record shares an address or a carer with shielding request {request_id}"


def shared_details_body(uid: str, request_id: str) -> str:
    return (
        f"A record imported into the directory (uid {uid}) shares an address or a carer with a child shielded under "
        f"request {request_id}. Its address and carers are withheld while that child is shielded. Please check "
        "whether it should be added to the request (siblings/family members)."
    )


def related_records_undecided(records: list[tuple[str, str]]) -> str:
    """At intake: (uid, name) of each record that shares an address or a carer and has no decision yet. Names
    are identity fields, which an intake officer may see; never an address."""
    named = [f"{uid} {name}" for uid, name in records]
    listed = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]
    them = "it" if len(named) == 1 else "each of them"
    return (
        f"{listed} {'shares' if len(named) == 1 else 'share'} an address or a carer with a child in this request: "
        f"add {them} to the request (siblings/family members) or give the reason for not adding {them}."
    )


RELATED_ADDED_AUDIT = "shares an address or a carer with a child in the request: added to the request"


def related_not_added_audit(reason: str) -> str:
    return f"shares an address or a carer with a child in the request: not added, because {reason}"


def reads_limited(limit: int, window_seconds: int) -> str:
    minutes = max(1, round(window_seconds / 60))
    return (
        f"You have made {limit} directory searches and record views in {minutes} minutes, the most allowed; "
        "wait a few minutes before the next one."
    )


def override_subject(uid: str, actor: str) -> str:
    return f"Break-glass view of record {uid} by {actor}"


def override_body(uid: str, actor: str) -> str:
    return f"{actor} used the override to view the hidden details of record {uid}. Please investigate."


# ------------------------------------------------------------------------------------------ delivery
# Why a message could not be delivered (shielding.delivery), shown to managers and audited: plain words that
# name no address, no recipient and nothing about a child.

DELIVERY_NO_RECIPIENT = "No recipient has an address for messages: nobody was sent it."
DELIVERY_REFUSED = "The message provider refused a recipient's address as not valid: it was not sent to them."
DELIVERY_PROVIDER_REFUSED = (
    "The message provider refused the message (its key, template or settings are wrong): it was not sent."
)
DELIVERY_TIMED_OUT = "The message provider could not be reached for 3 days: the message was not delivered."
SMS_NOT_POSSIBLE = "Text messages cannot be sent here (no GOV.UK Notify): this recipient gave only a phone number."


def review_digest_subject(due: int, overdue: int) -> str:
    return f"Shielding reviews: {overdue} overdue, {due} due"


def review_digest_body(due: list[str], overdue: list[str]) -> str:
    """Counts and request ids only: the reviewers open each request in the service."""

    def listed(ids: list[str]) -> str:
        return ", ".join(ids) if ids else "none"

    return (
        f"Reviews overdue ({len(overdue)}): {listed(overdue)}. Reviews due ({len(due)}): {listed(due)}. "
        "Every record stays shielded until a reviewer decides."
    )


# ------------------------------------------------------------------------------------ signed actions
# Refusals of actions the shielding service did not sign (shielding.action_auth). They name nothing the sender
# chose (no id, actor or key id), so a forged message cannot make the refusal carry text of its own.

ACTION_UNSIGNED = "This action was refused: it was not sent by the shielding service (it carries no signature)."
ACTION_KEYS_MISSING = "This action was refused: no action keys are configured here, so its sender cannot be checked."
ACTION_UNKNOWN_KEY = "This action was refused: it is signed with a key the shielding service does not hold."
ACTION_BAD_SIGNATURE = (
    "This action was refused: its signature does not match it (it was changed, or signed for another request "
    "or another action)."
)
ACTION_WRONG_ACTOR = "This action was refused: it was signed for someone other than the person it names."
ACTION_REPLAYED = "This action was refused: it has already been used once, and a signed action counts only once."


def action_stale(minutes: int) -> str:
    return (
        f"This action was refused: it was signed more than {minutes} minutes before (or after) it arrived. "
        "Send it again."
    )


def intake_unauthenticated(refusal: str) -> str:
    return f"{refusal} Nothing has been shielded; take the call again as a new request."


# ------------------------------------------------------------------------------- Temporal payloads

PAYLOAD_PLAINTEXT = (
    "This message was refused: it was not encrypted with the shielding service's keys, so it did not come "
    "from the service."
)
PAYLOAD_UNKNOWN_KEY = "This message was refused: it is encrypted with a key the shielding service does not hold."
PAYLOAD_TAMPERED = "This message was refused: its encryption does not check out (it was altered, or made elsewhere)."
PAYLOAD_OTHER_WORKFLOW = (
    "This message was refused: it was encrypted for another request, and cannot be replayed into this one."
)
CODEC_ENCODE_REFUSED = (
    "The Temporal Web UI is read-only: only the shielding service itself encrypts what it sends to Temporal."
)
CODEC_ORIGIN_REFUSED = "Payloads are decoded only for the Temporal Web UI of this service, not for this page."


# ---- a second manager's approval (one person holding roles that check each other's work)


def second_approval_needed(name: str, role: str, other: str, asked_by: str) -> str:
    return (
        f"{name} already holds the {other} role, so holding {role} as well needs a second manager's approval: "
        f"{asked_by} has asked for it, and another manager must now grant {name} the {role} role to approve it."
    )


def second_approval_still_needed(name: str, role: str) -> str:
    return f"You have already asked for {name} to hold the {role} role; another manager must grant it to approve it."


def second_approval_not_own(name: str, role: str) -> str:
    return f"{name} cannot approve their own {role} role; another manager must."


# ------------------------------------------------------------------------------- the Temporal UI (operations)

# What each timer, activity and local activity is called in a workflow's timeline.
TIMER_FORM_DEADLINE = "form deadline"
TIMER_REMINDER = "daily reminder"
ACTIVITY_SHIELD = "shield the records"
ACTIVITY_UNSHIELD = "unshield the records"
ACTIVITY_FORM = "record the written form"
ACTIVITY_REVIEW_DUE = "tell reviewers a review is due"
ACTIVITY_REMINDER = "remind reviewers of an overdue review"
ACTIVITY_STEP = "record the decision"
ACTIVITY_REQUESTOR = "tell the requestor"


def review_timer(kind: ReviewKind) -> str:
    return f"{kind.value} review"


def operations_summary(request_id: str, children: int) -> str:
    """The workflow's summary in the Temporal UI's list (set once, at the start)."""
    return f"Shielding request {request_id}: {children} {'child' if children == 1 else 'children'}"


_CLOSED = {
    Stage.REFUSED: "Closed: refused at intake",
    Stage.DUPLICATE: "Closed: every child was already shielded by another request",
    Stage.LAPSED: "Closed: lapsed (no written form by its deadline); the records were unshielded",
    Stage.UNSHIELDED: "Closed: unshielded",
}


def operations_stage(
    stage: Stage,
    *,
    form_due_at: datetime | None,
    review_kind: ReviewKind,
    next_review_at: datetime | None,
    review_due_since: datetime | None,
) -> str:
    """The stage and its next deadline, as operations staff read it ("Awaiting the written form — due by the
    end of Friday 11 December 2026")."""
    if stage == Stage.INTAKE:
        return "Taking the call: shielding the records"
    if stage.is_final:
        return _CLOSED[stage]
    if stage == Stage.REVIEW_DUE and review_due_since is not None:
        return (
            f"{review_kind.value} review overdue since {deadlines.describe(review_due_since)} — "
            "waiting for a reviewer (the records stay shielded)"
        )
    review = (
        f"{review_kind.value} review due {deadlines.describe(next_review_at)}" if next_review_at is not None else ""
    )
    if stage == Stage.AWAITING_FORM and form_due_at is not None:
        return f"Awaiting the written form — due by {deadlines.describe(form_due_at)}" + (
            f"; {review}" if review else ""
        )
    return f"Shielded — {review}" if review else "Shielded"


def operations_details(
    request_id: str,
    stage: Stage,
    *,
    children: int,
    form_due_at: datetime | None,
    review_kind: ReviewKind,
    next_review_at: datetime | None,
    review_due_since: datetime | None,
) -> str:
    """The workflow's current details in the Temporal UI (Temporal markdown), updated at every transition.
    Never a reason: an unshield's reason is typed by a reviewer and may name the family."""
    headline = operations_stage(
        stage,
        form_due_at=form_due_at,
        review_kind=review_kind,
        next_review_at=next_review_at,
        review_due_since=review_due_since,
    )
    lines = [f"**{headline}**", "", f"Request {request_id} · {children} {'child' if children == 1 else 'children'}"]
    lines.append(f"Stage: `{stage.value}`")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ access log


def views_flagged_subject(uid: str) -> str:
    return f"Repeated views of shielded record {uid}"


def views_flagged_body(uid: str, actor: str, views: int, limit: int) -> str:
    return (
        f"{actor} has viewed the shielded record {uid} {views} times today (more than {limit}) and has no request "
        "or brokering link to the child. Nothing was blocked. See who viewed the record on its page (managers)."
    )


def access_log_pruned(removed: int, days: int) -> str:
    return f"{removed} access log entries older than {days} days removed (retention)"


# ------------------------------------------------------------------------------- brokering contact
# Messages about a contact request carry its id, its urgency, a reminder's number and an outcome: never the
# child's name or details, the purpose, or the asker's contact details.


def contact_asked_subject(contact_request_id: str, urgency: str) -> str:
    return f"Contact request {contact_request_id} ({urgency}): a shielded child"


def contact_asked_body(contact_request_id: str, urgency: str) -> str:
    return (
        f"A member of staff has asked the team to broker contact with a shielded child: contact request "
        f"{contact_request_id} ({urgency}). A manager should take it: shielding contact take {contact_request_id}"
    )


def contact_asked_audit(urgency: str) -> str:
    return f"contact with a shielded child asked for ({urgency}); the purpose is kept with the contact request"


def contact_reminder_subject(contact_request_id: str, urgency: str, number: int) -> str:
    escalated = "ESCALATED " if number > 1 else ""
    return f"{escalated}Reminder {number}: contact request {contact_request_id} ({urgency}) is waiting for a manager"


def contact_reminder_body(contact_request_id: str, urgency: str, number: int, waited: str) -> str:
    return (
        f"Contact request {contact_request_id} ({urgency}) has waited {waited} without a manager taking it "
        f"(reminder {number}). It stays open until a manager takes it: shielding contact take {contact_request_id}"
    )


def contact_reminder_audit(urgency: str, number: int) -> str:
    return f"reminder {number} to the managers: {urgency} contact request not yet taken"


def contact_waited(urgency: str, number: int) -> str:
    if urgency == "urgent":
        return f"{number} hour{'s' if number != 1 else ''}"
    return f"{2 * number} working days"


CONTACT_TAKEN_AUDIT = "contact request taken; the manager who took it may see the record's hidden details"
CONTACT_DETAILS_VIEWED_AUDIT = "hidden details seen to broker contact"


def contact_closed_audit(outcome: str, reason: str) -> str:
    return f"contact request closed: {outcome}, because {reason}"


def contact_outcome_subject(contact_request_id: str) -> str:
    return f"Your contact request {contact_request_id}"


def contact_outcome_body(contact_request_id: str, outcome: str) -> str:
    if outcome == "passed-on":
        told = "A manager has passed your details on; the family or the service working with them will contact you."
    else:
        told = "A manager has decided not to pass your request on. Call the Integrated Working Team to discuss it."
    return f"Contact request {contact_request_id}: {told}"


def contact_outcome_for_asker(outcome: str | None, taken: bool) -> str:
    """What the person who asked is told of their request (never who the manager reached, nor how)."""
    if outcome == "passed-on":
        return "A manager has passed your details on; the family or the service working with them will contact you."
    if outcome == "declined":
        return "A manager has decided not to pass your request on. Call the Integrated Working Team to discuss it."
    if taken:
        return "A manager has taken your request and is arranging contact."
    return "Your request is waiting for a manager to take it."


def contact_not_shielded(uid: str) -> str:
    return f"Record {uid} is not shielded: its record shows how to reach the child, so there is nothing to broker."


def contact_not_found(contact_request_id: str) -> str:
    return f"There is no contact request {contact_request_id}."


def contact_already_taken(contact_request_id: str, taken_by: str) -> str:
    return f"Contact request {contact_request_id} has already been taken by {taken_by}."


def contact_already_closed(contact_request_id: str) -> str:
    return f"Contact request {contact_request_id} is already closed."


def contact_not_taken(contact_request_id: str) -> str:
    return f"Contact request {contact_request_id} has not been taken yet: take it first, then close it."


def contact_own_request(actor: str, contact_request_id: str) -> str:
    return f"{actor!r} asked for contact request {contact_request_id} and so cannot take it; another manager must"


def contact_not_taker(actor: str, contact_request_id: str, taken_by: str) -> str:
    return (
        f"{actor!r} did not take contact request {contact_request_id}; only {taken_by}, who took it, can see its "
        "details or close it"
    )


def contact_not_yours(actor: str, contact_request_id: str) -> str:
    return (
        f"{actor!r} did not ask for contact request {contact_request_id}; only the person who asked, and managers, "
        "can see it"
    )
