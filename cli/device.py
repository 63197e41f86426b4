"""Single sign-on from a terminal, through the service (a device-code flow): the service starts a sign-in
with the identity provider, the person opens the address shown and types the code, and this command asks the
service every `interval` seconds until the sign-in is done, refused or expired.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import typer

from cli.context import Context, answer
from cli.errors import CommandError, NotSignedIn, ServiceRefused

PENDING = 428  # Precondition Required: the person has not finished signing in yet
SLOW_DOWN = 429
MIN_INTERVAL_SECONDS = 1.0
MAX_INTERVAL_SECONDS = 60.0
SLOW_DOWN_STEP_SECONDS = 5.0


def _tell(start: dict[str, Any]) -> None:
    typer.echo(f"To sign in, open {start['verification_uri']} and enter the code {start['user_code']}", err=True)
    complete = start.get("verification_uri_complete")
    if complete and complete != start["verification_uri"]:
        typer.echo(f"(or open {complete}, which carries the code)", err=True)
    typer.echo("Waiting for you to finish signing in...", err=True)


def _retry_after(response: httpx.Response) -> float:
    """The service's own "ask again in N seconds" (it passes on the provider's `slow_down`), else 0."""
    try:
        return min(float(response.headers.get("retry-after", "0")), MAX_INTERVAL_SECONDS)
    except ValueError:
        return 0.0


def device_sign_in(ctx: Context) -> dict[str, Any]:
    """The service's `SignedIn` answer once the person has signed in with the identity provider."""
    start = ctx.post("/api/auth/device")
    for key in ("handle", "user_code", "verification_uri", "expires_in"):
        if key not in (start or {}):
            raise CommandError("the shielding service did not start a single sign-on; is it set up for one?")
    _tell(start)
    interval = max(float(start.get("interval") or 5), MIN_INTERVAL_SECONDS)
    deadline = time.monotonic() + float(start["expires_in"])
    while True:
        time.sleep(interval)
        if time.monotonic() > deadline:
            raise CommandError("the sign-in code expired before sign-in was finished; run `shielding login` again")
        response = ctx.http.post("/api/auth/device/token", json={"handle": start["handle"]})
        if response.status_code == PENDING:
            interval = max(interval, _retry_after(response))
            continue
        if response.status_code == SLOW_DOWN:
            interval += SLOW_DOWN_STEP_SECONDS
            continue
        try:
            return answer(response)  # type: ignore[no-any-return]
        except NotSignedIn:
            raise ServiceRefused(response.status_code, "single sign-on did not complete; nothing was saved") from None
