"""The test OpenID Connect provider (tests/oidc, a real oidc-provider) works end to end, with authlib as the client.

Nothing is mocked: authlib talks to the provider's real authorization, token, device and end-session endpoints,
and ID Tokens are checked against the provider's JWKS. If Node or the npm package is missing these tests fail.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuth2Client
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.helpers.oidc import (
    DEVICE_CODE_GRANT,
    OidcAccount,
    OidcLoginError,
    OidcProvider,
    abrowserless_login,
    acomplete_device_login,
    browserless_login,
    browserless_logout,
    complete_device_login,
)

# Never served: the helpers stop at the redirect to the client and hand back its URL.
REDIRECT_URI = "http://127.0.0.1:8765/auth/callback"
POST_LOGOUT_REDIRECT_URI = "http://127.0.0.1:8765/auth/signed-out"
SCOPE = "openid profile email groups"

ALICE = OidcAccount(
    subject="7d1f3c52-alice",
    username="alice",
    password="correct horse battery staple",
    name="Alice Adams",
    email="alice@example.org",
    groups=("caseworkers", "shielding-admins"),
)
BOB = OidcAccount(
    subject="0b9e44a1-bob",
    username="bob",
    password="hunter2 but longer",
    name="Bob Brown",
    email="bob@example.org",
    groups=("caseworkers",),
)


@pytest.fixture(scope="module")
def oidc_provider() -> Iterator[OidcProvider]:
    with OidcProvider(
        [ALICE, BOB], redirect_uris=[REDIRECT_URI], post_logout_redirect_uris=[POST_LOGOUT_REDIRECT_URI]
    ) as provider:
        yield provider


@pytest.fixture(scope="module")
def metadata(oidc_provider: OidcProvider) -> dict[str, Any]:
    return oidc_provider.metadata()


@pytest.fixture(scope="module")
def keys(metadata: dict[str, Any]) -> KeySet:
    response = httpx.get(metadata["jwks_uri"], timeout=10)
    response.raise_for_status()
    return KeySet.import_key_set(response.json())


def relying_party(provider: OidcProvider) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(
        client_id=provider.client_id,
        client_secret=provider.client_secret,
        token_endpoint_auth_method=provider.token_endpoint_auth_method,
        scope=SCOPE,
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
        timeout=10,
    )


def validate_id_token(id_token: str, provider: OidcProvider, keys: KeySet, nonce: str | None) -> dict[str, Any]:
    """Check signature, iss, aud, exp/iat, nonce and the presence of sub and auth_time; return the claims."""
    token = jwt.decode(id_token, keys, algorithms=["RS256"])
    options: dict[str, Any] = {
        "iss": {"essential": True, "value": provider.issuer},
        "aud": {"essential": True, "value": provider.client_id},
        "sub": {"essential": True},
        "exp": {"essential": True},
        "iat": {"essential": True},
        "auth_time": {"essential": True},
    }
    if nonce is not None:
        options["nonce"] = {"essential": True, "value": nonce}
    jwt.JWTClaimsRegistry(leeway=5, **options).validate(token.claims)
    return dict(token.claims)


async def sign_in(
    provider: OidcProvider,
    metadata: dict[str, Any],
    keys: KeySet,
    browser: httpx.AsyncClient,
    account: OidcAccount,
    *,
    password: str | None = None,
    **authorize_params: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One authorization code flow with PKCE and a nonce; return the token response and the ID Token claims."""
    async with relying_party(provider) as client:
        verifier = generate_token(48)
        nonce = generate_token(20)
        url, state = client.create_authorization_url(
            metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce, **authorize_params
        )
        callback = await abrowserless_login(
            url, account.username, account.password if password is None else password, browser
        )
        assert callback.startswith(f"{REDIRECT_URI}?")
        query = parse_qs(urlsplit(callback).query)
        assert query["state"] == [state]
        assert query["iss"] == [provider.issuer]  # RFC 9207 issuer identification
        token = await client.fetch_token(
            metadata["token_endpoint"], authorization_response=callback, state=state, code_verifier=verifier
        )
    return dict(token), validate_id_token(token["id_token"], provider, keys, nonce)


async def test_code_flow_with_pkce_yields_a_valid_id_token(
    oidc_provider: OidcProvider, metadata: dict[str, Any], keys: KeySet
) -> None:
    assert oidc_provider.issuer.startswith("http://127.0.0.1:")
    assert metadata["issuer"] == oidc_provider.issuer
    assert "S256" in metadata["code_challenge_methods_supported"]
    assert DEVICE_CODE_GRANT in metadata["grant_types_supported"]
    assert metadata["end_session_endpoint"]
    before = int(time.time())

    async with httpx.AsyncClient(timeout=10) as browser:
        token, claims = await sign_in(oidc_provider, metadata, keys, browser, ALICE)

    assert token["token_type"].lower() == "bearer"
    assert "refresh_token" not in token  # only with offline_access, see test_offline_access_brings_a_refresh_token
    assert claims["sub"] == ALICE.subject
    assert claims["groups"] == list(ALICE.groups)
    assert claims["email"] == ALICE.email
    assert claims["name"] == ALICE.name
    assert claims["preferred_username"] == ALICE.username
    assert before - 2 <= claims["auth_time"] <= int(time.time()) + 2

    async with relying_party(oidc_provider) as client:
        client.token = token
        userinfo = (await client.get(metadata["userinfo_endpoint"])).raise_for_status().json()
    assert userinfo["sub"] == ALICE.subject
    assert userinfo["groups"] == list(ALICE.groups)


async def test_code_exchange_needs_the_pkce_verifier(oidc_provider: OidcProvider, metadata: dict[str, Any]) -> None:
    async with relying_party(oidc_provider) as client, httpx.AsyncClient(timeout=10) as browser:
        url, state = client.create_authorization_url(
            metadata["authorization_endpoint"], code_verifier=generate_token(48), nonce=generate_token(20)
        )
        callback = await abrowserless_login(url, BOB.username, BOB.password, browser)
        with pytest.raises(OAuthError) as refused:
            await client.fetch_token(
                metadata["token_endpoint"],
                authorization_response=callback,
                state=state,
                code_verifier=generate_token(48),
            )
    assert refused.value.error == "invalid_grant"


async def test_wrong_password_yields_no_code(oidc_provider: OidcProvider, metadata: dict[str, Any]) -> None:
    async with relying_party(oidc_provider) as client, httpx.AsyncClient(timeout=10) as browser:
        url, _ = client.create_authorization_url(
            metadata["authorization_endpoint"], code_verifier=generate_token(48), nonce=generate_token(20)
        )
        with pytest.raises(OidcLoginError, match="Invalid username or password") as refused:
            await abrowserless_login(url, ALICE.username, "not her password", browser)
    assert 'id="login"' in refused.value.page  # the login form again, with the error
    assert "code=" not in refused.value.url


@pytest.mark.parametrize("force", [{"prompt": "login"}, {"max_age": 0}], ids=["prompt=login", "max_age=0"])
async def test_a_fresh_login_can_be_forced(
    oidc_provider: OidcProvider, metadata: dict[str, Any], keys: KeySet, force: dict[str, Any]
) -> None:
    async with httpx.AsyncClient(timeout=10) as browser:
        _, first = await sign_in(oidc_provider, metadata, keys, browser, ALICE)
        # The provider session cookie signs in silently: the (wrong) password is never asked for.
        _, silent = await sign_in(oidc_provider, metadata, keys, browser, ALICE, password="never asked")
        assert silent["auth_time"] == first["auth_time"]

        await asyncio.sleep(1.1)  # auth_time has a resolution of one second
        with pytest.raises(OidcLoginError, match="Invalid username or password"):
            await sign_in(oidc_provider, metadata, keys, browser, ALICE, password="never asked", **force)
        _, fresh = await sign_in(oidc_provider, metadata, keys, browser, ALICE, **force)
    assert fresh["sub"] == ALICE.subject
    assert fresh["auth_time"] > first["auth_time"]


async def test_offline_access_brings_a_refresh_token(
    oidc_provider: OidcProvider, metadata: dict[str, Any], keys: KeySet
) -> None:
    async with httpx.AsyncClient(timeout=10) as browser:
        token, claims = await sign_in(
            oidc_provider, metadata, keys, browser, BOB, scope=f"{SCOPE} offline_access", prompt="consent"
        )
    assert token["refresh_token"]
    async with relying_party(oidc_provider) as client:
        refreshed = await client.refresh_token(metadata["token_endpoint"], refresh_token=token["refresh_token"])
    refreshed_claims = validate_id_token(refreshed["id_token"], oidc_provider, keys, nonce=None)
    assert refreshed_claims["sub"] == BOB.subject
    assert refreshed_claims["auth_time"] == claims["auth_time"]


def test_rp_initiated_logout_ends_the_provider_session(oidc_provider: OidcProvider, keys: KeySet) -> None:
    metadata = oidc_provider.metadata()
    with (
        OAuth2Client(
            client_id=oidc_provider.client_id,
            client_secret=oidc_provider.client_secret,
            scope=SCOPE,
            redirect_uri=REDIRECT_URI,
            code_challenge_method="S256",
            timeout=10,
        ) as client,
        httpx.Client(timeout=10) as browser,
    ):

        def authorize() -> tuple[str, str, str]:
            verifier = generate_token(48)
            url, state = client.create_authorization_url(
                metadata["authorization_endpoint"], code_verifier=verifier, nonce=generate_token(20)
            )
            return url, state, verifier

        url, state, verifier = authorize()
        callback = browserless_login(url, ALICE.username, ALICE.password, browser, redirect_uri=REDIRECT_URI)
        token = client.fetch_token(
            metadata["token_endpoint"], authorization_response=callback, state=state, code_verifier=verifier
        )
        query = {
            "id_token_hint": token["id_token"],
            "post_logout_redirect_uri": POST_LOGOUT_REDIRECT_URI,
            "state": "bye",
        }
        landed = browserless_logout(f"{metadata['end_session_endpoint']}?{urlencode(query)}", browser)
        assert landed == f"{POST_LOGOUT_REDIRECT_URI}?state=bye"

        url, _, _ = authorize()
        with pytest.raises(OidcLoginError, match="Invalid username or password"):
            browserless_login(url, ALICE.username, "the session is gone, so this is asked", browser)


async def test_device_flow_with_verification_uri_complete(
    oidc_provider: OidcProvider, metadata: dict[str, Any], keys: KeySet
) -> None:
    async with relying_party(oidc_provider) as client:
        response = await client.post(
            metadata["device_authorization_endpoint"],
            data={"scope": SCOPE},
            auth=client.client_auth(oidc_provider.token_endpoint_auth_method),
        )
        device = response.raise_for_status().json()
        assert device["verification_uri"] == f"{oidc_provider.issuer}/device"

        with pytest.raises(OAuthError) as pending:
            await client.fetch_token(
                metadata["token_endpoint"], grant_type=DEVICE_CODE_GRANT, device_code=device["device_code"]
            )
        assert pending.value.error == "authorization_pending"

        await acomplete_device_login(device["verification_uri_complete"], BOB.username, BOB.password)

        token = await poll_device_token(client, metadata["token_endpoint"], device["device_code"])
    claims = validate_id_token(token["id_token"], oidc_provider, keys, nonce=None)
    assert claims["sub"] == BOB.subject
    assert claims["groups"] == list(BOB.groups)


async def poll_device_token(client: AsyncOAuth2Client, token_endpoint: str, device_code: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        try:
            return dict(await client.fetch_token(token_endpoint, grant_type=DEVICE_CODE_GRANT, device_code=device_code))
        except OAuthError as error:
            if error.error != "authorization_pending" or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.2)


def test_device_flow_with_user_code_typed_in(oidc_provider: OidcProvider, keys: KeySet) -> None:
    metadata = oidc_provider.metadata()
    with OAuth2Client(
        client_id=oidc_provider.client_id,
        client_secret=oidc_provider.client_secret,
        token_endpoint_auth_method="client_secret_basic",
        timeout=10,
    ) as client:
        response = client.post(
            metadata["device_authorization_endpoint"],
            data={"scope": SCOPE},
            auth=client.client_auth("client_secret_basic"),
        )
        device = response.raise_for_status().json()

        with pytest.raises(OidcLoginError, match="user code was refused"):
            complete_device_login(device["verification_uri"], ALICE.username, ALICE.password, user_code="BCDF-GHJK")
        complete_device_login(device["verification_uri"], ALICE.username, ALICE.password, user_code=device["user_code"])

        token = client.fetch_token(
            metadata["token_endpoint"], grant_type=DEVICE_CODE_GRANT, device_code=device["device_code"]
        )
    claims = validate_id_token(token["id_token"], oidc_provider, keys, nonce=None)
    assert claims["sub"] == ALICE.subject
