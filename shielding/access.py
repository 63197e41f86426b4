"""Actors and roles: who may do what. Every refusal is audited and explained."""

from __future__ import annotations

import re
from typing import Any

import asyncpg

from shielding import messages, store
from shielding.domain import AuditAction

ROLES = ("intake", "reviewer", "manager", "practitioner", "child-protection")

# Which roles may take each action. Viewing and searching go through the redacting view for every role.
PERMISSIONS: dict[str, frozenset[str]] = {
    "request": frozenset({"intake"}),
    "form": frozenset({"intake"}),
    "review": frozenset({"reviewer", "child-protection"}),
    "unshield": frozenset({"reviewer", "child-protection"}),
    "status": frozenset({"intake", "reviewer", "manager", "child-protection"}),
    "view": frozenset(ROLES),
    "search": frozenset(ROLES),
    "audit": frozenset({"reviewer", "manager", "child-protection"}),
    "import": frozenset({"manager", "intake"}),
    "override": frozenset({"child-protection"}),
    "users": frozenset({"manager"}),
    # Reading workflow payloads in the Temporal Web UI (its codec endpoint): the operations staff who run it.
    "decode payloads": frozenset({"manager"}),
}
# Who took a request may not decide what happens to it afterwards.
NOT_ON_OWN_REQUEST = frozenset({"review", "unshield"})


class AccessDenied(Exception):
    """The actor may not do this; the message says why."""


class InvalidChange(ValueError):
    """A change of who may do what that cannot be made as asked (no such role, no such user); says why."""


USER_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")


def check_user_name(name: str) -> None:
    if not USER_NAME.fullmatch(name):
        shown = name if name.isprintable() and len(name) <= 64 else "that name"
        raise InvalidChange(f"{shown!r} is not a valid user name: use 1 to 64 letters, digits, '.', '_', '@' or '-'.")


async def roles_of(pool: asyncpg.Pool, actor: str) -> set[str]:
    rows = await pool.fetch("SELECT role FROM user_roles WHERE name = $1", actor)
    return {r["role"] for r in rows}


async def _deny(pool: asyncpg.Pool, actor: str, action: str, message: str, **ids: Any) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await store.append_audit(
            conn,
            action=AuditAction.UNAUTHORISED,
            actor=actor,
            request_id=ids.get("request_id"),
            child_uid=ids.get("child_uid"),
            reason=message,
            details={"attempted": action},
        )
    raise AccessDenied(message)


async def require(
    pool: asyncpg.Pool,
    actor: str,
    action: str,
    *,
    request_id: str | None = None,
    child_uid: str | None = None,
    roles: frozenset[str] | None = None,
) -> set[str]:
    """The actor's roles if they may take `action`; refused (audited) if not. `roles`: those the signed-in
    session already read in this request, so they are not read twice."""
    held = set(roles) if roles is not None else await roles_of(pool, actor)
    allowed = PERMISSIONS[action]
    if not held:
        await _deny(
            pool,
            actor,
            action,
            f"{actor!r} is not a registered user; ask a manager to run `shielding users add {actor} --role ROLE`",
            request_id=request_id,
            child_uid=child_uid,
        )
    if not held & allowed:
        await _deny(
            pool,
            actor,
            action,
            f"{actor!r} ({', '.join(sorted(held))}) may not {action}; that needs the role "
            + " or ".join(sorted(allowed)),
            request_id=request_id,
            child_uid=child_uid,
        )
    if action in NOT_ON_OWN_REQUEST and request_id is not None:
        taken_by = await store.received_by(pool, request_id)
        if taken_by == actor:
            what = "decide its review" if action == "review" else "unshield it"
            await _deny(
                pool,
                actor,
                action,
                f"{actor!r} took request {request_id} and so cannot {what}; another reviewer must",
                request_id=request_id,
            )
    return held


async def grant_role(conn: asyncpg.Connection, name: str, role: str, *, by: str) -> None:
    """Grant a role (in the caller's transaction, beside the account it belongs to); audited."""
    if role not in ROLES:
        raise InvalidChange(f"{role!r} is not a role; roles are {', '.join(ROLES)}.")
    check_user_name(name)
    try:
        added = await conn.fetchval(
            "INSERT INTO user_roles (name, role, added_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1",
            name,
            role,
            by,
        )
    except asyncpg.CheckViolationError:
        raise InvalidChange(f"{name!r} is not a valid user name: use letters, digits, '.', '_', '@' or '-'.") from None
    if added:
        await store.append_audit(
            conn, action=AuditAction.ROLE_GRANTED, actor=by, request_id=None, reason=f"{name} granted {role}"
        )


async def remove_role(conn: asyncpg.Connection, name: str, role: str | None, *, by: str) -> None:
    """Remove one role, or every role and the account's sign-in (its sessions end at once); audited."""
    if role is not None and role not in ROLES:
        raise InvalidChange(f"{role!r} is not a role; roles are {', '.join(ROLES)}.")
    check_user_name(name)
    removed = await conn.fetch(
        "DELETE FROM user_roles WHERE name = $1 AND ($2::text IS NULL OR role = $2) RETURNING role", name, role
    )
    if not removed:
        raise InvalidChange(f"{name!r} has no role {role}." if role else f"{name!r} is not a user.")
    remaining = await conn.fetchval("SELECT count(*) FROM user_roles WHERE name = $1", name)
    if role is None or not remaining:
        await conn.execute("UPDATE accounts SET disabled_at = now() WHERE name = $1 AND disabled_at IS NULL", name)
        await conn.execute("UPDATE sessions SET ended_at = now() WHERE name = $1 AND ended_at IS NULL", name)
    if await conn.fetchval("SELECT count(*) FROM user_roles WHERE role = 'manager'") == 0:
        raise InvalidChange("That would leave no manager; add another manager first.")
    for row in removed:
        await store.append_audit(
            conn, action=AuditAction.ROLE_REMOVED, actor=by, request_id=None, reason=f"{name} lost {row['role']}"
        )


async def override_view(pool: asyncpg.Pool, actor: str, uid: str, reason: str) -> dict[str, Any] | None:
    """Break-glass: a child-protection user sees the hidden details once; audited, managers alerted."""
    await require(pool, actor, "override", child_uid=uid)
    record = await store.full_child(pool, uid)
    if record is None:
        return None
    request_id = record.pop("shield_request_id", None)
    async with pool.acquire() as conn, conn.transaction():
        await store.append_audit(
            conn,
            action=AuditAction.VIEWED_OVERRIDE,
            actor=actor,
            request_id=request_id,
            child_uid=uid,
            reason=reason,
        )
        managers = store.RecipientKind.MANAGERS.value
        await store.notify(
            conn,
            recipient_kind=managers,
            recipient=managers,
            request_id=request_id or "",
            subject=messages.override_subject(uid, actor),
            body=messages.override_body(uid, actor),
        )
    return record
