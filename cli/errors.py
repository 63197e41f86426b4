"""Every failure a command can meet, as the one line a person is shown (never a stack trace)."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import ValidationError

from shielding.settings import ConfigurationError


class CommandError(Exception):
    """A failure to report as one line."""


def one_line(message: str) -> str:
    """A message as one printable line: a newline or control character from the input is shown escaped."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in message)


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {one_line(message)}", err=True)
    return typer.Exit(code)


def describe_error(err: BaseException) -> str:  # noqa: C901 - one flat table of failure kinds
    import asyncpg
    from temporalio.service import RPCError

    from shielding.access import AccessDenied
    from shielding.importer import ImportRefused
    from starter import IntakeTimeout, Refusal

    if isinstance(err, Refusal | CommandError | ConfigurationError | AccessDenied | ImportRefused | IntakeTimeout):
        return str(err)
    if isinstance(err, ValidationError):
        return "invalid input: " + "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()[:5]
        )
    if isinstance(err, OSError | asyncpg.PostgresConnectionError) and not isinstance(err, FileNotFoundError):
        return "the directory database cannot be reached; is `shielding dev` running, or DATABASE_URL set?"
    if isinstance(err, FileNotFoundError):
        return f"file not found: {Path(err.filename or '').name or 'unknown'}"
    if isinstance(err, RPCError):
        return "the workflow service cannot be reached or refused the call; is `shielding dev` running?"
    if isinstance(err, RuntimeError) and "Failed client connect" in str(err):
        return "the workflow service cannot be reached; is `shielding dev` running, or TEMPORAL_ADDRESS set?"
    if isinstance(err, asyncpg.PostgresError):
        return "the directory database refused the operation"
    if isinstance(err, TimeoutError):
        return "timed out waiting for the service; the action may still complete: check `shielding status`"
    return f"unexpected failure ({type(err).__name__}); nothing further was changed by this command"
