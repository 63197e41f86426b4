"""Signing in and out: `shielding login NAME` (a local account) or `shielding login` (single sign-on, by a
code typed in a browser), and `shielding logout`. The session is kept in the credentials file (`cli.credentials`).
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

import typer

from cli import credentials
from cli.app import app, run
from cli.context import Context
from cli.credentials import SavedSession
from cli.device import device_sign_in
from cli.errors import CommandError, NotSignedIn
from cli.passwords import read_password
from shielding.settings import get_settings


def _keep(ctx: Context, signed_in: dict[str, Any], auth_method: str) -> None:
    token = signed_in.get("token")
    if not isinstance(token, str) or not token:
        raise CommandError("the shielding service issued no session token; nothing was saved")
    session = SavedSession(
        api_url=ctx.url,
        name=signed_in["name"],
        roles=signed_in.get("roles") or [],
        token=token,
        auth_method=auth_method,
        idle_timeout_minutes=signed_in.get("idle_timeout_minutes") or 0,
    )
    credentials.save(ctx.settings, session)
    roles = ", ".join(session.roles) or "no roles yet"
    typer.echo(
        f"signed in as {session.name} ({roles}); the session ends after "
        f"{session.idle_timeout_minutes:g} minutes without use, or at `shielding logout`"
    )


@app.command()
@run
def login(
    name: Annotated[
        str | None, typer.Argument(help="Your account name (a local account); omit it for single sign-on.")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of standard input.")
    ] = False,
) -> None:
    """Sign in to the shielding service; every other staff command acts as you until you sign out."""
    with Context(get_settings(), anonymous=True) as ctx:
        if name is None:
            if password_stdin:
                raise CommandError("single sign-on takes no password; give your NAME to sign in with a password")
            _keep(ctx, device_sign_in(ctx), "oidc")
            return
        password = read_password(password_stdin, needed_for="signing in")
        _keep(ctx, ctx.post("/api/auth/login", json={"name": name, "password": password}), "password")


@app.command()
@run
def logout() -> None:
    """End your session at the service that issued it, and forget it here."""
    settings = get_settings()
    saved = credentials.load(settings)
    if saved is None:
        credentials.delete(settings)  # nothing usable in it
        typer.echo("not signed in")
        return
    # NotSignedIn: the service had already ended it (signed out elsewhere, or idle too long).
    with Context(settings, url=saved.api_url) as ctx, contextlib.suppress(NotSignedIn):
        ctx.post("/api/auth/logout")
    credentials.delete(settings)
    typer.echo(f"signed out ({saved.name})")
