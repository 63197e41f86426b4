"""Single sign-on end to end: the real web app (its lifespan, PostgreSQL, the Temporal dev server) against a real
OpenID provider (tests/oidc, oidc-provider). Nothing is mocked: the app's authlib client talks to the provider's
discovery, authorization, token, device and JWKS endpoints.

One httpx client plays the browser: requests for the app's address go to the app in process (ASGI), the others
to the provider, with one cookie jar for both, as a browser has. The provider's pages are filled in by
`tests.helpers.oidc`, which hands back the redirect to the app's callback; the test then follows it.
"""

from __future__ import annotations

import os
import socket
import stat
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client
from fastapi import FastAPI
from temporalio.testing import WorkflowEnvironment

from shielding import access, store
from shielding.settings import ConfigurationError, Settings
from shielding.store import accounts
from starter.identity import digest
from tests.helpers.oidc import (
    DEVICE_CODE_GRANT,
    OidcAccount,
    OidcLoginError,
    OidcProvider,
    abrowserless_login,
    acomplete_device_login,
)
from tests.helpers.people import grant, unique_name
from tests.helpers.records import make_child
from web.app import create_app
from web.deps import SESSION_COOKIE, Parts
from web.oidc import (
    SECRET_FILE,
    SSO_ACTOR,
    IdTokenRefused,
    OidcClient,
    VerifiedIdentity,
    oidc_client,
    parse_group_roles,
)
from web.oidc_accounts import apply_group_roles
from web.routes.oidc import STATE_COOKIE, STATE_COOKIE_PATH

pytestmark = pytest.mark.devserver

RUN = uuid.uuid4().hex[:8]
GROUP_ROLES = "shielding-intake=intake,shielding-child-protection=child-protection"


def _account(who: str, *groups: str) -> OidcAccount:
    return OidcAccount(
        subject=f"{who}-{RUN}",
        username=f"{who}-{RUN}",
        password=f"{who} has a long password",
        name=who.title(),
        email=f"{who}-{RUN}@council.example",
        groups=groups,
    )


CASEWORKER = _account("casey", "caseworkers")  # linked to an account; no mapped group
PROTECTOR = _account("cora", "caseworkers", "shielding-child-protection")  # linked; a group maps child-protection
NEWCOMER = _account("nadia", "shielding-intake")  # no account yet; a group maps intake
STRANGER = _account("sam", "caseworkers")  # no account and no mapped group
DEVICE_USER = _account("dev", "caseworkers")  # linked; signs in through `shielding login`


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


APP_URL = f"http://127.0.0.1:{_free_port()}"  # never listened on: the browser reaches the app in process
CALLBACK = f"{APP_URL}/auth/oidc/callback"


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    with OidcProvider([CASEWORKER, PROTECTOR, NEWCOMER, STRANGER, DEVICE_USER], redirect_uris=[CALLBACK]) as op:
        yield op


@pytest.fixture(scope="module")
def sso_settings(settings: Settings, dev_env: WorkflowEnvironment, provider: OidcProvider) -> Settings:
    return settings.model_copy(
        update={
            "temporal_address": dev_env.client.service_client.config.target_host,
            "api_url": APP_URL,
            "oidc_issuer": provider.issuer,
            "oidc_client_id": provider.client_id,
            "oidc_client_secret": provider.client_secret,
            "oidc_group_roles": GROUP_ROLES,
            "session_secret": None,  # development: generated under the data dir
        }
    )


@pytest.fixture(scope="module")
async def app(sso_settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[FastAPI]:
    async with pool.acquire() as conn, conn.transaction():
        for person, role in ((CASEWORKER, "practitioner"), (PROTECTOR, "practitioner"), (DEVICE_USER, "intake")):
            name = person.username
            await accounts.save_account(
                conn, name, created_by="test-setup", password_hash=None, oidc_subject=person.subject
            )
            await access.grant_role(conn, name, role, by="test-setup")
    application = create_app(sso_settings)
    async with application.router.lifespan_context(application):
        yield application


def parts_of(app: FastAPI) -> Parts:
    return app.state.parts  # type: ignore[no-any-return]


def new_browser(app: FastAPI) -> httpx.AsyncClient:
    """A browser with an empty cookie jar: the app's address goes to the app in process, the rest to the network."""
    return httpx.AsyncClient(mounts={APP_URL: httpx.ASGITransport(app=app)}, base_url=APP_URL, timeout=15)


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with new_browser(app) as client:
        yield client


async def start_sign_in(browser: httpx.AsyncClient, **params: Any) -> str:
    """GET /auth/oidc/login; returns the provider's authorization URL it redirects to."""
    response = await browser.get("/auth/oidc/login", params=params)
    assert response.status_code == 302, response.text
    return response.headers["location"]


async def sign_in(
    browser: httpx.AsyncClient, person: OidcAccount, *, password: str | None = None, **params: Any
) -> httpx.Response:
    """The whole code flow as a browser does it; returns the app's answer to the callback."""
    authorize = await start_sign_in(browser, **params)
    callback = await abrowserless_login(authorize, person.username, password or person.password, browser)
    assert callback.startswith(f"{CALLBACK}?"), callback
    return await browser.get(callback)


async def audit_count(pool: asyncpg.Pool, action: str, actor: str, reason: str | None = None) -> int:
    return await pool.fetchval(  # type: ignore[no-any-return]
        "SELECT count(*) FROM audit_log WHERE action = $1 AND actor = $2 AND ($3::text IS NULL OR reason = $3)",
        action,
        actor,
        reason,
    )


async def session_row(pool: asyncpg.Pool, token: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM sessions WHERE token_digest = $1", digest(token))
    assert row is not None
    return row


# ------------------------------------------------------------------------------------------ code flow


async def test_code_flow_signs_in_the_account_linked_to_the_subject(
    browser: httpx.AsyncClient, pool: asyncpg.Pool, sso_settings: Settings
) -> None:
    authorize = await start_sign_in(browser, next="/requests?stage=review-due")
    query = parse_qs(urlsplit(authorize).query)
    assert query["response_type"] == ["code"]
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    assert query["state"][0] and query["nonce"][0]
    assert query["redirect_uri"] == [CALLBACK]
    assert "max_age" not in query and "prompt" not in query
    state_cookie = next(c for c in browser.cookies.jar if c.name == STATE_COOKIE)
    assert state_cookie.path == STATE_COOKIE_PATH and state_cookie.has_nonstandard_attr("HttpOnly")

    callback = await abrowserless_login(authorize, CASEWORKER.username, CASEWORKER.password, browser)
    answer = await browser.get(callback)

    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/requests?stage=review-due"
    set_cookie = " ".join(answer.headers.get_list("set-cookie")).lower()
    assert f"{SESSION_COOKIE}=" in set_cookie and "httponly" in set_cookie and "samesite=lax" in set_cookie
    assert STATE_COOKIE not in {c.name for c in browser.cookies.jar}  # the sign-in state is spent
    me = (await browser.get("/api/auth/me")).raise_for_status().json()
    assert me == {"name": CASEWORKER.username, "roles": ["practitioner"], "auth_method": "oidc"}

    row = await session_row(pool, browser.cookies[SESSION_COOKIE])
    assert row["kind"] == "cookie" and row["auth_method"] == "oidc"
    assert abs((row["created_at"] - row["authenticated_at"]).total_seconds()) < 5  # the provider's auth_time
    # Development: the state-signing secret was generated under the data dir, readable by its owner only.
    secret = sso_settings.data_dir / SECRET_FILE
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600


async def test_a_next_address_off_this_service_is_ignored(browser: httpx.AsyncClient) -> None:
    answer = await sign_in(browser, CASEWORKER, next="//evil.example/steal")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"


async def test_a_callback_without_its_own_state_is_refused(browser: httpx.AsyncClient, app: FastAPI) -> None:
    authorize = await start_sign_in(browser)
    callback = await abrowserless_login(authorize, CASEWORKER.username, CASEWORKER.password, browser)
    sealed = browser.cookies[STATE_COOKIE]

    tampered_state = callback.replace("state=", "state=x", 1)
    answer = await browser.get(tampered_state)
    assert answer.status_code == 400
    assert "does not match" in answer.json()["detail"]

    browser.cookies.set(STATE_COOKIE, sealed[:-3] + "AAA", domain="127.0.0.1", path=STATE_COOKIE_PATH)
    answer = await browser.get(callback)
    assert answer.status_code == 400
    assert "could not be checked" in answer.json()["detail"]

    async with new_browser(app) as other:
        answer = await other.get(callback, headers={"Accept": "text/html"})  # another browser: no state cookie
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("text/html")
    assert "not started in this browser" in answer.text
    assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")

    # None of these spent the code: with its own state the same callback signs in.
    browser.cookies.set(STATE_COOKIE, sealed, domain="127.0.0.1", path=STATE_COOKIE_PATH)
    answer = await browser.get(callback)
    assert answer.status_code == 303, answer.text


async def test_a_code_is_redeemed_once(browser: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    authorize = await start_sign_in(browser)
    callback = await abrowserless_login(authorize, CASEWORKER.username, CASEWORKER.password, browser)
    sealed = browser.cookies[STATE_COOKIE]
    assert (await browser.get(callback)).status_code == 303
    first = browser.cookies[SESSION_COOKIE]

    # A replay with the very same state (say, copied from this browser) reaches the provider, which refuses.
    browser.cookies.set(STATE_COOKIE, sealed, domain="127.0.0.1", path=STATE_COOKIE_PATH)
    replay = await browser.get(callback)
    assert replay.status_code == 400
    assert "used already" in replay.json()["detail"]
    assert browser.cookies[SESSION_COOKIE] == first
    later = await pool.fetchval(
        "SELECT count(*) FROM sessions WHERE name = $1 AND created_at > $2",
        CASEWORKER.username,
        (await session_row(pool, first))["created_at"],
    )
    assert later == 0  # the replay signed no one in


async def test_an_id_token_for_another_audience_is_refused(provider: OidcProvider, app: FastAPI) -> None:
    ours = parts_of(app).oidc
    assert ours is not None
    id_token = await real_id_token(provider, CASEWORKER)
    claims = await ours.verify_id_token(id_token, nonce=None, access_token=None)  # the control: ours accepts it
    assert claims["sub"] == CASEWORKER.subject and claims["aud"] == provider.client_id

    another_service = OidcClient(
        issuer=provider.issuer,
        client_id="another-service",
        client_secret="its own secret",
        groups_claim="groups",
        group_roles={},
        secret="x" * 32,
    )
    with pytest.raises(IdTokenRefused, match="could not be verified"):
        await another_service.verify_id_token(id_token, nonce=None, access_token=None)
    header, payload, signature = id_token.split(".")
    with pytest.raises(IdTokenRefused):
        await ours.verify_id_token(f"{header}.{payload}.{signature[::-1]}", nonce=None, access_token=None)
    with pytest.raises(IdTokenRefused):  # a nonce was asked for, and this token carries none
        await ours.verify_id_token(id_token, nonce="expected-nonce", access_token=None)


async def real_id_token(provider: OidcProvider, person: OidcAccount) -> str:
    """An ID token the provider issued to the test client (device flow, straight from its token endpoint)."""
    metadata = provider.metadata()
    async with AsyncOAuth2Client(
        client_id=provider.client_id, client_secret=provider.client_secret, timeout=10
    ) as client:
        started = await client.post(
            metadata["device_authorization_endpoint"],
            data={"scope": "openid groups"},
            auth=client.client_auth("client_secret_basic"),
        )
        device = started.raise_for_status().json()
        await acomplete_device_login(device["verification_uri_complete"], person.username, person.password)
        token = await client.fetch_token(
            metadata["token_endpoint"], grant_type=DEVICE_CODE_GRANT, device_code=device["device_code"]
        )
    return str(token["id_token"])


async def test_an_unknown_subject_without_a_mapped_group_is_refused_and_audited(
    browser: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    before = await audit_count(pool, "sign-in-failed", SSO_ACTOR, "no account is linked to this subject")
    answer = await sign_in(browser, STRANGER)
    assert answer.status_code == 403
    assert answer.json() == {"detail": "Sign-in failed: your account is not set up for this service; ask a manager."}
    assert SESSION_COOKIE not in browser.cookies
    assert await accounts.account_by_subject(pool, STRANGER.subject) is None
    assert await audit_count(pool, "sign-in-failed", SSO_ACTOR, "no account is linked to this subject") == before + 1

    # A browser is shown a page saying the same.
    authorize = await start_sign_in(browser)
    callback = await abrowserless_login(authorize, STRANGER.username, STRANGER.password, browser)
    page = await browser.get(callback, headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 403
    assert "your account is not set up for this service; ask a manager." in page.text


async def test_a_mapped_group_grants_its_role_in_the_users_table(
    browser: httpx.AsyncClient, app: FastAPI, pool: asyncpg.Pool
) -> None:
    # A new subject: the account is created, named as the provider names the person.
    answer = await sign_in(browser, NEWCOMER)
    assert answer.status_code == 303, answer.text
    me = (await browser.get("/api/auth/me")).raise_for_status().json()
    assert me == {"name": NEWCOMER.username, "roles": ["intake"], "auth_method": "oidc"}
    account = await accounts.account_by_subject(pool, NEWCOMER.subject)
    assert account is not None and account.name == NEWCOMER.username
    assert await access.roles_of(pool, NEWCOMER.username) == {"intake"}
    assert await audit_count(pool, "role-granted", SSO_ACTOR, f"{NEWCOMER.username} granted intake") == 1

    # A linked account keeps its own role and gains the mapped one; signing in again grants nothing twice.
    for _ in range(2):
        async with new_browser(app) as fresh:
            assert (await sign_in(fresh, PROTECTOR)).status_code == 303
            me = (await fresh.get("/api/auth/me")).raise_for_status().json()
        assert me["roles"] == ["child-protection", "practitioner"]
    assert await audit_count(pool, "role-granted", SSO_ACTOR, f"{PROTECTOR.username} granted child-protection") == 1


async def test_a_role_the_group_claim_no_longer_maps_is_removed(app: FastAPI, pool: asyncpg.Pool) -> None:
    oidc = parts_of(app).oidc
    assert oidc is not None
    await grant(pool, unique_name("manager"), "manager")  # a role is never removed when that leaves no manager
    name, subject = unique_name("left-group"), f"subject-{uuid.uuid4().hex}"
    async with pool.acquire() as conn, conn.transaction():
        await accounts.save_account(conn, name, created_by="test-setup", password_hash=None, oidc_subject=subject)
        await access.grant_role(conn, name, "practitioner", by="a-manager")
        await access.grant_role(conn, name, "child-protection", by=SSO_ACTOR)

    who = VerifiedIdentity(subject, datetime.now(UTC), groups=("caseworkers",), preferred_username=None, email=None)
    await apply_group_roles(pool, oidc, who)
    assert await access.roles_of(pool, name) == {"practitioner"}  # a manager's grant stays
    assert await audit_count(pool, "role-removed", SSO_ACTOR, f"{name} lost child-protection") == 1

    # No group claim at all (the provider did not send it): nothing changes.
    await apply_group_roles(pool, oidc, VerifiedIdentity(subject, datetime.now(UTC), None, None, None))
    assert await access.roles_of(pool, name) == {"practitioner"}


# ------------------------------------------------------------------------------------------ break-glass


async def test_break_glass_on_a_single_sign_on_session_needs_a_fresh_login(
    browser: httpx.AsyncClient, pool: asyncpg.Pool, provider: OidcProvider
) -> None:
    child = make_child()
    await store.import_children(pool, [child], actor="test-import")
    assert (await sign_in(browser, PROTECTOR)).status_code == 303
    token = browser.cookies[SESSION_COOKIE]
    csrf = (await session_row(pool, token))["csrf_token"]
    # An hour later: the sign-in is no longer fresh enough to break glass.
    await pool.execute(
        "UPDATE sessions SET authenticated_at = now() - interval '1 hour' WHERE token_digest = $1", digest(token)
    )
    override = f"/api/children/{child.uid}/override"
    body = {"reason": "Child reported missing; police need the carers' address now"}

    stale = await browser.post(override, json=body, headers={"X-CSRF-Token": csrf})
    assert stale.status_code == 401
    assert "sign in again" in stale.json()["detail"] and "/auth/oidc/login?fresh=1" in stale.json()["detail"]
    assert await audit_count(pool, "override-viewed", PROTECTOR.username) == 0

    authorize = await start_sign_in(browser, fresh="1", next=f"/children/{child.uid}")
    query = parse_qs(urlsplit(authorize).query)
    assert query["max_age"] == ["0"] and query["prompt"] == ["login"]
    # The provider's session would sign in silently; a fresh login asks for the password again.
    with pytest.raises(OidcLoginError, match="Invalid username or password"):
        await abrowserless_login(authorize, PROTECTOR.username, "not the password", browser)
    authorize = await start_sign_in(browser, fresh="1", next=f"/children/{child.uid}")
    callback = await abrowserless_login(authorize, PROTECTOR.username, PROTECTOR.password, browser)
    answer = await browser.get(callback)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == f"/children/{child.uid}"

    assert browser.cookies[SESSION_COOKIE] == token  # the same session, re-authenticated
    row = await session_row(pool, token)
    assert (datetime.now(UTC) - row["authenticated_at"]).total_seconds() < 30
    opened = await browser.post(override, json=body, headers={"X-CSRF-Token": csrf})
    assert opened.status_code == 200, opened.text
    assert opened.json()["record"]["address"]["postcode"] == child.address.postcode
    entry = await pool.fetchrow(
        "SELECT reason FROM audit_log WHERE action = 'override-viewed' AND actor = $1 AND child_uid = $2",
        PROTECTOR.username,
        child.uid,
    )
    assert entry is not None and entry["reason"] == body["reason"]


# ------------------------------------------------------------------------------------------ device flow


async def test_device_sign_in_ends_in_a_bearer_token(app: FastAPI, pool: asyncpg.Pool) -> None:
    async with new_browser(app) as cli:
        started = await cli.post("/api/auth/device")
        assert started.status_code == 200, started.text
        device = started.json()
        assert set(device) == {
            "handle",
            "user_code",
            "verification_uri",
            "verification_uri_complete",
            "interval",
            "expires_in",
        }
        assert device["interval"] == 5 and device["expires_in"] > 0
        # Only a digest of the handle is kept, beside the device code the CLI never sees.
        stored = await pool.fetchrow(
            "SELECT device_code FROM device_sign_ins WHERE handle_digest = $1", digest(device["handle"])
        )
        assert stored is not None and stored["device_code"] not in started.text
        assert (
            await pool.fetchval("SELECT count(*) FROM device_sign_ins WHERE handle_digest = $1", device["handle"]) == 0
        )

        poll = {"handle": device["handle"]}
        pending = await cli.post("/api/auth/device/token", json=poll)
        assert pending.status_code == 428
        assert pending.json() == {"detail": "Waiting for you to approve the sign-in in your browser."}

        await acomplete_device_login(device["verification_uri_complete"], DEVICE_USER.username, DEVICE_USER.password)
        signed_in = await cli.post("/api/auth/device/token", json=poll)
        assert signed_in.status_code == 200, signed_in.text
        answer = signed_in.json()
        assert answer["name"] == DEVICE_USER.username and answer["roles"] == ["intake"] and answer["token"]
        assert answer["csrf_token"] is None

        me = await cli.get("/api/auth/me", headers={"Authorization": f"Bearer {answer['token']}"})
        assert me.json() == {"name": DEVICE_USER.username, "roles": ["intake"], "auth_method": "oidc"}
        row = await session_row(pool, answer["token"])
        assert row["kind"] == "bearer" and row["auth_method"] == "oidc"
        assert (datetime.now(UTC) - row["authenticated_at"]).total_seconds() < 30  # the provider's auth_time
        # The bearer token is no cookie session.
        cli.cookies.set(SESSION_COOKIE, answer["token"], domain="127.0.0.1")
        assert (await cli.get("/api/auth/me")).status_code == 401
        cli.cookies.clear()

        spent = await cli.post("/api/auth/device/token", json=poll)
        assert spent.status_code == 400
        assert "run `shielding login` again" in spent.json()["detail"]
        unknown = await cli.post("/api/auth/device/token", json={"handle": "made-up"})
        assert unknown.status_code == 400


async def test_a_device_sign_in_for_an_unknown_subject_is_refused(app: FastAPI) -> None:
    async with new_browser(app) as cli:
        device = (await cli.post("/api/auth/device")).raise_for_status().json()
        await acomplete_device_login(device["verification_uri_complete"], STRANGER.username, STRANGER.password)
        refused = await cli.post("/api/auth/device/token", json={"handle": device["handle"]})
    assert refused.status_code == 403
    assert "not set up for this service" in refused.json()["detail"]


# ------------------------------------------------------------------------------------------ configuration


async def test_without_single_sign_on_its_routes_answer_404(settings: Settings, dev_env: WorkflowEnvironment) -> None:
    plain = settings.model_copy(update={"temporal_address": dev_env.client.service_client.config.target_host})
    application = create_app(plain)
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url=APP_URL) as client,
    ):
        for method, path, body in (
            ("GET", "/auth/oidc/login?next=/", None),
            ("GET", "/auth/oidc/callback?code=x&state=y", None),
            ("POST", "/api/auth/device", None),
            ("POST", "/api/auth/device/token", {"handle": "x"}),
        ):
            answer = await client.request(method, path, json=body)
            assert answer.status_code == 404, path
            assert answer.json() == {
                "detail": "Single sign-on is not set up on this service; sign in with a local account."
            }


def test_production_settings_for_single_sign_on_are_checked(tmp_path: Any) -> None:
    production = Settings(
        environment="production",
        data_dir=tmp_path,
        api_url="https://shielding.council.example",
        oidc_issuer="https://login.council.example",
        oidc_client_id="shielding",
        oidc_client_secret="secret",
    )
    with pytest.raises(ConfigurationError, match="SHIELDING_SESSION_SECRET"):
        oidc_client(production)
    assert not (tmp_path / SECRET_FILE).exists()  # never generated in production
    with pytest.raises(ConfigurationError, match="SHIELDING_API_URL"):
        oidc_client(production.model_copy(update={"session_secret": "s" * 32, "api_url": None}))
    with pytest.raises(ConfigurationError, match="https"):
        oidc_client(production.model_copy(update={"session_secret": "s" * 32, "oidc_issuer": "http://login"}))
    with pytest.raises(ConfigurationError, match="CLIENT_SECRET"):
        oidc_client(production.model_copy(update={"oidc_client_secret": None}))
    assert oidc_client(production.model_copy(update={"session_secret": "s" * 32})) is not None
    assert oidc_client(production.model_copy(update={"oidc_issuer": None})) is None

    assert parse_group_roles("cp=child-protection, staff=intake,staff=reviewer") == {
        "cp": frozenset({"child-protection"}),
        "staff": frozenset({"intake", "reviewer"}),
    }
    with pytest.raises(ConfigurationError, match="'admin' is not a role"):
        parse_group_roles("it=admin")
    with pytest.raises(ConfigurationError, match="is not group=role"):
        parse_group_roles("just-a-group")
