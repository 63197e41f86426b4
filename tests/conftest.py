"""Real parts for every test: an embedded PostgreSQL, the time-skipping test server and the dev server.

Fixtures only; the helpers tests share live in `tests/helpers/`.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from shielding import store
from shielding.audit_signing import set_audit_signing
from shielding.domain import ChildRecord, Gender
from shielding.embedded_postgres import EmbeddedPostgres, start_embedded_postgres
from shielding.settings import Settings
from shielding.temporal import data_converter, dev_server_extra_args, register_search_attributes
from tests.helpers.records import make_child
from tests.helpers.servers import TEST_ACTION_KEYS, TEST_AUDIT_KEYS, TEST_KEYS, temporal_binary


@pytest.fixture(scope="session", autouse=True)
def audit_signing_for_tests() -> None:
    """This process signs audit entries with the test key and anchors the session database's log in a
    directory of its own (never the developer's `.data`)."""
    set_audit_signing(TEST_AUDIT_KEYS, Path(tempfile.mkdtemp(prefix="shielding-anchor-")))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    root = Path(tempfile.mkdtemp(prefix="shielding-pg-"))
    os.chmod(root, 0o755)
    server = start_embedded_postgres(root / "pgdata", cleanup="delete")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def database_url(pg_server: EmbeddedPostgres) -> str:
    url = pg_server.uri
    store.migrate(url)
    return url


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await store.create_pool(database_url, max_size=10)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp("data"),
        database_url=database_url,
        encryption_keys=TEST_KEYS,
        action_keys=TEST_ACTION_KEYS,
        audit_keys=TEST_AUDIT_KEYS,
        task_queue="unused",
    )


@pytest.fixture
async def time_env(settings: Settings) -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_binary("temporal-test-server"),
        data_converter=data_converter(settings),
    )
    try:
        await register_search_attributes(env.client)
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def dev_env(settings: Settings) -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary("temporal"),
        data_converter=data_converter(settings),
        search_attributes=[],
        dev_server_extra_args=dev_server_extra_args(),
        ui=False,
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
async def children(pool: asyncpg.Pool) -> list[ChildRecord]:
    """Two siblings, freshly imported with unique uids."""
    records = [
        make_child(),
        make_child(given_name="Oliver", gender=Gender.MALE, date_of_birth=date(2017, 9, 2)),
    ]
    await store.import_children(pool, records, actor="test-import")
    return records


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:8]}"
