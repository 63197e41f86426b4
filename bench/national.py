"""national: the directory at national scale (default 11,000,000 synthetic children).

Loads N children by binary COPY (names drawn with a skewed, London-like frequency; dates of birth over ~18
years, so ~1,700 children per date at 11M; 0.5% shielded; siblings in households of one to four sharing an
address, a carer and the family name), records the load time and the database size, then measures over an
asyncpg pool of 10, batches interleaved:
- view by uid (the redacting view) against the raw SELECT, repeated so the p99 ratio has a spread;
- exact name + date of birth (`search_children`), fuzzy name + date of birth (`search_children_fuzzy`, names
  misspelt, exact date and a 3-day tolerance) and a name-only search (exact names, no date: the
  (family, given, date of birth) btree; practitioners are never offered it: a name alone lists too many);
- recall of the fuzzy search on a labelled set of misspellings: the share found in the first 50 and at rank 1.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any

import asyncpg

from bench import directory
from bench.directory import COLUMNS, SEED, Series, child_uid, interleave, is_shielded
from bench.stats import ratio

DEFAULT_ROWS = 11_000_000
_EPOCH = date(2008, 1, 1)
_DAYS = 6_500

# Given names as London's records spell them, most frequent first (a skewed draw picks the early ones more).
_GIVEN = [
    "Muhammad", "Olivia", "Oliver", "Amelia", "Noah", "Isla", "George", "Ava", "Leo", "Zainab", "Arthur", "Mia",
    "Yusuf", "Fatima", "Ibrahim", "Aisha", "Adam", "Maryam", "Ali", "Sophia", "Omar", "Hafsa", "Ayaan", "Amara",
    "Theo", "Freya", "Jack", "Grace", "Harry", "Lily", "Mohammed", "Ayesha", "Musa", "Khadija", "Zayn", "Safiya",
    "Isaac", "Esme", "Kwame", "Abena", "Chidi", "Ngozi", "Oluwaseun", "Adaeze", "Kofi", "Efua", "Tariq", "Noor",
    "Sebastian", "Florence", "Alexander", "Matilda", "Siobhan", "Niamh", "Ewan", "Eilidh", "Krzysztof", "Zofia",
    "Jakub", "Zuzanna", "Mateusz", "Wiktoria", "Arjun", "Priya", "Rohan", "Ananya", "Dmitri", "Anastasia",
    "Hamza", "Sumaya", "Abdirahman", "Hodan", "Luca", "Giulia", "Mehmet", "Elif", "Chloe", "Zoe",
]  # fmt: skip
_FAMILY = [
    "Khan", "Ahmed", "Ali", "Hussain", "Begum", "Rahman", "Islam", "Patel", "Shah", "Singh", "Smith", "Jones",
    "Williams", "Brown", "Taylor", "Davies", "Evans", "Wilson", "Thomas", "Johnson", "Roberts", "Robinson",
    "Okafor", "Adeyemi", "Mensah", "Owusu", "Nwosu", "Boateng", "Osei", "Abdi", "Mohamed", "Warsame", "Nowak",
    "Kowalski", "Wisniewski", "Wojcik", "Kaminski", "MacDonald", "McDonald", "MacLeod", "McKenzie", "O'Brien",
    "O'Connor", "Murphy", "Kelly", "Chowdhury", "Choudhury", "Miah", "Uddin", "Sharma", "Gupta", "Yilmaz",
    "Kaya", "Rossi", "Silva", "Santos", "Ivanov", "Nguyen", "Chen", "Wang", "Lefevre", "Dubois", "Hartley",
    "Pemberton", "Ashworth", "Fairweather", "Kingsley", "Langford", "Ravenscroft", "Stanfield",
]  # fmt: skip
_STREETS = ["Frampton", "Lisson", "Church", "Edgware", "Harrow", "Mare", "Kingsland", "Cable", "Brick", "Old Kent"]
_SCHOOLS = [f"{n} Primary" for n in ("St Peter's", "Gateway", "Hampden Gurney", "Robinsfield", "Barrow Hill")]


def _skewed(x: int, size: int) -> int:
    """An index into a list of `size`, the early ones more often (u^2: ~1/3 of draws in the first tenth)."""
    u = (x & 0xFFFF) / 0x10000
    return min(size - 1, int(size * u * u))


def identity(index: int) -> tuple[str, str, date, str, list[str]]:
    """Given name, family name (a household's, ~8% double-barrelled), date of birth, gender, aliases."""
    x = directory._mix(index)
    home = directory._mix(household(index) + 7_777_777)
    given = _GIVEN[_skewed(x, len(_GIVEN))]
    family = _FAMILY[_skewed(home >> 16, len(_FAMILY))]
    if (home >> 40) % 12 == 0:
        family = f"{family}-{_FAMILY[_skewed(home >> 44, len(_FAMILY))]}"
    dob = _EPOCH + timedelta(days=(x >> 32) % _DAYS)
    gender = "female" if (x >> 20) % 2 else "male"
    aliases = [f"{_GIVEN[(x >> 24) % len(_GIVEN)]} {family}"] if (x >> 28) % 25 == 0 else []
    return given, family, dob, gender, aliases


def household(index: int) -> int:
    """Households of one to four consecutive children: the first index of this child's household."""
    size = 1 + directory._mix(index // 4 + 99) % 4
    return index - (index % 4) % size


def national_rows(start: int, stop: int) -> Iterator[tuple[Any, ...]]:
    for index in range(start, stop):
        given, family, dob, gender, aliases = identity(index)
        home = household(index)
        street = _STREETS[home % len(_STREETS)]
        yield (
            child_uid(index),
            given,
            family,
            aliases,
            gender,
            dob,
            f'{{"lines": ["{home % 997 + 1} {street} Street, unit {home}", "London"], '
            f'"postcode": "E{home % 20} {home % 9}{chr(65 + home % 26)}{chr(65 + home // 26 % 26)}"}}',
            f'[{{"name": "Carer {home}", "relationship": "mother", "phone": "020 7946 {home % 10000:04d}"}}]',
            _SCHOOLS[home % len(_SCHOOLS)],
            "Lisson Grove Health Centre",
            '["Health visitor: P. Okafor"]',
            f"SR-B{index:011d}" if is_shielded(index) else None,
        )


async def load(database_url: str, count: int, *, chunk: int = 100_000) -> dict[str, Any]:
    conn = await asyncpg.connect(database_url)
    try:
        started = time.perf_counter()
        for first in range(0, count, chunk):
            await conn.copy_records_to_table(
                "children", records=national_rows(first, min(first + chunk, count)), columns=list(COLUMNS)
            )
        copied = time.perf_counter()
        await conn.execute("VACUUM ANALYZE children")
        await conn.execute("VACUUM ANALYZE child_links")
        finished = time.perf_counter()
        sizes = await conn.fetchrow(
            """SELECT pg_database_size(current_database()) AS database,
                      pg_total_relation_size('children') AS children_total,
                      pg_relation_size('children') AS children_heap,
                      pg_relation_size('children_dob_names') AS fuzzy_index,
                      pg_total_relation_size('child_links') AS child_links"""
        )
    finally:
        await conn.close()
    return {
        "rows": count,
        "copy_s": round(copied - started, 1),
        "vacuum_analyze_s": round(finished - copied, 1),
        "rows_per_s": round(count / (copied - started)),
        **{f"{k}_mb": round(v / 1e6, 1) for k, v in dict(sizes).items()},
    }


# ------------------------------------------------------------------------------------------ misspellings

_TRANSLITERATIONS = {
    "muhammad": ["Mohammed", "Mohamed", "Muhammed"],
    "mohammed": ["Muhammad", "Mohamad"],
    "zainab": ["Zaynab", "Zeinab"],
    "aisha": ["Ayesha", "Aysha"],
    "ayesha": ["Aisha"],
    "yusuf": ["Yousuf", "Yusef"],
    "ibrahim": ["Ebrahim", "Ibraheem"],
    "omar": ["Umar"],
    "fatima": ["Fatimah", "Fatma"],
    "maryam": ["Mariam", "Maryum"],
    "khadija": ["Khadijah", "Kadija"],
    "hafsa": ["Hafsah"],
    "zofia": ["Sofia", "Zophia"],
    "siobhan": ["Shevaun", "Shivon"],
    "niamh": ["Neve", "Niam"],
    "krzysztof": ["Kristof", "Krzystof"],
    "oluwaseun": ["Oluseun", "Oluwasean"],
    "safiya": ["Safia", "Safiyah"],
    "hamza": ["Hamzah"],
    "sumaya": ["Sumaiya", "Sumayah"],
}
_FAMILY_VARIANTS = {
    "macdonald": ["McDonald"],
    "mcdonald": ["MacDonald"],
    "macleod": ["McLeod"],
    "mckenzie": ["MacKenzie"],
    "chowdhury": ["Choudhury", "Chowdhry"],
    "choudhury": ["Chowdhury"],
    "hussain": ["Hussein", "Husain"],
    "mohamed": ["Mohammed"],
    "rahman": ["Rehman"],
    "wisniewski": ["Wishnevsky", "Visnievski"],
    "kowalski": ["Kovalski"],
    "o'brien": ["OBrien", "O Brien"],
    "o'connor": ["OConnor"],
    "lefevre": ["Lefèvre"],
    "begum": ["Begom"],
}
_KEYBOARD = {
    "a": "sq", "b": "vn", "c": "xv", "d": "sf", "e": "wr", "f": "dg", "g": "fh", "h": "gj", "i": "uo", "j": "hk",
    "k": "jl", "l": "k", "m": "n", "n": "bm", "o": "ip", "p": "o", "q": "w", "r": "et", "s": "ad", "t": "ry",
    "u": "yi", "v": "cb", "w": "qe", "x": "zc", "y": "tu", "z": "x",
}  # fmt: skip


def _slip(name: str, rng: random.Random) -> str:
    """One keyboard slip: a neighbouring key, two letters swapped, a letter dropped or doubled."""
    if len(name) < 4:
        return name + name[-1]
    i = rng.randrange(1, len(name) - 1)
    kind = rng.randrange(4)
    if kind == 0 and name[i].lower() in _KEYBOARD:
        return name[:i] + rng.choice(_KEYBOARD[name[i].lower()]) + name[i + 1 :]
    if kind == 1:
        return name[:i] + name[i + 1] + name[i] + name[i + 2 :]
    if kind == 2:
        return name[:i] + name[i + 1 :]
    return name[:i] + name[i] + name[i:]


def misspellings(rows: int, count: int, seed: int = SEED + 13) -> list[dict[str, Any]]:
    """A labelled set: each query names one child (uid) with its exact date of birth and its name spelt another
    way, by family: transliteration, mc/mac and other family-name variants, one part of a double-barrelled
    name, a keyboard slip in the given or the family name, an alias."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    families = ["transliteration", "family_variant", "double_barrelled_part", "slip_given", "slip_family", "alias"]
    attempts = 0
    while len(out) < count and attempts < count * 200:
        attempts += 1
        index = rng.randrange(rows)
        given, family, dob, _, aliases = identity(index)
        kind = families[len(out) % len(families)]
        query: tuple[str, str] | None = None
        if kind == "transliteration" and given.lower() in _TRANSLITERATIONS:
            query = (rng.choice(_TRANSLITERATIONS[given.lower()]), family)
        elif kind == "family_variant" and family.lower() in _FAMILY_VARIANTS:
            query = (given, rng.choice(_FAMILY_VARIANTS[family.lower()]))
        elif kind == "double_barrelled_part" and "-" in family:
            query = (given, rng.choice(family.split("-")))
        elif kind == "slip_given":
            query = (_slip(given, rng), family)
        elif kind == "slip_family":
            query = (given, _slip(family, rng))
        elif kind == "alias" and aliases:
            alias_given, _, alias_family = aliases[0].partition(" ")
            query = (alias_given, alias_family)
        if query is not None:
            out.append({"uid": child_uid(index), "kind": kind, "given": query[0], "family": query[1], "dob": dob})
    return out


# ------------------------------------------------------------------------------------------ measuring

FUZZY = "SELECT uid FROM search_children_fuzzy($1, $2, $3, $4, NULL, NULL, NULL, 51)"
NAME_ONLY = (
    "SELECT uid FROM children WHERE lower(family_name) = lower($2) AND lower(given_name) = lower($1) "
    "ORDER BY lower(family_name), lower(given_name), date_of_birth, uid LIMIT 51"
)


async def recall(pool: asyncpg.Pool, labelled: list[dict[str, Any]]) -> dict[str, Any]:
    by_kind: dict[str, dict[str, int]] = {}
    for item in labelled:
        rows = await pool.fetch(FUZZY, item["given"], item["family"], item["dob"], 0)
        uids = [r["uid"] for r in rows[:50]]
        entry = by_kind.setdefault(item["kind"], {"n": 0, "top50": 0, "rank1": 0})
        entry["n"] += 1
        entry["top50"] += item["uid"] in uids
        entry["rank1"] += bool(uids) and uids[0] == item["uid"]
    n = sum(e["n"] for e in by_kind.values())
    return {
        "queries": n,
        "top50": round(sum(e["top50"] for e in by_kind.values()) / n, 4) if n else None,
        "rank1": round(sum(e["rank1"] for e in by_kind.values()) / n, 4) if n else None,
        "by_kind": {
            k: {"n": e["n"], "top50": round(e["top50"] / e["n"], 4), "rank1": round(e["rank1"] / e["n"], 4)}
            for k, e in by_kind.items()
        },
    }


async def reads(
    pool: asyncpg.Pool, rows: int, *, uid_batch: int, repeats: int, search_batch: int, search_rounds: int
) -> dict[str, Any]:
    rng = random.Random(SEED + 11)
    uids = [child_uid(rng.randrange(rows)) for _ in range(20_000)]
    identities = [identity(rng.randrange(rows))[:3] for _ in range(3_000)]
    labelled = misspellings(rows, 600, seed=SEED + 17)

    async def view(uid: str) -> int:
        return 1 if await pool.fetchrow(directory.VIEW_BY_UID, uid) is not None else 0

    async def raw(uid: str) -> int:
        return 1 if await pool.fetchrow(directory.RAW_BY_UID, uid) is not None else 0

    await interleave({"view": view, "raw": raw}, uids, batch=500, rounds=1, concurrency=10, rng=rng)
    spread: list[dict[str, Any]] = []
    for _ in range(repeats):
        got = await interleave({"view": view, "raw": raw}, uids, batch=uid_batch, rounds=2, concurrency=10, rng=rng)
        v, r = got["view"].figures(), got["raw"].figures()
        spread.append({"view_p99_ms": v["p99_ms"], "raw_p99_ms": r["p99_ms"], "ratio": ratio(v["p99_ms"], r["p99_ms"])})

    async def exact(ident: tuple[str, str, date]) -> int:
        return len(await pool.fetch(directory.SEARCH, *ident))

    async def raw_exact(ident: tuple[str, str, date]) -> int:
        return len(await pool.fetch(directory.RAW_SEARCH, *ident))

    async def fuzzy(item: dict[str, Any]) -> int:
        return len(await pool.fetch(FUZZY, item["given"], item["family"], item["dob"], 0))

    async def fuzzy_3_days(item: dict[str, Any]) -> int:
        return len(await pool.fetch(FUZZY, item["given"], item["family"], item["dob"], 3))

    async def name_only(ident: tuple[str, str, date]) -> int:
        return len(await pool.fetch(NAME_ONLY, ident[0], ident[1]))

    await interleave({"exact": exact, "raw_exact": raw_exact, "name_only": name_only}, identities, batch=20,
                     rounds=1, concurrency=10, rng=rng)  # fmt: skip
    await interleave({"fuzzy": fuzzy}, labelled, batch=20, rounds=1, concurrency=10, rng=rng)
    by_name: dict[str, Series] = {}
    for _ in range(search_rounds):
        a = await interleave({"exact": exact, "raw_exact": raw_exact, "name_only": name_only}, identities,
                             batch=search_batch, rounds=1, concurrency=10, rng=rng)  # fmt: skip
        b = await interleave({"fuzzy": fuzzy, "fuzzy_3_days": fuzzy_3_days}, labelled, batch=search_batch,
                             rounds=1, concurrency=10, rng=rng)  # fmt: skip
        for name, series in {**a, **b}.items():
            into = by_name.setdefault(name, Series())
            into.latencies_ms += series.latencies_ms
            into.seconds += series.seconds
            into.count += series.count
            into.rows += series.rows
    # One client at a time too: the latency of a search itself, without the queueing of ten lanes on two cores.
    sequential: dict[str, Any] = {}
    for name, call, args in (
        ("exact", exact, identities),
        ("raw_exact", raw_exact, identities),
        ("name_only", name_only, identities),
        ("fuzzy", fuzzy, labelled),
        ("fuzzy_3_days", fuzzy_3_days, labelled),
    ):
        alone = Series()
        await directory.run_batch(call, [args[rng.randrange(len(args))] for _ in range(search_batch * 2)], 1, alone)
        sequential[name] = alone.figures()
    ratios = sorted(s["ratio"] for s in spread if s["ratio"] is not None)
    searches = {name: series.figures() for name, series in by_name.items()}
    return {
        "view_by_uid": {
            "repeats": spread,
            "ratio_p99_median": ratios[len(ratios) // 2] if ratios else None,
            "ratio_p99_min": ratios[0] if ratios else None,
            "ratio_p99_max": ratios[-1] if ratios else None,
        },
        "search": searches,
        "search_one_client": sequential,
        "exact_ratio_p99": ratio(searches["exact"].get("p99_ms"), searches["raw_exact"].get("p99_ms")),
        "recall": await recall(pool, labelled),
        "fuzzy_plan": [
            r[0]
            for r in await pool.fetch(
                "EXPLAIN SELECT uid FROM children WHERE date_of_birth BETWEEN $1::date - 3 AND $1::date + 3",
                identities[0][2],
            )
        ],
    }


async def run(
    database_url: str,
    pool: asyncpg.Pool,
    rows: int,
    results: dict[str, Any],
    save: Callable[[], None],
    progress: Callable[[str], None],
) -> None:
    """Each phase's figures go into `results` and are saved at once, so a late failure keeps the earlier ones."""
    per_s = 4_000  # rows a second loaded here (2 cores), generated columns and triggers included: 200,000 in 49 s
    progress(f"national load: {rows:,} children, expect ~{rows / per_s:,.0f} s")
    results["national"] = {"load": await load(database_url, rows)}
    save()
    loaded = results["national"]["load"]
    progress(f"national load: {loaded['copy_s']} s copy, {loaded['vacuum_analyze_s']} s vacuum; "
             f"database {loaded['database_mb']} MB")  # fmt: skip
    progress("national reads: view by uid, exact, fuzzy and name-only search, recall; expect ~1 min")
    figures = await reads(pool, rows, uid_batch=2_000, repeats=5, search_batch=100, search_rounds=3)
    results["national"].update(figures)
    save()
    s = figures["search"]
    progress(
        f"national reads: view/raw p99 ratio {figures['view_by_uid']['ratio_p99_median']} "
        f"[{figures['view_by_uid']['ratio_p99_min']}..{figures['view_by_uid']['ratio_p99_max']}]; p99 exact "
        f"{s['exact']['p99_ms']} ms, fuzzy {s['fuzzy']['p99_ms']} ms (±3 days {s['fuzzy_3_days']['p99_ms']} ms), "
        f"name-only {s['name_only']['p99_ms']} ms; recall top50 {figures['recall']['top50']}, "
        f"rank1 {figures['recall']['rank1']}"
    )
