"""Actors and roles: who may do what. Every refusal is audited and explained."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from shielding import messages, store
from shielding.domain import AuditAction

ROLES = ("intake", "reviewer", "manager", "practitioner", "child-protection", "operations")

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
    # Who looked at which child (the access log); reading it is logged too.
    "access log": frozenset({"manager"}),
    # Reading workflow payloads in the Temporal Web UI (its codec endpoint): the operations staff who run it.
    "decode payloads": frozenset({"manager", "operations"}),
    # Brokering contact with a shielded child: everyone who works with children's records may ask the team
    # (not operations, who run the service); only managers take a request, see what it hides and close it.
    "ask contact": frozenset({"practitioner", "intake", "reviewer", "child-protection", "manager"}),
    "broker contact": frozenset({"manager"}),
}
# Roles that check each other's work: one person holds both only with a second manager's approval.
CHECKING_ROLES = (frozenset({"intake", "reviewer"}), frozenset({"intake", "child-protection"}))
# Who took a request may not decide what happens to it afterwards.
NOT_ON_OWN_REQUEST = frozenset({"review", "unshield"})


class AccessDenied(Exception):
    """The actor may not do this; the message says why."""


class InvalidChange(ValueError):
    """A change of who may do what that cannot be made as asked (no such role, no such user); says why."""


class NeedsSecondApproval(InvalidChange):
    """The role would let one person check their own work: another manager must approve it (says how)."""

    def __init__(self, message: str, *, name: str, role: str, asked_by: str, first_ask: bool) -> None:
        super().__init__(message)
        self.name, self.role, self.asked_by, self.first_ask = name, role, asked_by, first_ask


USER_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")


def check_user_name(name: str) -> None:
    if not USER_NAME.fullmatch(name):
        shown = name if name.isprintable() and len(name) <= 64 else "that name"
        raise InvalidChange(f"{shown!r} is not a valid user name: use 1 to 64 letters, digits, '.', '_', '@' or '-'.")


@asynccontextmanager
async def _connection(pool_or_conn: asyncpg.Pool | asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    if isinstance(pool_or_conn, asyncpg.Pool):
        async with pool_or_conn.acquire() as conn:
            yield conn
    else:
        yield pool_or_conn


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
    approved = await _second_approval(conn, name, role, by=by)
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
        approval = f" (asked for by {approved}, approved by {by})" if approved else ""
        await store.append_audit(
            conn, action=AuditAction.ROLE_GRANTED, actor=by, request_id=None, reason=f"{name} granted {role}{approval}"
        )


async def _second_approval(conn: asyncpg.Connection, name: str, role: str, *, by: str) -> str | None:
    """Who asked first, when this grant is the second manager's approval; None when none is needed.

    Raises NeedsSecondApproval when the role would make `name` hold two roles that check each other and no other
    manager has asked for it yet (the caller records the ask: `record_approval_request`)."""
    held = {r["role"] for r in await conn.fetch("SELECT role FROM user_roles WHERE name = $1", name)}
    clash = next((pair for pair in CHECKING_ROLES if role in pair and (pair - {role}) <= held), None)
    if role in held or clash is None:
        return None
    other = next(iter(clash - {role}))
    asked = await conn.fetchval("SELECT requested_by FROM role_approvals WHERE name = $1 AND role = $2", name, role)
    if asked is not None and asked != by and by != name:
        await conn.execute("DELETE FROM role_approvals WHERE name = $1 AND role = $2", name, role)
        return str(asked)
    if asked is None:
        message = messages.second_approval_needed(name, role, other, by)
    elif by == name:
        message = messages.second_approval_not_own(name, role)
    else:
        message = messages.second_approval_still_needed(name, role)
    raise NeedsSecondApproval(message, name=name, role=role, asked_by=by, first_ask=asked is None)


async def record_approval_request(pool_or_conn: asyncpg.Pool | asyncpg.Connection, ask: NeedsSecondApproval) -> None:
    """The first manager's ask, kept (and audited) until another manager approves it by granting the same role."""
    if not ask.first_ask:
        return
    async with _connection(pool_or_conn) as conn, conn.transaction():
        inserted = await conn.fetchval(
            """INSERT INTO role_approvals (name, role, requested_by) VALUES ($1, $2, $3)
               ON CONFLICT DO NOTHING RETURNING 1""",
            ask.name,
            ask.role,
            ask.asked_by,
        )
        if inserted:
            await store.append_audit(
                conn,
                action=AuditAction.ROLE_APPROVAL_ASKED,
                actor=ask.asked_by,
                request_id=None,
                reason=f"{ask.name} to be granted {ask.role}: waiting for a second manager's approval",
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
    # A break-glass that finds no record is recorded and alerted too: it is someone looking for a child.
    request_id = record.pop("shield_request_id", None) if record is not None else None
    async with pool.acquire() as conn, conn.transaction():
        await store.append_audit(
            conn,
            action=AuditAction.VIEWED_OVERRIDE,
            actor=actor,
            request_id=request_id,
            child_uid=uid,
            reason=reason,
            details={} if record is not None else {"record": "not found"},
        )
        managers = store.RecipientKind.MANAGERS.value
        await store.notify(
            conn,
            recipient_kind=managers,
            recipient=managers,
            request_id=request_id or "",
            subject=messages.override_subject(uid, actor),
            body=messages.override_body(uid, actor),
            template=store.MessageKind.BREAK_GLASS,
        )
    return record
