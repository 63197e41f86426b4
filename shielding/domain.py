"""The shielding vocabulary: criteria, requestors, children, requests and their outcomes.

Every model here crosses a boundary (CLI -> Temporal -> activity -> PostgreSQL), so each one is a pydantic
model whose fields can grow without breaking running workflows (new fields always have defaults).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

UID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")
REQUEST_ID_PATTERN = re.compile(r"^SR-[A-Z0-9]{12}$")
MAX_CHILDREN_PER_REQUEST = 50
MAX_TEXT = 2000


class Criterion(StrEnum):
    DOMESTIC_VIOLENCE = "domestic-violence"
    ADOPTION_FOSTERING = "adoption-fostering"
    WITNESS_PROTECTION = "witness-protection"
    FORCED_MARRIAGE = "forced-marriage"
    TRAFFICKING = "trafficking"
    REFUGE = "refuge"
    LAC_EMERGENCY_PLACEMENT = "lac-emergency-placement"
    SERIOUS_SEXUAL_ASSAULT = "serious-sexual-assault"
    MURDER_MANSLAUGHTER_SUSPECT = "murder-manslaughter-suspect"
    ABDUCTION_RISK = "abduction-risk"
    CHILD_PROTECTION_LADO = "child-protection-lado"
    VULNERABLE_PRACTITIONER_CHILD = "vulnerable-practitioner-child"
    MARAC = "marac"
    CAFCASS = "cafcass"
    SERIOUS_CASE_REVIEW = "serious-case-review"
    POLITICAL_ASYLUM = "political-asylum"
    HIGH_PUBLIC_PROFILE = "high-public-profile"
    MILITARY_FAMILY = "military-family"
    SIBLING_FAMILY_MEMBER = "sibling-family-member"
    OTHER_SIGNIFICANT_HARM = "other-significant-harm"


CRITERION_LABELS: dict[Criterion, str] = {
    Criterion.DOMESTIC_VIOLENCE: "Domestic Violence including Family Domestic Violence court",
    Criterion.ADOPTION_FOSTERING: "Adoption and Fostering",
    Criterion.WITNESS_PROTECTION: "Witness Protection/ new identity",
    Criterion.FORCED_MARRIAGE: "Forced Marriage/ honour based violence",
    Criterion.TRAFFICKING: "Trafficking/ Prostitution",
    Criterion.REFUGE: "Refuge/ safe house",
    Criterion.LAC_EMERGENCY_PLACEMENT: "LAC – emergency placements",
    Criterion.SERIOUS_SEXUAL_ASSAULT: "Serious Sexual Assault (HAVEN) (victim or alleged perpetrator)",
    Criterion.MURDER_MANSLAUGHTER_SUSPECT: "Murder/ manslaughter suspects (under 18 years old)",
    Criterion.ABDUCTION_RISK: "Risk of abduction",
    Criterion.CHILD_PROTECTION_LADO: "Child Protection/ LADO cases",
    Criterion.VULNERABLE_PRACTITIONER_CHILD: "Children of vulnerable practitioners/ professionals",
    Criterion.MARAC: "MARAC (Multi – agency Risk Assessment Conference)",
    Criterion.CAFCASS: "CAFCASS (Child and Family Court Advisory and Support Service)",
    Criterion.SERIOUS_CASE_REVIEW: "Serious case review",
    Criterion.POLITICAL_ASYLUM: "Political / asylum cases where children may be at risk",
    Criterion.HIGH_PUBLIC_PROFILE: "Children whose parent's high public profile places them at risk",
    Criterion.MILITARY_FAMILY: "Child records of military personnel",
    Criterion.SIBLING_FAMILY_MEMBER: "Siblings/ family members of the above",
    Criterion.OTHER_SIGNIFICANT_HARM: (
        "Any other circumstances which places a child/ family at risk of significant harm"
    ),
}

OBJECTION_IN_PRINCIPLE = "objection-in-principle"
OBJECTION_IN_PRINCIPLE_EXPLANATION = (
    "It is not appropriate to shield a record if there is an objection to ContactPoint in principle."
)


class Gender(StrEnum):
    FEMALE = "female"
    MALE = "male"
    OTHER = "other"
    UNKNOWN = "unknown"


class RequestorType(StrEnum):
    PROFESSIONAL = "professional"
    PUBLIC = "public"


class Stage(StrEnum):
    """Where a shielding request is in its lifecycle; the value of the ShieldingStage search attribute."""

    INTAKE = "intake"
    AWAITING_FORM = "awaiting-form"
    SHIELDED = "shielded"
    REVIEW_DUE = "review-due"
    REFUSED = "refused"
    DUPLICATE = "duplicate"
    LAPSED = "lapsed"
    UNSHIELDED = "unshielded"

    @property
    def is_final(self) -> bool:
        return self in {Stage.REFUSED, Stage.DUPLICATE, Stage.LAPSED, Stage.UNSHIELDED}


class ReviewKind(StrEnum):
    SEVEN_DAY = "7-day"
    SIX_MONTH = "6-month"


class AuditAction(StrEnum):
    RECEIVED = "received"
    REFUSED = "refused"
    SHIELDED = "shielded"
    DUPLICATE = "duplicate"
    FORM_RECEIVED = "form-received"
    FORM_REFUSED = "form-refused"
    LAPSED = "lapsed"
    REVIEW_DUE = "review-due"
    REMINDER = "reminder"
    APPROVED = "approved"
    UNSHIELDED = "unshielded"
    IMPORTED = "imported"
    VIEWED_OVERRIDE = "override-viewed"
    UNAUTHORISED = "unauthorised"
    SIGNED_IN = "signed-in"
    SIGN_IN_FAILED = "sign-in-failed"
    SIGNED_OUT = "signed-out"
    ROLE_GRANTED = "role-granted"
    ROLE_REMOVED = "role-removed"
    ROLE_APPROVAL_ASKED = "role-approval-asked"
    # A message of the outbox could not be delivered (shielding.delivery): the plain-words reason, no address.
    NOTIFICATION_FAILED = "notification-failed"
    # A staff member's address for messages (email, phone) was set or cleared by a manager (never the value).
    STAFF_ADDRESS_CHANGED = "staff-address-changed"
    # Someone read Temporal payloads through the Web UI's codec endpoint (who, how many, which requests).
    PAYLOADS_DECODED = "payloads-decoded"
    # The retention job removed the content of a closed request's supporting documents (how many, in details).
    DOCUMENTS_REMOVED = "documents-removed"
    # At intake: a record sharing an address or a carer with a child in the request, added or not (and why not).
    RELATED_RECORD_DECIDED = "related-record-decided"
    # An import brought a record to an address or a carer that a shielded record has: reviewers are told.
    SHARED_DETAILS_FLAGGED = "shared-details-flagged"
    # Someone read the directory more often than the limit allows (the first refusal in each window).
    READS_LIMITED = "reads-limited"
    # Retention removed the oldest access log entries (how many, up to which entry, in details).
    ACCESS_LOG_PRUNED = "access-log-pruned"
    # A user with no request or brokering link viewed a shielded child's record more often in a day than allowed.
    VIEWS_FLAGGED = "views-flagged"
    # Brokering contact with a shielded child (shielding.brokering): asked, reminded, taken, the hidden details
    # seen by the manager who took it, closed with its outcome. Under the child and the contact request (CR-...).
    CONTACT_ASKED = "contact-asked"
    CONTACT_REMINDER = "contact-reminder"
    CONTACT_TAKEN = "contact-taken"
    CONTACT_DETAILS_VIEWED = "contact-details-viewed"
    CONTACT_CLOSED = "contact-closed"


def no_control_chars(value: str) -> str:
    # C0 (except tab), DEL and the C1 controls (NEL, CSI, ...), which terminals also act on.
    if any((ord(ch) < 32 and ch not in "\t") or 127 <= ord(ch) <= 159 for ch in value):
        raise ValueError("must not contain control characters")
    return value


Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT),
    AfterValidator(no_control_chars),
]
ShortText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(no_control_chars),
]
ChildUid = Annotated[str, StringConstraints(pattern=UID_PATTERN.pattern)]
RequestId = Annotated[str, StringConstraints(pattern=REQUEST_ID_PATTERN.pattern)]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9 ()-]{6,24}$")]
Email = Annotated[str, StringConstraints(strip_whitespace=True, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# The parts of a staff action's signature (shielding.action_auth); bounded, since anyone can send them.
ActionKeyId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
ActionNonce = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{16,64}$")]
ActionMac = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class ActionSignature(Model):
    """The service's signature on one action it sends a workflow: which key, who, when, a nonce, the MAC.

    Made and checked by `shielding.action_auth`; defined here so the models that carry it need no import of it.
    """

    key_id: ActionKeyId
    actor: ShortText
    issued_at: AwareDatetime
    nonce: ActionNonce
    mac: ActionMac


class Requestor(Model):
    type: RequestorType
    name: ShortText
    organisation: ShortText | None = None
    phone: Phone | None = None
    email: Email | None = None


class Address(Model):
    lines: list[ShortText] = Field(default_factory=list, max_length=8)
    postcode: ShortText | None = None


class Carer(Model):
    name: ShortText
    relationship: ShortText | None = None
    phone: Phone | None = None
    address: Address | None = None


class ChildRecord(Model):
    """One child in the directory, with every field; only the store and entitled roles see all of it."""

    uid: ChildUid
    given_name: ShortText
    family_name: ShortText
    aliases: list[ShortText] = Field(default_factory=list, max_length=20)
    gender: Gender
    date_of_birth: date
    address: Address | None = None
    carers: list[Carer] = Field(default_factory=list, max_length=20)
    school: ShortText | None = None
    gp_practice: ShortText | None = None
    practitioners: list[ShortText] = Field(default_factory=list, max_length=50)


class ShieldingRequestInput(Model):
    """A validated intake: what the workflow starts with. Built only by `validate_intake`."""

    request_id: RequestId
    children: list[ChildUid] = Field(min_length=1, max_length=MAX_CHILDREN_PER_REQUEST)
    criteria: list[Criterion] = Field(min_length=1)
    other_description: Text | None = None
    reason: Text
    requestor: Requestor
    called_at: AwareDatetime
    actor: ShortText = "intake"
    # The service's signature on this start (checked by the intake activity); None in histories made before it.
    signature: ActionSignature | None = None


class ChildOutcome(Model):
    uid: str
    shielded: bool
    existing_request_id: str | None = None


class IntakeAcknowledgement(Model):
    """What the caller is told once the directory hides every child's address (or why it does not)."""

    request_id: str
    stage: Stage
    children: list[ChildOutcome] = Field(default_factory=list)
    form_due_at: datetime | None = None
    review_7_day_at: datetime | None = None
    review_6_month_at: datetime | None = None
    message: str = ""


DocumentId = Annotated[
    str, StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
]


class FormSubmission(Model):
    # Validated where the payload is decoded, so a malformed id never reaches (and stalls) an activity.
    document_ids: list[DocumentId] = Field(min_length=1, max_length=50)
    actor: ShortText = "intake"
    signature: ActionSignature | None = None


class FormOutcome(Model):
    accepted: bool
    message: str
    received_at: datetime | None = None


class ReviewDecisionKind(StrEnum):
    APPROVE = "approve"
    UNSHIELD = "unshield"


class ReviewDecision(Model):
    decision: ReviewDecisionKind
    reason: Text | None = None
    actor: ShortText = "reviewer"
    signature: ActionSignature | None = None


class ReviewOutcome(Model):
    accepted: bool
    message: str
    stage: Stage
    next_review_at: datetime | None = None


class UnshieldRequest(Model):
    reason: Text
    actor: ShortText = "reviewer"
    signature: ActionSignature | None = None


class UnshieldOutcome(Model):
    accepted: bool
    message: str
    stage: Stage


class ReviewRecord(Model):
    kind: ReviewKind
    due_at: datetime
    decided_at: datetime | None = None
    decision: ReviewDecisionKind | None = None
    actor: str | None = None


class StatusQuery(Model):
    """Empty today; a model so fields (e.g. who asks) can be added without breaking callers."""


class RequestStatus(Model):
    request_id: str
    stage: Stage
    children: list[str] = Field(default_factory=list)
    called_at: datetime | None = None
    shielded_at: datetime | None = None
    form_due_at: datetime | None = None
    form_received_at: datetime | None = None
    next_review_at: datetime | None = None
    next_review_kind: ReviewKind | None = None
    review_due_since: datetime | None = None
    reminders_sent: int = 0
    reviews: list[ReviewRecord] = Field(default_factory=list)
    closed_reason: str | None = None
    last_message: str | None = None
