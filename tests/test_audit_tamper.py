"""The audit log cannot be rewritten quietly (shielding.audit_signing): each test tampers with a database of its
own, as the tables' owner or the service's login could, and `audit verify` names the first entry that differs.

Every database here is a fresh one in the session's embedded server, migrated; its anchor file is the test's own.
The last test does the same through `shielding audit verify` against a real `shielding dev`.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from activities.audit_anchor import AuditAnchorActivities
from shielding import access, store
from shielding.audit_signing import (
    AUDIT_KEYS_FILE,
    AUDIT_LOG,
    GENESIS,
    AuditKeys,
    AuditSigning,
    audit_keys_from_settings,
    ensure_dev_audit_keys,
    generate_audit_key_spec,
)
from shielding.domain import Address, AuditAction, Carer
from shielding.embedded_postgres import EmbeddedPostgres
from shielding.settings import ConfigurationError, Settings
from starter.identity import IdentityService, SignInFailed
from tests.helpers.api import connect_as, running_stack
from tests.helpers.devstack import DevStack
from tests.helpers.records import make_child
from tests.helpers.servers import TEST_AUDIT_KEYS, running_worker
from worker.audit_schedule import anchor_schedule_id, ensure_anchor_schedule
from workflows.audit_anchor import AnchorAuditWorkflow


@dataclass
class Log:
    url: str
    pool: asyncpg.Pool
    signing: AuditSigning

    @property
    def anchor(self) -> Path:
        return self.signing.anchor_path(AUDIT_LOG)

    async def verify(self, **kwargs: object) -> store.ChainVerdict:
        return await store.verify_chain(self.pool, signing=self.signing, **kwargs)  # type: ignore[arg-type]

    async def write(self, count: int, actor: str = "ivy") -> list[int]:
        ids = []
        for n in range(count):
            async with self.pool.acquire() as conn, conn.transaction():
                ids.append(
                    await store.append_audit(
                        conn,
                        action=AuditAction.ROLE_GRANTED,
                        actor=actor,
                        request_id=None,
                        reason=f"person-{n} granted intake",
                        details={"n": n, "nested": {"b": [1, 2.5, None], "a": "é"}},
                    )
                )
        return ids


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture
async def log(pg_server: EmbeddedPostgres, tmp_path: Path) -> AsyncIterator[Log]:
    name = f"tamper_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_server.uri)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = _with_database(pg_server.uri, name)
    await asyncio.to_thread(store.migrate, url)
    pool = await store.create_pool(url, max_size=4)
    try:
        yield Log(url, pool, AuditSigning(AuditKeys.from_spec(TEST_AUDIT_KEYS), tmp_path / "anchors"))
    finally:
        await pool.close()
        admin = await asyncpg.connect(pg_server.uri)
        try:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            await admin.close()


# ---------------------------------------------------------------------------- tampering, as the owner would


async def owner(url: str) -> asyncpg.Connection:
    """The tables' owner (the NOLOGIN role every object belongs to), reached from the embedded superuser."""
    conn = await asyncpg.connect(url)
    await conn.execute("SET ROLE shielding_owner")
    assert await conn.fetchval("SELECT current_user") == "shielding_owner"
    return conn


async def rechain(conn: asyncpg.Connection) -> None:
    """Recompute every entry's hash as the trigger does (audit_entry_digest, in id order) and reset the head."""
    previous = GENESIS
    for entry_id in [r["entry_id"] for r in await conn.fetch("SELECT entry_id FROM audit_log ORDER BY entry_id")]:
        await conn.execute("UPDATE audit_log SET prev_hash = $2 WHERE entry_id = $1", entry_id, previous)
        previous = await conn.fetchval(
            "UPDATE audit_log a SET entry_hash = audit_entry_digest(a) WHERE entry_id = $1 RETURNING entry_hash",
            entry_id,
        )
    await conn.execute(
        """UPDATE audit_chain_head SET last_hash = $1,
               last_entry_id = coalesce((SELECT max(entry_id) FROM audit_log), 0),
               last_at = (SELECT max(at) FROM audit_log)""",
        previous,
    )


async def tamper(url: str, *statements: tuple[str, tuple[object, ...]]) -> None:
    """As the owner: the triggers off, the statements, every hash recomputed, the triggers on again."""
    conn = await owner(url)
    try:
        async with conn.transaction():
            await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
            for sql, args in statements:
                await conn.execute(sql, *args)
            await rechain(conn)
            await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
    finally:
        await conn.close()


async def database_chain_is_consistent(pool: asyncpg.Pool) -> bool:
    """What the old, in-database `audit verify` checked: each hash recomputed, each entry linked to the last."""
    return bool(
        await pool.fetchval(
            """SELECT coalesce(bool_and(ok), true) FROM (
                   SELECT a.entry_hash = audit_entry_digest(a)
                          AND a.prev_hash = coalesce(lag(a.entry_hash) OVER (ORDER BY a.entry_id), repeat('0', 64))
                          AS ok
                   FROM audit_log a) checked"""
        )
    )


# ------------------------------------------------------------------------------------------------- tests


async def test_a_clean_log_verifies_and_its_head_is_anchored_once_per_change(log: Log) -> None:
    empty = await log.verify()
    assert empty.intact and empty.entries == 0 and not log.anchor.exists()  # nothing to anchor yet

    ids = await log.write(5)
    assert ids == [1, 2, 3, 4, 5]
    verdict = await log.verify()
    assert verdict.intact, verdict.message
    assert (verdict.entries, verdict.anchored_entry) == (5, 5)
    assert stat.S_IMODE(log.anchor.stat().st_mode) == 0o600
    first = log.anchor.read_text().splitlines()
    assert len(first) == 1 and first[0].split(" ")[1] == "5"
    # Nothing new: no new line. A new entry: one more line, the first kept as it was (appended, never rewritten).
    assert (await log.verify()).intact and log.anchor.read_text().splitlines() == first
    await log.write(1)
    again = await log.verify()
    assert again.intact and again.anchored_entry == 6
    lines = log.anchor.read_text().splitlines()
    assert lines[0] == first[0] and len(lines) == 2
    # Signed and chained in the rows themselves; the anchor holds no content.
    row = await log.pool.fetchrow("SELECT key_id, mac, reason FROM audit_log WHERE entry_id = 6")
    assert row["key_id"] == "test-audit-key-1" and len(row["mac"]) == 64
    assert "granted" not in log.anchor.read_text()


async def test_the_owner_rewriting_an_entry_and_every_hash_is_caught_at_that_entry(log: Log) -> None:
    await log.write(6)
    assert (await log.verify()).intact
    await log.write(2)  # 7 and 8: after the last anchor, so only their signatures protect them

    for target in (3, 7):
        await tamper(log.url, ("UPDATE audit_log SET actor = 'morgan' WHERE entry_id = $1", (target,)))
        # The database's own chain is whole again: a check made in the database would pass.
        assert await database_chain_is_consistent(log.pool)
        verdict = await log.verify()
        assert not verdict.intact
        assert verdict.first_broken_entry == target, verdict.message
        assert f"entry {target}" in verdict.message and "signature" in verdict.message
        await tamper(log.url, ("UPDATE audit_log SET actor = 'ivy' WHERE entry_id = $1", (target,)))
        assert (await log.verify()).intact  # put back exactly: the signatures fit again

    # Replacing the database's digest function (the superuser can) changes nothing: verify computes in Python.
    conn = await asyncpg.connect(log.url)
    try:
        await conn.execute(
            "CREATE OR REPLACE FUNCTION audit_entry_digest(e audit_log) RETURNS text LANGUAGE sql IMMUTABLE AS "
            "$$ SELECT 'forged' $$"
        )
    finally:
        await conn.close()
    await tamper(log.url, ("UPDATE audit_log SET reason = 'nothing happened' WHERE entry_id = 2", ()))
    assert await database_chain_is_consistent(log.pool)  # by the owner's own digest
    verdict = await log.verify()
    # Every stored hash is now the forged function's, so the first entry already differs.
    assert not verdict.intact and verdict.first_broken_entry == 1, verdict.message


async def test_removing_the_newest_entries_is_caught_by_the_anchor(log: Log, tmp_path: Path) -> None:
    await log.write(5)
    assert (await log.verify()).anchored_entry == 5
    await tamper(log.url, ("DELETE FROM audit_log WHERE entry_id >= 4", ()))
    assert await database_chain_is_consistent(log.pool)

    verdict = await log.verify()
    assert not verdict.intact and verdict.first_broken_entry == 4, verdict.message
    assert "anchored" in verdict.message and "removed" in verdict.message
    # The other side: without the anchor the shortened log would look whole (each remaining entry is signed).
    unanchored = AuditSigning(log.signing.keys, tmp_path / "no-anchor-yet")
    assert (await store.verify_chain(log.pool, signing=unanchored)).intact


async def test_an_entry_written_without_the_service_fails_verify(log: Log) -> None:
    await log.write(3)
    assert (await log.verify()).intact
    service = await asyncpg.connect(log.url)
    try:
        # The service's own login can insert: the trigger numbers and chains it, but nobody signed it.
        await service.execute("SET ROLE shielding_service")
        await service.execute(
            """INSERT INTO audit_log (action, actor, request_id, details, prev_hash, entry_hash)
               VALUES ('role-granted', 'morgan', NULL, '{}', '', '')"""
        )
        verdict = await log.verify()
        assert not verdict.intact and verdict.first_broken_entry == 4, verdict.message
        assert "signature" in verdict.message
        # A made-up signature under the real key id fails too; so does a number out of turn, at the insert.
        await tamper(log.url, ("DELETE FROM audit_log WHERE entry_id = 4", ()))
        await service.execute(
            """INSERT INTO audit_log (action, actor, request_id, details, prev_hash, entry_hash, key_id, mac)
               VALUES ('role-granted', 'morgan', NULL, '{}', '', '', 'test-audit-key-1', repeat('a', 64))"""
        )
        assert (await log.verify()).first_broken_entry == 4
        with pytest.raises(asyncpg.CheckViolationError, match="numbered without gaps"):
            await service.execute(
                """INSERT INTO audit_log (entry_id, action, actor, request_id, details, prev_hash, entry_hash)
                   VALUES (99, 'role-granted', 'morgan', NULL, '{}', '', '')"""
            )
    finally:
        await service.close()


async def test_a_gap_in_the_numbers_is_caught_and_a_rollback_leaves_none(log: Log) -> None:
    await log.write(2)
    async with log.pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        assert await store.append_audit(conn, action=AuditAction.SIGNED_IN, actor="ivy", request_id=None) == 3
        await transaction.rollback()  # the number is not used up
    assert await log.write(2) == [3, 4]
    assert (await log.verify()).intact

    # A middle entry removed and the chain recomputed around it: the number is missing.
    await tamper(log.url, ("DELETE FROM audit_log WHERE entry_id = 2", ()))
    assert await database_chain_is_consistent(log.pool)
    verdict = await log.verify()
    assert not verdict.intact and verdict.first_broken_entry == 2 and "missing" in verdict.message
    # Renumbered to close the gap: the signatures name the old numbers.
    await tamper(
        log.url,
        ("UPDATE audit_log SET entry_id = -entry_id WHERE entry_id > 2", ()),
        ("UPDATE audit_log SET entry_id = -entry_id - 1 WHERE entry_id < 0", ()),
    )
    verdict = await log.verify()
    assert not verdict.intact and verdict.first_broken_entry == 2, verdict.message


async def test_an_anchor_file_the_service_did_not_write_is_refused(log: Log) -> None:
    await log.write(2)
    assert (await log.verify()).intact
    line = log.anchor.read_text().splitlines()[0].split(" ")
    forged = " ".join([*line[:-1], "0" * 64])
    with log.anchor.open("a") as file:
        file.write(forged + "\n")
    verdict = await log.verify()
    assert not verdict.intact and "line 2" in verdict.message and "not signed" in verdict.message

    log.anchor.write_text(" ".join(line) + "\n")
    os.chmod(log.anchor, 0o644)
    verdict = await log.verify()
    assert not verdict.intact and "other users" in verdict.message
    os.chmod(log.anchor, 0o600)
    assert (await log.verify()).intact


async def test_stripping_the_signatures_and_moving_where_they_start_is_caught(log: Log) -> None:
    await log.write(3)
    assert (await log.verify()).intact
    conn = await owner(log.url)
    try:
        async with conn.transaction():
            await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
            await conn.execute("UPDATE audit_log SET key_id = NULL, mac = NULL")
            await conn.execute("UPDATE audit_chain_head SET signed_from = 100")
            await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
    finally:
        await conn.close()
    verdict = await log.verify()
    assert not verdict.intact and "signed from entry 100" in verdict.message, verdict.message


async def test_entries_from_before_signing_are_covered_by_the_first_signed_one(
    pg_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    """An installation upgraded to 0007: the entries it wrote before carry no signature, and need none, because
    the first signed entry's signature covers the hash of every entry before it."""
    from importlib import resources

    from yoyo import get_backend, read_migrations

    name = f"upgrade_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_server.uri)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(pg_server.uri, name)
    try:

        def migrate_before_signing() -> None:
            backend = get_backend("postgresql+psycopg://" + url.removeprefix("postgresql://"))
            migrations = read_migrations(str(resources.files("shielding") / "migrations"))
            with backend.lock():
                backend.apply_migrations(backend.to_apply(migrations.filter(lambda m: m.id < "0007")))

        await asyncio.to_thread(migrate_before_signing)
        pool = await store.create_pool(url, max_size=2)
        log = Log(url, pool, AuditSigning(AuditKeys.from_spec(TEST_AUDIT_KEYS), tmp_path))
        try:
            # The old, unsigned entries of a database not yet migrated, as the service of that time wrote them.
            for n in range(3):
                await pool.execute(
                    "INSERT INTO audit_log (action, actor, reason, details) VALUES ('role-granted', 'ivy', $1, $2)",
                    f"person-{n} granted intake",
                    {"n": n},
                )
            await asyncio.to_thread(store.migrate, url)
            await pool.close()  # the service starts again after its migrations
            pool = log.pool = await store.create_pool(url, max_size=2)
            assert await pool.fetchval("SELECT signed_from FROM audit_chain_head") == 4
            assert await log.write(1) == [4]
            verdict = await log.verify()
            assert verdict.intact and verdict.entries == 4, verdict.message
            await tamper(url, ("UPDATE audit_log SET reason = 'rewritten' WHERE entry_id = 2", ()))
            verdict = await log.verify()
            assert not verdict.intact and verdict.first_broken_entry == 4, verdict.message
        finally:
            await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


# ------------------------------------------------------------------------------------------------- keys


def test_production_needs_the_audit_key_and_development_makes_a_private_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="SHIELDING_AUDIT_KEYS is required in production"):
        audit_keys_from_settings(Settings(environment="production", data_dir=tmp_path))
    spec = generate_audit_key_spec("k1")
    assert audit_keys_from_settings(Settings(environment="production", data_dir=tmp_path, audit_keys=spec)) == spec

    made = audit_keys_from_settings(Settings(data_dir=tmp_path / "dev"))
    path = tmp_path / "dev" / AUDIT_KEYS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text().strip() == made
    assert ensure_dev_audit_keys(tmp_path / "dev") == path and path.read_text().strip() == made  # kept
    keys = AuditKeys.from_spec(made)
    assert made.partition(":")[2] not in repr(keys)
    with pytest.raises(ConfigurationError, match="32 bytes"):
        AuditKeys.from_spec("k:" + "QUJD")


# --------------------------------------------------------------------------------------- the schedule


async def test_the_scheduled_workflow_verifies_and_anchors(
    log: Log, settings: Settings, task_queue: str, time_env: WorkflowEnvironment
) -> None:
    await log.write(3)
    env = time_env
    async with running_worker(
        env.client, log.pool, settings, task_queue, audit_anchor=AuditAnchorActivities(log.pool, log.signing)
    ):
        result = await env.client.execute_workflow(
            AnchorAuditWorkflow.run, id=f"anchor-{uuid.uuid4().hex[:8]}", task_queue=task_queue
        )
        assert result.intact and result.anchored_entry == 3
        assert log.anchor.read_text().splitlines()[-1].split(" ")[1] == "3"

        await tamper(log.url, ("UPDATE audit_log SET reason = 'nothing' WHERE entry_id = 2", ()))
        with pytest.raises(WorkflowFailureError) as failed:
            await env.client.execute_workflow(
                AnchorAuditWorkflow.run, id=f"anchor-{uuid.uuid4().hex[:8]}", task_queue=task_queue
            )
        assert "entry 2" in str(failed.value.cause)


@pytest.mark.devserver
async def test_the_worker_makes_its_schedule_once_however_often_it_starts(dev_env: WorkflowEnvironment) -> None:
    client: Client = dev_env.client
    settings = Settings(task_queue=f"tq-{uuid.uuid4().hex[:8]}", audit_anchor_minutes=30)
    schedule_id = await ensure_anchor_schedule(client, settings, trigger=False)
    try:
        assert schedule_id == anchor_schedule_id(settings.task_queue)
        # A second start (or a second worker) updates it in place, to the interval it now has.
        faster = settings.model_copy(update={"audit_anchor_minutes": 10})
        assert await ensure_anchor_schedule(client, faster, trigger=False) == schedule_id
        described = await client.get_schedule_handle(schedule_id).describe()
        assert [i.every for i in described.schedule.spec.intervals] == [timedelta(minutes=10)]
    finally:
        await client.get_schedule_handle(schedule_id).delete()


# ------------------------------------------------------------------- item 4: changes of who may do what


async def test_an_import_names_what_changed_never_the_values(pool: asyncpg.Pool) -> None:
    canary = f"CANARY-{uuid.uuid4().hex[:8]}"
    record = make_child(postcode="NW8 1CA", school=f"{canary} School")
    await store.import_children(pool, [record], actor="importer")
    changed = record.model_copy(
        update={
            "address": Address(lines=[f"{canary} Road", "London"], postcode="NW8 2CB"),
            "carers": [Carer(name=f"{canary} Carer", relationship="mother")],
        }
    )
    await store.import_children(pool, [changed], actor="importer")
    await store.import_children(pool, [changed], actor="importer")  # the same again: nothing changed

    rows = await pool.fetch(
        "SELECT reason, details, child_uid FROM audit_log WHERE action = 'imported' AND child_uid = $1 "
        "ORDER BY entry_id",
        record.uid,
    )
    assert [r["details"] for r in rows] == [
        {"created": True, "changed": list(store.directory.RECORD_FIELDS)},
        {"created": False, "changed": ["address", "carers"]},
    ]
    assert rows[1]["reason"] == "record changed by import: address, carers"
    summaries = await pool.fetch(
        "SELECT details FROM audit_log WHERE action = 'imported' AND child_uid IS NULL AND actor = 'importer' "
        "ORDER BY entry_id DESC LIMIT 1"
    )
    assert summaries[0]["details"] == {"records": 1, "created": 0, "changed": 0, "unchanged": 1}
    text = json.dumps(
        [dict(r) for r in await pool.fetch("SELECT * FROM audit_log WHERE child_uid = $1", record.uid)], default=str
    )
    assert canary not in text and "NW8" not in text and record.date_of_birth.isoformat() not in text


async def test_grants_removals_and_failed_sign_ins_are_audited(pool: asyncpg.Pool) -> None:
    name = f"aud-{uuid.uuid4().hex[:8]}"
    async with pool.acquire() as conn, conn.transaction():
        await access.grant_role(conn, f"{name}-boss", "manager", by="boss")  # a removal may not leave none
        await access.grant_role(conn, name, "intake", by="boss")
        await access.grant_role(conn, name, "practitioner", by="boss")
    async with pool.acquire() as conn, conn.transaction():
        await access.remove_role(conn, name, "practitioner", by="boss")
    with pytest.raises(SignInFailed):
        await IdentityService(pool, idle_timeout=timedelta(minutes=15)).sign_in_with_password(
            name, "not-the-password-at-all", kind="bearer"
        )
    rows = await pool.fetch(
        "SELECT action, actor, reason FROM audit_log WHERE reason LIKE $1 OR actor = $2 ORDER BY entry_id",
        f"{name} %",
        name,
    )
    assert [(r["action"], r["actor"]) for r in rows] == [
        ("role-granted", "boss"),
        ("role-granted", "boss"),
        ("role-removed", "boss"),
        ("sign-in-failed", name),
    ]
    assert "not-the-password" not in json.dumps([dict(r) for r in rows])


# -------------------------------------------------------------- through the service: `shielding audit verify`


MANAGER = "tamper.mgr"


def _password(name: str) -> str:
    return f"{name}-correct-horse-battery"


def _verify(stack: DevStack) -> tuple[int, dict[str, object]]:
    result = stack.run("audit", "verify", "--json", as_user=MANAGER)
    return result.returncode, json.loads(result.stdout)


async def test_audit_verify_through_the_service_names_the_rewritten_entry(tmp_path: Path) -> None:
    with running_stack("shielding-tamper-") as stack:
        made = stack.run("users", "bootstrap", MANAGER, "--password-stdin", input=_password(MANAGER) + "\n")
        assert made.returncode == 0, made
        added = stack.run(
            "users", "add", "tamper.ivy", "--role", "intake", "--password-stdin", as_user=MANAGER, input="x" * 16
        )
        assert added.returncode == 0, added
        code, clean = _verify(stack)
        assert code == 0 and clean["intact"] is True, clean
        assert (stack.data_dir / "audit.anchor").exists()

        superuser = await connect_as(stack.database_url, "postgres", None)
        try:
            granted = await superuser.fetchval(
                "SELECT entry_id FROM audit_log WHERE action = 'role-granted' AND reason = 'tamper.ivy granted intake'"
            )
        finally:
            await superuser.close()
        host_url = urlunsplit(urlsplit(stack.database_url)._replace(netloc="postgres@"))
        await tamper(
            host_url, ("UPDATE audit_log SET reason = 'tamper.ivy granted manager' WHERE entry_id = $1", (granted,))
        )
        code, broken = _verify(stack)
        assert code == 1 and broken["intact"] is False and broken["first_broken_entry"] == granted, broken
        assert f"entry {granted}" in str(broken["message"])

        # The store's own check, from here, says the same.
        pool = await store.create_pool(host_url, max_size=2)
        try:
            signing = AuditSigning(AuditKeys.from_spec(TEST_AUDIT_KEYS), stack.data_dir)
            verdict = await store.verify_chain(pool, signing=signing)
            assert not verdict.intact and verdict.first_broken_entry == granted
        finally:
            await pool.close()
