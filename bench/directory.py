"""directory_read: the practitioners' read paths against a directory of synthetic children.

Bulk-loads N children with binary COPY (0.5% shielded), then measures, interleaved in alternating batches
over an asyncpg pool of 10 (the store's own pool, with its jsonb codec):
- by uid: `SELECT * FROM practitioner_children WHERE uid=$1` against the same columns read straight from
  `children` (the floor);
- by name and date of birth: `search_children(...)` against a plain SELECT on `children` using the
  (family name, given name, date of birth) index with the same ordering and limit (the floor).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import asyncpg

from bench.stats import rate, ratio, summarize
from shielding.store import access_log
from shielding.store.access_log import AccessKind, FrontEnd, Reader
from shielding.store.directory import count_directory_read

SHIELDED_EVERY = 200  # 0.5%
SEED = 20261124
_MASK64 = (1 << 64) - 1
_EPOCH = date(2008, 1, 1)

_GIVEN = [
    "Amelia",
    "Oliver",
    "Isla",
    "George",
    "Ava",
    "Noah",
    "Mia",
    "Arthur",
    "Ivy",
    "Leo",
    "Freya",
    "Oscar",
    "Florence",
    "Harry",
    "Lily",
    "Muhammad",
    "Sophia",
    "Jack",
    "Grace",
    "Charlie",
    "Willow",
    "Henry",
    "Rosie",
    "Theo",
    "Evie",
    "Thomas",
    "Poppy",
    "Jacob",
    "Elsie",
    "Alfie",
    "Aria",
    "Archie",
    "Daisy",
    "Finley",
    "Sienna",
    "Joshua",
    "Isabella",
    "Teddy",
    "Maya",
    "Lucas",
    "Emily",
    "Tommy",
    "Ella",
    "Isaac",
    "Luna",
    "Ezra",
    "Hallie",
    "Max",
    "Phoebe",
    "Reggie",
    "Esme",
    "Albert",
    "Eva",
    "Edward",
    "Matilda",
    "Ronnie",
    "Ruby",
    "Hugo",
    "Penelope",
    "Jude",
    "Millie",
    "Elijah",
    "Mila",
    "Rory",
    "Harper",
    "Roman",
    "Layla",
    "Louie",
    "Violet",
    "Zayn",
    "Eliza",
    "Ethan",
    "Olivia",
    "Adam",
    "Ada",
    "Sonny",
    "Nova",
    "Alexander",
    "Maeve",
    "Hunter",
    "Bonnie",
    "Yusuf",
    "Zara",
    "Jaxon",
    "Iris",
    "Stanley",
    "Aisha",
    "Ibrahim",
    "Amara",
    "Dylan",
    "Nancy",
    "Caleb",
    "Hannah",
    "Omar",
    "Lyra",
    "Elliot",
    "Aurora",
    "Chloe",
    "Ali",
    "Imogen",
    "Ayaan",
    "Eden",
    "Kai",
    "Orla",
    "Otis",
    "Ayla",
]
_FAMILY_A = [
    "Hart",
    "Ash",
    "Brad",
    "Brook",
    "Cal",
    "Dun",
    "Fair",
    "Green",
    "Hol",
    "Kings",
    "Lang",
    "Mar",
    "Nor",
    "Old",
    "Pem",
    "Ravens",
    "Red",
    "Rother",
    "Sand",
    "Stan",
]
_FAMILY_B = [
    "by",
    "ford",
    "ley",
    "ton",
    "well",
    "wood",
    "worth",
    "field",
    "ham",
    "stead",
    "bury",
    "combe",
    "dale",
    "gate",
    "hurst",
    "more",
    "ridge",
    "shaw",
    "wick",
    "lake",
]
_FAMILY_C = ["", "e", "s", "-Okafor", "-Achebe", "-Nowak", "-Singh", "-Khan", "-Murphy", "-Jones", "-Patel", "-Ali"]
_STREETS = [
    "Frampton",
    "Lisson",
    "Church",
    "Edgware",
    "Marylebone",
    "Harrow",
    "Cunningham",
    "Grove",
    "Aberdeen",
    "Hamilton",
]
_SCHOOLS = [f"{name} Primary" for name in ("St Peter's", "Gateway", "Hampden Gurney", "Robinsfield", "Barrow Hill")]
COLUMNS = (
    "uid",
    "given_name",
    "family_name",
    "aliases",
    "gender",
    "date_of_birth",
    "address",
    "carers",
    "school",
    "gp_practice",
    "practitioners",
    "shield_request_id",
)
_SELECT_COLUMNS = (
    "uid, given_name, family_name, aliases, gender, date_of_birth, (shield_request_id IS NOT NULL) AS shielded, "
    "address, carers, school, gp_practice, practitioners"
)
VIEW_BY_UID = "SELECT * FROM practitioner_children WHERE uid = $1"
RAW_BY_UID = f"SELECT {_SELECT_COLUMNS} FROM children WHERE uid = $1"
SEARCH = "SELECT * FROM search_children($1, $2, $3, NULL, NULL, NULL, 50)"
RAW_SEARCH = (
    f"SELECT {_SELECT_COLUMNS} FROM children "
    "WHERE lower(family_name) = lower($2) AND lower(given_name) = lower($1) AND date_of_birth = $3 "
    "ORDER BY lower(family_name), lower(given_name), date_of_birth, uid LIMIT 50"
)


def child_uid(index: int) -> str:
    return f"C-B{index:08d}"


def is_shielded(index: int) -> bool:
    return index % SHIELDED_EVERY == 0


def _mix(index: int) -> int:
    """splitmix64 of the index: cheap, deterministic pseudo-random bits per synthetic child."""
    x = (index + SEED) * 0x9E3779B97F4A7C15 & _MASK64
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK64
    return x ^ (x >> 31)


def _identity(index: int) -> tuple[str, str, date, str]:
    """Deterministic given name, family name, date of birth and gender of synthetic child `index`."""
    x = _mix(index)
    given = _GIVEN[x % len(_GIVEN)]
    family = (
        _FAMILY_A[(x >> 8) % len(_FAMILY_A)]
        + _FAMILY_B[(x >> 16) % len(_FAMILY_B)]
        + _FAMILY_C[(x >> 24) % len(_FAMILY_C)]
    )
    dob = _EPOCH + timedelta(days=(x >> 32) % 6500)
    gender = "female" if index % 2 else "male"
    return given, family, dob, gender


def synthetic_rows(start: int, stop: int) -> Iterator[tuple[Any, ...]]:
    for index in range(start, stop):
        given, family, dob, gender = _identity(index)
        number = index % 200 + 1
        street = _STREETS[index % len(_STREETS)]
        yield (
            child_uid(index),
            given,
            family,
            [] if index % 20 else [f"{given}ie"],
            gender,
            dob,
            # An address and a carer of its own (flat and phone from the index): an intake of a child who shares
            # neither needs no decision about related records (bench/national.py has households of siblings).
            f'{{"lines": ["Flat {index}, {number} {street} Street", "London"], '
            f'"postcode": "NW{index % 10} {index % 9}LF"}}',
            f'[{{"name": "Joan {family}", "relationship": "mother", "phone": "07{index:09d}"}}]',
            _SCHOOLS[index % len(_SCHOOLS)],
            "Lisson Grove Health Centre",
            '["Health visitor: P. Okafor"]',
            f"SR-B{index:011d}" if is_shielded(index) else None,
        )


async def load_children(database_url: str, count: int, *, chunk: int = 100_000) -> dict[str, float]:
    """COPY `count` synthetic children into `children` (after migrations), then VACUUM ANALYZE it."""
    conn = await asyncpg.connect(database_url)  # a plain connection: jsonb goes in as text
    try:
        started = time.perf_counter()
        for first in range(0, count, chunk):
            await conn.copy_records_to_table(
                "children", records=synthetic_rows(first, min(first + chunk, count)), columns=list(COLUMNS)
            )
        copied = time.perf_counter()
        await conn.execute("VACUUM ANALYZE children")
        finished = time.perf_counter()
        size = await conn.fetchval("SELECT pg_total_relation_size('children')")
    finally:
        await conn.close()
    return {
        "rows": count,
        "copy_s": round(copied - started, 2),
        "vacuum_analyze_s": round(finished - copied, 2),
        "rows_per_s": rate(count, copied - started, 0) or 0.0,
        "table_mb": round(size / 1e6, 1),
    }


# --------------------------------------------------------------------------------------------- measuring


@dataclass
class Series:
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    count: int = 0
    rows: int = 0

    def figures(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(summarize(self.latencies_ms))
        out["per_s"] = rate(self.count, self.seconds)
        out["rows_per_query"] = round(self.rows / self.count, 2) if self.count else None
        return out


async def run_batch(
    call: Callable[[Any], Awaitable[int]], args: Sequence[Any], concurrency: int, series: Series
) -> None:
    """`len(args)` calls, `concurrency` at a time (closed loop); latencies and wall time into `series`."""
    cursor = iter(args)

    async def lane() -> None:
        for arg in cursor:
            t0 = time.perf_counter()
            rows = await call(arg)
            series.latencies_ms.append((time.perf_counter() - t0) * 1000)
            series.rows += rows

    t0 = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    series.seconds += time.perf_counter() - t0
    series.count += len(args)


async def interleave(
    calls: dict[str, Callable[[Any], Awaitable[int]]],
    args: Sequence[Any],
    *,
    batch: int,
    rounds: int,
    concurrency: int,
    rng: random.Random,
) -> dict[str, Series]:
    """Alternate batches of each kind (order reversed every round) over the same kind of arguments."""
    series = {name: Series() for name in calls}
    names = list(calls)
    for round_no in range(rounds):
        order = names if round_no % 2 == 0 else names[::-1]
        for name in order:
            picked = [args[rng.randrange(len(args))] for _ in range(batch)]
            await run_batch(calls[name], picked, concurrency, series[name])
    return series


async def read_benchmark(
    pool: asyncpg.Pool,
    count: int,
    *,
    uid_batch: int,
    uid_rounds: int,
    search_batch: int,
    search_rounds: int,
    concurrency: int = 10,
) -> dict[str, Any]:
    rng = random.Random(SEED)
    uids = [child_uid(rng.randrange(count)) for _ in range(20_000)]
    identities = [_identity(rng.randrange(count))[:3] for _ in range(5_000)]

    async def view(uid: str) -> int:
        return 1 if await pool.fetchrow(VIEW_BY_UID, uid) is not None else 0

    async def raw(uid: str) -> int:
        return 1 if await pool.fetchrow(RAW_BY_UID, uid) is not None else 0

    async def search(identity: tuple[str, str, date]) -> int:
        return len(await pool.fetch(SEARCH, *identity))

    async def raw_search(identity: tuple[str, str, date]) -> int:
        return len(await pool.fetch(RAW_SEARCH, *identity))

    # The same reads with their access log entry, as the service writes it (shielding.store.access_log): a view
    # at the same time as its entry, a search and then its entry with the uids it returned.
    reader = Reader(actor="bench-practitioner", front_end=FrontEnd.API)

    async def view_logged(uid: str) -> int:
        row = await access_log.viewed(pool, reader, uid, pool.fetchrow(VIEW_BY_UID, uid))
        return 1 if row is not None else 0

    # The service's own read path (web.routes.directory): the read counted for the person (the allowance), then
    # the view; and the same with its entry written meanwhile.
    async def counted_view(uid: str) -> int:
        await count_directory_read(pool, reader.actor, limit=10**9, window_seconds=300)
        return 1 if await pool.fetchrow(VIEW_BY_UID, uid) is not None else 0

    async def counted_view_logged(uid: str) -> int:
        return await access_log.viewed(pool, reader, uid, counted_view(uid))

    async def search_logged(identity: tuple[str, str, date]) -> int:
        rows = await pool.fetch(SEARCH, *identity)
        await access_log.record(pool, reader, AccessKind.SEARCH, [r["uid"] for r in rows])
        return len(rows)

    # Warm the plans, the pool and the buffer cache for every path.
    await interleave({"view": view, "raw": raw}, uids, batch=500, rounds=1, concurrency=concurrency, rng=rng)
    await interleave(
        {"search": search, "raw_search": raw_search}, identities, batch=20, rounds=1, concurrency=concurrency, rng=rng
    )
    warm = {"view_logged": view_logged, "counted_view": counted_view, "counted_view_logged": counted_view_logged}
    await interleave(warm, uids, batch=200, rounds=1, concurrency=concurrency, rng=rng)
    by_uid = await interleave(
        {"view": view, "raw": raw, "view_logged": view_logged, **warm},
        uids,
        batch=uid_batch,
        rounds=uid_rounds,
        concurrency=concurrency,
        rng=rng,
    )
    by_name = await interleave(
        {"search": search, "raw_search": raw_search, "search_logged": search_logged},
        identities,
        batch=search_batch,
        rounds=search_rounds,
        concurrency=concurrency,
        rng=rng,
    )
    plans = {
        "view_by_uid": await _plan(pool, f"EXPLAIN {VIEW_BY_UID}", uids[0]),
        "search_children_generic": await _generic_search_plan(pool, *identities[0]),
        "raw_search": await _plan(pool, f"EXPLAIN {RAW_SEARCH}", *identities[0]),
    }
    view_f, raw_f = by_uid["view"].figures(), by_uid["raw"].figures()
    search_f, raw_search_f = by_name["search"].figures(), by_name["raw_search"].figures()
    logged_view_f, logged_search_f = by_uid["view_logged"].figures(), by_name["search_logged"].figures()
    counted_f, counted_logged_f = by_uid["counted_view"].figures(), by_uid["counted_view_logged"].figures()
    return {
        # The access log's cost on a read (goal: p99 at most 1.10x the same read without it, same run).
        "access_log": {
            "counted_view_p50_ms": counted_f.get("p50_ms"),
            "counted_view_p99_ms": counted_f.get("p99_ms"),
            "counted_view_logged_p50_ms": counted_logged_f.get("p50_ms"),
            "counted_view_logged_p99_ms": counted_logged_f.get("p99_ms"),
            "counted_view_ratio": ratio(counted_logged_f.get("p99_ms"), counted_f.get("p99_ms")),
            "view_p50_ms": logged_view_f.get("p50_ms"),
            "view_p99_ms": logged_view_f.get("p99_ms"),
            "view_ratio": ratio(logged_view_f.get("p99_ms"), view_f.get("p99_ms")),
            "search_p50_ms": logged_search_f.get("p50_ms"),
            "search_p99_ms": logged_search_f.get("p99_ms"),
            "search_ratio": ratio(logged_search_f.get("p99_ms"), search_f.get("p99_ms")),
        },
        "view_p50_ms": view_f.get("p50_ms"),
        "view_p99_ms": view_f.get("p99_ms"),
        "view_per_s": view_f.get("per_s"),
        "raw_p50_ms": raw_f.get("p50_ms"),
        "raw_p99_ms": raw_f.get("p99_ms"),
        "raw_per_s": raw_f.get("per_s"),
        "ratio": ratio(view_f.get("p99_ms"), raw_f.get("p99_ms")),
        "ratio_p50": ratio(view_f.get("p50_ms"), raw_f.get("p50_ms")),
        "search_p50_ms": search_f.get("p50_ms"),
        "search_p99_ms": search_f.get("p99_ms"),
        "search_per_s": search_f.get("per_s"),
        "raw_search_p50_ms": raw_search_f.get("p50_ms"),
        "raw_search_p99_ms": raw_search_f.get("p99_ms"),
        "raw_search_per_s": raw_search_f.get("per_s"),
        "search_ratio": ratio(search_f.get("p99_ms"), raw_search_f.get("p99_ms")),
        "search_rows_per_query": search_f.get("rows_per_query"),
        "raw_search_rows_per_query": raw_search_f.get("rows_per_query"),
        "pool_size": concurrency,
        "detail": {"view": view_f, "raw": raw_f, "search": search_f, "raw_search": raw_search_f},
        "plans": plans,
    }


async def _plan(pool: asyncpg.Pool, sql: str, *args: Any) -> list[str]:
    rows = await pool.fetch(sql, *args)
    return [r[0] for r in rows]


async def _generic_search_plan(pool: asyncpg.Pool, *identity: Any) -> list[str]:
    """The plan search_children's body gets: a SECURITY DEFINER function with a SET clause is never inlined,
    and PostgreSQL 16 plans a non-inlined SQL function's statement once, without the argument values."""
    async with pool.acquire() as conn:
        body = await conn.fetchval("SELECT prosrc FROM pg_proc WHERE proname = 'search_children'")
        if "RETURN QUERY" in body:  # the plpgsql version: its one statement
            body = body.split("RETURN QUERY", 1)[1].rsplit("END", 1)[0]
        names = ["p_given_name", "p_family_name", "p_date_of_birth", "p_gender", "p_postcode", "p_school", "p_limit"]
        for number, name in enumerate(names, 1):
            body = body.replace(name, f"${number}")
        await conn.execute(
            f"PREPARE bench_search(text, text, date, text, text, text, integer) AS {body.strip().rstrip(';')}"
        )
        try:
            await conn.execute("SET plan_cache_mode = force_generic_plan")
            given, family, dob = (str(value).replace("'", "''") for value in identity)
            rows = await conn.fetch(
                f"EXPLAIN EXECUTE bench_search('{given}', '{family}', '{dob}', NULL, NULL, NULL, 50)"
            )
        finally:
            await conn.execute("DEALLOCATE bench_search")
            await conn.execute("RESET plan_cache_mode")
    return [r[0] for r in rows]
