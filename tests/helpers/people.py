"""Staff for tests: accounts with roles granted directly in the store (the API's own checks are tested apart)."""

from __future__ import annotations

import uuid

import asyncpg

from shielding import access
from shielding.store import accounts


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def grant(pool: asyncpg.Pool, name: str, role: str, *, by: str = "test-setup") -> str:
    async with pool.acquire() as conn, conn.transaction():
        await accounts.save_account(conn, name, created_by=by, password_hash=None, oidc_subject=None)
        await access.grant_role(conn, name, role, by=by)
    return name
