"""OpenID Connect single sign-on: the client of the council's identity provider (authlib), and what its ID tokens
are allowed to mean here.

- **Discovery** from `<issuer>/.well-known/openid-configuration`; the document must name the same issuer.
- **Code flow** with PKCE (S256), `state` and `nonce`. What the callback needs (state, nonce, code verifier, where
  to return, whether a fresh login was asked for) travels in a signed, short-lived value (`seal`/`unseal`) that
  the routes keep in an HttpOnly cookie, so any service process can finish a sign-in another one started.
- **Device flow** (`shielding login`): started and polled from the service, which holds the client secret.
- **ID tokens** are checked here and only here: signature against the provider's JWKS (asymmetric algorithms
  only; the keys are fetched again when a token names a key not seen yet), `iss`, `aud` (and `azp`), `exp`,
  `iat`, `nonce`, `at_hash`; `auth_time` is read and becomes the session's `authenticated_at`.
- **Accounts** and the group claim's roles: `web.oidc_accounts`.

Longer than our other modules on purpose: every check an ID token must pass lives in this one place.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oidc.core import CodeIDToken
from itsdangerous import BadData, URLSafeTimedSerializer
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from shielding import access
from shielding.dblogins import secret_file
from shielding.log import get_logger
from shielding.settings import ConfigurationError, Settings

log = get_logger(__name__)

SSO_ACTOR = "single-sign-on"
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# How long a started sign-in may take at the provider's pages before it has to start again.
SIGN_IN_MAX_AGE_SECONDS = 10 * 60
# Clock difference tolerated between this service and the provider (exp, iat).
LEEWAY_SECONDS = 60
HTTP_TIMEOUT_SECONDS = 10.0
DEFAULT_DEVICE_INTERVAL = 5
# Never HS* (that would make the client secret a signing key) and never "none".
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
SECRET_FILE = "session.secret"
ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
# Before auth_time is known (a provider that leaves it out): never fresh enough for break-glass.
UNKNOWN_AUTH_TIME = datetime.fromtimestamp(0, UTC)


class OidcError(Exception):
    """Single sign-on did not sign the person in; the message is a sentence for them."""


class ProviderUnavailable(OidcError):
    """The identity provider could not be reached, or answered with something that is not OpenID Connect."""


class SignInStateRefused(OidcError):
    """The callback's state is missing, forged, expired or for another sign-in."""


class ProviderRefused(OidcError):
    """The provider answered the sign-in with an error, or would not redeem the code."""


class IdTokenRefused(OidcError):
    """The ID token failed a check: signature, issuer, audience, expiry, nonce."""


class DevicePending(OidcError):
    """The person has not approved the device sign-in yet (or the CLI polls too fast: `slow_down`)."""

    def __init__(self, message: str, *, slow_down: bool = False) -> None:
        super().__init__(message)
        self.slow_down = slow_down


class DeviceRefused(OidcError):
    """The device sign-in expired or was refused; it cannot succeed any more."""


@dataclass(frozen=True)
class PendingSignIn:
    """What a code-flow callback must match: kept signed in the browser between the redirect and the callback."""

    state: str
    nonce: str
    verifier: str
    next: str
    fresh: bool
    started: int

    @classmethod
    def new(cls, *, next: str, fresh: bool) -> PendingSignIn:
        return cls(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            verifier=secrets.token_urlsafe(48),  # 64 characters: RFC 7636 allows 43 to 128
            next=next,
            fresh=fresh,
            started=int(time.time()),
        )


@dataclass(frozen=True)
class VerifiedIdentity:
    """What a validated ID token says: who, when they last proved it, and their groups (None: not sent)."""

    subject: str
    auth_time: datetime
    groups: tuple[str, ...] | None
    preferred_username: str | None
    email: str | None


@dataclass(frozen=True)
class DeviceAuthorization:
    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    interval: int
    expires_in: int


def parse_group_roles(text: str | None) -> dict[str, frozenset[str]]:
    """`"group=role,group=role"` (a group may be named more than once) into group -> roles; every role checked."""
    mapping: dict[str, set[str]] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        group, sep, role = item.rpartition("=")
        group, role = group.strip(), role.strip()
        if not sep or not group or not role:
            raise ConfigurationError(
                f"SHIELDING_OIDC_GROUP_ROLES: {item.strip()!r} is not group=role (e.g. 'shielding-intake=intake')."
            )
        if role not in access.ROLES:
            raise ConfigurationError(
                f"SHIELDING_OIDC_GROUP_ROLES: {role!r} is not a role; roles are {', '.join(access.ROLES)}."
            )
        mapping.setdefault(group, set()).add(role)
    return {group: frozenset(roles) for group, roles in mapping.items()}


def _sign_in_secret(settings: Settings) -> str:
    if settings.session_secret:
        if len(settings.session_secret) < 32:
            raise ConfigurationError("SHIELDING_SESSION_SECRET needs at least 32 characters (e.g. 32 random bytes).")
        return settings.session_secret
    if settings.environment == "production":
        raise ConfigurationError(
            "Single sign-on in production needs SHIELDING_SESSION_SECRET, the same on every service process."
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return secret_file(settings.data_dir / SECRET_FILE)


def oidc_client(settings: Settings) -> OidcClient | None:
    """The provider client these settings describe; None when single sign-on is not set up (no issuer)."""
    if not settings.oidc_issuer:
        return None
    missing = [
        name
        for name, value in (
            ("SHIELDING_OIDC_CLIENT_ID", settings.oidc_client_id),
            ("SHIELDING_OIDC_CLIENT_SECRET", settings.oidc_client_secret),
        )
        if not value
    ]
    if missing:
        raise ConfigurationError(f"Single sign-on is set up (SHIELDING_OIDC_ISSUER) but {' and '.join(missing)} not.")
    if settings.environment == "production":
        if not settings.oidc_issuer.startswith("https://"):
            raise ConfigurationError("SHIELDING_OIDC_ISSUER must be an https:// address in production.")
        if not (settings.api_url or "").startswith("https://"):
            raise ConfigurationError(
                "Single sign-on in production needs SHIELDING_API_URL, the service's public https:// address "
                "(its callback, <SHIELDING_API_URL>/auth/oidc/callback, is registered at the identity provider)."
            )
    assert settings.oidc_client_id and settings.oidc_client_secret
    return OidcClient(
        issuer=settings.oidc_issuer,
        client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret,
        groups_claim=settings.oidc_groups_claim,
        group_roles=parse_group_roles(settings.oidc_group_roles),
        secret=_sign_in_secret(settings),
    )


class OidcClient:
    """The relying party: one per service process; holds only the provider's metadata and keys, no sign-in state."""

    def __init__(
        self,
        *,
        issuer: str,
        client_id: str,
        client_secret: str,
        groups_claim: str,
        group_roles: dict[str, frozenset[str]],
        secret: str,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        self.groups_claim = groups_claim
        self.group_roles = group_roles
        self._serializer = URLSafeTimedSerializer(secret, salt="shielding.oidc.sign-in")
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._lock = asyncio.Lock()

    # -------------------------------------------------------------------------------------- sign-in state

    def seal(self, pending: PendingSignIn) -> str:
        return self._serializer.dumps(asdict(pending))

    def unseal(self, sealed: str | None) -> PendingSignIn:
        if not sealed:
            raise SignInStateRefused(
                "This sign-in was not started in this browser, or took too long: start again from the sign-in page."
            )
        try:
            fields = self._serializer.loads(sealed, max_age=SIGN_IN_MAX_AGE_SECONDS)
            return PendingSignIn(**fields)
        except (BadData, TypeError):
            raise SignInStateRefused(
                "This sign-in has expired or could not be checked: start again from the sign-in page."
            ) from None

    # -------------------------------------------------------------------------------------- the provider

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            async with self._lock:
                if self._metadata is None:
                    self._metadata = await self._discover()
        return self._metadata

    async def _discover(self) -> dict[str, Any]:
        url = f"{self.issuer}/.well-known/openid-configuration"
        try:
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS) as http:
                response = await http.get(url)
                response.raise_for_status()
                document = response.json()
        except (httpx.HTTPError, ValueError) as err:
            log.error("oidc discovery failed", error=type(err).__name__)
            raise ProviderUnavailable("The identity provider cannot be reached; try again in a minute.") from None
        needed = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
        if not isinstance(document, dict) or any(not isinstance(document.get(key), str) for key in needed):
            raise ProviderUnavailable("The identity provider's discovery document is not OpenID Connect.")
        if document["issuer"].rstrip("/") != self.issuer:
            log.error("oidc issuer mismatch", configured=self.issuer, discovered=document["issuer"])
            raise ProviderUnavailable("The identity provider names another issuer than the one configured.")
        return document

    async def _session(self, **kwargs: Any) -> AsyncOAuth2Client:
        metadata = await self.metadata()
        methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        method = "client_secret_basic" if "client_secret_basic" in methods else "client_secret_post"
        return AsyncOAuth2Client(
            client_id=self.client_id,
            client_secret=self._client_secret,
            token_endpoint_auth_method=method,
            timeout=HTTP_TIMEOUT_SECONDS,
            **kwargs,
        )

    async def scope(self) -> str:
        """openid, with profile, email and the group claim's scope when the provider offers them."""
        supported = (await self.metadata()).get("scopes_supported") or ["profile", "email"]
        wanted = ["profile", "email", self.groups_claim] if self.group_roles else ["profile", "email"]
        return " ".join(["openid", *dict.fromkeys(s for s in wanted if s in supported)])

    # -------------------------------------------------------------------------------------- code flow

    async def authorization_url(self, redirect_uri: str, pending: PendingSignIn) -> str:
        """Where to send the browser; a fresh sign-in (break-glass) makes the provider ask for the login again."""
        metadata = await self.metadata()
        extra: dict[str, Any] = {"max_age": 0, "prompt": "login"} if pending.fresh else {}
        async with await self._session(
            scope=await self.scope(), redirect_uri=redirect_uri, code_challenge_method="S256"
        ) as client:
            url, _ = client.create_authorization_url(
                metadata["authorization_endpoint"],
                state=pending.state,
                code_verifier=pending.verifier,
                nonce=pending.nonce,
                **extra,
            )
        return str(url)

    async def redeem_code(self, code: str, redirect_uri: str, pending: PendingSignIn) -> VerifiedIdentity:
        """Exchange the code (with the PKCE verifier) at the token endpoint, then check the ID token."""
        metadata = await self.metadata()
        async with await self._session(redirect_uri=redirect_uri, code_challenge_method="S256") as client:
            try:
                token = await client.fetch_token(
                    metadata["token_endpoint"],
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=pending.verifier,
                )
            except OAuthError as err:
                log.warning("oidc code refused", error=_short(err.error))
                raise ProviderRefused(
                    "The identity provider would not complete this sign-in (it may have been used already): "
                    "start again from the sign-in page."
                ) from None
            except (httpx.HTTPError, ValueError) as err:
                log.error("oidc token endpoint failed", error=type(err).__name__)
                raise ProviderUnavailable("The identity provider cannot be reached; try again in a minute.") from None
            return await self._identity(client, dict(token), nonce=pending.nonce)

    # -------------------------------------------------------------------------------------- device flow

    async def start_device(self) -> DeviceAuthorization:
        metadata = await self.metadata()
        endpoint = metadata.get("device_authorization_endpoint")
        if not isinstance(endpoint, str):
            raise ProviderUnavailable("The identity provider does not offer device sign-in (`shielding login`).")
        data = {"scope": await self.scope()}
        async with await self._session() as client:
            try:
                response = await client.post(
                    endpoint, data=data, auth=client.client_auth(client.token_endpoint_auth_method)
                )
                answer = response.json()
            except (httpx.HTTPError, ValueError) as err:
                log.error("oidc device authorization failed", error=type(err).__name__)
                raise ProviderUnavailable("The identity provider cannot be reached; try again in a minute.") from None
        needed = ("device_code", "user_code", "verification_uri")
        if response.status_code != 200 or any(not isinstance(answer.get(key), str) for key in needed):
            log.error("oidc device authorization refused", status=response.status_code, error=_short(answer))
            raise ProviderUnavailable("The identity provider would not start a device sign-in; ask operations.")
        complete = answer.get("verification_uri_complete")
        return DeviceAuthorization(
            device_code=answer["device_code"],
            user_code=answer["user_code"],
            verification_uri=answer["verification_uri"],
            verification_uri_complete=complete if isinstance(complete, str) else None,
            interval=_positive_int(answer.get("interval"), DEFAULT_DEVICE_INTERVAL),
            expires_in=_positive_int(answer.get("expires_in"), 600),
        )

    async def poll_device(self, device_code: str) -> VerifiedIdentity:
        """Ask the token endpoint once; `DevicePending` until the person approves, then the checked identity."""
        metadata = await self.metadata()
        async with await self._session() as client:
            try:
                token = await client.fetch_token(
                    metadata["token_endpoint"], grant_type=DEVICE_CODE_GRANT, device_code=device_code
                )
            except OAuthError as err:
                raise _device_error(str(err.error or "")) from None
            except (httpx.HTTPError, ValueError) as err:
                log.error("oidc device poll failed", error=type(err).__name__)
                raise ProviderUnavailable("The identity provider cannot be reached; try again in a minute.") from None
            return await self._identity(client, dict(token), nonce=None)

    # -------------------------------------------------------------------------------------- ID tokens

    async def _identity(
        self, client: AsyncOAuth2Client, token: dict[str, Any], *, nonce: str | None
    ) -> VerifiedIdentity:
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise IdTokenRefused("The identity provider sent no ID token; single sign-on needs the openid scope.")
        claims = await self.verify_id_token(id_token, nonce=nonce, access_token=token.get("access_token"))
        groups = claims.get(self.groups_claim)
        if groups is None and self.group_roles:
            groups = (await self._userinfo(client, token, claims["sub"])).get(self.groups_claim)
        auth_time = claims.get("auth_time")
        return VerifiedIdentity(
            subject=claims["sub"],
            auth_time=(
                datetime.fromtimestamp(min(float(auth_time), time.time()), UTC)
                if isinstance(auth_time, int | float) and not isinstance(auth_time, bool)
                else UNKNOWN_AUTH_TIME
            ),
            groups=_groups(groups),
            preferred_username=_text(claims.get("preferred_username")),
            email=_text(claims.get("email")),
        )

    async def verify_id_token(self, id_token: str, *, nonce: str | None, access_token: str | None) -> dict[str, Any]:
        """The ID token's claims after every check, or `IdTokenRefused` naming none of its content."""
        metadata = await self.metadata()
        offered = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = [alg for alg in offered if alg in ASYMMETRIC_ALGORITHMS] or ["RS256"]
        registry = JWSRegistry(algorithms=algorithms)
        try:
            try:
                decoded = jwt.decode(id_token, await self._key_set(), registry=registry)
            except InvalidKeyIdError:
                # The provider rotated its keys since they were fetched.
                decoded = jwt.decode(id_token, await self._key_set(refresh=True), registry=registry)
            options: dict[str, Any] = {
                "iss": {"essential": True, "value": metadata["issuer"]},
                "aud": {"essential": True, "value": self.client_id},
                "sub": {"essential": True},
                "exp": {"essential": True},
                "iat": {"essential": True},
            }
            if nonce is not None:
                options["nonce"] = {"essential": True, "value": nonce}
            params = {"nonce": nonce, "client_id": self.client_id, "access_token": access_token}
            checked = CodeIDToken(decoded.claims, decoded.header, options, params)
            checked.validate(leeway=LEEWAY_SECONDS)
        except (JoseError, ValueError, TypeError) as err:
            log.warning("oidc id token refused", error=type(err).__name__, claim=getattr(err, "claim", None))
            raise IdTokenRefused(
                "The identity provider's answer could not be verified, so you are not signed in."
            ) from None
        return dict(checked)

    async def _key_set(self, *, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            uri = (await self.metadata())["jwks_uri"]
            try:
                async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS) as http:
                    response = await http.get(uri)
                    response.raise_for_status()
                    self._keys = KeySet.import_key_set(response.json())
            except (httpx.HTTPError, ValueError, JoseError) as err:
                log.error("oidc jwks fetch failed", error=type(err).__name__)
                raise ProviderUnavailable("The identity provider's keys cannot be fetched; try again.") from None
        return self._keys

    async def _userinfo(self, client: AsyncOAuth2Client, token: dict[str, Any], subject: str) -> dict[str, Any]:
        """The group claim from the userinfo endpoint, for providers that leave it out of the ID token."""
        endpoint = (await self.metadata()).get("userinfo_endpoint")
        if not isinstance(endpoint, str) or not token.get("access_token"):
            return {}
        try:
            client.token = token
            response = await client.get(endpoint)
            response.raise_for_status()
            info = response.json()
        except (httpx.HTTPError, ValueError, OAuthError) as err:
            log.warning("oidc userinfo failed", error=type(err).__name__)
            return {}
        # Userinfo must be about the same person as the ID token (OpenID Connect Core 5.3.2).
        return info if isinstance(info, dict) and info.get("sub") == subject else {}

    # -------------------------------------------------------------------------------------- roles

    def roles_for(self, groups: Iterable[str]) -> set[str]:
        return {role for group in groups for role in self.group_roles.get(group, ())}


# ------------------------------------------------------------------------------------------ small helpers


def _device_error(error: str) -> OidcError:
    if error == "authorization_pending":
        return DevicePending("Waiting for you to approve the sign-in in your browser.")
    if error == "slow_down":
        return DevicePending("Waiting for you to approve the sign-in in your browser.", slow_down=True)
    if error == "expired_token":
        return DeviceRefused("The sign-in code expired before it was approved: run `shielding login` again.")
    if error == "access_denied":
        return DeviceRefused("The sign-in was refused in the browser: run `shielding login` again to retry.")
    log.warning("oidc device poll refused", error=_short(error))
    return DeviceRefused("The identity provider ended this sign-in: run `shielding login` again.")


def _groups(value: object) -> tuple[str, ...] | None:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(item for item in value if isinstance(item, str))
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _positive_int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def _short(value: object) -> str:
    """An error code from the provider, safe to log."""
    text = str(value.get("error", "")) if isinstance(value, dict) else str(value)
    return "".join(ch for ch in text if ch.isalnum() or ch in "_-.")[:60]
