"""The access log is under the audit log's protections (signed, numbered without gaps, chained, anchored,
append-only for the service): the tamper tests of the audit log, against the access log; and its retention,
the only way entries leave it, which verify checks against the audit log.

Each test has a database of its own (the `log` fixture of test_audit_tamper) and its own anchor directory.
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from shielding import store
from shielding.audit_signing import ACCESS_LOG, GENESIS
from shielding.store import access_log
from shielding.store.access_log import AccessKind, FrontEnd, Reader
from tests.helpers.api import connect_as
from tests.test_audit_tamper import Log, log, owner  # noqa: F401 (the fixture)

READER = Reader(actor="ivy", front_end=FrontEnd.WEB)


async def write(db: Log, count: int) -> list[int]:
    ids = []
    for n in range(count):
        ids.append(
            await access_log.record(
                db.pool, READER, AccessKind.VIEW, [f"CP-{n:04d}-AA"], details={"n": n, "nested": {"a": "é"}}
            )
        )
    return ids


async def verify(db: Log) -> store.ChainVerdict:
    return await store.verify_chain(db.pool, stream=ACCESS_LOG, signing=db.signing)


async def tamper(url: str, *statements: tuple[str, tuple[object, ...]]) -> None:
    """As the owner: the triggers off, the statements, every hash recomputed as the trigger does, triggers on."""
    conn = await owner(url)
    try:
        async with conn.transaction():
            await conn.execute("ALTER TABLE access_log DISABLE TRIGGER USER")
            for sql, args in statements:
                await conn.execute(sql, *args)
            head = await conn.fetchrow("SELECT retained_from, pruned_hash FROM access_chain_head")
            previous = head["pruned_hash"] or GENESIS
            for entry_id in [r["entry_id"] for r in await conn.fetch("SELECT entry_id FROM access_log ORDER BY 1")]:
                await conn.execute("UPDATE access_log SET prev_hash = $2 WHERE entry_id = $1", entry_id, previous)
                previous = await conn.fetchval(
                    """UPDATE access_log a SET entry_hash = access_entry_digest(a)
                       WHERE entry_id = $1 RETURNING entry_hash""",
                    entry_id,
                )
            await conn.execute(
                """UPDATE access_chain_head SET last_hash = $1,
                       last_entry_id = coalesce((SELECT max(entry_id) FROM access_log), 0),
                       last_at = (SELECT max(at) FROM access_log)""",
                previous,
            )
            await conn.execute("ALTER TABLE access_log ENABLE TRIGGER USER")
    finally:
        await conn.close()


async def test_a_clean_access_log_verifies_and_is_anchored_in_its_own_file(log: Log) -> None:  # noqa: F811
    assert await write(log, 4) == [1, 2, 3, 4]
    verdict = await verify(log)
    assert verdict.intact and verdict.entries == 4 and verdict.anchored_entry == 4, verdict.message
    assert verdict.message.startswith("access log intact")
    assert log.signing.anchor_path(ACCESS_LOG).exists()
    assert not log.anchor.exists()  # the audit log's anchor is another file
    row = await log.pool.fetchrow("SELECT key_id, mac, child_uids, details FROM access_log WHERE entry_id = 2")
    assert row["key_id"] and len(row["mac"]) == 64 and row["child_uids"] == ["CP-0001-AA"]


async def test_the_owner_rewriting_an_entry_and_every_hash_is_caught_at_that_entry(log: Log) -> None:  # noqa: F811
    await write(log, 5)
    assert (await verify(log)).intact
    await write(log, 1)  # entry 6: after the anchor, only its signature protects it
    for target in (2, 6):
        await tamper(log.url, ("UPDATE access_log SET actor = 'morgan' WHERE entry_id = $1", (target,)))
        verdict = await verify(log)
        assert not verdict.intact and verdict.first_broken_entry == target, verdict.message
        assert verdict.message.startswith(f"access log BROKEN at entry {target}")
        await tamper(log.url, ("UPDATE access_log SET actor = 'ivy' WHERE entry_id = $1", (target,)))


async def test_a_removed_entry_or_removed_newest_entries_are_named(log: Log) -> None:  # noqa: F811
    await write(log, 6)
    assert (await verify(log)).intact
    await tamper(log.url, ("DELETE FROM access_log WHERE entry_id = 3", ()))
    verdict = await verify(log)
    assert not verdict.intact and verdict.first_broken_entry == 3, verdict.message
    assert "missing" in verdict.message


async def test_the_newest_entries_removed_with_the_head_rolled_back_are_caught_by_the_anchor(log: Log) -> None:  # noqa: F811
    await write(log, 5)
    assert (await verify(log)).anchored_entry == 5
    await tamper(log.url, ("DELETE FROM access_log WHERE entry_id >= 4", ()))
    verdict = await verify(log)
    assert not verdict.intact and verdict.first_broken_entry == 4, verdict.message


async def test_the_service_may_append_only(log: Log) -> None:  # noqa: F811
    await write(log, 2)
    service = await connect_as(log.url, "shielding_service", None)
    try:
        for sql in ("UPDATE access_log SET actor = 'x'", "DELETE FROM access_log", "TRUNCATE access_log"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await service.execute(sql)
        # An entry written straight into the table, not by the service's append, carries no signature.
        await service.execute(
            "INSERT INTO access_log (actor, front_end, kind, prev_hash, entry_hash) VALUES ('x', 'web', 'view', '', '')"
        )
    finally:
        await service.close()
    verdict = await verify(log)
    assert not verdict.intact and verdict.first_broken_entry == 3 and "signature" in verdict.message


async def test_retention_removes_the_oldest_entries_audited_and_what_is_kept_still_verifies(log: Log) -> None:  # noqa: F811
    await write(log, 5)
    assert (await verify(log)).intact  # anchored at 5
    removed = await access_log.prune(log.pool, keep=timedelta(0))
    assert removed == 5
    assert await log.pool.fetchval("SELECT count(*) FROM access_log") == 0
    entry = await log.pool.fetchrow("SELECT reason, details FROM audit_log WHERE action = 'access-log-pruned'")
    assert entry["details"] == {"stream": "access_log", "removed": 5, "through": 5}
    assert "5 access log entries" in entry["reason"]
    await write(log, 2)  # 6 and 7 chain on from the last entry removed
    verdict = await verify(log)
    assert verdict.intact and verdict.entries == 2, verdict.message
    assert "from entry 6" in verdict.message
    # Nothing old enough: nothing removed, nothing audited.
    assert await access_log.prune(log.pool, keep=timedelta(days=730)) == 0
    assert await log.pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'access-log-pruned'") == 1


async def test_moving_the_start_of_the_kept_log_without_an_audited_prune_is_caught(log: Log) -> None:  # noqa: F811
    await write(log, 5)
    assert (await verify(log)).intact
    # The service role holds the head (its appends move it): moving the start would hide entries 1-3 from verify.
    service = await connect_as(log.url, "shielding_service", None)
    try:
        hash_3 = await service.fetchval("SELECT entry_hash FROM access_log WHERE entry_id = 3")
        await service.execute("UPDATE access_chain_head SET retained_from = 4, pruned_hash = $1", hash_3)
    finally:
        await service.close()
    verdict = await verify(log)
    assert not verdict.intact and verdict.first_broken_entry == 1, verdict.message
    assert "audited retention" in verdict.message


async def test_entries_written_at_the_same_moment_share_one_transaction_and_still_verify(log: Log) -> None:  # noqa: F811
    """Many readers at once: the process writes their entries together (one turn of the head's lock), each
    numbered, chained and signed as if written alone; every reader is answered with its own entry's number."""
    import asyncio

    readers = [Reader(actor=f"reader-{n}", front_end=FrontEnd.API) for n in range(40)]
    ids = await asyncio.gather(
        *(
            access_log.record(log.pool, r, AccessKind.SEARCH, [f"CP-{n:04d}-BB"], details={"n": n})
            for n, r in enumerate(readers)
        )
    )
    assert sorted(ids) == list(range(1, 41))
    rows = await log.pool.fetch("SELECT entry_id, actor, details FROM access_log ORDER BY entry_id")
    assert {r["entry_id"]: r["actor"] for r in rows} == {i: r.actor for i, r in zip(ids, readers, strict=True)}
    assert len({r["details"]["n"] for r in rows}) == 40
    # Written together: one transaction's time for all of them.
    assert await log.pool.fetchval("SELECT count(DISTINCT at) FROM access_log") < 40
    verdict = await verify(log)
    assert verdict.intact and verdict.entries == 40, verdict.message
    # A batch is signed like a single entry: rewriting one of them is named.
    await tamper(log.url, ("UPDATE access_log SET actor = 'morgan' WHERE entry_id = 17", ()))
    assert (await verify(log)).first_broken_entry == 17
