"""What the API accepts: the request bodies. None of them names who is acting; the session does."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from shielding.domain import MAX_TEXT, ShortText, no_control_chars

# A reason as the domain stores it (no control characters, at most MAX_TEXT); empty is let through so each
# route can say in its own words that a reason is needed.
Reason = Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_TEXT), AfterValidator(no_control_chars)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(BaseModel):
    """Every refusal and failure: one sentence for the person at the keyboard."""

    detail: str


class SignIn(Body):
    name: ShortText
    password: str = Field(max_length=1000)


class SignedIn(BaseModel):
    name: str
    roles: list[str]
    token: str | None = None
    csrf_token: str | None = None
    idle_timeout_minutes: float


class Me(BaseModel):
    name: str
    roles: list[str]
    auth_method: str


class RelatedRecord(Body):
    """A decision about a record that shares an address or a carer with a child in the request."""

    uid: str = Field(max_length=64)
    decision: Literal["added", "not-added"]
    reason: Reason | None = Field(default=None, description="Why it is not added (needed for not-added)")


class Intake(Body):
    """What the intake officer took down on the call (checked by the service, every problem named)."""

    children: list[str] = Field(default_factory=list, max_length=5000)
    criteria: list[str] = Field(default_factory=list, max_length=100)
    other_description: str | None = None
    reason: str | None = None
    requestor_type: str | None = None
    requestor_name: str | None = None
    requestor_organisation: str | None = None
    requestor_phone: str | None = None
    requestor_email: str | None = None
    called_at: str | None = Field(default=None, description="ISO 8601 with its UTC offset; now when absent")
    request_id: str | None = Field(default=None, description="Repeat an unconfirmed intake under its request id")
    related_records: list[RelatedRecord] = Field(
        default_factory=list,
        max_length=50,
        description="Every record sharing an address or a carer with a child in the request: added, or not and why",
    )


class Review(Body):
    decision: Literal["approve", "unshield"]
    reason: Reason | None = None


class Unshield(Body):
    reason: Reason


class Override(Body):
    reason: Reason
    # Local accounts prove who they are again with their password; single sign-on accounts sign in again.
    password: str | None = Field(default=None, max_length=1000)


class NewUser(Body):
    name: ShortText
    role: str = Field(max_length=40)
    password: str | None = Field(default=None, max_length=1000)
    oidc_subject: str | None = Field(default=None, max_length=255)


class StaffAddress(Body):
    """A staff member's address for messages (shielding.delivery); a field left out stays as it is, null clears it."""

    email: (
        Annotated[
            str,
            StringConstraints(
                strip_whitespace=True,
                max_length=254,
                pattern=r"^[!-?A-~]+@[!-?A-~]+\.[!-?A-~]+$",
            ),
        ]
        | None
    ) = None
    phone: (
        Annotated[str, StringConstraints(strip_whitespace=True, max_length=32, pattern=r"^\+?[0-9 ()-]{6,32}$")] | None
    ) = None


class DeviceStart(BaseModel):
    handle: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None = None
    interval: int = 5
    expires_in: int


class DevicePoll(Body):
    handle: str = Field(max_length=200)


class ContactAsk(Body):
    """Asking the team to broker contact with a shielded child: why, how soon, and how to reach the asker."""

    purpose: Reason = Field(description="Why contact is needed (kept with the request; never in a message)")
    urgency: Literal["urgent", "routine"] = Field(
        description="urgent: reminded each hour; routine: every 2 working days"
    )
    email: str | None = Field(default=None, max_length=254, description="Where to tell you the outcome")
    phone: str | None = Field(default=None, max_length=40, description="Where to tell you the outcome")


class ContactClose(Body):
    outcome: Literal["passed-on", "declined"]
    reason: Reason
