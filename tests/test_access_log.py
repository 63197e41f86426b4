"""Who looked at a child's record: every read path writes an access entry, and only managers read them.

Against a real `shielding dev` (the world of test_api: one account per role, a shielded child). The first test
enumerates every route of the service and every command of the CLI: each is either a read of child data, which
is then called for real and must leave an entry (who, what kind, which child, which front end), or is listed
here as one that returns no child's data, with why. A new route or command that is neither fails the test.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg
import httpx
import pytest

from shielding.settings import Settings
from tests.helpers.api import ApiStack, Staff, client, import_children, take_request
from tests.helpers.devstack import run_cli
from tests.helpers.records import make_child
from tests.helpers.servers import TEST_ACTION_KEYS, TEST_AUDIT_KEYS, TEST_KEYS
from tests.test_api import CONTACT_ASK, World, db, stack, world  # noqa: F401 (the fixtures)

pytestmark = pytest.mark.devserver

UI_ORIGIN = "http://localhost:8233"

# Routes that return no child's data, and why (each is still audited where it changes something).
NO_CHILD_DATA = {
    "GET /api/openapi.json": "the API's description",
    "GET /api/docs": "the API's description",
    "GET /docs/oauth2-redirect": "the API's description",
    "POST /api/auth/login": "signing in",
    "POST /api/auth/session": "signing in",
    "POST /api/auth/logout": "signing out",
    "GET /api/auth/me": "who is signed in",
    "POST /api/auth/device": "signing in",
    "POST /api/auth/device/token": "signing in",
    "GET /auth/oidc/login": "signing in",
    "GET /auth/oidc/callback": "signing in",
    "POST /api/requests": "intake: a change, in the audit log; it answers with the uids the officer gave",
    "POST /api/requests/{request_id}/form": "a change, in the audit log; answers an outcome",
    "POST /api/requests/{request_id}/review": "a change, in the audit log; answers an outcome",
    "POST /api/requests/{request_id}/unshield": "a change, in the audit log; answers an outcome",
    "GET /api/children/{uid}/override": "break-glass's warning: it shows no record",
    "POST /api/directory/import": "a change, audited per record; answers counts",
    "GET /api/audit/verify": "counts and entry numbers",
    "GET /api/users": "staff, not children",
    "POST /api/users": "staff, not children",
    "DELETE /api/users/{name}": "staff, not children",
    "GET /healthz": "health",
    "GET /readyz": "health",
    "OPTIONS /codec/decode": "the browser's preflight",
    "OPTIONS /codec/encode": "the browser's preflight",
    "POST /codec/encode": "always refused",
    "GET /sign-in": "signing in",
    "POST /sign-in": "signing in",
    "POST /sign-out": "signing out",
    "GET /": "the start page",
    "GET /children": "the empty search form",
    "GET /requests/new": "the empty intake form",
    "GET /requests": "the form to find a request by its id",
    "POST /requests": "finds a request id, answers a redirect to its page",
    "POST /requests/{request_id}/form": "a change, audited; answers the request's page, which is logged",
    "POST /requests/{request_id}/unshield": "a change, audited; answers the request's page, which is logged",
    "POST /reviews/{request_id}": "a decision, audited; answers a redirect",
    "GET /users": "staff, not children",
    "POST /users": "staff, not children",
    "POST /users/remove": "staff, not children",
    "GET /managers/alerts": "alerts name record numbers, never a child's details; the record is opened by a view",
    "GET /audit/verify": "counts and entry numbers",
    "POST /api/children/{uid}/contact-requests": "asking for contact: a change, audited; answers the request's id",
    "POST /api/contact-requests/{request_id}/close": "a change, audited; answers the outcome",
    "POST /contact-requests/{contact_request_id}/close": "a change, audited; answers a redirect",
    "GET /api/messages": "the outbox: messages carry ids, never a child's details",
    "GET /managers/messages": "the outbox: messages carry ids, never a child's details",
    "PUT /api/users/{name}/address": "staff, not children",
}
# CLI commands that run no read of child data (a change, audited; or the service's own operations).
NO_CHILD_DATA_COMMANDS = {
    "login", "logout", "request", "form", "contact request", "contact close", "messages list", "users address",
    "review", "unshield", "dev", "worker", "migrate", "serve", "deadlines",
    "directory import", "users bootstrap", "users add", "users remove", "users list", "audit verify",
    "certs generate",
}  # fmt: skip


def routes() -> set[str]:
    """Every route of the web service, as 'METHOD /path' (HEAD left out: it is GET's)."""
    from web.app import create_app

    settings = Settings(
        encryption_keys=TEST_KEYS, action_keys=TEST_ACTION_KEYS, audit_keys=TEST_AUDIT_KEYS, session_secret="s" * 40
    )
    found: set[str] = set()

    def walk(items: list[Any], prefix: str) -> None:
        for item in items:
            if type(item).__name__ == "_IncludedRouter":
                walk(item.original_router.routes, prefix + (getattr(item.include_context, "prefix", "") or ""))
            elif getattr(item, "methods", None):
                for method in item.methods - {"HEAD"}:
                    found.add(f"{method} {prefix}{item.path}")

    walk(create_app(settings).router.routes, "")
    return found


def commands() -> set[str]:
    from cli.app import app

    found: set[str] = set()

    def walk(typer_app: Any, prefix: str) -> None:
        for command in typer_app.registered_commands:
            found.add(prefix + (command.name or command.callback.__name__.replace("_", "-")))
        for group in typer_app.registered_groups:
            if group.typer_instance.registered_callback is not None:
                found.add(prefix + group.name)
            walk(group.typer_instance, prefix + group.name + " ")

    walk(app, "")
    return found


# ---------------------------------------------------------------------------------------- the readers


@dataclass
class Pages:
    """A cookie session on the pages, and its CSRF token for forms."""

    http: httpx.Client
    csrf: str

    def post(self, path: str, data: dict[str, str]) -> httpx.Response:
        return self.http.post(path, data={**data, "csrf_token": self.csrf})


def pages_for(world: World, staff: Staff) -> Pages:  # noqa: F811
    http = client(world.base)
    answer = http.post("/api/auth/session", json={"name": staff.name, "password": staff.password})
    assert answer.status_code == 200, answer.text
    return Pages(http, answer.json()["csrf_token"])


@dataclass
class Read:
    """One call of a route: who calls it, and what entry it must leave."""

    actor: str
    kind: str
    uid: str | None
    call: Callable[[], httpx.Response]


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden {name} in the page"
    return match.group(1)


def reads(world: World, pages: dict[str, Pages]) -> dict[str, Read]:  # noqa: F811
    team, child, request_id = world.team, world.shared_child, world.shared_request
    uid = child.uid
    dob = child.date_of_birth
    search = {"family_name": child.family_name, "date_of_birth": dob.isoformat()}
    page_search = {
        "family_name": child.family_name,
        "date_of_birth-day": str(dob.day),
        "date_of_birth-month": str(dob.month),
        "date_of_birth-year": str(dob.year),
    }
    intake_search = {
        "search_family_name": child.family_name,
        "search_dob-day": str(dob.day),
        "search_dob-month": str(dob.month),
        "search_dob-year": str(dob.year),
    }
    cp = team["child-protection"]

    def page_break_glass() -> httpx.Response:
        warning = pages["child-protection"].http.get(f"/children/{uid}/break-glass")
        assert warning.status_code == 200, warning.text
        return pages["child-protection"].post(
            f"/children/{uid}/break-glass",
            {
                "reason": "Section 47 enquiry (test)",
                "password": cp.password,
                "form_token": hidden(warning.text, "form_token"),
            },
        )

    def decode() -> httpx.Response:
        return pages["manager"].http.post(
            "/codec/decode", json={"payloads": []}, headers={"Origin": UI_ORIGIN, "X-Namespace": "default"}
        )

    # Contact requests for the shared child, asked by the practitioner; the API's taken by one manager, the pages'
    # by another (only the manager who took a request sees what the record hides).
    asked = [
        team["practitioner"]
        .http.post(f"/api/children/{uid}/contact-requests", json=CONTACT_ASK)
        .json()["contact_request_id"]
        for _ in range(2)
    ]
    broker, page_broker = team["manager"], world.boss

    def take_then_read() -> httpx.Response:
        return broker.http.get(f"/api/contact-requests/{asked[0]}")

    return {
        "GET /api/contact-requests": Read(broker.name, "list", uid, lambda: broker.http.get("/api/contact-requests")),
        "POST /api/contact-requests/{request_id}/take": Read(
            broker.name, "brokering-view", uid, lambda: broker.http.post(f"/api/contact-requests/{asked[0]}/take")
        ),
        "GET /api/contact-requests/{request_id}": Read(broker.name, "brokering-view", uid, take_then_read),
        "GET /children/{uid}/contact": Read(
            team["practitioner"].name, "view", uid, lambda: pages["practitioner"].http.get(f"/children/{uid}/contact")
        ),
        "POST /children/{uid}/contact": Read(
            team["practitioner"].name,
            "view",
            uid,
            lambda: pages["practitioner"].post(
                f"/children/{uid}/contact",
                {"purpose": "School nurse (test)", "urgency": "routine", "email": "n@school.example.org"},
            ),
        ),
        "GET /contact-requests": Read(
            page_broker.name, "list", uid, lambda: pages["boss"].http.get("/contact-requests")
        ),
        "POST /contact-requests/{contact_request_id}/take": Read(
            page_broker.name,
            "brokering-view",
            uid,
            lambda: pages["boss"].post(f"/contact-requests/{asked[1]}/take", {}),
        ),
        "GET /contact-requests/{contact_request_id}": Read(
            page_broker.name, "brokering-view", uid, lambda: pages["boss"].http.get(f"/contact-requests/{asked[1]}")
        ),
        "GET /api/children/{uid}": Read(
            team["practitioner"].name, "view", uid, lambda: team["practitioner"].http.get(f"/api/children/{uid}")
        ),
        "GET /api/children": Read(
            team["practitioner"].name,
            "search",
            uid,
            lambda: team["practitioner"].http.get("/api/children", params=search),
        ),
        "POST /api/children/{uid}/override": Read(
            cp.name,
            "break-glass-view",
            uid,
            lambda: cp.http.post(
                f"/api/children/{uid}/override", json={"reason": "Section 47 enquiry (test)", "password": cp.password}
            ),
        ),
        "GET /api/requests/{request_id}": Read(
            team["intake"].name, "list", uid, lambda: team["intake"].http.get(f"/api/requests/{request_id}")
        ),
        "GET /api/audit": Read(
            world.boss.name, "list", uid, lambda: world.boss.http.get("/api/audit", params={"child": uid})
        ),
        "GET /api/access": Read(
            world.boss.name, "access-log-read", uid, lambda: world.boss.http.get("/api/access", params={"child": uid})
        ),
        "POST /codec/decode": Read(team["manager"].name, "payloads-decoded", None, decode),
        "GET /children/{uid}": Read(
            team["practitioner"].name, "view", uid, lambda: pages["practitioner"].http.get(f"/children/{uid}")
        ),
        "POST /children": Read(
            team["practitioner"].name, "search", uid, lambda: pages["practitioner"].post("/children", page_search)
        ),
        "GET /children/{uid}/break-glass": Read(
            cp.name, "view", uid, lambda: pages["child-protection"].http.get(f"/children/{uid}/break-glass")
        ),
        "POST /children/{uid}/break-glass": Read(cp.name, "break-glass-view", uid, page_break_glass),
        "POST /requests/new": Read(
            team["intake"].name, "search", uid, lambda: pages["intake"].post("/requests/new", intake_search)
        ),
        "GET /requests/{request_id}/confirmation": Read(
            team["intake"].name, "list", uid, lambda: pages["intake"].http.get(f"/requests/{request_id}/confirmation")
        ),
        "GET /requests/{request_id}": Read(
            team["intake"].name, "list", uid, lambda: pages["intake"].http.get(f"/requests/{request_id}")
        ),
        "GET /requests/awaiting-form": Read(
            team["intake"].name, "list", uid, lambda: pages["intake"].http.get("/requests/awaiting-form")
        ),
        "GET /reviews": Read(
            team["reviewer"].name,
            "list",
            uid,
            lambda: pages["reviewer"].http.get("/reviews", params={"status": "form"}),
        ),
        "GET /reviews/{request_id}": Read(
            team["reviewer"].name, "list", uid, lambda: pages["reviewer"].http.get(f"/reviews/{request_id}")
        ),
        "GET /audit": Read(
            world.boss.name, "list", uid, lambda: pages["boss"].http.get("/audit", params={"child": uid})
        ),
        "GET /children/{uid}/access": Read(
            world.boss.name, "access-log-read", uid, lambda: pages["boss"].http.get(f"/children/{uid}/access")
        ),
        "POST /users/access": Read(
            world.boss.name,
            "access-log-read",
            None,
            lambda: pages["boss"].post("/users/access", {"name": team["practitioner"].name}),
        ),
    }


@pytest.fixture(scope="module")
def pages(world: World) -> Iterator[dict[str, Pages]]:  # noqa: F811
    people = {"boss": world.boss, **world.team}
    opened = {key: pages_for(world, staff) for key, staff in people.items()}
    try:
        yield opened
    finally:
        for session in opened.values():
            session.http.close()


async def newest(db: asyncpg.Pool) -> int:  # noqa: F811
    return int(await db.fetchval("SELECT coalesce(max(entry_id), 0) FROM access_log"))


async def entries_since(db: asyncpg.Pool, after: int) -> list[dict[str, Any]]:  # noqa: F811
    rows = await db.fetch("SELECT * FROM access_log WHERE entry_id > $1 ORDER BY entry_id", after)
    return [dict(r) for r in rows]


# ------------------------------------------------------------------------------------------------ tests


def test_every_route_and_command_is_a_logged_read_or_says_why_it_is_not(world: World, pages: dict[str, Pages]) -> None:  # noqa: F811
    classified = set(reads(world, pages)) | set(NO_CHILD_DATA)
    assert routes() - classified == set(), "routes that are neither a logged read nor listed as carrying no child data"
    assert classified - routes() == set(), "classified routes the service no longer has"
    assert commands() - set(CLI_READS) - NO_CHILD_DATA_COMMANDS == set(), "commands not classified"


async def test_each_read_of_child_data_leaves_an_entry_naming_who_and_which_child(
    world: World,  # noqa: F811
    pages: dict[str, Pages],
    db: asyncpg.Pool,  # noqa: F811
) -> None:
    for route, read in reads(world, pages).items():
        before = await newest(db)
        answer = read.call()
        assert answer.status_code in (200, 303), f"{route}: {answer.status_code} {answer.text[:300]}"
        written = [
            e
            for e in await entries_since(db, before)
            if e["actor"] == read.actor and e["kind"] == read.kind and (read.uid is None or read.uid in e["child_uids"])
        ]
        assert written, f"{route} left no {read.kind} entry by {read.actor} for {read.uid}"
        front_end = "api" if route.split(" ")[1].startswith("/api/") else "web"
        assert written[-1]["front_end"] == front_end, (route, written[-1])


# What each CLI command that reads child data is run with, and the entry it must leave (front end "cli").
CLI_READS: dict[str, tuple[str, str, list[str]]] = {
    "view": ("practitioner", "view", ["view", "{uid}"]),
    "search": ("practitioner", "search", ["search", "--family-name", "{family}", "--date-of-birth", "{dob}"]),
    "status": ("intake", "list", ["status", "{request}"]),
    "audit": ("manager", "list", ["audit", "--child", "{uid}"]),
    "access": ("manager", "access-log-read", ["access", "--child", "{uid}"]),
    "contact list": ("manager", "list", ["contact", "list"]),
    "contact take": ("manager", "brokering-view", ["contact", "take", "{contact}"]),
    "contact show": ("manager", "brokering-view", ["contact", "show", "{contact}"]),
}


async def test_each_cli_command_that_reads_child_data_is_logged_as_the_cli(
    stack: ApiStack,  # noqa: F811
    world: World,  # noqa: F811
    db: asyncpg.Pool,  # noqa: F811
) -> None:
    child = world.shared_child
    values = {
        "uid": child.uid,
        "family": child.family_name,
        "dob": child.date_of_birth.isoformat(),
        "request": world.shared_request,
        "contact": world.team["practitioner"]
        .http.post(f"/api/children/{child.uid}/contact-requests", json=CONTACT_ASK)
        .json()["contact_request_id"],
    }
    for command, (role, kind, args) in CLI_READS.items():
        staff = world.team[role]
        credentials = stack.credentials(staff.name)
        if not credentials.exists():
            signed = stack.login(staff.name, password=staff.password)
            assert signed.returncode == 0, str(signed)
        before = await newest(db)
        result = run_cli(stack.data_dir, *[a.format(**values) for a in args], "--json", credentials=credentials)
        assert result.returncode == 0, f"{command}: {result}"
        written = [e for e in await entries_since(db, before) if e["actor"] == staff.name and e["kind"] == kind]
        assert written and written[-1]["front_end"] == "cli", (command, written)
        assert child.uid in written[-1]["child_uids"], (command, written[-1])


async def test_entries_carry_no_hidden_detail_and_no_search_term(
    world: World,  # noqa: F811
    pages: dict[str, Pages],
    db: asyncpg.Pool,  # noqa: F811
) -> None:
    canary = make_child(
        given_name="Canarygiven",
        family_name="Canaryfamily",
        address_line="Canary Flat 9, 1 Canary Wharf",
        carer_name="Canary Carer",
        school="Canary Academy",
        postcode="E14 5AB",
    )
    import_children(world.boss.http, [canary])
    take_request(world.team["intake"].http, canary.uid)
    before = await newest(db)
    practitioner = world.team["practitioner"].http
    assert practitioner.get(f"/api/children/{canary.uid}").status_code == 200
    found = practitioner.get(
        "/api/children", params={"family_name": "Canaryfamily", "date_of_birth": canary.date_of_birth.isoformat()}
    )
    assert found.status_code == 200 and canary.uid in found.text
    cp = world.team["child-protection"]
    shown = cp.http.post(
        f"/api/children/{canary.uid}/override", json={"reason": "Canary reason", "password": cp.password}
    )
    assert shown.status_code == 200 and "Canary Wharf" in shown.text  # the break-glass view itself shows them
    assert world.boss.http.get("/api/audit", params={"child": canary.uid}).status_code == 200
    written = await entries_since(db, before)
    assert len(written) >= 4
    text = " ".join(str(e) for e in written)
    for secret in ("Canary", "E14 5AB", canary.date_of_birth.isoformat(), "refuge"):
        assert secret not in text, secret


async def test_only_managers_read_the_log_and_each_read_is_logged(
    world: World,  # noqa: F811
    pages: dict[str, Pages],
    db: asyncpg.Pool,  # noqa: F811
) -> None:
    uid = world.shared_child.uid
    for role in ("practitioner", "intake", "reviewer", "child-protection", "operations"):
        assert world.team[role].http.get("/api/access", params={"child": uid}).status_code == 403, role
        assert pages[role].http.get(f"/children/{uid}/access").status_code == 403, role
    before = await newest(db)
    answer = world.team["manager"].http.get("/api/access", params={"user": world.team["practitioner"].name})
    assert answer.status_code == 200
    page = answer.json()
    assert page["entries"] and all(e["actor"] == world.team["practitioner"].name for e in page["entries"])
    read = [e for e in await entries_since(db, before) if e["kind"] == "access-log-read"]
    assert read and read[-1]["actor"] == world.team["manager"].name
    assert read[-1]["details"] == {"user": world.team["practitioner"].name}
    # Dates: nothing before the service existed; today's entries today; a wrong date is refused in words.
    old = world.boss.http.get("/api/access", params={"child": uid, "until": "2020-01-01"}).json()
    assert old["entries"] == []
    today = world.boss.http.get("/api/access", params={"child": uid, "since": date.today().isoformat()}).json()
    assert today["entries"]
    refused = world.boss.http.get("/api/access", params={"since": "2026-12-05", "until": "2026-12-01"})
    assert refused.status_code == 422 and "before the start date" in refused.json()["detail"]


async def test_repeated_views_of_a_shielded_record_without_a_link_are_flagged_once_a_day(
    world: World,  # noqa: F811
    db: asyncpg.Pool,  # noqa: F811
) -> None:
    request_id, child = world.fresh_request()
    practitioner, intake = world.team["practitioner"], world.team["intake"]

    async def flags(actor: str) -> int:
        return int(
            await db.fetchval(
                "SELECT count(*) FROM audit_log WHERE action = 'views-flagged' AND child_uid = $1 AND actor = $2",
                child.uid,
                actor,
            )
        )

    for _ in range(3):  # the limit (3): not flagged
        assert practitioner.http.get(f"/api/children/{child.uid}").status_code == 200
    assert await flags(practitioner.name) == 0
    assert practitioner.http.get(f"/api/children/{child.uid}").status_code == 200  # the 4th: flagged
    assert await flags(practitioner.name) == 1
    alerts = await db.fetch(
        "SELECT subject, body FROM notifications WHERE recipient_kind = 'managers' AND request_id = $1", request_id
    )
    assert any(child.uid in a["body"] and practitioner.name in a["body"] for a in alerts)
    assert not any(child.family_name in a["body"] or child.address.postcode in a["body"] for a in alerts)
    assert practitioner.http.get(f"/api/children/{child.uid}").status_code == 200  # the 5th: already flagged
    assert await flags(practitioner.name) == 1
    # The officer who took the request has a reason to look: never flagged.
    for _ in range(5):
        assert intake.http.get(f"/api/children/{child.uid}").status_code == 200
    assert await flags(intake.name) == 0
