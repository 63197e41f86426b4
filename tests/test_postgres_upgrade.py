"""The embedded PostgreSQL 18 (shielding.embedded_postgres): a new cluster has what the search needs, and a
PostgreSQL 16 directory made by pgserver is moved over with its shielded children and sleeping lifecycles intact."""

from __future__ import annotations

import contextlib
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from shielding import deadlines, store
from shielding.domain import Stage, StatusQuery
from shielding.embedded_postgres import refusal_message, start_embedded_postgres
from shielding.lifecycle import LifecycleState, ShieldingLifecycleInput
from shielding.settings import ConfigurationError, Settings
from shielding.temporal import data_converter, dev_server_extra_args
from starter import ShieldingService, new_request_id
from tests.helpers.records import make_child
from tests.helpers.servers import TEST_ACTION_KEYS, TEST_KEYS, running_worker, temporal_binary
from worker.main import workflow_runner
from workflows.shielding_request import ShieldingRequestWorkflow

LAST_PG16_MIGRATION = "0004_search_children_plpgsql"
SEARCH_EXTENSIONS = {"pg_trgm", "fuzzystrmatch", "btree_gin", "unaccent"}
AUDIT_ROWS = "SELECT entry_id, action, entry_hash FROM audit_log WHERE request_id = $1 ORDER BY entry_id"


def migrate_up_to(url: str, last: str) -> list[str]:
    """What an installation made before the move had: the migrations up to `last`, none after."""
    from importlib import resources

    from yoyo import get_backend, read_migrations

    backend = get_backend("postgresql+psycopg://" + url.removeprefix("postgresql://"))
    migrations = read_migrations(str(resources.files("shielding") / "migrations"))
    with backend.lock():
        pending = backend.to_apply(migrations.filter(lambda m: m.id <= last))
        backend.apply_migrations(pending)
    return [m.id for m in pending]


def write_shielded_child_as_before(
    url: str, child: Any, request_id: str, shielded_at: datetime, form_due_at: datetime
) -> None:
    """A child imported and shielded by one request, in the schema of migrations 0001-0004."""
    record = child.model_dump(mode="json")
    with psycopg.connect(url) as conn:
        conn.execute(
            """INSERT INTO children (uid, given_name, family_name, aliases, gender, date_of_birth, address, carers,
                                     school, gp_practice, practitioners, shield_request_id)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (
                child.uid,
                child.given_name,
                child.family_name,
                child.aliases,
                record["gender"],
                child.date_of_birth,
                Jsonb(record["address"]),
                Jsonb(record["carers"]),
                child.school,
                child.gp_practice,
                Jsonb(record["practitioners"]),
                request_id,
            ),
        )
        conn.execute(
            """INSERT INTO shielding_requests (request_id, stage, criteria, reason, requestor, called_at, received_by,
                                               shielded_at, form_due_at)
               VALUES (%s, 'awaiting-form', %s, %s, %s, %s, 'officer-a', %s, %s)""",
            (
                request_id,
                ["domestic-violence"],
                "Father subject to a non-molestation order.",
                Jsonb({"type": "professional", "name": "Dana Whitcombe"}),
                shielded_at,
                shielded_at,
                form_due_at,
            ),
        )
        conn.execute(
            """INSERT INTO request_children (request_id, child_uid, outcome, shielded_at)
               VALUES (%s, %s, 'shielded', %s)""",
            (request_id, child.uid, shielded_at),
        )
        for action, child_uid in (("received", None), ("shielded", child.uid)):
            conn.execute(
                "INSERT INTO audit_log (action, actor, request_id, child_uid, details) VALUES (%s, %s, %s, %s, %s)",
                (action, "officer-a", request_id, child_uid, Jsonb({})),
            )


def scalar(url: str, query: str) -> object:
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
        return row[0] if row else None


@contextlib.contextmanager
def old_server(pgdata: Path) -> Iterator[str]:
    """The old embedded server (pgserver, PostgreSQL 16) on `pgdata`, stopped on leaving, as `shielding dev` was."""
    import pgserver

    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


@pytest.fixture
def pg16(tmp_path: Path) -> tuple[Path, str]:
    """A PostgreSQL 16 data directory made by the old embedded server, migrated as it was (up to 0004)."""
    pgdata = tmp_path / "postgres"
    pgdata.mkdir()
    with old_server(pgdata) as url:
        assert migrate_up_to(url, LAST_PG16_MIGRATION)[-1] == LAST_PG16_MIGRATION
    assert (pgdata / "PG_VERSION").read_text().strip() == "16"
    return pgdata, url


def test_a_new_directory_gets_postgresql_18_with_the_search_extensions(tmp_path: Path) -> None:
    pg = start_embedded_postgres(tmp_path / "fresh", cleanup="delete")
    try:
        assert (tmp_path / "fresh" / "PG_VERSION").read_text().strip() == "18"
        assert int(str(scalar(pg.uri, "SHOW server_version_num"))) // 10000 == 18
        assert "0005_search_extensions" in store.migrate(pg.uri)
        with psycopg.connect(pg.uri) as conn:
            installed = {r[0] for r in conn.execute("SELECT extname FROM pg_extension")}
            assert installed >= SEARCH_EXTENSIONS
            row = conn.execute(
                "SELECT daitch_mokotoff('Wisniewski') && daitch_mokotoff('Wishnevsky'),"
                " similarity('Wisniewski', 'Wiśniewski') > 0.3, unaccent('Wiśniewski')"
            ).fetchone()
            assert row == (True, True, "Wisniewski")
        assert store.migrate(pg.uri) == []  # again: nothing left to apply
    finally:
        pg.stop()
    assert not (tmp_path / "fresh").exists()


def test_without_the_old_server_the_start_is_refused_saying_what_to_run(tmp_path: Path) -> None:
    pgdata = tmp_path / "postgres"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("16\n")
    (pgdata / "base").mkdir()
    with pytest.raises(ConfigurationError) as refused:
        start_embedded_postgres(pgdata, old_package="pgserver_not_installed_in_this_test")
    message = str(refused.value)
    assert message == refusal_message(pgdata)
    assert "\n" not in message
    assert "-m pip install 'pgserver==0.1.4'" in message and "`shielding dev`" in message
    assert f"mv {pgdata} {pgdata}-16-unused" in message
    # Nothing was touched or made beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["postgres"]
    assert sorted(p.name for p in pgdata.iterdir()) == ["PG_VERSION", "base"]


@pytest.mark.parametrize(
    ("files", "expected"), [({"PG_VERSION": "15\n"}, "PostgreSQL 15"), ({"stray": ""}, "no PG_VERSION")]
)
def test_other_directories_are_refused(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    pgdata = tmp_path / "postgres"
    pgdata.mkdir()
    for name, text in files.items():
        (pgdata / name).write_text(text)
    with pytest.raises(ConfigurationError, match=expected):
        start_embedded_postgres(pgdata)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["postgres"]


def test_an_interrupted_move_is_refused_saying_how_to_put_the_old_directory_back(tmp_path: Path) -> None:
    pgdata, backup = tmp_path / "postgres", tmp_path / "postgres-16-backup-20261202-101500"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("18\n")  # a new cluster, partly restored when the process died
    (tmp_path / "postgres.moving-to-18").write_text(f"{backup}\n")
    with pytest.raises(ConfigurationError) as refused:
        start_embedded_postgres(pgdata)
    assert f"rm -rf {pgdata} && mv {backup} {pgdata} && rm {tmp_path}/postgres.moving-to-18" in str(refused.value)


def test_a_move_that_does_not_verify_puts_the_old_directory_back(
    pg16: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import shielding.embedded_postgres as module

    pgdata, _ = pg16
    with old_server(pgdata) as url, psycopg.connect(url) as conn:
        conn.execute("INSERT INTO user_roles (name, role, added_by) VALUES ('o.ade', 'reviewer', 'test')")
    real = module.snapshot
    calls: list[str] = []

    def lossy(conninfo: str) -> dict[str, object]:
        found = real(conninfo)
        calls.append(conninfo)
        if len(calls) == 2:  # the restored side
            found["rows postgres.public.user_roles"] = 0
        return found

    monkeypatch.setattr(module, "snapshot", lossy)
    with pytest.raises(ConfigurationError, match=r"user_roles: 1 -> 0"):
        start_embedded_postgres(pgdata, cleanup="delete")
    assert (pgdata / "PG_VERSION").read_text().strip() == "16"
    assert not list(pgdata.parent.glob("postgres-16-backup-*"))
    assert not (pgdata.parent / "postgres.moving-to-18").exists()
    assert len(list(pgdata.parent.glob("postgres-16-dump-*.sql"))) == 1  # kept for whoever looks into it


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DevServer:
    """The Temporal dev server on one SQLite file and port, started again as `shielding dev` would."""

    def __init__(self, root: Path, settings: Settings) -> None:
        self.sqlite = str(root / "temporal.sqlite")
        self.port = free_port()
        self.settings = settings

    async def start(self) -> WorkflowEnvironment:
        return await WorkflowEnvironment.start_local(
            dev_server_existing_path=temporal_binary("temporal"),
            dev_server_database_filename=self.sqlite,
            port=self.port,
            data_converter=data_converter(self.settings),
            search_attributes=[],
            dev_server_extra_args=dev_server_extra_args(),
            dev_server_startup_timeout=timedelta(seconds=90),
            ui=False,
        )


@pytest.fixture
async def dev_server(tmp_path: Path) -> AsyncIterator[DevServer]:
    if shutil.which("temporal") is None:
        pytest.skip("the temporal CLI is not installed")
    yield DevServer(
        tmp_path,
        Settings(
            data_dir=tmp_path,
            encryption_keys=TEST_KEYS,
            action_keys=TEST_ACTION_KEYS,
            task_queue="unused",
        ),
    )


@pytest.mark.devserver
async def test_a_shielded_child_and_its_sleeping_lifecycle_survive_the_move(
    pg16: tuple[Path, str], dev_server: DevServer, tmp_path: Path
) -> None:
    pgdata, url16 = pg16
    task_queue = "tq-upgrade"
    child = make_child()
    settings = dev_server.settings

    # Before: PostgreSQL 16, a child imported and shielded, the lifecycle asleep awaiting the form. Written as
    # the service of that time wrote it, in that schema (migrations up to 0004: today's store writes tables
    # that came later, the shared-details links and the signed audit columns), with the entries chained by
    # that schema's own trigger; the lifecycle is carried in asleep, as that service left it.
    request_id = new_request_id()
    shielded_at = datetime.now(UTC).replace(microsecond=0)
    form_due_at = deadlines.form_due_at(shielded_at)
    with old_server(pgdata) as url:
        assert url == url16
        write_shielded_child_as_before(url, child, request_id, shielded_at, form_due_at)
        with psycopg.connect(url) as conn:
            audit_before = [tuple(r) for r in conn.execute(AUDIT_ROWS.replace("$1", "%s"), (request_id,)).fetchall()]
        assert len(audit_before) == 2
    env = await dev_server.start()
    try:
        # The workflows only: a carried lifecycle asleep awaiting its form runs no activity.
        async with Worker(
            env.client, task_queue=task_queue, workflows=[ShieldingRequestWorkflow], workflow_runner=workflow_runner()
        ):
            state = LifecycleState(
                request_id=request_id,
                stage=Stage.AWAITING_FORM,
                received_by="officer-a",
                children=[child.uid],
                called_at=shielded_at,
                shielded_at=shielded_at,
                form_due_at=form_due_at,
                operations=1,
            )
            handle = await env.client.start_workflow(
                ShieldingRequestWorkflow.run,
                ShieldingLifecycleInput(state=state),
                id=request_id,
                task_queue=task_queue,
            )
            status = await handle.query(ShieldingRequestWorkflow.status, StatusQuery())
            assert status.stage == Stage.AWAITING_FORM
    finally:
        await env.shutdown()

    assert (pgdata / "PG_VERSION").read_text().strip() == "16"

    # This database's own anchor file (the session's belongs to the session's database).
    anchor = tmp_path / "audit.anchor"

    # The move, then the rest of the migrations, as `shielding dev` does on its next start.
    pg = start_embedded_postgres(pgdata, cleanup="stop")
    try:
        assert pg.upgraded_from is not None
        assert (pg.upgraded_from / "PG_VERSION").read_text().strip() == "16"
        assert (pgdata / "PG_VERSION").read_text().strip() == "18"
        assert not (pgdata.parent / "postgres.moving-to-18").exists()
        assert pg.uri == url16  # same socket, user and database: the worker's DATABASE_URL does not change
        applied = store.migrate(pg.uri)  # the ones after 0004, this file's and any added since
        assert applied[0] == "0005_search_extensions" and all(m > LAST_PG16_MIGRATION for m in applied)

        # After: the same Temporal file, a worker on PostgreSQL 18.
        env = await dev_server.start()
        try:
            async with store.pool_for(pg.uri, max_size=4) as pool:
                assert int(await pool.fetchval("SHOW server_version_num")) // 10000 == 18
                # (a) still shielded, and the practitioner's view and search still hide the address.
                row = await pool.fetchrow("SELECT shield_request_id FROM children WHERE uid = $1", child.uid)
                assert row["shield_request_id"] == request_id
                view = await store.view_child(pool, child.uid)
                assert view is not None and view["shielded"] and "address" not in view
                found = await store.search_children(
                    pool,
                    store.ChildSearch(
                        family_name=child.family_name,
                        date_of_birth=child.date_of_birth,
                        postcode=child.address.postcode,
                    ),
                )
                assert child.uid not in {r["uid"] for r in found}
                assert [tuple(r) for r in await pool.fetch(AUDIT_ROWS, request_id)] == audit_before
                assert (await store.verify_chain(pool, anchor_path=anchor)).intact
                # (b) the lifecycle resumes: its status answers, and the form it sleeps for is accepted.
                async with running_worker(env.client, pool, settings, task_queue):
                    service = ShieldingService(
                        env.client, pool, task_queue=task_queue, max_document_bytes=1024, action_keys=TEST_ACTION_KEYS
                    )
                    assert (await service.status(request_id)).stage == Stage.AWAITING_FORM
                    form = tmp_path / "form.pdf"
                    form.write_bytes(b"%PDF-1.7 the completed shielding request form")
                    outcome = await service.submit_form(request_id, [form], actor="officer-a")
                    assert outcome.accepted, outcome.message
                    status = await service.status(request_id)
                    assert status.stage == Stage.SHIELDED and status.form_received_at is not None
                assert (await store.verify_chain(pool, anchor_path=anchor)).intact
        finally:
            await env.shutdown()
    finally:
        pg.stop()
