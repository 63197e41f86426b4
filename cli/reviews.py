"""Commands for reviewers and child-protection staff: decide a review, unshield, read a request's status."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.app import JsonOption, app, run
from cli.context import Context, segment
from cli.errors import CommandError
from cli.render import emit, iso, request_status
from shielding.domain import RequestStatus, ReviewOutcome, UnshieldOutcome
from shielding.settings import get_settings


@app.command()
@run
def review(
    request_id: Annotated[str, typer.Argument(help="The shielding request id.")],
    approve: Annotated[bool, typer.Option("--approve", help="Keep the record shielded.")] = False,
    unshield: Annotated[bool, typer.Option("--unshield", help="Lift the shield (needs --reason).")] = False,
    reason: Annotated[str | None, typer.Option(help="Why (required to unshield).")] = None,
    as_json: JsonOption = False,
) -> None:
    """A reviewer's decision on a review that has fallen due."""
    if approve == unshield:
        raise CommandError("choose exactly one of --approve or --unshield")
    if unshield and not (reason or "").strip():
        raise CommandError("--unshield needs --reason")
    body = {"decision": "approve" if approve else "unshield", "reason": reason}
    with Context(get_settings()) as ctx:
        answer = ctx.post(f"/api/requests/{segment(request_id)}/review", json=body)
    outcome = ReviewOutcome.model_validate(answer)
    payload = {
        "request_id": request_id,
        **outcome.model_dump(mode="json"),
        "next_review_at": iso(outcome.next_review_at),
    }
    emit(as_json, payload, [outcome.message])


@app.command("unshield")
@run
def unshield_command(
    request_id: Annotated[str, typer.Argument(help="The shielding request id.")],
    reason: Annotated[str, typer.Option(help="Why the shield is no longer needed.")],
    as_json: JsonOption = False,
) -> None:
    """Lift the shield because circumstances changed; ends the lifecycle."""
    with Context(get_settings()) as ctx:
        answer = ctx.post(f"/api/requests/{segment(request_id)}/unshield", json={"reason": reason})
    outcome = UnshieldOutcome.model_validate(answer)
    emit(as_json, {"request_id": request_id, **outcome.model_dump(mode="json")}, [outcome.message])


@app.command()
@run
def status(
    request_id: Annotated[str, typer.Argument(help="The shielding request id.")],
    as_json: JsonOption = False,
) -> None:
    """Stage, deadlines and decisions so far."""
    with Context(get_settings()) as ctx:
        st = RequestStatus.model_validate(ctx.get(f"/api/requests/{segment(request_id)}"))
    emit(as_json, *request_status(st))
