"""Who is acting: local accounts (argon2id passwords), single sign-on accounts, and server-side sessions.

The acting user is always the one this service signed in; nothing a caller sends names it. Sessions live in
PostgreSQL, so every service process sees the same ones, with an idle timeout and a logout that ends them.
A failed sign-in says only that it failed; repeated failures for a name are slowed and every one is audited.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from shielding import access, store
from shielding.domain import AuditAction
from shielding.store import accounts
from shielding.store.db import storable

# RFC 9106's second recommended option (memory-constrained): argon2id, 64 MiB, 3 passes.
_HASHER = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4)
# Verified against when the name is unknown, so a guess takes as long whether or not the account exists.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))
FREE_FAILURES = 3
MAX_DELAY_SECONDS = 30.0
MIN_PASSWORD_LENGTH = 12
SIGN_IN_FAILED = "Sign-in failed: the name or password is not right."


class SignInFailed(Exception):
    """Sign-in or re-authentication failed; the message never says which part was wrong."""


class NotSignedIn(Exception):
    """No live session: never signed in, signed out, or idle for too long."""


@dataclass(frozen=True)
class Session:
    """A live session as a request sees it: who, their roles, and when they last proved who they are."""

    name: str
    roles: frozenset[str]
    kind: str
    csrf_token: str
    auth_method: str
    authenticated_at: datetime
    token_digest: str

    def fresh(self, within: timedelta, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) - self.authenticated_at <= within


@dataclass(frozen=True)
class IssuedSession:
    token: str
    csrf_token: str
    name: str
    roles: frozenset[str]


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise access.InvalidChange(f"A password needs at least {MIN_PASSWORD_LENGTH} characters.")
    return _HASHER.hash(password)


def _password_matches(password_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def slow_down_after(failures: int) -> float:
    """Seconds to wait before answering the next attempt for a name with this many recent failures."""
    if failures < FREE_FAILURES:
        return 0.0
    return min(2.0 ** (failures - FREE_FAILURES), MAX_DELAY_SECONDS)


class IdentityService:
    def __init__(self, pool: asyncpg.Pool, *, idle_timeout: timedelta) -> None:
        self._pool = pool
        self._idle = idle_timeout

    # ------------------------------------------------------------------------------------------ sign-in

    async def sign_in_with_password(self, name: str, password: str, *, kind: str) -> IssuedSession:
        await asyncio.sleep(slow_down_after(await accounts.recent_sign_in_failures(self._pool, name)))
        account = await accounts.account(self._pool, name)
        matches = await asyncio.to_thread(_password_matches, account.password_hash if account else None, password)
        if account is None or account.disabled or not matches:
            failures = await accounts.record_sign_in_failure(self._pool, name)
            await self._audit(AuditAction.SIGN_IN_FAILED, name, f"failed sign-in ({failures} in 15 minutes)")
            raise SignInFailed(SIGN_IN_FAILED)
        await accounts.clear_sign_in_failures(self._pool, name)
        return await self._issue(account.name, kind=kind, method="password")

    async def sign_in_with_subject(
        self, subject: str, *, kind: str, group_roles: set[str], authenticated_at: datetime | None = None
    ) -> IssuedSession:
        """An identity provider vouched for `subject` (who proved it at `authenticated_at`, its `auth_time`); the
        account is the one linked to it."""
        account = await accounts.account_by_subject(self._pool, subject)
        if account is None or account.disabled:
            await self._audit(AuditAction.SIGN_IN_FAILED, "single-sign-on", "no account is linked to this subject")
            raise SignInFailed("Sign-in failed: your account is not set up for this service; ask a manager.")
        return await self._issue(
            account.name, kind=kind, method="oidc", extra_roles=group_roles, authenticated_at=authenticated_at
        )

    async def _issue(
        self,
        name: str,
        *,
        kind: str,
        method: str,
        extra_roles: set[str] | None = None,
        authenticated_at: datetime | None = None,
    ) -> IssuedSession:
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        await accounts.create_session(
            self._pool,
            token_digest=digest(token),
            name=name,
            kind=kind,
            csrf_token=csrf,
            auth_method=method,
            authenticated_at=authenticated_at or datetime.now(UTC),
        )
        await self._audit(AuditAction.SIGNED_IN, name, f"signed in ({method}, {kind})")
        roles = await access.roles_of(self._pool, name)
        return IssuedSession(token=token, csrf_token=csrf, name=name, roles=frozenset(roles | (extra_roles or set())))

    async def session(self, token: str, *, kind: str) -> Session:
        token_digest = digest(token)
        record = await accounts.touch_session(self._pool, token_digest, kind, self._idle)
        if record is None:
            raise NotSignedIn("You are not signed in, or your session ended: sign in again.")
        return Session(
            name=record.name,
            roles=frozenset(record.roles),
            kind=record.kind,
            csrf_token=record.csrf_token,
            auth_method=record.auth_method,
            authenticated_at=record.authenticated_at,
            token_digest=token_digest,
        )

    async def reauthenticate(self, session: Session, password: str) -> Session:
        """Break-glass: the password again, now (local accounts)."""
        account = await accounts.account(self._pool, session.name)
        if account is None or not await asyncio.to_thread(_password_matches, account.password_hash, password):
            failures = await accounts.record_sign_in_failure(self._pool, session.name)
            await self._audit(AuditAction.SIGN_IN_FAILED, session.name, f"failed re-authentication ({failures})")
            raise SignInFailed("Re-authentication failed: the password is not right.")
        now = datetime.now(UTC)
        await accounts.reauthenticated(self._pool, session.token_digest, now)
        return Session(**{**session.__dict__, "authenticated_at": now})

    async def mark_reauthenticated(self, session: Session, at: datetime) -> None:
        """An identity provider signed the person in again at `at` (OpenID Connect `max_age`)."""
        await accounts.reauthenticated(self._pool, session.token_digest, at)

    async def sign_out(self, session: Session) -> None:
        if await accounts.end_session(self._pool, session.token_digest):
            await self._audit(AuditAction.SIGNED_OUT, session.name, "signed out")

    # ------------------------------------------------------------------------------------------ people

    async def bootstrap_manager(self, name: str, password: str) -> None:
        """The first manager, only while there is none; run on the server, never through the web service."""
        access.check_user_name(name)
        password_hash = hash_password(password)
        async with self._pool.acquire() as conn, conn.transaction():
            # Serialise bootstraps, so two at once cannot both find no manager.
            await conn.execute("LOCK TABLE user_roles IN SHARE ROW EXCLUSIVE MODE")
            if await conn.fetchval("SELECT 1 FROM user_roles WHERE role = 'manager' LIMIT 1"):
                raise access.AccessDenied("a manager already exists: ask them to add you (`shielding users add`)")
            await accounts.save_account(
                conn, name, created_by="bootstrap", password_hash=password_hash, oidc_subject=None
            )
            await access.grant_role(conn, name, "manager", by="bootstrap")

    async def add_user(
        self, by: Session, name: str, role: str, *, password: str | None = None, oidc_subject: str | None = None
    ) -> None:
        await access.require(self._pool, by.name, "users", roles=by.roles)
        access.check_user_name(name)
        password_hash = hash_password(password) if password else None
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await accounts.save_account(
                    conn, name, created_by=by.name, password_hash=password_hash, oidc_subject=oidc_subject
                )
                await access.grant_role(conn, name, role, by=by.name)
        except access.NeedsSecondApproval as ask:
            # Nothing of the change is made; the ask is kept (and audited) for another manager to approve.
            await access.record_approval_request(self._pool, ask)
            raise

    async def remove_user(self, by: Session, name: str, role: str | None = None) -> None:
        await access.require(self._pool, by.name, "users", roles=by.roles)
        async with self._pool.acquire() as conn, conn.transaction():
            await access.remove_role(conn, name, role, by=by.name)

    async def users(self, by: Session) -> list[dict[str, object]]:
        await access.require(self._pool, by.name, "users", roles=by.roles)
        return await accounts.users(self._pool)

    async def _audit(self, action: AuditAction, actor: str, reason: str) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await store.append_audit(conn, action=action, actor=storable(actor)[:200], request_id=None, reason=reason)
