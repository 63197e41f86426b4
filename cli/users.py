"""Who may do what: the first manager (on the server, once), then managers add, remove and list staff
through the service."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated

import typer

from cli.app import JsonOption, run, users_app
from cli.context import Context, segment
from cli.passwords import read_password
from cli.render import emit, user_lines
from shielding.settings import Settings, get_settings

EmailOption = Annotated[str | None, typer.Option("--email", help="Their email address for messages.")]
PhoneOption = Annotated[str | None, typer.Option("--phone", help="Their phone number for text messages.")]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first line of standard input.")
]


async def _bootstrap(settings: Settings, name: str, password: str) -> None:
    from shielding import store
    from starter.identity import IdentityService

    pool = await store.create_pool(settings.resolved_database_url(), max_size=1)
    try:
        identity = IdentityService(pool, idle_timeout=timedelta(minutes=settings.session_idle_minutes))
        await identity.bootstrap_manager(name, password)
    finally:
        await pool.close()


@users_app.command("bootstrap")
@run
def users_bootstrap(
    name: Annotated[str, typer.Argument(help="The first manager's account name.")],
    password_stdin: PasswordStdin = False,
) -> None:
    """Create the first manager, straight in the database (DATABASE_URL); refused once any manager exists."""
    settings = get_settings()
    password = read_password(password_stdin, needed_for="the first manager")
    asyncio.run(_bootstrap(settings, name, password))
    typer.echo(f"user {name}: manager (the first); sign in with `shielding login {name}`")


@users_app.command("add")
@run
def users_add(
    name: Annotated[str, typer.Argument(help="The account name they sign in with.")],
    role: Annotated[str, typer.Option(help="intake, reviewer, manager, practitioner, child-protection or operations.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Set their password (a local account) from standard input.")
    ] = False,
    email: EmailOption = None,
    phone: PhoneOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add a user or grant them a role (managers); --email / --phone: where the service sends them messages."""
    body: dict[str, str] = {"name": name, "role": role}
    if password_stdin:
        body["password"] = read_password(True, needed_for="a local account")
    with Context(get_settings()) as ctx:
        added = ctx.post("/api/users", json=body)
        address = {k: v for k, v in (("email", email), ("phone", phone)) if v is not None}
        if address:
            added["address"] = ctx.put(f"/api/users/{segment(name)}/address", json=address)["changed"]
    lines = [f"user {added['name']}: {added['role']}"]
    lines += [f"  {field} {how} for messages" for field, how in added.get("address", {}).items()]
    emit(as_json, added, lines)


@users_app.command("address")
@run
def users_address(
    name: Annotated[str, typer.Argument(help="The account name.")],
    email: EmailOption = None,
    phone: PhoneOption = None,
    clear_email: Annotated[bool, typer.Option("--clear-email", help="Send them no more email.")] = False,
    clear_phone: Annotated[bool, typer.Option("--clear-phone", help="Forget their phone number.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Set or clear where the service sends a person messages (managers; audited, never the address itself)."""
    body: dict[str, str | None] = {}
    if email is not None or clear_email:
        body["email"] = None if clear_email else email
    if phone is not None or clear_phone:
        body["phone"] = None if clear_phone else phone
    with Context(get_settings()) as ctx:
        changed = ctx.put(f"/api/users/{segment(name)}/address", json=body)
    lines = [f"user {name}: {field} {how}" for field, how in changed["changed"].items()] or [f"user {name}: unchanged"]
    emit(as_json, changed, lines)


@users_app.command("remove")
@run
def users_remove(
    name: Annotated[str, typer.Argument(help="The account name.")],
    role: Annotated[str | None, typer.Option(help="Remove only this role (default: every role and sign-in).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Remove a role from a user, or every role and their sign-in (managers)."""
    with Context(get_settings()) as ctx:
        removed = ctx.delete(f"/api/users/{segment(name)}", role=role)
    emit(as_json, removed, [f"user {removed['name']}: removed {removed['removed']}"])


@users_app.command("list")
@run
def users_list(as_json: JsonOption = False) -> None:
    """Every account, its roles and how it signs in (managers)."""
    with Context(get_settings()) as ctx:
        listed = ctx.get("/api/users")
    emit(as_json, listed, user_lines(listed["users"]))
