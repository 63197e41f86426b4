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
        await grant_as_two_managers(conn, name, role, by=by)
    return name


async def grant_as_two_managers(conn: asyncpg.Connection, name: str, role: str, *, by: str) -> None:
    """Grant `role`; where it clashes with one already held (intake and reviewer), `by` asks and a second manager
    approves, as the rule requires (tests/test_api.py tests the rule itself)."""
    try:
        async with conn.transaction():
            await access.grant_role(conn, name, role, by=by)
    except access.NeedsSecondApproval as ask:
        await access.record_approval_request(conn, ask)
        await access.grant_role(conn, name, role, by=f"{by}-second")
