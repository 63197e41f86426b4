"""The JSON API end to end, against a real `shielding dev` (Temporal, PostgreSQL, worker, web service).

One stack for the module. The first manager is made on the server (`IdentityService.bootstrap_manager`, as an
operator would); everyone else is added, signed in and served through the API alone. Who is acting always comes
from the session the service issued: every body forbids extra fields, so a caller can never name an actor.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from shielding import access, store
from shielding.domain import Address, Carer, ChildRecord, Gender
from shielding.store.directory import PRACTITIONER_FIELDS
from starter.identity import SIGN_IN_FAILED
from tests.helpers.api import (
    ApiStack,
    Staff,
    add_staff,
    audit,
    bootstrap_manager,
    client,
    connect_as,
    import_children,
    intake_body,
    jsonl,
    password_for,
    running_stack,
    sign_in,
    take_request,
    unique,
)
from tests.helpers.records import make_child

pytestmark = pytest.mark.devserver

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "directory.jsonl"
FORM = [("documents", ("shielding-form.pdf", b"%PDF-1.4 the completed shielding form", "application/pdf"))]
ROLES = access.ROLES
NOT_SIGNED_IN = "You are not signed in"


# ------------------------------------------------------------------------------------------ the stack


@pytest.fixture(scope="module")
def stack() -> Iterator[ApiStack]:
    with running_stack("shielding-api-") as running:
        yield running


@pytest.fixture(scope="module")
async def db(stack: ApiStack) -> AsyncIterator[asyncpg.Pool]:
    """The service's own database login (from stack.json): to read what the API cannot show (sign-in failures,
    refusals on routes that name no request or child, the outbox)."""
    pool = await store.create_pool(stack.database_url, max_size=3)
    try:
        yield pool
    finally:
        await pool.close()


@dataclass
class World:
    """The people (one account per role, plus extras), a shielded child and its request, and how to make more."""

    base: str
    boss: Staff
    team: dict[str, Staff]
    shared_child: ChildRecord
    shared_request: str
    extras: dict[str, Staff] = field(default_factory=dict)

    def fresh_children(self, count: int = 1) -> list[ChildRecord]:
        records = [make_child() for _ in range(count)]
        import_children(self.boss.http, records)
        return records

    def fresh_request(self) -> tuple[str, ChildRecord]:
        (child,) = self.fresh_children()
        return take_request(self.team["intake"].http, child.uid)["request_id"], child

    def stage(self, request_id: str) -> str:
        answer = self.boss.http.get(f"/api/requests/{request_id}")
        assert answer.status_code == 200, answer.text
        return str(answer.json()["stage"])


@pytest.fixture(scope="module")
async def world(stack: ApiStack, db: asyncpg.Pool) -> AsyncIterator[World]:
    base = stack.web_url
    first = "morgan.first"
    await bootstrap_manager(stack.database_url, first)
    token = sign_in(base, first, password_for(first))
    boss = Staff(first, password_for(first), ("manager",), client(base, token=token))
    team = {
        "intake": add_staff(boss.http, base, "ivy.intake", "intake"),
        "reviewer": add_staff(boss.http, base, "ravi.reviewer", "reviewer"),
        "manager": add_staff(boss.http, base, "mina.manager", "manager"),
        "practitioner": add_staff(boss.http, base, "priya.practitioner", "practitioner"),
        "child-protection": add_staff(boss.http, base, "cass.protection", "child-protection"),
        "operations": add_staff(boss.http, base, "otto.operations", "operations"),
    }
    extras = {"reviewer2": add_staff(boss.http, base, "rhea.reviewer", "reviewer")}
    # The sample directory as it is shipped, through the API.
    answer = boss.http.post(
        "/api/directory/import", content=SAMPLES.read_bytes(), headers={"Content-Type": "application/x-ndjson"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["imported"] == len(SAMPLES.read_text().splitlines())
    shared_child = make_child()
    import_children(team["intake"].http, [shared_child])
    shared_request = take_request(team["intake"].http, shared_child.uid)["request_id"]
    built = World(base, boss, team, shared_child, shared_request, extras)
    try:
        yield built
    finally:
        for person in [boss, *team.values(), *extras.values()]:
            person.http.close()


async def last_entry(db: asyncpg.Pool) -> int:
    return int(await db.fetchval("SELECT coalesce(max(entry_id), 0) FROM audit_log"))


def entries_after(entries: list[dict[str, Any]], after: int, **match: Any) -> list[dict[str, Any]]:
    return [e for e in entries if e["entry_id"] > after and all(e.get(k) == v for k, v in match.items())]


# ------------------------------------------------------------------------- every role over every route


@dataclass(frozen=True)
class Call:
    """A route called by `who`: the answer, the status an allowed call gets, what it did, and (refused) that
    it did nothing."""

    response: httpx.Response
    expect: int
    check: Callable[[httpx.Response], None] | None = None
    unchanged: Callable[[httpx.Response], None] | None = None


def _request(w: World, who: Staff, allowed: bool) -> Call:
    uid = w.fresh_children()[0].uid if allowed else w.shared_child.uid
    answer = who.http.post("/api/requests", json=intake_body(uid))
    return Call(answer, 200, lambda r: _assert(r.json()["stage"] == "awaiting-form", r))


def _status(w: World, who: Staff, allowed: bool) -> Call:
    answer = who.http.get(f"/api/requests/{w.shared_request}")
    return Call(answer, 200, lambda r: _assert(r.json()["request_id"] == w.shared_request, r))


def _form(w: World, who: Staff, allowed: bool) -> Call:
    request_id = w.fresh_request()[0] if allowed else w.shared_request
    answer = who.http.post(f"/api/requests/{request_id}/form", files=FORM)
    return Call(answer, 200, lambda r: _assert(r.json()["accepted"] is True, r))


def _review(w: World, who: Staff, allowed: bool) -> Call:
    # Allowed, but no review is due yet on a request shielded a moment ago: the lifecycle's own refusal.
    answer = who.http.post(f"/api/requests/{w.shared_request}/review", json={"decision": "approve"})
    return Call(answer, 422, lambda r: _assert("No review is due" in r.json()["detail"], r))


def _unshield(w: World, who: Staff, allowed: bool) -> Call:
    request_id = w.fresh_request()[0] if allowed else w.shared_request
    reason = "Family returned to the area; risk assessed as ended at strategy meeting"
    answer = who.http.post(f"/api/requests/{request_id}/unshield", json={"reason": reason})
    return Call(answer, 200, lambda r: _assert(r.json()["stage"] == "unshielded", r))


def _view(w: World, who: Staff, allowed: bool) -> Call:
    answer = who.http.get(f"/api/children/{w.shared_child.uid}")
    return Call(answer, 200, lambda r: _assert(set(r.json()) == set(PRACTITIONER_FIELDS), r))


def _override_terms(w: World, who: Staff, allowed: bool) -> Call:
    answer = who.http.get(f"/api/children/{w.shared_child.uid}/override")
    return Call(answer, 200, lambda r: _assert(r.json()["needs"] == "password", r))


def _override(w: World, who: Staff, allowed: bool) -> Call:
    body = {"reason": "Child missing; police need the address now", "password": who.password}
    answer = who.http.post(f"/api/children/{w.shared_child.uid}/override", json=body)
    return Call(answer, 200, lambda r: _assert(r.json()["record"]["address"] is not None, r))


def _search(w: World, who: Staff, allowed: bool) -> Call:
    named = {"family_name": w.shared_child.family_name, "date_of_birth": w.shared_child.date_of_birth.isoformat()}
    answer = who.http.get("/api/children", params=named)
    return Call(answer, 200, lambda r: _assert([c["uid"] for c in r.json()["results"]] == [w.shared_child.uid], r))


def _import(w: World, who: Staff, allowed: bool) -> Call:
    answer = who.http.post(
        "/api/directory/import", content=jsonl([make_child()]), headers={"Content-Type": "application/x-ndjson"}
    )
    return Call(answer, 200, lambda r: _assert(r.json()["created"] == 1, r))


def _audit(w: World, who: Staff, allowed: bool) -> Call:
    answer = who.http.get("/api/audit", params={"request": w.shared_request})
    return Call(answer, 200, lambda r: _assert(r.json()["entries"][0]["action"] == "received", r))


def _access(w: World, who: Staff, allowed: bool) -> Call:
    # Who looked at the shared child (more in tests/test_access_log.py): the intake officer who took the request.
    answer = who.http.get("/api/access", params={"child": w.shared_child.uid})
    return Call(answer, 200, lambda r: _assert(isinstance(r.json()["entries"], list), r))


def _verify(w: World, who: Staff, allowed: bool) -> Call:
    answer = who.http.get("/api/audit/verify")
    return Call(answer, 200, lambda r: _assert(r.json()["intact"] is True, r))


def _decode(w: World, who: Staff, allowed: bool) -> Call:
    # The Temporal Web UI's codec endpoint (more in tests/test_temporal_boundary.py).
    answer = who.http.post("/codec/decode", json={"payloads": []}, headers={"X-Namespace": "default"})
    return Call(answer, 200, lambda r: _assert(r.json() == {}, r))


def _list_users(w: World, who: Staff, allowed: bool) -> Call:
    answer = who.http.get("/api/users")
    return Call(answer, 200, lambda r: _assert(w.boss.name in {u["name"] for u in r.json()["users"]}, r))


def _user_names(w: World) -> dict[str, dict[str, Any]]:
    answer = w.boss.http.get("/api/users")
    assert answer.status_code == 200, answer.text
    return {u["name"]: u for u in answer.json()["users"]}


def _add_user(w: World, who: Staff, allowed: bool) -> Call:
    name = unique("new.practitioner")
    answer = who.http.post("/api/users", json={"name": name, "role": "practitioner", "password": password_for(name)})

    def added(r: httpx.Response) -> None:
        assert _user_names(w)[name]["roles"] == ["practitioner"], r.text

    def not_added(r: httpx.Response) -> None:
        assert name not in _user_names(w), f"a refused caller added {name}"

    return Call(answer, 201, added, not_added)


def _remove_user(w: World, who: Staff, allowed: bool) -> Call:
    name = unique("leaver")
    body = {"name": name, "role": "practitioner", "password": password_for(name)}
    created = w.boss.http.post("/api/users", json=body)
    assert created.status_code == 201, created.text
    answer = who.http.delete(f"/api/users/{name}")

    def removed(r: httpx.Response) -> None:
        assert _user_names(w)[name]["disabled"] is True, r.text

    def kept(r: httpx.Response) -> None:
        assert _user_names(w)[name]["disabled"] is False, f"a refused caller removed {name}"

    return Call(answer, 200, removed, kept)


def _messages(w: World, who: Staff, allowed: bool) -> Call:
    # The outbox (more in tests/test_relay.py): the shared request's messages, if any, with their status.
    answer = who.http.get("/api/messages", params={"request": w.shared_request})
    return Call(answer, 200, lambda r: _assert(isinstance(r.json()["messages"], list), r))


def _set_address(w: World, who: Staff, allowed: bool) -> Call:
    name = unique("addressed")
    body = {"name": name, "role": "practitioner", "password": password_for(name)}
    created = w.boss.http.post("/api/users", json=body)
    assert created.status_code == 201, created.text
    answer = who.http.put(f"/api/users/{name}/address", json={"email": f"{name}@council.example"})

    def unchanged(r: httpx.Response) -> None:
        again = w.boss.http.put(f"/api/users/{name}/address", json={"email": f"{name}@council.example"})
        assert again.json()["changed"] == {"email": "set"}, f"a refused caller set {name}'s address"

    return Call(answer, 200, lambda r: _assert(r.json()["changed"] == {"email": "set"}, r), unchanged)


CONTACT_ASK = {"purpose": "School nurse needs to reach the mother", "urgency": "routine", "email": "n@school.example"}


def _asked(w: World, by: Staff) -> str:
    """A contact request for the shared (shielded) child, asked for by `by`."""
    answer = by.http.post(f"/api/children/{w.shared_child.uid}/contact-requests", json=CONTACT_ASK)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["contact_request_id"])


def _ask_contact(w: World, who: Staff, allowed: bool) -> Call:
    # Brokering contact (more in tests/test_brokering.py).
    answer = who.http.post(f"/api/children/{w.shared_child.uid}/contact-requests", json=CONTACT_ASK)
    return Call(answer, 201, lambda r: _assert(r.json()["status"] == "waiting", r))


def _contact_requests(w: World, who: Staff, allowed: bool) -> Call:
    answer = who.http.get("/api/contact-requests")
    return Call(answer, 200, lambda r: _assert(isinstance(r.json()["contact_requests"], list), r))


def _contact_request(w: World, who: Staff, allowed: bool) -> Call:
    contact_request_id = _asked(w, who if allowed else w.team["practitioner"])
    answer = who.http.get(f"/api/contact-requests/{contact_request_id}")
    return Call(answer, 200, lambda r: _assert(r.json()["contact_request_id"] == contact_request_id, r))


def _take_contact(w: World, who: Staff, allowed: bool) -> Call:
    contact_request_id = _asked(w, w.team["practitioner"])
    answer = who.http.post(f"/api/contact-requests/{contact_request_id}/take")
    return Call(answer, 200, lambda r: _assert(r.json()["hidden"]["address"] is not None, r))


def _close_contact(w: World, who: Staff, allowed: bool) -> Call:
    contact_request_id = _asked(w, w.team["practitioner"])
    taker = who if allowed else w.team["manager"]
    taken = taker.http.post(f"/api/contact-requests/{contact_request_id}/take")
    assert taken.status_code == 200, taken.text
    answer = who.http.post(
        f"/api/contact-requests/{contact_request_id}/close", json={"outcome": "passed-on", "reason": "Rang them"}
    )
    return Call(answer, 200, lambda r: _assert(r.json()["status"] == "closed", r))


def _me(w: World, who: Staff, allowed: bool) -> Call:
    answer = who.http.get("/api/auth/me")
    return Call(answer, 200, lambda r: _assert(r.json()["name"] == who.name, r))


def _assert(condition: bool, response: httpx.Response) -> None:
    assert condition, f"{response.request.method} {response.request.url.path}: {response.text}"


@dataclass(frozen=True)
class Route:
    name: str
    call: Callable[[World, Staff, bool], Call]
    # The permission it needs (shielding.access.PERMISSIONS); None: anyone signed in.
    action: str | None
    # Where a refusal's audit entry can be found through GET /api/audit: by "request", by "child", or neither.
    audited_by: str | None = None


ROUTES = [
    Route("POST /api/requests", _request, "request"),
    Route("GET /api/requests/{id}", _status, "status", "request"),
    Route("POST /api/requests/{id}/form", _form, "form", "request"),
    Route("POST /api/requests/{id}/review", _review, "review", "request"),
    Route("POST /api/requests/{id}/unshield", _unshield, "unshield", "request"),
    Route("GET /api/children/{uid}", _view, "view", "child"),
    Route("GET /api/children/{uid}/override", _override_terms, "override", "child"),
    Route("POST /api/children/{uid}/override", _override, "override", "child"),
    Route("GET /api/children", _search, "search"),
    Route("POST /api/directory/import", _import, "import"),
    Route("GET /api/audit", _audit, "audit"),
    Route("GET /api/audit/verify", _verify, "audit"),
    Route("GET /api/access", _access, "access log"),
    Route("GET /api/users", _list_users, "users"),
    Route("POST /api/users", _add_user, "users"),
    Route("DELETE /api/users/{name}", _remove_user, "users"),
    Route("PUT /api/users/{name}/address", _set_address, "users"),
    Route("GET /api/messages", _messages, "users"),
    Route("POST /codec/decode", _decode, "decode payloads"),
    Route("POST /api/children/{uid}/contact-requests", _ask_contact, "ask contact", "child"),
    Route("GET /api/contact-requests", _contact_requests, "ask contact"),
    Route("GET /api/contact-requests/{id}", _contact_request, "ask contact"),
    Route("POST /api/contact-requests/{id}/take", _take_contact, "broker contact"),
    Route("POST /api/contact-requests/{id}/close", _close_contact, "broker contact"),
    Route("GET /api/auth/me", _me, None),
]


def may(role: str, route: Route) -> bool:
    return route.action is None or role in access.PERMISSIONS[route.action]


def test_the_table_covers_every_route_and_permission(stack: ApiStack) -> None:
    with client(stack.web_url) as http:
        document = http.get("/api/openapi.json").json()
    declared = {f"{m.upper()} {p}" for p, ops in document["paths"].items() for m in ops}
    covered = {r.name.replace("{id}", "{request_id}") for r in ROUTES}
    # Signing in and out (passwords here; single sign-on and the CLI's device sign-in with the OpenID provider's
    # tests), and health: no session, no role.
    apart = {
        "POST /api/auth/login",
        "POST /api/auth/session",
        "POST /api/auth/logout",
        "POST /api/auth/device",
        "POST /api/auth/device/token",
        "GET /auth/oidc/login",
        "GET /auth/oidc/callback",
        "GET /healthz",
        "GET /readyz",
    }
    assert declared - apart == covered, "a new route: add it to ROUTES (who may call it) or to `apart`"
    assert {r.action for r in ROUTES if r.action} == set(access.PERMISSIONS)


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
@pytest.mark.parametrize("role", ROLES)
async def test_each_role_may_take_only_its_own_actions(world: World, db: asyncpg.Pool, role: str, route: Route) -> None:
    who = world.team[role]
    allowed = may(role, route)
    before = await last_entry(db)
    call = route.call(world, who, allowed)
    answer = call.response
    if allowed:
        assert answer.status_code == call.expect, f"{role} on {route.name}: {answer.status_code} {answer.text}"
        if call.check:
            call.check(answer)
        refusals = await db.fetchval(
            "SELECT count(*) FROM audit_log WHERE entry_id > $1 AND action = 'unauthorised' AND actor = $2",
            before,
            who.name,
        )
        assert refusals == 0, f"{role} on {route.name} was allowed, yet a refusal was audited"
        return
    assert answer.status_code == 403, f"{role} on {route.name}: {answer.status_code} {answer.text}"
    assert f"may not {route.action}" in answer.json()["detail"], answer.text
    if call.unchanged:
        call.unchanged(answer)
    if route.audited_by == "request":
        found = audit(world.boss.http, request=world.shared_request)
    elif route.audited_by == "child":
        found = audit(world.boss.http, child=world.shared_child.uid)
    else:
        # GET /api/audit takes a request or a child only: a refusal on a route naming neither is read here.
        found = [dict(r) for r in await db.fetch("SELECT * FROM audit_log WHERE entry_id > $1", before)]
    refused = entries_after(found, before, action="unauthorised", actor=who.name)
    assert [e["details"]["attempted"] for e in refused] == [route.action], refused
    assert refused[0]["reason"] == answer.json()["detail"]
    # A refusal changed nothing: the shared request is still waiting for its form, its child still shielded.
    assert world.stage(world.shared_request) == "awaiting-form"


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_every_route_needs_a_session(world: World, route: Route) -> None:
    with client(world.base) as http:
        nobody = Staff("nobody", "not-a-password", (), http)
        answer = route.call(world, nobody, False).response
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"] == "Bearer"
    assert NOT_SIGNED_IN in answer.json()["detail"]


# ------------------------------------------------------------------------------- own requests


async def test_a_reviewer_cannot_decide_or_unshield_a_request_they_took(world: World, db: asyncpg.Pool) -> None:
    both = add_staff(world.boss.http, world.base, "dana.both", "intake")
    # Both roles at once: asked for by one manager, approved by another.
    assert world.boss.http.post("/api/users", json={"name": both.name, "role": "reviewer"}).status_code == 422
    world.team["manager"].http.post("/api/users", json={"name": both.name, "role": "reviewer"}).raise_for_status()
    (child,) = world.fresh_children()
    request_id = take_request(both.http, child.uid)["request_id"]
    before = await last_entry(db)

    review = both.http.post(f"/api/requests/{request_id}/review", json={"decision": "unshield", "reason": "mine"})
    assert review.status_code == 403, review.text
    took = f"'{both.name}' took request {request_id}"
    assert review.json()["detail"] == f"{took} and so cannot decide its review; another reviewer must"
    unshield = both.http.post(f"/api/requests/{request_id}/unshield", json={"reason": "Family moved; risk ended"})
    assert unshield.status_code == 403, unshield.text
    assert unshield.json()["detail"] == f"{took} and so cannot unshield it; another reviewer must"
    refused = entries_after(audit(world.boss.http, request=request_id), before, action="unauthorised")
    attempted = [(e["actor"], e["details"]["attempted"]) for e in refused]
    assert attempted == [(both.name, "review"), (both.name, "unshield")]
    assert world.stage(request_id) == "awaiting-form"

    # Another reviewer may; and the one who took it may still do what intake does.
    other = world.extras["reviewer2"]
    review = other.http.post(f"/api/requests/{request_id}/review", json={"decision": "approve"})
    assert review.status_code == 422 and "No review is due" in review.json()["detail"], review.text
    assert both.http.post(f"/api/requests/{request_id}/form", files=FORM).status_code == 200
    unshield = other.http.post(f"/api/requests/{request_id}/unshield", json={"reason": "Family moved; risk ended"})
    assert unshield.status_code == 200, unshield.text
    assert unshield.json()["stage"] == "unshielded"
    both.http.close()


# ------------------------------------------------------------------------------------------ sign-in


async def test_a_failed_sign_in_never_says_which_part_was_wrong(world: World, db: asyncpg.Pool) -> None:
    person = add_staff(world.boss.http, world.base, "gale.guessed", "practitioner")
    with client(world.base) as http:
        wrong_password = http.post("/api/auth/login", json={"name": person.name, "password": "not-her-password"})
        unknown_name = http.post("/api/auth/login", json={"name": "no.such.person", "password": person.password})
        cookie = http.post("/api/auth/session", json={"name": person.name, "password": "not-her-password"})
    for answer in (wrong_password, unknown_name, cookie):
        assert answer.status_code == 401, answer.text
        assert answer.json() == {"detail": SIGN_IN_FAILED}
        assert "set-cookie" not in answer.headers
    failed = await db.fetch(
        "SELECT actor FROM audit_log WHERE action = 'sign-in-failed' AND actor = ANY($1::text[]) ORDER BY entry_id",
        [person.name, "no.such.person"],
    )
    assert [r["actor"] for r in failed] == [person.name, "no.such.person", person.name]
    person.http.close()


async def test_repeated_failures_are_slowed_and_each_is_audited(world: World, db: asyncpg.Pool) -> None:
    person = add_staff(world.boss.http, world.base, "gus.guessed", "practitioner")
    timings = []
    with client(world.base) as http:
        for attempt in range(1, 6):
            started = time.monotonic()
            answer = http.post("/api/auth/login", json={"name": person.name, "password": f"guess number {attempt}"})
            timings.append(time.monotonic() - started)
            assert answer.status_code == 401, answer.text
            assert answer.json() == {"detail": SIGN_IN_FAILED}
        # The right password still signs in (after the wait), and clears the count.
        assert http.post("/api/auth/login", json={"name": person.name, "password": person.password}).status_code == 200
        started = time.monotonic()
        assert http.post("/api/auth/login", json={"name": person.name, "password": "guess again"}).status_code == 401
        after_success = time.monotonic() - started
    print(f"sign-in attempts took {', '.join(f'{t:.2f}s' for t in timings)}; after success {after_success:.2f}s")
    assert timings[4] - timings[0] >= 1.0, timings
    assert after_success < timings[4], (after_success, timings)
    reasons = await db.fetch(
        "SELECT reason FROM audit_log WHERE action = 'sign-in-failed' AND actor = $1 ORDER BY entry_id", person.name
    )
    assert [r["reason"] for r in reasons] == [f"failed sign-in ({n} in 15 minutes)" for n in (1, 2, 3, 4, 5, 1)]
    person.http.close()


# ------------------------------------------------------------------------------------------ sessions


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def test_logout_ends_the_session(world: World) -> None:
    person = world.team["practitioner"]
    token = sign_in(world.base, person.name, person.password)
    with client(world.base, token=token) as http:
        assert http.get("/api/auth/me").status_code == 200
        assert http.post("/api/auth/logout").status_code == 204
        answer = http.get("/api/auth/me")
        assert answer.status_code == 401, answer.text
        assert http.get(f"/api/children/{world.shared_child.uid}").status_code == 401
        assert http.post("/api/auth/logout").status_code == 401
    # Their other sessions go on.
    assert person.http.get("/api/auth/me").status_code == 200


async def test_an_idle_session_expires(world: World, stack: ApiStack) -> None:
    person = world.team["reviewer"]
    token = sign_in(world.base, person.name, person.password)
    with client(world.base, token=token) as http:
        assert http.get("/api/auth/me").status_code == 200
        conn = await asyncpg.connect(stack.database_url, timeout=10)
        try:
            moved = await conn.execute(
                "UPDATE sessions SET last_seen_at = now() - interval '16 minutes' WHERE token_digest = $1",
                _token_digest(token),
            )
        finally:
            await conn.close()
        assert moved == "UPDATE 1"
        answer = http.get("/api/auth/me")
        assert answer.status_code == 401, answer.text
        assert NOT_SIGNED_IN in answer.json()["detail"]
        assert http.get("/api/requests/" + world.shared_request).status_code == 401
    assert person.http.get("/api/auth/me").status_code == 200


def test_a_removed_users_sessions_end_at_once(world: World) -> None:
    leaver = add_staff(world.boss.http, world.base, unique("leo.leaver"), "practitioner")
    second = client(world.base, token=sign_in(world.base, leaver.name, leaver.password))
    assert leaver.http.get("/api/auth/me").status_code == 200
    removed = world.team["manager"].http.delete(f"/api/users/{leaver.name}")
    assert removed.status_code == 200, removed.text
    assert removed.json() == {"name": leaver.name, "removed": "all roles"}
    for http in (leaver.http, second):
        assert http.get("/api/auth/me").status_code == 401
        assert http.get(f"/api/children/{world.shared_child.uid}").status_code == 401
        http.close()
    with client(world.base) as http:
        again = http.post("/api/auth/login", json={"name": leaver.name, "password": leaver.password})
    assert again.status_code == 401 and again.json() == {"detail": SIGN_IN_FAILED}


# ------------------------------------------------------------------------------------- cookie sessions


@contextlib.contextmanager
def cookie_session(world: World, person: Staff) -> Iterator[tuple[httpx.Client, str, httpx.Response]]:
    """A client signed in with the session cookie (as the pages are), its CSRF token, and the sign-in answer."""
    with client(world.base) as http:
        answer = http.post("/api/auth/session", json={"name": person.name, "password": person.password})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["token"] is None and body["csrf_token"], body
        yield http, body["csrf_token"], answer


def test_the_session_cookie_is_httponly_and_samesite_lax(world: World) -> None:
    with cookie_session(world, world.boss) as (http, _, answer):
        (cookie,) = answer.headers.get_list("set-cookie")
        name, _, rest = cookie.partition("=")
        attributes = {part.strip().split("=")[0].lower(): part.strip() for part in rest.split(";")[1:]}
        assert name == "shielding_session"
        assert "httponly" in attributes, cookie
        assert attributes["samesite"].lower() == "samesite=lax", cookie
        assert attributes["path"] == "Path=/", cookie
        me = http.get("/api/auth/me")
        assert me.status_code == 200 and me.json()["auth_method"] == "password"
        # A cookie's token is no bearer token.
        token = http.cookies["shielding_session"]
        with client(world.base, token=token) as bearer:
            assert bearer.get("/api/auth/me").status_code == 401


def test_a_cookie_session_must_send_its_csrf_token(world: World) -> None:
    name = unique("csrf.victim")
    body = {"name": name, "role": "practitioner", "password": password_for(name)}
    with cookie_session(world, world.boss) as (http, csrf, _):
        for headers in ({}, {"X-CSRF-Token": "not-the-token"}, {"X-CSRF-Token": ""}):
            answer = http.post("/api/users", json=body, headers=headers)
            assert answer.status_code == 403, answer.text
            assert "security token" in answer.json()["detail"]
        assert name not in _user_names(world)
        answer = http.post("/api/users", json=body, headers={"X-CSRF-Token": csrf})
        assert answer.status_code == 201, answer.text
        assert _user_names(world)[name]["roles"] == ["practitioner"]
        # Reading needs no token.
        assert http.get("/api/users").status_code == 200
    # A bearer token needs none either.
    other = unique("bearer.added")
    answer = world.boss.http.post("/api/users", json={"name": other, "role": "practitioner", "password": "x" * 12})
    assert answer.status_code == 201, answer.text


def test_a_form_post_without_its_csrf_field_is_refused_and_records_nothing(world: World) -> None:
    request_id, _ = world.fresh_request()
    with cookie_session(world, world.team["intake"]) as (http, csrf, _):
        answer = http.post(f"/api/requests/{request_id}/form", files=FORM)
        assert answer.status_code == 403, answer.text
        answer = http.post(f"/api/requests/{request_id}/form", files=FORM, data={"csrf_token": "not-the-token"})
        assert answer.status_code == 403, answer.text
        status = world.boss.http.get(f"/api/requests/{request_id}").json()
        assert status["stage"] == "awaiting-form" and status["form_received_at"] is None, status
        answer = http.post(f"/api/requests/{request_id}/form", files=FORM, data={"csrf_token": csrf})
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] is True
        assert world.boss.http.get(f"/api/requests/{request_id}").json()["form_received_at"] is not None

        # A plain (urlencoded) form post: logout without the field is refused and the session lives on.
        assert http.post("/api/auth/logout", data={"x": "1"}).status_code == 403
        assert http.get("/api/auth/me").status_code == 200
        assert http.post("/api/auth/logout", data={"csrf_token": csrf}).status_code == 204
        assert http.get("/api/auth/me").status_code == 401


# ------------------------------------------------------------------------------------------ identity


@pytest.mark.parametrize(
    ("role", "path", "body"),
    [
        ("intake", "/api/requests", {}),
        ("reviewer", "/api/requests/{request}/review", {"decision": "approve"}),
        ("reviewer", "/api/requests/{request}/unshield", {"reason": "Family moved; risk ended"}),
        ("child-protection", "/api/children/{child}/override", {"reason": "Child missing now"}),
        ("manager", "/api/users", {"name": "someone.new", "role": "intake", "password": "x" * 12}),
        (None, "/api/auth/login", {"name": "ivy.intake", "password": "x" * 12}),
    ],
)
def test_a_body_cannot_name_the_actor(world: World, role: str | None, path: str, body: dict[str, Any]) -> None:
    if path == "/api/requests":
        body = intake_body(world.fresh_children()[0].uid)
    target = path.format(request=world.shared_request, child=world.shared_child.uid)
    if role is None:
        with client(world.base) as anonymous:
            answer = anonymous.post(target, json={**body, "actor": world.boss.name})
    else:
        answer = world.team[role].http.post(target, json={**body, "actor": world.boss.name})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"] == "The request is not valid: actor: Extra inputs are not permitted."
    assert "someone.new" not in _user_names(world)
    assert world.stage(world.shared_request) == "awaiting-form"


def test_the_audit_names_who_signed_in(world: World) -> None:
    intake = world.team["intake"]
    (child,) = world.fresh_children()
    answer = intake.http.post(
        "/api/requests", json=intake_body(child.uid), headers={"X-Actor": world.boss.name, "X-Shielding-Actor": "x"}
    )
    assert answer.status_code == 200, answer.text
    request_id = answer.json()["request_id"]
    entries = audit(world.boss.http, request=request_id)
    assert [(e["action"], e["actor"]) for e in entries[:2]] == [("received", intake.name), ("shielded", intake.name)]
    assert {e["actor"] for e in entries} == {intake.name}


# ------------------------------------------------------------------------------------ what is shown


@dataclass(frozen=True)
class Canary:
    """A child whose hidden details are unique strings, so any leak of them can be searched for."""

    record: ChildRecord
    postcode: str
    carer: str
    school: str

    @property
    def values(self) -> list[str]:
        return [self.postcode, self.carer, self.school, "Canary", "020 7946 9911"]


def canary_child() -> Canary:
    tag = unique("c").split("-")[1]
    postcode, carer, school = f"ZZ{tag[:2]} {tag[2:5]}", f"Carla Canary-{tag}", f"Canary Academy {tag}"
    record = make_child().model_copy(
        update={
            "address": Address(lines=[f"Flat {tag}", f"{tag} Canary Wharf Road"], postcode=postcode),
            "carers": [Carer(name=carer, relationship="aunt", phone="020 7946 9911")],
            "school": school,
            "gp_practice": f"Canary Surgery {tag}",
            "practitioners": [f"Social worker: C. Canary-{tag}"],
            "gender": Gender.FEMALE,
            "date_of_birth": date(2016, 5, 4),
        }
    )
    return Canary(record, postcode, carer, school)


def test_a_shielded_childs_details_are_never_shown(world: World) -> None:
    canary = canary_child()
    child = canary.record
    import_children(world.team["intake"].http, [child])
    take_request(world.team["intake"].http, child.uid)
    for role, person in world.team.items():
        view = person.http.get(f"/api/children/{child.uid}")
        assert view.status_code == 200, view.text
        assert set(view.json()) == set(PRACTITIONER_FIELDS) and view.json()["shielded"] is True, view.text
        named = {"family_name": child.family_name, "date_of_birth": child.date_of_birth.isoformat()}
        found = person.http.get("/api/children", params=named)
        assert [c["uid"] for c in found.json()["results"]] == [child.uid], found.text
        for answer in (view, found):
            for value in canary.values:
                assert value not in answer.text, f"{role} was shown {value!r}: {answer.text}"
        for query in ({**named, "postcode": canary.postcode}, {**named, "school": canary.school}):
            hidden = person.http.get("/api/children", params=query)
            assert hidden.status_code == 200 and hidden.json()["results"] == [], hidden.text


def test_every_response_says_no_store(world: World) -> None:
    # The client checks every response of every test; these are the answers no other test asks for.
    with client(world.base) as anonymous:
        answers = [
            anonymous.get("/healthz"),
            anonymous.get("/readyz"),
            anonymous.get("/api/openapi.json"),
            anonymous.get("/api/docs"),
            anonymous.get("/api/no-such-route"),
            anonymous.post("/api/auth/login", content=b"{not json", headers={"Content-Type": "application/json"}),
            anonymous.get("/api/auth/me"),
        ]
    answers.append(world.team["practitioner"].http.get("/api/children/NO-SUCH-CHILD"))
    answers.append(world.team["practitioner"].http.get("/api/children"))
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 404, 422, 401, 422, 422]
    assert answers[0].json() == {"status": "alive"}
    assert answers[1].json() == {"status": "ok", "failing": []}
    for answer in answers:
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["x-content-type-options"] == "nosniff"


NUL = "a\u0000b"
# Longer than a lifecycle takes (shielding.domain.MAX_TEXT), shorter than the API's own limit (5000).
LONG = "x" * 2001


@pytest.mark.parametrize(
    ("role", "method", "path", "kwargs"),
    [
        (None, "POST", "/api/auth/login", {"json": {"name": NUL, "password": "x" * 12}}),
        (None, "POST", "/api/auth/session", {"json": {"name": NUL, "password": "x" * 12}}),
        ("practitioner", "GET", "/api/children", {"params": {"family_name": NUL, "date_of_birth": "2015-03-14"}}),
        (
            "practitioner",
            "GET",
            "/api/children",
            {"params": {"family_name": "Hartley", "date_of_birth": "2015-03-14", "postcode": NUL}},
        ),
        ("practitioner", "GET", "/api/children/a%00b", {}),
        ("manager", "GET", "/api/audit", {"params": {"child": NUL}}),
        ("manager", "GET", "/api/audit", {"params": {"request": NUL}}),
        ("manager", "DELETE", "/api/users/a%00b", {}),
        ("manager", "POST", "/api/users", {"json": {"name": NUL, "role": "intake", "password": "x" * 12}}),
        ("manager", "POST", "/api/users", {"json": {"name": "not a name", "role": "intake", "password": "x" * 12}}),
        ("child-protection", "POST", "/api/children/{child}/override", {"json": {"reason": NUL, "password": "p"}}),
        (
            "reviewer",
            "POST",
            "/api/requests/{request}/review",
            {"json": {"decision": "unshield", "reason": "x" * 2001}},
        ),
        ("reviewer", "POST", "/api/requests/{request}/review", {"json": {"decision": "unshield", "reason": "ab\x07"}}),
        ("reviewer", "POST", "/api/requests/{request}/unshield", {"json": {"reason": LONG}}),
        ("reviewer", "POST", "/api/requests/{request}/unshield", {"json": {"reason": "risk ended\x1b[2J"}}),
    ],
    ids=[
        "login-nul-name",
        "session-nul-name",
        "search-nul-family-name",
        "search-nul-postcode",
        "view-nul-uid",
        "audit-nul-child",
        "audit-nul-request",
        "remove-user-nul-name",
        "add-user-nul-name",
        "add-user-name-with-space",
        "override-nul-reason",
        "review-reason-2001-chars",
        "review-reason-control-char",
        "unshield-reason-2001-chars",
        "unshield-reason-escape-sequence",
    ],
)
def test_hostile_text_is_refused_in_words(
    world: World, role: str | None, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    """Text PostgreSQL cannot hold (NUL), a name the accounts table refuses, a reason longer or stranger than a
    lifecycle accepts: each is refused with a sentence (4xx), never an unexpected failure; and nothing changed."""
    target = path.format(request=world.shared_request, child=world.shared_child.uid)
    if role is None:
        with client(world.base) as anonymous:
            answer = anonymous.request(method, target, **kwargs)
    else:
        person = world.team[role]
        if "password" in kwargs.get("json", {}) and role == "child-protection":
            kwargs = {"json": {**kwargs["json"], "password": person.password}}
        answer = person.http.request(method, target, **kwargs)
    assert 400 <= answer.status_code < 500, f"{method} {target}: {answer.status_code} {answer.text}"
    assert answer.json()["detail"].endswith("."), answer.text
    assert world.stage(world.shared_request) == "awaiting-form"


async def test_a_refusal_of_a_users_change_is_either_invalid_or_audited(world: World, db: asyncpg.Pool) -> None:
    """A 403 says "you may not", and every one is audited as `unauthorised`; a mistake in what a manager asked
    for (a short password, a role that does not exist, a user who does not exist) is not a 403."""
    manager = world.team["manager"]
    before = await last_entry(db)
    attempts = [
        manager.http.post("/api/users", json={"name": unique("short.pw"), "role": "intake", "password": "short"}),
        manager.http.post("/api/users", json={"name": unique("bad.role"), "role": "wizard", "password": "x" * 12}),
        manager.http.delete("/api/users/no.such.user"),
        manager.http.delete(f"/api/users/{world.team['intake'].name}", params={"role": "reviewer"}),
    ]
    unaudited = []
    for answer in attempts:
        assert answer.status_code in (403, 422), answer.text
        if answer.status_code == 403:
            audited = await db.fetchval(
                "SELECT count(*) FROM audit_log WHERE entry_id > $1 AND action = 'unauthorised' AND reason = $2",
                before,
                answer.json()["detail"],
            )
            if audited != 1:
                unaudited.append(f"{answer.request.method} {answer.request.url.path}: {answer.json()['detail']}")
    assert not unaudited, "403s that were not audited:\n" + "\n".join(unaudited)
    assert world.team["intake"].http.get("/api/auth/me").json()["roles"] == ["intake"]


# ------------------------------------------------------------------------------------ a second manager's approval


@pytest.mark.parametrize(
    ("first", "then"), [("intake", "reviewer"), ("reviewer", "intake"), ("intake", "child-protection")]
)
async def test_one_person_holds_roles_that_check_each_other_only_with_a_second_managers_approval(
    world: World, db: asyncpg.Pool, first: str, then: str
) -> None:
    person = add_staff(world.boss.http, world.base, unique("dual"), first)
    asker, approver = world.boss, world.team["manager"]
    before = await last_entry(db)

    asked = asker.http.post("/api/users", json={"name": person.name, "role": then})
    assert asked.status_code == 422, asked.text
    assert "needs a second manager's approval" in asked.json()["detail"]
    assert person.http.get("/api/auth/me").json()["roles"] == [first]
    ask_entries = await db.fetch(
        "SELECT actor, reason FROM audit_log WHERE entry_id > $1 AND action = 'role-approval-asked'", before
    )
    assert [(e["actor"], e["reason"]) for e in ask_entries] == [
        (asker.name, f"{person.name} to be granted {then}: waiting for a second manager's approval")
    ]
    # The same manager again is not a second approval.
    again = asker.http.post("/api/users", json={"name": person.name, "role": then})
    assert again.status_code == 422 and "already asked" in again.json()["detail"], again.text
    assert person.http.get("/api/auth/me").json()["roles"] == [first]

    approved = approver.http.post("/api/users", json={"name": person.name, "role": then})
    assert approved.status_code == 201, approved.text
    assert person.http.get("/api/auth/me").json()["roles"] == sorted({first, then})
    granted = await db.fetchval(
        "SELECT reason FROM audit_log WHERE entry_id > $1 AND action = 'role-granted' AND actor = $2",
        before,
        approver.name,
    )
    assert granted == f"{person.name} granted {then} (asked for by {asker.name}, approved by {approver.name})"


async def test_roles_that_do_not_check_each_other_need_no_second_approval(world: World) -> None:
    person = add_staff(world.boss.http, world.base, unique("plain"), "intake")
    answer = world.boss.http.post("/api/users", json={"name": person.name, "role": "practitioner"})
    assert answer.status_code == 201, answer.text
    assert person.http.get("/api/auth/me").json()["roles"] == ["intake", "practitioner"]


async def test_a_manager_cannot_approve_their_own_clashing_role(world: World) -> None:
    """A manager who also takes calls cannot be the second approval of their own reviewer role."""
    person = add_staff(world.boss.http, world.base, unique("self"), "manager")
    world.boss.http.post("/api/users", json={"name": person.name, "role": "intake"}).raise_for_status()
    asked = world.boss.http.post("/api/users", json={"name": person.name, "role": "reviewer"})
    assert asked.status_code == 422, asked.text
    own = person.http.post("/api/users", json={"name": person.name, "role": "reviewer"})
    assert own.status_code == 422 and "cannot approve their own" in own.json()["detail"], own.text
    assert "reviewer" not in person.http.get("/api/auth/me").json()["roles"]


# ------------------------------------------------------------------------------------ database roles


async def test_database_roles_are_enforced_in_postgresql(world: World, stack: ApiStack) -> None:
    url = stack.database_url
    for user, password in [
        ("shielding_practitioner", None),
        ("shielding_practitioner", "any-password"),
        ("shielding_owner", "any-password"),
        (world.team["practitioner"].name, world.team["practitioner"].password),
        (world.boss.name, world.boss.password),
    ]:
        with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError):
            conn = await connect_as(url, user, password)
            await conn.close()
    conn = await asyncpg.connect(url, timeout=10)
    try:
        assert await conn.fetchval("SELECT current_user") == "shielding_service"
        async with conn.transaction():
            await conn.execute("SET LOCAL ROLE shielding_practitioner")
            rows = await conn.fetch("SELECT * FROM practitioner_child($1)", world.shared_child.uid)
            assert [(r["shielded"], r["address"], r["school"]) for r in rows] == [(True, None, None)]
        for statement in (
            "SELECT address FROM children",
            "SELECT * FROM children",
            "SELECT * FROM sessions",
            "SELECT * FROM accounts",
            "UPDATE children SET shield_request_id = NULL",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with conn.transaction():
                    await conn.execute("SET LOCAL ROLE shielding_practitioner")
                    await conn.fetch(statement)
    finally:
        await conn.close()


# ------------------------------------------------------------------------------------------ break-glass


async def test_break_glass_for_a_local_account(world: World, db: asyncpg.Pool) -> None:
    canary = canary_child()
    child = canary.record
    import_children(world.team["intake"].http, [child])
    request_id = take_request(world.team["intake"].http, child.uid)["request_id"]
    protector = world.team["child-protection"]
    path = f"/api/children/{child.uid}/override"
    reason = "Child reported missing; police need the carer's address now"
    terms = protector.http.get(path)
    assert terms.status_code == 200 and terms.json()["needs"] == "password", terms.text
    assert "WARNING: break-glass" in terms.json()["warning"]
    for value in canary.values:
        assert value not in terms.text

    before = await last_entry(db)
    without = protector.http.post(path, json={"reason": reason})
    assert without.status_code == 401, without.text
    assert without.json() == {"detail": "Break-glass needs your password again."}
    wrong = protector.http.post(path, json={"reason": reason, "password": "not-my-password"})
    assert wrong.status_code == 401, wrong.text
    assert wrong.json() == {"detail": "Re-authentication failed: the password is not right."}
    for answer in (without, wrong):
        for value in canary.values:
            assert value not in answer.text
    no_reason = protector.http.post(path, json={"reason": "  ", "password": protector.password})
    assert no_reason.status_code == 422 and no_reason.json() == {"detail": "Break-glass needs a reason."}
    failed = await db.fetch(
        "SELECT actor, reason FROM audit_log WHERE entry_id > $1 AND action = 'sign-in-failed'", before
    )
    assert [r["actor"] for r in failed] == [protector.name], failed
    assert failed[0]["reason"].startswith("failed re-authentication ("), failed
    assert entries_after(audit(world.boss.http, child=child.uid), before, action="override-viewed") == []

    seen = protector.http.post(path, json={"reason": reason, "password": protector.password})
    assert seen.status_code == 200, seen.text
    record = seen.json()["record"]
    assert record["uid"] == child.uid and record["shielded"] is True
    assert record["address"]["postcode"] == canary.postcode
    assert record["carers"][0]["name"] == canary.carer
    assert record["school"] == canary.school
    assert "shield_request_id" not in record
    viewed = entries_after(audit(world.boss.http, child=child.uid), before, action="override-viewed")
    assert [(e["actor"], e["reason"], e["request_id"]) for e in viewed] == [(protector.name, reason, request_id)]
    alerts = await db.fetch(
        "SELECT recipient, subject, body FROM notifications WHERE recipient_kind = 'managers' AND request_id = $1",
        request_id,
    )
    assert len(alerts) == 1 and alerts[0]["recipient"] == "managers", alerts
    assert child.uid in alerts[0]["subject"] + alerts[0]["body"] and protector.name in alerts[0]["subject"]
    # Still shielded for everyone else.
    view = world.team["practitioner"].http.get(f"/api/children/{child.uid}")
    assert view.json()["shielded"] is True and canary.school not in view.text
