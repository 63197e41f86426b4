"""Commands for intake officers: take a request by phone, record its written form."""

from __future__ import annotations

import contextlib
import mimetypes
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from cli.app import JsonOption, app, run
from cli.context import Context, segment
from cli.errors import CommandError
from cli.render import acknowledgement, emit, iso
from shielding.domain import REQUEST_ID_PATTERN, FormOutcome, IntakeAcknowledgement
from shielding.settings import get_settings
from starter import IntakeDraft, Refusal
from starter.validation import RelatedDraft


def related_decisions(added: list[str], not_added: list[str]) -> list[RelatedDraft]:
    """--add-related UID and --not-related UID=REASON as the service's decisions about related records."""
    decisions = [RelatedDraft(uid=uid.strip(), decision="added") for uid in added]
    for item in not_added:
        uid, sep, reason = item.partition("=")
        if not sep or not uid.strip() or not reason.strip():
            raise CommandError("--not-related needs UID=REASON (the record's uid, then why it is not added)")
        decisions.append(RelatedDraft(uid=uid.strip(), decision="not-added", reason=reason.strip()))
    return decisions


@app.command()
@run
def request(
    child: Annotated[list[str], typer.Option("--child", help="Child uid (repeat for siblings).")],
    criterion: Annotated[list[str], typer.Option("--criterion", help="Criterion code (repeatable).")],
    reason: Annotated[str, typer.Option(help="The reason, in the caller's words.")],
    requestor_type: Annotated[str, typer.Option(help="professional or public.")],
    requestor_name: Annotated[str, typer.Option(help="Who is asking.")],
    requestor_organisation: Annotated[str | None, typer.Option(help="Organisation (professionals).")] = None,
    requestor_phone: Annotated[str | None, typer.Option(help="Phone number.")] = None,
    requestor_email: Annotated[str | None, typer.Option(help="Email address.")] = None,
    called_at: Annotated[str | None, typer.Option(help="Time of the call, ISO 8601 with offset.")] = None,
    other_description: Annotated[
        str | None, typer.Option(help="Description of the circumstances for other-significant-harm.")
    ] = None,
    request_id: Annotated[
        str | None, typer.Option(help="Repeat an unconfirmed intake under the request id it was given.")
    ] = None,
    add_related: Annotated[
        list[str] | None,
        typer.Option(
            "--add-related",
            help="A record sharing an address or a carer with a child: add it (siblings/family members). Repeatable.",
        ),
    ] = None,
    not_related: Annotated[
        list[str] | None,
        typer.Option(
            "--not-related",
            metavar="UID=REASON",
            help="A record sharing an address or a carer with a child, not added, and why. Repeatable.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Take a shielding request by phone; returns once every child is shielded.

    Every record that shares an address or a carer with a child in the request needs a decision: the service
    names them, then --add-related UID or --not-related UID=REASON for each.
    """
    draft = IntakeDraft(
        children=child,
        criteria=criterion,
        other_description=other_description,
        reason=reason,
        requestor_type=requestor_type,
        requestor_name=requestor_name,
        requestor_organisation=requestor_organisation,
        requestor_phone=requestor_phone,
        requestor_email=requestor_email,
        called_at=called_at,
        related_records=related_decisions(add_related or [], not_related or []),
    )
    if request_id is not None and not REQUEST_ID_PATTERN.match(request_id):
        raise CommandError(f"{request_id!r} is not a shielding request id (they look like SR-ABCDEFGH2345)")
    with Context(get_settings()) as ctx:
        answer = ctx.post("/api/requests", json={**draft.model_dump(mode="json"), "request_id": request_id})
    emit(as_json, *acknowledgement(IntakeAcknowledgement.model_validate(answer)))


def _open_documents(paths: list[Path], stack: contextlib.ExitStack) -> list[tuple[str, tuple[str, BinaryIO, str]]]:
    """Each document as one multipart part named `documents`, read as it is sent (the service checks sizes)."""
    if not paths:
        raise Refusal("A form needs at least one document (the completed form, then any supporting documents).")
    parts: list[tuple[str, tuple[str, BinaryIO, str]]] = []
    for path in paths:
        try:
            if not path.is_file():
                raise Refusal(f"The document {path.name!r} cannot be found or is not a file.")
            handle = stack.enter_context(path.open("rb"))
        except OSError as err:
            raise Refusal(f"The document {path.name!r} cannot be read ({err.strerror or 'unreadable'}).") from None
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        parts.append(("documents", (path.name, handle, kind)))
    return parts


@app.command()
@run
def form(
    request_id: Annotated[str, typer.Argument(help="The shielding request id.")],
    document: Annotated[list[Path], typer.Option("--document", help="The form and supporting documents.")],
    as_json: JsonOption = False,
) -> None:
    """Record the written form and its supporting documents."""
    with contextlib.ExitStack() as stack:
        files = _open_documents(document, stack)
        ctx = stack.enter_context(Context(get_settings()))
        answer = ctx.post(f"/api/requests/{segment(request_id)}/form", files=files)
    outcome = FormOutcome.model_validate(answer)
    payload = {"request_id": request_id, **outcome.model_dump(mode="json"), "received_at": iso(outcome.received_at)}
    emit(as_json, payload, [outcome.message])
