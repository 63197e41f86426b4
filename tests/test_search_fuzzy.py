"""A search that forgives spelling: each misspelling family finds the child, the date-of-birth tolerance holds on
both sides, the shielding rule holds exactly as for the exact search, and the query uses the index."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from shielding.domain import ChildRecord
from shielding.settings import Settings
from shielding.store import directory
from shielding.store.directory import ChildSearch, import_children, search_page
from tests.helpers.records import make_child
from tests.helpers.webapp import RunningApp, add_staff
from tests.test_audit_tamper import Log, log  # noqa: F401 (a fresh, migrated database)
from web.assets import ensure_frontend_installed

PASSWORD = "fuzzy-search-test-password-1"

# A date of birth of this module's own, so other tests' children never share it.
DOB = date(2013, 7, 21)


def _suffix() -> str:
    return "".join(chr(ord("a") + int(ch, 16) % 26) for ch in uuid.uuid4().hex[:6])


async def _load(pool: asyncpg.Pool, *records: ChildRecord) -> None:
    await import_children(pool, list(records), actor="test-fuzzy")


async def _shield(pool: asyncpg.Pool, uid: str) -> None:
    # Straight in the store: these tests are about the search, not about intake.
    await pool.execute("UPDATE children SET shield_request_id = 'SR-FUZZYTEST000' WHERE uid = $1", uid)


async def _unshield(pool: asyncpg.Pool, uid: str) -> None:
    await pool.execute("UPDATE children SET shield_request_id = NULL WHERE uid = $1", uid)


async def _fuzzy(pool: asyncpg.Pool, **terms: Any) -> list[dict[str, Any]]:
    return (await search_page(pool, ChildSearch(fuzzy=True, **terms))).results


@pytest.mark.parametrize(
    ("stored_given", "stored_family", "typed_given", "typed_family"),
    [
        ("Zainab", "Rahman{s}", "Zaynab", "Rahman{s}"),
        ("Muhammad", "Hussain{s}", "Mohammed", "Hussain{s}"),
        ("Ewan", "MacDonald{s}", "Ewan", "McDonald{s}"),
        ("Ewan", "McDonald{s}", "Ewan", "MacDonald{s}"),
        ("Sophie", "Ashworth-Pemberton{s}", "Sophie", "Pemberton{s}"),
        ("Sophie", "Ashworth Pemberton{s}", "Sophie", "Ashworth"),
        ("Amelia", "Hartley{s}", "Amelai", "Hartley{s}"),
        ("Amelia", "Hartley{s}", "Amelia", "Hartlye{s}"),
        ("Isla", "Ahmed{s}", "Idla", "Ahmed{s}"),
        ("Efua", "Mensah{s}", "Eua", "Mensah{s}"),
        ("Chloé", "Lefèvre{s}", "Chloe", "Lefevre{s}"),
        ("Siobhan", "O'Brien{s}", "Siobhan", "OBrien{s}"),
    ],
)
async def test_each_misspelling_finds_the_child(
    pool: asyncpg.Pool, stored_given: str, stored_family: str, typed_given: str, typed_family: str
) -> None:
    s = _suffix()
    dob = DOB + timedelta(days=100 + hash(s) % 300)
    child = make_child(given_name=stored_given, family_name=stored_family.format(s=s), date_of_birth=dob)
    await _load(pool, child)
    found = await _fuzzy(pool, given_name=typed_given, family_name=typed_family.format(s=s), date_of_birth=dob)
    assert [r["uid"] for r in found][:1] == [child.uid]
    assert 0 < found[0]["score"] <= 1
    # The exact search, unchanged by default, does not forgive (only when the spelling differs).
    if (typed_given, typed_family.format(s=s)) != (stored_given, stored_family.format(s=s)):
        exact = (
            await search_page(
                pool, ChildSearch(given_name=typed_given, family_name=typed_family.format(s=s), date_of_birth=dob)
            )
        ).results
        assert child.uid not in [r["uid"] for r in exact]


async def test_an_alias_finds_the_child(pool: asyncpg.Pool) -> None:
    s = _suffix()
    child = make_child(given_name="Maryam", family_name=f"Osman{s}", aliases=[f"Mariam Warsame{s}"])
    await _load(pool, child)
    found = await _fuzzy(pool, given_name="Miriam", family_name=f"Warsame{s}", date_of_birth=child.date_of_birth)
    assert child.uid in [r["uid"] for r in found]


async def test_a_name_matching_nothing_lists_no_one_born_that_day(pool: asyncpg.Pool) -> None:
    s = _suffix()
    dob = DOB + timedelta(days=7)
    await _load(pool, *(make_child(given_name=g, date_of_birth=dob) for g in ("Oliver", "Isla", "Noah")))
    assert await _fuzzy(pool, given_name="Xerxes", family_name=f"Quibble{s}", date_of_birth=dob) == []


async def test_names_without_letters_find_no_one(pool: asyncpg.Pool) -> None:
    await _load(pool, make_child(given_name="Noah", date_of_birth=DOB + timedelta(days=9)))
    assert await _fuzzy(pool, given_name="0000", family_name="--", date_of_birth=DOB + timedelta(days=9)) == []


async def test_ranked_best_first_with_a_score(pool: asyncpg.Pool) -> None:
    s = _suffix()
    dob = DOB + timedelta(days=11)
    exact = make_child(given_name="Zainab", family_name=f"Begum{s}", date_of_birth=dob)
    close = make_child(given_name="Zaynab", family_name=f"Begum{s}", date_of_birth=dob)
    await _load(pool, close, exact)
    found = await _fuzzy(pool, given_name="Zainab", family_name=f"Begum{s}", date_of_birth=dob)
    assert [r["uid"] for r in found] == [exact.uid, close.uid]
    assert found[0]["score"] == 1.0 > found[1]["score"]


@pytest.mark.parametrize("days", [1, 5, 31])
async def test_date_of_birth_tolerance_on_both_sides(pool: asyncpg.Pool, days: int) -> None:
    s = _suffix()
    dob = DOB + timedelta(days=400 + 100 * days)  # apart from the other tolerances' children
    before = make_child(given_name="Ayaan", family_name=f"Chowdhury{s}", date_of_birth=dob - timedelta(days=days))
    after = make_child(given_name="Ayaan", family_name=f"Chowdhury{s}", date_of_birth=dob + timedelta(days=days))
    outside = [
        make_child(
            given_name="Ayaan", family_name=f"Chowdhury{s}", date_of_birth=dob + timedelta(days=sign * (days + 1))
        )
        for sign in (-1, 1)
    ]
    await _load(pool, before, after, *outside)
    found = [
        r["uid"]
        for r in await _fuzzy(
            pool, given_name="Ayan", family_name=f"Choudhury{s}", date_of_birth=dob, dob_tolerance_days=days
        )
    ]
    assert sorted(found) == sorted([before.uid, after.uid])
    # Without a tolerance the date is exact.
    assert await _fuzzy(pool, given_name="Ayan", family_name=f"Choudhury{s}", date_of_birth=dob) == []


async def test_a_tolerance_past_the_cap_is_refused(pool: asyncpg.Pool) -> None:
    with pytest.raises(ValueError):
        ChildSearch(
            fuzzy=True, given_name="A", date_of_birth=DOB, dob_tolerance_days=directory.MAX_DOB_TOLERANCE_DAYS + 1
        )
    with pytest.raises(asyncpg.InvalidParameterValueError):
        async with directory.as_practitioner(pool) as conn:
            await conn.fetch("SELECT * FROM search_children_fuzzy('A', NULL, $1, 400, NULL, NULL, NULL, 51)", DOB)


async def test_a_tolerance_needs_the_forgiving_search(pool: asyncpg.Pool) -> None:
    with pytest.raises(ValueError):
        await search_page(pool, ChildSearch(given_name="Ayaan", date_of_birth=DOB, dob_tolerance_days=2))


# ------------------------------------------------------------------------------------------ the shielding rule


def _ids(results: list[dict[str, Any]]) -> list[tuple[str, float]]:
    return [(r["uid"], r["score"]) for r in results]


async def test_shielding_changes_no_count_and_no_order(pool: asyncpg.Pool) -> None:
    s = _suffix()
    dob = DOB + timedelta(days=23)
    family = f"Nowak{s}"
    kids = [
        make_child(given_name=g, family_name=f, date_of_birth=dob + timedelta(days=d))
        for g, f, d in [
            ("Zofia", family, 0),
            ("Zosia", family, 0),
            ("Sofia", family, 1),
            ("Zofia", f"Nowakowska{s}", -1),
            ("Zofia", family, 2),
        ]
    ]
    await _load(pool, *kids)
    searches = [
        {"given_name": "Zofia", "family_name": family, "date_of_birth": dob},
        {"given_name": "Sophia", "family_name": family, "date_of_birth": dob, "dob_tolerance_days": 2},
        {"family_name": family, "date_of_birth": dob, "dob_tolerance_days": 3},
        {"given_name": "Zofia", "date_of_birth": dob, "dob_tolerance_days": 1, "gender": "female"},
    ]
    before = [_ids(await _fuzzy(pool, **t)) for t in searches]
    assert all(before) and len(before[2]) == 5
    for kid in kids:
        await _shield(pool, kid.uid)
        try:
            during = [_ids(await _fuzzy(pool, **t)) for t in searches]
            shown = await _fuzzy(pool, **searches[2])
        finally:
            await _unshield(pool, kid.uid)
        assert during == before
        shielded = [r for r in shown if r["uid"] == kid.uid]
        assert shielded and shielded[0]["shielded"] is True
        # What a practitioner sees of a shielded record: the permitted fields and the score, nothing hidden.
        assert set(shielded[0]) == {*directory.PRACTITIONER_FIELDS, "score"}


async def test_a_search_naming_a_postcode_or_school_returns_no_shielded_child(pool: asyncpg.Pool) -> None:
    s = _suffix()
    dob = DOB + timedelta(days=37)
    child = make_child(
        given_name="Aisha", family_name=f"Mensah{s}", date_of_birth=dob, postcode="E8 1AB", school="Hackney Free"
    )
    sibling = make_child(
        given_name="Kwame",
        family_name=f"Mensah{s}",
        date_of_birth=dob + timedelta(days=2),
        postcode="E8 1AB",
        school="Hackney Free",
        address_line=f"{s} 4 Mare Street",
        carer_name=f"Ama Mensah{s}",
    )
    sharer = make_child(
        given_name="Kofi",
        family_name=f"Mensah{s}",
        date_of_birth=dob + timedelta(days=1),
        postcode="E8 1AB",
        school="Hackney Free",
        address_line=f"{s} 4 Mare Street",
        carer_name=f"Ama Mensah{s}",
    )
    await _load(pool, child, sibling, sharer)
    terms: dict[str, Any] = {"family_name": f"Mensa{s}", "date_of_birth": dob, "dob_tolerance_days": 3}
    assert len(await _fuzzy(pool, **terms)) == 3
    assert len(await _fuzzy(pool, **terms, postcode="e81ab")) == 3
    assert len(await _fuzzy(pool, **terms, school="hackney free")) == 3
    await _shield(pool, child.uid)
    await _shield(pool, sibling.uid)
    try:
        assert len(await _fuzzy(pool, **terms)) == 3
        for narrowing in ({"postcode": "E8 1AB"}, {"school": "Hackney Free"}):
            found = await _fuzzy(pool, **terms, **narrowing)
            # Neither shielded record, nor the record whose shared address is withheld because of them.
            assert found == []
    finally:
        await _unshield(pool, child.uid)
        await _unshield(pool, sibling.uid)


# ------------------------------------------------------------------------------------------ the plan


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes += _plan_nodes(child)
    return nodes


async def test_the_date_of_birth_drives_the_query_through_an_index(log: Log) -> None:  # noqa: F811
    """The scoring query as the function runs it, explained: an index range scan on the date of birth, never a
    sequential scan of children (the planner is told so at this small size by disabling seq scans: a plan that
    can only be a seq scan would show one anyway). In a database of its own, freshly migrated and analysed, so
    what other tests left in the shared one does not choose the plan."""
    pool = log.pool
    await import_children(pool, [make_child(date_of_birth=DOB) for _ in range(50)], actor="test-import")
    await pool.execute("ANALYZE children")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = await conn.fetchval(
            """EXPLAIN (FORMAT JSON)
               SELECT c.uid, name_score('zaynab', name_keys('zaynab'), c.given_norm, c.aliases_norm, c.given_keys),
                      name_score('rahman', name_keys('rahman'), c.family_norm, c.aliases_norm, c.family_keys)
               FROM children c WHERE c.date_of_birth BETWEEN $1::date - 3 AND $1::date + 3""",
            DOB,
        )
    nodes = _plan_nodes(json.loads(plan)[0]["Plan"])
    kinds = {n["Node Type"] for n in nodes}
    assert "Seq Scan" not in kinds
    # Through an index led by the date of birth (which one the planner picks depends on what else the shared
    # test database holds: children_dob_names, or 0001's children_dob).
    led_by_dob = {
        r["indexname"]
        for r in await pool.fetch(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'children' AND indexdef ~ $1",
            r"USING btree \(date_of_birth",
        )
    }
    assert "children_dob_names" in led_by_dob, led_by_dob
    assert any(n.get("Index Name") in led_by_dob for n in nodes), (kinds, led_by_dob)
    # The name-only search there is: exact names, through the (family, given, date of birth) btree.
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = await conn.fetchval(
            """EXPLAIN (FORMAT JSON) SELECT uid FROM children
               WHERE lower(family_name) = 'rahman' AND lower(given_name) = 'zainab'"""
        )
    nodes = _plan_nodes(json.loads(plan)[0]["Plan"])
    assert "Seq Scan" not in {n["Node Type"] for n in nodes}


# ------------------------------------------------------------------------------------------ through the API


@pytest.fixture(scope="module")
def web_app(settings: Settings, dev_env: WorkflowEnvironment) -> Iterator[RunningApp]:
    ensure_frontend_installed()
    web_settings = settings.model_copy(update={"temporal_address": dev_env.client.service_client.config.target_host})
    with RunningApp(web_settings) as running:
        yield running


@pytest.mark.devserver
async def test_the_api_forgives_spelling_only_when_asked_and_logs_the_uids(
    web_app: RunningApp, pool: asyncpg.Pool
) -> None:
    s = _suffix()
    child = make_child(given_name="Zainab", family_name=f"Rahman{s}", date_of_birth=DOB + timedelta(days=60))
    await _load(pool, child)
    name = f"pria-{uuid.uuid4().hex[:6]}"
    await add_staff(pool, name, PASSWORD, "practitioner")
    async with httpx.AsyncClient(base_url=web_app.url, timeout=30) as http:
        login = await http.post("/api/auth/login", json={"name": name, "password": PASSWORD})
        assert login.status_code == 200, login.text
        http.headers["Authorization"] = f"Bearer {login.json()['token']}"
        typed = {"given_name": "Zaynab", "family_name": f"Rahman{s}"}
        near = {**typed, "date_of_birth": (child.date_of_birth + timedelta(days=2)).isoformat()}
        # By default the search is exact, as before: no result, no score.
        exact = await http.get("/api/children", params={**typed, "date_of_birth": child.date_of_birth.isoformat()})
        assert exact.status_code == 200 and exact.json() == {"results": [], "more": False}
        found = await http.get("/api/children", params={**near, "fuzzy": "true", "dob_tolerance_days": 2})
        assert found.status_code == 200, found.text
        results = found.json()["results"]
        assert [r["uid"] for r in results] == [child.uid] and 0 < results[0]["score"] <= 1
        outside = await http.get("/api/children", params={**near, "fuzzy": "true", "dob_tolerance_days": 1})
        assert outside.json()["results"] == []
        # A tolerance without the forgiving search, or past the cap, is refused.
        refused = await http.get("/api/children", params={**near, "dob_tolerance_days": 2})
        assert refused.status_code == 422 and "fuzzy" in refused.text
        assert (
            await http.get("/api/children", params={**near, "fuzzy": "true", "dob_tolerance_days": 400})
        ).status_code == 422
    # The access log names the uids the search returned, never the terms.
    entries = await pool.fetch(
        """SELECT child_uids::text AS uids, details::text AS details FROM access_log
           WHERE actor = $1 AND kind = 'search' ORDER BY entry_id""",
        name,
    )
    assert [json.loads(e["uids"]) for e in entries] == [[], [child.uid], []]
    assert all("Zaynab" not in e["details"] and "Rahman" not in e["details"] for e in entries)
