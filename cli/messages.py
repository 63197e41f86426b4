"""Managers' commands on the outbox: what was sent, what is waiting, and what failed and why."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.app import JsonOption, app, run
from cli.context import Context
from cli.render import emit
from shielding.settings import get_settings

messages_app = typer.Typer(help="The messages the service sends (managers).", no_args_is_help=True)
app.add_typer(messages_app, name="messages")


def message_lines(found: list[dict[str, Any]]) -> list[str]:
    """One line a message (number, when, status, to whom, subject), then the reason it failed; addresses masked."""
    lines = []
    for m in found:
        when = str(m["created_at"])[:16].replace("T", " ")
        about = f" {m['request_id']}" if m.get("request_id") else ""
        lines.append(
            f"{m['notification_id']:<7} {when}  {m['status']:<12} {m['recipient_kind']:<12}{about}  {m['subject']}"
        )
        if m.get("failure"):
            lines.append(f"        failed: {m['failure']}")
        for d in m.get("deliveries", []):
            outcome = (
                f"sent {str(d['sent_at'])[:16].replace('T', ' ')}"
                if d.get("sent_at")
                else d.get("not_possible") or "being sent"
            )
            lines.append(f"        {d['recipient']} ({d['channel']}): {outcome}")
    return lines or ["no messages"]


@messages_app.command("list")
@run
def messages_list(
    failed: Annotated[bool, typer.Option("--failed", help="Only the messages that failed.")] = False,
    request_id: Annotated[str | None, typer.Option("--request", help="Only the messages about this request.")] = None,
    as_json: JsonOption = False,
) -> None:
    """The newest messages, each with its status, reason and deliveries (managers)."""
    with Context(get_settings()) as ctx:
        listed = ctx.get("/api/messages", failed="true" if failed else None, request=request_id)
    emit(as_json, listed, message_lines(listed["messages"]))
