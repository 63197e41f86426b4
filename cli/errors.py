"""Every failure a command can meet, as the one line a person is shown (never a stack trace)."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import ValidationError

from shielding.settings import ConfigurationError

NOT_SIGNED_IN = "you are not signed in, or your session has ended: run `shielding login` first"


class CommandError(Exception):
    """A failure to report as one line."""


class NotSignedIn(CommandError):
    """No saved session for this service, or the service says the session ended (logged out, idle too long)."""

    def __init__(self, message: str = NOT_SIGNED_IN) -> None:
        super().__init__(message)


class ServiceRefused(CommandError):
    """The service answered with an error: its `detail` sentence is what the person is shown."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


def one_line(message: str) -> str:
    """A message as one printable line: a newline or control character from the input is shown escaped."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in message)


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {one_line(message)}", err=True)
    return typer.Exit(code)


def _service_address(err: BaseException) -> str:
    try:
        url = err.request.url  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # httpx raises RuntimeError when no request is attached
        return "its address"
    return f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}"


def _http_error(err: BaseException) -> str | None:
    import httpx

    if isinstance(err, httpx.TimeoutException) and not isinstance(err, httpx.ConnectTimeout | httpx.PoolTimeout):
        return "timed out waiting for the service; the action may still complete: check `shielding status`"
    if isinstance(err, httpx.TransportError | httpx.InvalidURL | httpx.UnsupportedProtocol):
        return (
            f"the shielding service cannot be reached at {_service_address(err)}; "
            "is `shielding dev` running, or SHIELDING_API_URL set?"
        )
    return None


def describe_error(err: BaseException) -> str:  # noqa: C901 - one flat table of failure kinds
    import asyncpg
    from temporalio.service import RPCError

    from shielding.access import AccessDenied
    from shielding.importer import ImportRefused
    from starter import IntakeTimeout, Refusal

    if isinstance(err, Refusal | CommandError | ConfigurationError | AccessDenied | ImportRefused | IntakeTimeout):
        return str(err)
    if isinstance(err, UnicodeError):
        return "a value given is not valid text (it holds bytes that are not UTF-8); nothing was sent"
    if (http := _http_error(err)) is not None:
        return http
    if isinstance(err, ValidationError):
        return "invalid input: " + "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()[:5]
        )
    if isinstance(err, FileNotFoundError):
        return f"file not found: {Path(err.filename or '').name or 'unknown'}"
    if isinstance(err, OSError) and err.filename:
        return f"the file {Path(str(err.filename)).name!r} cannot be read ({err.strerror or 'unreadable'})"
    if isinstance(err, OSError | TimeoutError | asyncpg.PostgresConnectionError):
        # Only the commands that run on the server (bootstrap, migrate) open a database connection.
        return "the directory database cannot be reached; is `shielding dev` running, or DATABASE_URL set?"
    if isinstance(err, RPCError):
        return "the workflow service cannot be reached or refused the call; is `shielding dev` running?"
    if isinstance(err, RuntimeError) and "Failed client connect" in str(err):
        return "the workflow service cannot be reached; is `shielding dev` running, or TEMPORAL_ADDRESS set?"
    if isinstance(err, asyncpg.PostgresError):
        return "the directory database refused the operation"
    return f"unexpected failure ({type(err).__name__}); nothing further was changed by this command"
