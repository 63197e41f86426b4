"""Accounts and sessions: who can sign in, the sessions every service process shares, failed sign-ins.

Tokens are never stored: only their SHA-256 digest, so a copy of the table signs no one in.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg
from pydantic import BaseModel


class Account(BaseModel):
    name: str
    password_hash: str | None = None
    oidc_subject: str | None = None
    disabled: bool = False


class SessionRecord(BaseModel):
    name: str
    kind: str
    csrf_token: str
    auth_method: str
    authenticated_at: datetime
    last_seen_at: datetime
    # The account's roles, read in the same statement (each signed-in request needs them).
    roles: list[str] = []


async def account(pool: asyncpg.Pool, name: str) -> Account | None:
    row = await pool.fetchrow(
        "SELECT name, password_hash, oidc_subject, disabled_at IS NOT NULL AS disabled FROM accounts WHERE name = $1",
        name,
    )
    return Account(**dict(row)) if row else None


async def account_by_subject(pool: asyncpg.Pool, subject: str) -> Account | None:
    row = await pool.fetchrow(
        """SELECT name, password_hash, oidc_subject, disabled_at IS NOT NULL AS disabled FROM accounts
           WHERE oidc_subject = $1""",
        subject,
    )
    return Account(**dict(row)) if row else None


async def save_account(
    conn: asyncpg.Connection, name: str, *, created_by: str, password_hash: str | None, oidc_subject: str | None
) -> None:
    """Create the account, or set its password / subject (a re-enabled account signs in again)."""
    await conn.execute(
        """INSERT INTO accounts (name, password_hash, oidc_subject, created_by) VALUES ($1, $2, $3, $4)
           ON CONFLICT (name) DO UPDATE SET
             password_hash = coalesce(EXCLUDED.password_hash, accounts.password_hash),
             oidc_subject = coalesce(EXCLUDED.oidc_subject, accounts.oidc_subject),
             disabled_at = NULL""",
        name,
        password_hash,
        oidc_subject,
        created_by,
    )


async def set_password_hash(pool: asyncpg.Pool, name: str, password_hash: str) -> None:
    await pool.execute("UPDATE accounts SET password_hash = $2 WHERE name = $1", name, password_hash)


async def create_session(
    pool: asyncpg.Pool,
    *,
    token_digest: str,
    name: str,
    kind: str,
    csrf_token: str,
    auth_method: str,
    authenticated_at: datetime,
) -> None:
    await pool.execute(
        """INSERT INTO sessions (token_digest, name, kind, csrf_token, auth_method, authenticated_at)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        token_digest,
        name,
        kind,
        csrf_token,
        auth_method,
        authenticated_at,
    )


# The idle clock is restarted at most this often: a page's many requests need not each write the row. The
# session therefore ends up to this much before the idle timeout, never after it.
TOUCH_EVERY = timedelta(seconds=30)


async def touch_session(pool: asyncpg.Pool, token_digest: str, kind: str, idle: timedelta) -> SessionRecord | None:
    """The live session for this token with its account's roles, its idle clock restarted; None if unknown,
    ended, idle too long or the account was disabled. One statement, so two processes serving one session
    cannot disagree, and one round trip per signed-in request."""
    row = await pool.fetchrow(
        """WITH live AS (
               SELECT s.token_digest, s.name, s.kind, s.csrf_token, s.auth_method, s.authenticated_at, s.last_seen_at
               FROM sessions s JOIN accounts a ON a.name = s.name
               WHERE s.token_digest = $1 AND s.kind = $2 AND s.ended_at IS NULL
                 AND s.last_seen_at > now() - $3::interval AND a.disabled_at IS NULL
           ), touched AS (
               UPDATE sessions s SET last_seen_at = now() FROM live
               WHERE s.token_digest = live.token_digest AND live.last_seen_at < now() - $4::interval
           )
           SELECT live.name, live.kind, live.csrf_token, live.auth_method, live.authenticated_at, live.last_seen_at,
                  ARRAY(SELECT r.role FROM user_roles r WHERE r.name = live.name) AS roles
           FROM live""",
        token_digest,
        kind,
        idle,
        TOUCH_EVERY,
    )
    return SessionRecord(**dict(row)) if row else None


async def reauthenticated(pool: asyncpg.Pool, token_digest: str, at: datetime) -> None:
    await pool.execute("UPDATE sessions SET authenticated_at = $2 WHERE token_digest = $1", token_digest, at)


async def end_session(pool: asyncpg.Pool, token_digest: str) -> str | None:
    return await pool.fetchval(  # type: ignore[no-any-return]
        "UPDATE sessions SET ended_at = now() WHERE token_digest = $1 AND ended_at IS NULL RETURNING name",
        token_digest,
    )


async def end_sessions_of(conn: asyncpg.Connection, name: str) -> None:
    await conn.execute("UPDATE sessions SET ended_at = now() WHERE name = $1 AND ended_at IS NULL", name)


async def disable_account(conn: asyncpg.Connection, name: str) -> None:
    await conn.execute("UPDATE accounts SET disabled_at = now() WHERE name = $1 AND disabled_at IS NULL", name)
    await end_sessions_of(conn, name)


async def record_sign_in_failure(pool: asyncpg.Pool, name: str) -> int:
    """Record one failure; returns how many there have been for this name in the last 15 minutes."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO sign_in_failures (name) VALUES ($1)", name)
        return await conn.fetchval(  # type: ignore[no-any-return]
            "SELECT count(*) FROM sign_in_failures WHERE name = $1 AND at > now() - interval '15 minutes'", name
        )


async def recent_sign_in_failures(pool: asyncpg.Pool, name: str) -> int:
    return await pool.fetchval(  # type: ignore[no-any-return]
        "SELECT count(*) FROM sign_in_failures WHERE name = $1 AND at > now() - interval '15 minutes'", name
    )


async def clear_sign_in_failures(pool: asyncpg.Pool, name: str) -> None:
    await pool.execute("DELETE FROM sign_in_failures WHERE name = $1", name)


async def save_device_sign_in(pool: asyncpg.Pool, handle_digest: str, device_code: str, expires_at: datetime) -> None:
    await pool.execute(
        "INSERT INTO device_sign_ins (handle_digest, device_code, expires_at) VALUES ($1, $2, $3)",
        handle_digest,
        device_code,
        expires_at,
    )


async def device_code(pool: asyncpg.Pool, handle_digest: str) -> str | None:
    return await pool.fetchval(  # type: ignore[no-any-return]
        "SELECT device_code FROM device_sign_ins WHERE handle_digest = $1 AND expires_at > now()", handle_digest
    )


async def forget_device_sign_in(pool: asyncpg.Pool, handle_digest: str) -> None:
    await pool.execute("DELETE FROM device_sign_ins WHERE handle_digest = $1", handle_digest)


async def users(pool: asyncpg.Pool) -> list[dict[str, object]]:
    rows = await pool.fetch(
        """SELECT a.name, a.oidc_subject IS NOT NULL AS single_sign_on, a.password_hash IS NOT NULL AS local,
                  a.disabled_at IS NOT NULL AS disabled,
                  coalesce(array_agg(r.role ORDER BY r.role) FILTER (WHERE r.role IS NOT NULL), '{}') AS roles
           FROM accounts a LEFT JOIN user_roles r ON r.name = a.name
           GROUP BY a.name ORDER BY a.name"""
    )
    return [dict(r) for r in rows]
