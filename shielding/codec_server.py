"""The Temporal Web UI's remote codec endpoint: decrypts payloads for people who hold the codec token.

The UI posts `{"payloads": [...]}` (the proto3 JSON form of `temporal.api.common.v1.Payloads`) to
`/decode` and `/encode`. Every POST must carry `Authorization: Bearer <SHIELDING_CODEC_TOKEN>`; without a
configured token the server does not start at all. Only `settings.codec_cors_origin` (the Web UI) is allowed
cross-origin. Nothing here ever logs a payload, a request body or the token: log lines carry the path, the
namespace, the number of payloads and the outcome.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import hdrs, web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from shielding.codec import EncryptionCodec, codec_from_settings
from shielding.log import configure_logging, get_logger
from shielding.settings import ConfigurationError, Settings

log = get_logger(__name__)

ALLOWED_METHODS = "POST, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type, X-Namespace"
# A workflow history page can hold many payloads; documents never pass through Temporal, so this is ample.
MAX_BODY_BYTES = 16 * 1024 * 1024

_CODEC_KEY = web.AppKey("codec", EncryptionCodec)
_TOKEN_KEY = web.AppKey("token", bytes)
_ORIGIN_KEY = web.AppKey("origin", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(settings: Settings) -> web.Application:
    """The codec endpoint's aiohttp application; refuses (ConfigurationError) without a token or keys."""
    token = (settings.codec_token or "").strip()
    if not token:
        raise ConfigurationError(
            "SHIELDING_CODEC_TOKEN is not set: the codec server decrypts child data and will not start "
            "without a bearer token. Set SHIELDING_CODEC_TOKEN to a long random secret."
        )
    codec = codec_from_settings(settings)
    if codec is None:
        raise ConfigurationError(
            "No encryption keys are configured (SHIELDING_ENCRYPTION_KEYS): there is nothing to decode with."
        )
    app = web.Application(middlewares=[_cors_middleware], client_max_size=MAX_BODY_BYTES)
    app[_CODEC_KEY] = codec
    app[_TOKEN_KEY] = token.encode()
    app[_ORIGIN_KEY] = settings.codec_cors_origin.rstrip("/")
    app.router.add_post("/decode", _decode)
    app.router.add_post("/encode", _encode)
    app.router.add_route(hdrs.METH_OPTIONS, "/decode", _preflight)
    app.router.add_route(hdrs.METH_OPTIONS, "/encode", _preflight)
    return app


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8081) -> None:
    """Run the codec endpoint until interrupted (the `shielding codec-server` command)."""
    app = make_app(settings)  # before anything listens: no token, no server
    configure_logging(settings.log_level or "INFO")
    log.info("codec server listening", host=host, port=port, cors_origin=settings.codec_cors_origin)
    web.run_app(app, host=host, port=port, access_log=None, print=None)


# ------------------------------------------------------------------------------------------------- CORS


def _origin_allowed(request: web.Request) -> str | None:
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is not None and origin.rstrip("/") == request.app[_ORIGIN_KEY]:
        return origin
    return None


@web.middleware
async def _cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as err:
        response = err
    origin = _origin_allowed(request)
    if origin is not None:
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
        response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = "WWW-Authenticate"
    response.headers[hdrs.VARY] = "Origin"
    # Decoded payloads are child data: never cached by a browser or a proxy.
    response.headers[hdrs.CACHE_CONTROL] = "no-store"
    if isinstance(response, web.HTTPException):
        raise response
    return response


async def _preflight(request: web.Request) -> web.Response:
    if _origin_allowed(request) is None:
        log.warning("codec preflight refused", path=request.path, reason="origin not allowed")
        return web.Response(status=403)
    return web.Response(
        status=204,
        headers={
            hdrs.ACCESS_CONTROL_ALLOW_METHODS: ALLOWED_METHODS,
            hdrs.ACCESS_CONTROL_ALLOW_HEADERS: ALLOWED_HEADERS,
            hdrs.ACCESS_CONTROL_MAX_AGE: "600",
        },
    )


# ------------------------------------------------------------------------------------------ the endpoint


def _authorised(request: web.Request) -> bool:
    header = request.headers.get(hdrs.AUTHORIZATION, "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer":
        presented = ""
    # Always compare, so a missing header takes as long as a wrong token.
    matches = hmac.compare_digest(presented.strip().encode(), request.app[_TOKEN_KEY])
    return matches and bool(presented)


def _json_error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


async def _apply(
    request: web.Request, operation: str, fn: Callable[[EncryptionCodec, Sequence[Payload]], Awaitable[list[Payload]]]
) -> web.Response:
    namespace = request.headers.get("X-Namespace")
    if not _authorised(request):
        log.warning("codec request refused", operation=operation, namespace=namespace, reason="bad or no token")
        return _json_error(401, "unauthorised: a valid bearer token is required", **{hdrs.WWW_AUTHENTICATE: "Bearer"})
    try:
        incoming = json_format.Parse(await request.read(), Payloads(), ignore_unknown_fields=True)
    except (json_format.ParseError, UnicodeDecodeError, ValueError):
        log.warning("codec request refused", operation=operation, namespace=namespace, reason="not Payloads JSON")
        return _json_error(400, 'the body must be JSON of the form {"payloads": [...]}')
    payloads = await fn(request.app[_CODEC_KEY], list(incoming.payloads))
    log.info("codec request", operation=operation, namespace=namespace, payloads=len(payloads))
    return web.Response(
        text=json_format.MessageToJson(Payloads(payloads=payloads)),
        content_type="application/json",
    )


async def _decode_each(codec: EncryptionCodec, payloads: Sequence[Payload]) -> list[Payload]:
    """Decode payload by payload: one the keys cannot open (unknown key id, tampered) is returned as it
    came, still encrypted, so the rest of a history can be read."""
    decoded: list[Payload] = []
    failed = 0
    for payload in payloads:
        try:
            decoded.extend(await codec.decode([payload]))
        except ValueError:
            failed += 1
            decoded.append(payload)
    if failed:
        log.warning("codec payloads not decoded", count=failed, reason="unknown key or failed authentication")
    return decoded


async def _encode_all(codec: EncryptionCodec, payloads: Sequence[Payload]) -> list[Payload]:
    return await codec.encode(payloads)


async def _decode(request: web.Request) -> web.Response:
    return await _apply(request, "decode", _decode_each)


async def _encode(request: web.Request) -> web.Response:
    return await _apply(request, "encode", _encode_all)
