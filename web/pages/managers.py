"""What managers do: staff accounts and roles, and the break-glass alerts they investigate.

    GET  /users              every account, its roles and how it signs in; the form to add a person or a role
    POST /users              add a person (with a password) or give someone another role
    POST /users/remove       remove one role, or every role (the account can no longer sign in; its sessions end)
    GET  /managers/alerts    the alerts sent to the managers (each break-glass view sends one), newest first

Every change goes through `IdentityService` (`add_user`, `remove_user`), which checks the permission again and
audits it. A change answers with the updated list and a banner saying what changed; no person's name is put in
an address.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Form, Request, Response

from shielding.access import ROLES, AccessDenied, InvalidChange, NeedsSecondApproval
from shielding.store import break_glass as break_glass_store
from starter.identity import MIN_PASSWORD_LENGTH, Session
from web.deps import PartsDep
from web.pages.forms import Problems
from web.pages.rendering import ROLE_LABELS, render
from web.pages.routing import page_router
from web.pages.session import may

router = page_router()

USERS_PATH = "/users"
ALERTS_PATH = "/managers/alerts"
NAME_SHAPE = re.compile(r"[A-Za-z0-9._@-]{1,64}")  # as the accounts table allows
MAX_PASSWORD, MAX_SUBJECT = 1000, 255
ROLE_HINTS = {
    "intake": "Takes shielding requests by phone and records the written forms.",
    "reviewer": "Decides reviews: keeps a record shielded or ends the shielding.",
    "manager": "Manages staff accounts, investigates break-glass alerts, imports records.",
    "practitioner": "Finds children in the directory. Sees only the names of a shielded child.",
    "child-protection": "Decides reviews, and can see a shielded record's withheld details (break-glass).",
    "operations": "Runs the service: reads the workflows in the Temporal Web UI, decoded through this service.",
}


def _sign_in_text(user: dict[str, Any]) -> str:
    if user.get("disabled"):
        return "Cannot sign in"
    ways = [w for w, held in (("password", user.get("local")), ("council account", user.get("single_sign_on"))) if held]
    return " and ".join(ways).capitalize() if ways else "No way to sign in yet"


async def _users_page(
    request: Request,
    p: PartsDep,
    session: Session,
    *,
    errors: Problems | None = None,
    values: dict[str, str] | None = None,
    banner: str | None = None,
) -> Response:
    users = await p.identity.users(session)
    for user in users:
        user["sign_in"] = _sign_in_text(user)
    return render(
        request,
        "users.html",
        errors=errors or Problems(),
        values={"name": "", "role": "", "subject": "", **(values or {})},
        users=users,
        banner=banner,
        role_items=[{"value": r, "text": ROLE_LABELS[r].capitalize(), "hint": {"text": ROLE_HINTS[r]}} for r in ROLES],
        role_labels=ROLE_LABELS,
        min_password=MIN_PASSWORD_LENGTH,
        single_sign_on=bool(p.settings.oidc_issuer),
    )


@router.get(USERS_PATH)
async def users(request: Request, session: Annotated[Session, may("users")], p: PartsDep) -> Response:
    return await _users_page(request, p, session)


def _check_new_user(name: str, role: str, password: str, subject: str, *, exists: bool) -> Problems:
    problems = Problems()
    if not name:
        problems.add("name", "Enter a user name")
    elif len(name) > 64:
        problems.add("name", "User name must be 64 characters or fewer")
    elif not NAME_SHAPE.fullmatch(name):
        problems.add("name", "User name must only include letters, numbers, full stops, hyphens, underscores and @")
    if role not in ROLES:
        problems.add("role", "Select a role")
    if password and len(password) < MIN_PASSWORD_LENGTH:
        problems.add("password", f"Password must be at least {MIN_PASSWORD_LENGTH} characters")
    elif len(password) > MAX_PASSWORD or "\x00" in password:
        problems.add("password", f"Password must be {MAX_PASSWORD:,} characters or fewer")
    elif not password and not subject and not exists and "name" not in problems:
        problems.add("password", "Enter a password for the new account")
    if len(subject) > MAX_SUBJECT or "\x00" in subject:
        problems.add("subject", f"Council account identifier must be {MAX_SUBJECT} characters or fewer")
    return problems


@router.post(USERS_PATH)
async def add_user(
    request: Request,
    session: Annotated[Session, may("users")],
    p: PartsDep,
    name: Annotated[str, Form(max_length=500)] = "",
    role: Annotated[str, Form(max_length=40)] = "",
    password: Annotated[str, Form(max_length=MAX_PASSWORD * 2)] = "",
    subject: Annotated[str, Form(max_length=MAX_SUBJECT * 2)] = "",
) -> Response:
    name, subject = name.strip(), subject.strip()
    existing = {str(u["name"]) for u in await p.identity.users(session)}
    problems = _check_new_user(name, role, password, subject, exists=name in existing)
    if not problems:
        try:
            await p.identity.add_user(session, name, role, password=password or None, oidc_subject=subject or None)
        except (AccessDenied, InvalidChange) as err:
            problems.add(
                "role" if isinstance(err, NeedsSecondApproval) else "name", str(err)[:1].upper() + str(err)[1:]
            )
    if problems:
        values = {"name": name[:64], "role": role if role in ROLES else "", "subject": subject[:MAX_SUBJECT]}
        return await _users_page(request, p, session, errors=problems, values=values)
    label = ROLE_LABELS[role]
    banner = f"{name} can now sign in as {'an' if label[0] in 'aeiou' else 'a'} {label}."
    if name in existing:
        banner = f"{name} now has the {label} role." + (" Their password has been changed." if password else "")
    return await _users_page(request, p, session, banner=banner)


@router.post(USERS_PATH + "/remove")
async def remove(
    request: Request,
    session: Annotated[Session, may("users")],
    p: PartsDep,
    name: Annotated[str, Form(max_length=64)] = "",
    role: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    problems = Problems()
    if role and role not in ROLES:
        problems.add("users", "Select a role to remove")
    if not problems:
        try:
            await p.identity.remove_user(session, name, role or None)
        except AccessDenied as err:
            problems.add("users", f"Nothing was removed: {err}.")
    if problems:
        return await _users_page(request, p, session, errors=problems)
    still_held = next((u["roles"] for u in await p.identity.users(session) if u["name"] == name), [])
    if role and still_held:
        banner = f"{name} no longer has the {ROLE_LABELS[role]} role."
    elif role:
        banner = f"{name} no longer has the {ROLE_LABELS[role]} role. With no role left, they cannot sign in."
    else:
        banner = f"{name} has no roles now and cannot sign in. Anyone signed in as {name} has been signed out."
    return await _users_page(request, p, session, banner=banner)


@router.get(ALERTS_PATH)
async def alerts(request: Request, session: Annotated[Session, may("users")], p: PartsDep) -> Response:
    shown, total = await break_glass_store.manager_alerts(p.pool)
    return render(request, "alerts.html", alerts=shown, total=total)
