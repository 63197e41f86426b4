"""Every failure as a JSON answer a person can read (`{"detail": "..."}`); never a stack trace."""

from __future__ import annotations

import asyncpg
from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from temporalio.service import RPCError

from shielding.access import AccessDenied, InvalidChange
from shielding.importer import ImportRefused
from shielding.log import get_logger
from shielding.settings import ConfigurationError
from starter import IntakeTimeout, Refusal
from starter.identity import NotSignedIn, SignInFailed

log = get_logger(__name__)


NUL_REFUSAL = "The request contains a character that is not allowed (a NUL character); nothing was changed."
# Every answer carries these, errors included (a 500 is answered outside the app's middleware).
SECURITY_HEADERS = {
    # Shielded details must never sit in a browser or proxy cache.
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
}


class NeedsFreshSignIn(Exception):
    """Break-glass needs the person to prove who they are again, now."""


def _answer(code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=code, headers=headers)


def _field(loc: tuple[object, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path") and not isinstance(p, int)]
    name = ".".join(parts) or "request"
    return name if name.isprintable() and len(name) < 80 else "a field"


def describe_request_error(err: RequestValidationError) -> str:
    problems = []
    for item in err.errors()[:8]:
        message = str(item.get("msg", "is not valid")).removeprefix("Value error, ")
        problems.append(f"{_field(tuple(item.get('loc', ())))}: {message}")
    return "The request is not valid: " + "; ".join(dict.fromkeys(problems)) + "."


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Refusal)
    async def refused(_: Request, err: Refusal) -> JSONResponse:
        return _answer(status.HTTP_422_UNPROCESSABLE_CONTENT, str(err))

    @app.exception_handler(ImportRefused)
    async def import_refused(_: Request, err: ImportRefused) -> JSONResponse:
        return _answer(status.HTTP_422_UNPROCESSABLE_CONTENT, str(err))

    @app.exception_handler(InvalidChange)
    async def invalid_change(_: Request, err: InvalidChange) -> JSONResponse:
        return _answer(status.HTTP_422_UNPROCESSABLE_CONTENT, str(err))

    @app.exception_handler(asyncpg.CharacterNotInRepertoireError)
    async def unstorable(_: Request, err: Exception) -> JSONResponse:
        # PostgreSQL text cannot hold a NUL character: nothing was stored or changed.
        return _answer(status.HTTP_422_UNPROCESSABLE_CONTENT, NUL_REFUSAL)

    @app.exception_handler(AccessDenied)
    async def denied(_: Request, err: AccessDenied) -> JSONResponse:
        return _answer(status.HTTP_403_FORBIDDEN, str(err))

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(_: Request, err: NotSignedIn) -> JSONResponse:
        return _answer(status.HTTP_401_UNAUTHORIZED, str(err), {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(SignInFailed)
    async def sign_in_failed(_: Request, err: SignInFailed) -> JSONResponse:
        return _answer(status.HTTP_401_UNAUTHORIZED, str(err))

    @app.exception_handler(NeedsFreshSignIn)
    async def needs_fresh(_: Request, err: NeedsFreshSignIn) -> JSONResponse:
        return _answer(status.HTTP_401_UNAUTHORIZED, str(err))

    @app.exception_handler(IntakeTimeout)
    async def timed_out(_: Request, err: IntakeTimeout) -> JSONResponse:
        return _answer(status.HTTP_504_GATEWAY_TIMEOUT, str(err))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        return _answer(status.HTTP_422_UNPROCESSABLE_CONTENT, describe_request_error(err))

    @app.exception_handler(ConfigurationError)
    async def misconfigured(_: Request, err: ConfigurationError) -> JSONResponse:
        return _answer(status.HTTP_503_SERVICE_UNAVAILABLE, "The service is not configured correctly.")

    @app.exception_handler(asyncpg.PostgresConnectionError)
    async def database_down(_: Request, err: Exception) -> JSONResponse:
        return _answer(status.HTTP_503_SERVICE_UNAVAILABLE, "The directory database cannot be reached; try again.")

    @app.exception_handler(RPCError)
    async def temporal_down(_: Request, err: Exception) -> JSONResponse:
        return _answer(status.HTTP_503_SERVICE_UNAVAILABLE, "The workflow service cannot be reached; try again.")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:
        # The type only: an exception's text can carry what a record holds.
        log.error("request failed", path=request.url.path, error=type(err).__name__)
        return _answer(
            status.HTTP_500_INTERNAL_SERVER_ERROR,
            "Unexpected failure; nothing further was changed. Try again, or ask operations.",
            SECURITY_HEADERS,  # answered outside the app's header middleware
        )
