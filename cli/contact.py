"""`shielding contact …`: brokering contact with a shielded child, through the web service as the person signed in.

shielding contact request UID --purpose TEXT [--urgent] [--email E] [--phone P]   anyone working with records
shielding contact list                                    managers: the queue; others: their own
shielding contact show ID                                 the person who asked, managers
shielding contact take ID                                 managers (never a request they asked for)
shielding contact close ID --outcome passed-on|declined --reason TEXT   the manager who took it
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.app import JsonOption, app, run
from cli.context import Context, segment
from cli.errors import CommandError
from cli.render import break_glass_record, emit, iso
from shielding.brokering import ContactRequestView
from shielding.settings import get_settings

contact_app = typer.Typer(help="Ask the team to broker contact with a shielded child; managers take and close.")
app.add_typer(contact_app, name="contact", no_args_is_help=True)


def _payload(view: ContactRequestView) -> dict[str, Any]:
    payload = view.model_dump(mode="json", exclude_none=True)
    for key in ("asked_at", "last_reminded_at", "taken_at", "closed_at"):
        if getattr(view, key) is not None:
            payload[key] = iso(getattr(view, key))
    return payload


def _summary(view: ContactRequestView) -> str:
    reminders = f"{view.reminders} reminder{'s' if view.reminders != 1 else ''}"
    who = f"  taken by {view.taken_by}" if view.taken_by else ""
    outcome = f"  {view.outcome.value}" if view.outcome else ""
    return (
        f"{view.contact_request_id}  {view.urgency.value:8} {view.status.value:8} {view.child_uid:20} "
        f"asked {iso(view.asked_at)}  {reminders}{who}{outcome}"
    )


def _lines(view: ContactRequestView) -> list[str]:
    lines = [
        f"contact request {view.contact_request_id}: {view.status.value} ({view.urgency.value})",
        f"child:          {view.child_uid}",
        f"asked at:       {iso(view.asked_at)}" + (f" by {view.asked_by}" if view.asked_by else ""),
        f"reminders:      {view.reminders}"
        + (f" (last {iso(view.last_reminded_at)})" if view.last_reminded_at else ""),
    ]
    if view.taken_by:
        lines.append(f"taken by:       {view.taken_by} at {iso(view.taken_at)}")
    if view.outcome:
        lines.append(f"outcome:        {view.outcome.value} at {iso(view.closed_at)}")
    if view.outcome_reason:
        lines.append(f"reason:         {view.outcome_reason}")
    if view.hidden is not None:
        lines.append(f"purpose:        {view.purpose}")
        lines.append(f"reply to:       {', '.join(c for c in (view.contact_email, view.contact_phone) if c)}")
        lines.append("HIDDEN DETAILS (seen to broker contact; this view is audited):")
        lines.extend("  " + line for line in break_glass_record(view.hidden))
    if view.asked_by is None:  # the person who asked: what they are told
        lines.append(view.message)
    return lines


@contact_app.command("request")
@run
def request_contact(
    uid: Annotated[str, typer.Argument(help="The shielded child's unique identifier.")],
    purpose: Annotated[str, typer.Option(help="Why you need to contact the child or their family.")],
    urgent: Annotated[bool, typer.Option("--urgent", help="Urgent (reminded each hour); routine otherwise.")] = False,
    email: Annotated[str | None, typer.Option(help="Your email address, to be told the outcome.")] = None,
    phone: Annotated[str | None, typer.Option(help="Your phone number, to be told the outcome.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Ask the team to broker contact with a shielded child; the managers are told at once."""
    if not (email or phone):
        raise CommandError("give --email or --phone (or both), so the team can tell you the outcome")
    body = {"purpose": purpose, "urgency": "urgent" if urgent else "routine", "email": email, "phone": phone}
    with Context(get_settings()) as ctx:
        view = ContactRequestView.model_validate(ctx.post(f"/api/children/{segment(uid)}/contact-requests", json=body))
    emit(
        as_json,
        _payload(view),
        [f"contact request {view.contact_request_id}: {view.status.value} ({view.urgency.value})", view.message],
    )


@contact_app.command("list")
@run
def list_contact(as_json: JsonOption = False) -> None:
    """Managers: every contact request, open ones first, urgent first. Others: the ones you asked for."""
    with Context(get_settings()) as ctx:
        found = [ContactRequestView.model_validate(v) for v in ctx.get("/api/contact-requests")["contact_requests"]]
    lines = [f"{len(found)} contact request{'s' if len(found) != 1 else ''}"] + [_summary(v) for v in found]
    emit(as_json, {"contact_requests": [_payload(v) for v in found]}, lines)


@contact_app.command("show")
@run
def show_contact(
    contact_request_id: Annotated[str, typer.Argument(help="The contact request id (CR-…).")],
    as_json: JsonOption = False,
) -> None:
    """One contact request (for the manager who took it: with the hidden details, audited)."""
    with Context(get_settings()) as ctx:
        view = ContactRequestView.model_validate(ctx.get(f"/api/contact-requests/{segment(contact_request_id)}"))
    emit(as_json, _payload(view), _lines(view))


@contact_app.command("take")
@run
def take_contact(
    contact_request_id: Annotated[str, typer.Argument(help="The contact request id (CR-…).")],
    as_json: JsonOption = False,
) -> None:
    """Take a contact request (managers; never one you asked for): shows the record's hidden details, audited."""
    with Context(get_settings()) as ctx:
        view = ContactRequestView.model_validate(ctx.post(f"/api/contact-requests/{segment(contact_request_id)}/take"))
    emit(as_json, _payload(view), _lines(view))


@contact_app.command("close")
@run
def close_contact(
    contact_request_id: Annotated[str, typer.Argument(help="The contact request id (CR-…).")],
    outcome: Annotated[str, typer.Option(help="passed-on or declined.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log; the asker is told only the outcome).")],
    as_json: JsonOption = False,
) -> None:
    """Record the outcome of a contact request you took; the person who asked is told it."""
    if outcome not in ("passed-on", "declined"):
        raise CommandError("--outcome must be passed-on or declined")
    body = {"outcome": outcome, "reason": reason}
    with Context(get_settings()) as ctx:
        answer = ctx.post(f"/api/contact-requests/{segment(contact_request_id)}/close", json=body)
    view = ContactRequestView.model_validate(answer)
    told = "the person who asked is told the outcome (not the reason)"
    emit(as_json, _payload(view), [f"contact request {view.contact_request_id}: closed ({outcome}); {told}"])
