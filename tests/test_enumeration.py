"""No bulk enumeration by practitioners.

The practitioners' read path answers a uid, or a search that names a name and a date of birth, with at most a
page and never a total; the practitioners' database role reads only through two functions (one record, a
search) and nothing else, so no query of its own can list or count shielded records, nor can the catalogue's
statistics; and every person's directory reads are counted in PostgreSQL (shared by every service process),
refused past the limit with HTTP 429, one sentence and one audit entry per window. Each side of each rule is
tested.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime

import asyncpg
import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from shielding import deadlines, store
from shielding.domain import AuditAction, Gender, Stage
from shielding.settings import Settings
from shielding.steps import ShieldChildren
from shielding.store.directory import SEARCH_PAGE, ReadsLimited, count_directory_read, search_page
from tests.helpers.lifecycle import intake
from tests.helpers.records import make_child
from tests.helpers.webapp import RunningApp, add_staff
from web.assets import ensure_frontend_installed
from web.pages.session import PRE_SESSION_FIELD

PASSWORD = "correct horse battery staple 42"


async def _shield(pool: asyncpg.Pool, uids: list[str]) -> str:
    request = intake(uids, datetime.now(UTC), actor="officer-intake")
    result = await store.shield_request(
        pool,
        ShieldChildren(request=request, form_due_at=deadlines.form_due_at(request.called_at)),
        f"{request.request_id}:1:shield",
    )
    assert result.stage == Stage.AWAITING_FORM
    return request.request_id


def _family() -> str:
    return "Enum-" + "".join(chr(ord("a") + int(ch, 16) % 26) for ch in uuid.uuid4().hex[:10])


# ------------------------------------------------------------------------------------------- the search


async def test_a_search_names_a_name_and_a_date_of_birth(pool: asyncpg.Pool) -> None:
    child = make_child(date_of_birth=date(2014, 8, 9))
    await store.import_children(pool, [child], actor="test-import")
    born = child.date_of_birth
    for missing in (
        store.ChildSearch(family_name=child.family_name),
        store.ChildSearch(date_of_birth=born),
        store.ChildSearch(postcode="NW8 8LF", date_of_birth=born),
        store.ChildSearch(school="St Peter's Primary"),
        store.ChildSearch(given_name="  ", family_name="", date_of_birth=born),
        store.ChildSearch(gender="female", date_of_birth=born),
    ):
        with pytest.raises(ValueError, match="a name and a date of birth"):
            await search_page(pool, missing)
    # The database says the same to anyone calling the function directly.
    for args in ((None, child.family_name, None), (None, None, born), ("", " ", born)):
        with pytest.raises(asyncpg.InvalidParameterValueError, match="a name and a date of birth"):
            await pool.fetch("SELECT * FROM search_children($1, $2, $3, NULL, NULL, NULL, 20)", *args)
    # Either name with the date of birth finds the child.
    for search in (
        store.ChildSearch(family_name=child.family_name, date_of_birth=born),
        store.ChildSearch(given_name=child.given_name.upper(), date_of_birth=born, family_name=child.family_name),
    ):
        assert [r["uid"] for r in (await search_page(pool, search)).results] == [child.uid]


async def test_a_search_answers_at_most_a_page_and_no_total(pool: asyncpg.Pool) -> None:
    family, born = _family(), date(2013, 1, 2)
    many = [make_child(family_name=family, date_of_birth=born) for _ in range(SEARCH_PAGE + 5)]
    await store.import_children(pool, many, actor="test-import")
    await _shield(pool, [many[0].uid, many[1].uid])
    query = store.ChildSearch(family_name=family, date_of_birth=born, limit=500)
    page = await search_page(pool, query)
    assert len(page.results) == SEARCH_PAGE and page.more is True
    assert set(page.model_dump()) == {"results", "more"}  # no count, no total
    # The database function too: never more than a page and one (to tell there are more), whatever is asked.
    rows = await pool.fetch("SELECT uid FROM search_children(NULL, $1, $2, NULL, NULL, NULL, 100000)", family, born)
    assert len(rows) == SEARCH_PAGE + 1
    # Exactly a page: all shown, no "more".
    exact = [make_child(family_name=_family(), date_of_birth=born) for _ in range(1)]
    await store.import_children(pool, exact, actor="test-import")
    one = await search_page(pool, store.ChildSearch(family_name=exact[0].family_name, date_of_birth=born))
    assert len(one.results) == 1 and one.more is False


async def test_shielding_changes_no_count_and_no_order_of_a_name_and_date_of_birth_search(pool: asyncpg.Pool) -> None:
    family, born = _family(), date(2012, 12, 12)
    children = [make_child(family_name=family, date_of_birth=born, given_name=n) for n in ("Ann", "Bo", "Cy")]
    await store.import_children(pool, children, actor="test-import")
    query = store.ChildSearch(family_name=family, date_of_birth=born)
    before = [r["uid"] for r in await store.search_children(pool, query)]
    await _shield(pool, [children[1].uid])
    after = await store.search_children(pool, query)
    assert [r["uid"] for r in after] == before
    assert [r["shielded"] for r in after] == [False, True, False]


# ------------------------------------------------------------------------------------ the database role


async def _as_practitioner(database_url: str) -> asyncpg.Connection:
    """A login that is only a member of the practitioners' role, which then takes it (as the service does)."""
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="not permitted to log in"):
        await asyncpg.connect(database_url, user="shielding_practitioner")
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'enumeration_probe') THEN "
            "CREATE ROLE enumeration_probe LOGIN NOINHERIT IN ROLE shielding_practitioner; END IF; END $$"
        )
    finally:
        await admin.close()
    conn = await asyncpg.connect(database_url, user="enumeration_probe")
    await conn.execute("SET ROLE shielding_practitioner")
    return conn


async def test_the_practitioner_role_reads_only_through_the_two_functions(
    pool: asyncpg.Pool, database_url: str
) -> None:
    child = make_child(date_of_birth=date(2011, 5, 6))
    await store.import_children(pool, [child], actor="test-import")
    await _shield(pool, [child.uid])
    await pool.execute("ANALYZE children; ANALYZE child_links")
    # Control: the superuser sees the statistics and can count.
    assert await pool.fetchval("SELECT count(*) FROM practitioner_children WHERE shielded") >= 1
    assert await pool.fetchval("SELECT count(*) FROM pg_stats WHERE tablename = 'children'") > 0

    conn = await _as_practitioner(database_url)
    try:
        denied = asyncpg.InsufficientPrivilegeError
        for relation in ("practitioner_children", "children", "child_links", "directory_read_counts", "audit_log"):
            with pytest.raises(denied):
                await conn.fetch(f"SELECT count(*) FROM {relation}")
        for call in (
            "SELECT shares_with_shielded($1)",
            "SELECT address_key(NULL::jsonb) || $1",
        ):
            with pytest.raises(denied):
                await conn.fetch(call, child.uid)
        # One record by uid, and a search by name and date of birth: the two ways in.
        row = await conn.fetchrow("SELECT * FROM practitioner_child($1)", child.uid)
        assert row is not None and row["shielded"] is True and row["address"] is None
        found = await conn.fetch(
            "SELECT uid FROM search_children(NULL, $1, $2, NULL, NULL, NULL, 50)",
            child.family_name,
            child.date_of_birth,
        )
        assert [r["uid"] for r in found] == [child.uid]
        with pytest.raises(asyncpg.InvalidParameterValueError):
            await conn.fetch("SELECT count(*) FROM search_children(NULL, NULL, NULL, NULL, NULL, NULL, 50)")
        # No statistics of the directory's tables.
        for tablename in ("children", "child_links"):
            assert await conn.fetchval("SELECT count(*) FROM pg_stats WHERE tablename = $1", tablename) == 0
    finally:
        await conn.close()


async def test_no_index_counts_the_shielded_rows(pool: asyncpg.Pool) -> None:
    """pg_class.reltuples and pg_stat_*_indexes are readable by every role: no index may hold only shielded rows."""
    partial = await pool.fetch(
        """SELECT c.relname, pg_get_expr(i.indpred, i.indrelid) AS predicate
           FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
           WHERE t.relname IN ('children', 'child_links', 'request_children') AND i.indpred IS NOT NULL"""
    )
    assert [dict(r) for r in partial] == []
    # The shield column is still indexed (whole column).
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'children' AND indexdef LIKE '%(shield_request_id)%'"
        )
        == 1
    )


# ---------------------------------------------------------------------------------------- rate of reads


async def test_reads_are_counted_per_person_and_refused_past_the_limit(pool: asyncpg.Pool) -> None:
    me, other = f"reader-{uuid.uuid4().hex[:8]}", f"reader-{uuid.uuid4().hex[:8]}"
    for _ in range(3):
        await count_directory_read(pool, me, limit=3, window_seconds=300)
    for attempt in range(3):
        with pytest.raises(ReadsLimited) as refused:
            await count_directory_read(pool, me, limit=3, window_seconds=300)
        message = str(refused.value)
        assert message.count(". ") == 0 and message.endswith(".") and "3 directory searches" in message, attempt
    # Someone else is not affected.
    await count_directory_read(pool, other, limit=3, window_seconds=300)
    # One audit entry for the window, however many refusals.
    limited = await pool.fetch(
        "SELECT actor, details FROM audit_log WHERE action = $1 AND actor = ANY($2::text[])",
        AuditAction.READS_LIMITED.value,
        [me, other],
    )
    assert [r["actor"] for r in limited] == [me]
    # A new window starts the count again (simulated by moving this person's window into the past).
    await pool.execute(
        "UPDATE directory_read_counts SET window_start = window_start - interval '1 hour' WHERE name = $1", me
    )
    await count_directory_read(pool, me, limit=3, window_seconds=300)
    assert await pool.fetchval("SELECT count(*) FROM directory_read_counts WHERE name = $1", me) == 1  # old removed


# --------------------------------------------------------------------------------------- through the API


@pytest.fixture(scope="module")
def limited_app(settings: Settings, dev_env: WorkflowEnvironment) -> Iterator[RunningApp]:
    ensure_frontend_installed()
    web_settings = settings.model_copy(
        update={
            "temporal_address": dev_env.client.service_client.config.target_host,
            "directory_reads_per_window": 4,
            "directory_read_window_seconds": 3600,
        }
    )
    with RunningApp(web_settings) as running:
        yield running


async def _signed_in(app: RunningApp, name: str) -> httpx.AsyncClient:
    http = httpx.AsyncClient(base_url=app.url, timeout=30)
    answer = await http.post("/api/auth/login", json={"name": name, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    http.headers["Authorization"] = f"Bearer {answer.json()['token']}"
    return http


@pytest.mark.devserver
async def test_the_api_refuses_enumeration_and_limits_reads(limited_app: RunningApp, pool: asyncpg.Pool) -> None:
    child = make_child(date_of_birth=date(2010, 10, 10), gender=Gender.MALE)
    await store.import_children(pool, [child], actor="test-import")
    await _shield(pool, [child.uid])
    priya = await add_staff(pool, f"priya-{uuid.uuid4().hex[:6]}", PASSWORD, "practitioner")
    other = await add_staff(pool, f"pat-{uuid.uuid4().hex[:6]}", PASSWORD, "practitioner")
    http, http_other = await _signed_in(limited_app, priya), await _signed_in(limited_app, other)
    try:
        # Without a name and a date of birth: refused in one sentence, and not counted.
        for params in ({"postcode": "NW8 8LF"}, {"school": "St Peter's Primary"}, {"family_name": child.family_name}):
            refused = await http.get("/api/children", params=params)
            assert refused.status_code == 422 and "a name and a date of birth" in refused.json()["detail"], params
        found = await http.get(
            "/api/children", params={"family_name": child.family_name, "date_of_birth": child.date_of_birth.isoformat()}
        )
        assert found.status_code == 200 and set(found.json()) == {"results", "more"}
        assert [(r["uid"], r["shielded"]) for r in found.json()["results"]] == [(child.uid, True)]
        # Views by uid count too: 1 search + 3 views = the 4 allowed.
        for _ in range(3):
            assert (await http.get(f"/api/children/{child.uid}")).status_code == 200
        limited = await http.get(f"/api/children/{child.uid}")
        assert limited.status_code == 429
        assert limited.json()["detail"].startswith("You have made 4 directory searches and record views")
        again = await http.get(
            "/api/children", params={"family_name": child.family_name, "date_of_birth": child.date_of_birth.isoformat()}
        )
        assert again.status_code == 429 and child.uid not in again.text
        # Another practitioner is not limited by her reads.
        assert (await http_other.get(f"/api/children/{child.uid}")).status_code == 200
    finally:
        await http.aclose()
        await http_other.aclose()
    entries = await pool.fetch("SELECT actor FROM audit_log WHERE action = $1 AND actor = $2", "reads-limited", priya)
    assert len(entries) == 1


@pytest.mark.devserver
async def test_the_pages_say_so_past_the_limit(limited_app: RunningApp, pool: asyncpg.Pool) -> None:
    child = make_child(date_of_birth=date(2009, 9, 9))
    await store.import_children(pool, [child], actor="test-import")
    name = await add_staff(pool, f"pia-{uuid.uuid4().hex[:6]}", PASSWORD, "practitioner")
    async with httpx.AsyncClient(base_url=limited_app.url, timeout=30) as http:
        page = await http.get("/sign-in")
        token = _hidden(page.text, PRE_SESSION_FIELD)
        signed = await http.post("/sign-in", data={"name": name, "password": PASSWORD, PRE_SESSION_FIELD: token})
        assert signed.status_code in (200, 303), signed.text[:300]
        for _ in range(4):
            assert (await http.get(f"/children/{child.uid}")).status_code == 200
        limited = await http.get(f"/children/{child.uid}")
        assert limited.status_code == 429
        assert "Too many searches" in limited.text and "You have made 4 directory searches" in limited.text
        assert child.family_name not in limited.text


def _hidden(html: str, field: str) -> str:
    match = re.search(rf'name="{field}" value="([^"]+)"', html)
    assert match, f"the form carries its {field}"
    return match.group(1)
