"""The database connection: the pool, migrations, and the run-once helper that makes retried steps safe."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import date, datetime
from importlib import resources
from typing import Any, TypeVar

import asyncpg
from pydantic import BaseModel

T = TypeVar("T", bound=BaseModel)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(database_url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        database_url, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=30
    )
    assert pool is not None
    return pool


@asynccontextmanager
async def pool_for(database_url: str, **kwargs: Any) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, **kwargs)
    try:
        yield pool
    finally:
        await pool.close()


# After every migration run: the NOLOGIN owner role owns every table, view, sequence and function of the
# service (not the extensions' own functions, not yoyo's bookkeeping), whoever ran the migration.
ASSIGN_OWNER = """
DO $$
DECLARE
    item record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'shielding_owner') THEN
        RETURN;
    END IF;
    FOR item IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm') AND c.relname NOT LIKE '%yoyo%'
                  AND pg_get_userbyid(c.relowner) <> 'shielding_owner'
    LOOP
        -- Sequences owned by a column follow their table.
        EXECUTE format('ALTER TABLE public.%I OWNER TO shielding_owner', item.relname);
    END LOOP;
    FOR item IN SELECT p.oid::regprocedure AS signature FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> 'shielding_owner'
                  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO shielding_owner', item.signature);
    END LOOP;
END
$$;
"""


def migrate(database_url: str) -> list[str]:
    """Apply pending migrations (yoyo, under its lock), then hand every object to the owner role; returns the
    ids applied."""
    from yoyo import get_backend, read_migrations

    url = database_url
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix) :]
    backend = get_backend(url)
    migrations = read_migrations(str(resources.files("shielding") / "migrations"))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(ASSIGN_OWNER)
    return [m.id for m in pending]


async def migrate_async(database_url: str) -> list[str]:
    return await asyncio.to_thread(migrate, database_url)


async def once(
    pool: asyncpg.Pool,
    operation_key: str,
    result_type: type[T],
    operation: Callable[[asyncpg.Connection], Awaitable[T]],
) -> T:
    """Run `operation` in a transaction exactly once per key; a retry returns the first result."""
    async with pool.acquire() as conn, conn.transaction():
        claimed = await conn.fetchval(
            "INSERT INTO completed_operations (operation_key) VALUES ($1) ON CONFLICT DO NOTHING RETURNING 1",
            operation_key,
        )
        if claimed is None:
            stored = await conn.fetchval(
                "SELECT result FROM completed_operations WHERE operation_key = $1", operation_key
            )
            return result_type.model_validate(stored)
        result = await operation(conn)
        await conn.execute(
            "UPDATE completed_operations SET result = $2 WHERE operation_key = $1",
            operation_key,
            result.model_dump(mode="json"),
        )
        return result


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def jsonable_row(row: asyncpg.Record) -> dict[str, Any]:
    return {key: jsonable(value) for key, value in dict(row).items()}


def storable(value: Any) -> Any:
    """Unvalidated text as PostgreSQL text and jsonb can hold it: NUL and lone surrogates escaped."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    if isinstance(value, list):
        return [storable(item) for item in value]
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    return value
