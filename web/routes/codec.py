"""The Temporal Web UI's remote codec endpoint, behind the service's own sign-in.

The browser calls `POST /codec/decode` itself (Temporal's remote codec protocol: `{"payloads": [...]}`, the
proto3 JSON of `temporal.api.common.v1.Payloads`, with an `X-Namespace` header), sending the session cookie
because the UI runs with `TEMPORAL_CODEC_INCLUDE_CREDENTIALS=true`; the CLI or a script may send a bearer
token instead. Only the roles allowed to "decode payloads" are answered (refusals audited by
`shielding.access`), and every decode is audited: who, how many payloads, the namespace and the requests they
belong to (from each payload's authenticated binding) — never what they hold.

There is no encoding here: `/codec/encode` always refuses, so nothing outside the service can mint ciphertext
for a workflow (the UI's write actions are disabled anyway).

A cookie session is not asked for its CSRF token (the UI cannot send it): instead a browser's request must
come from the UI's origin (`SHIELDING_CODEC_CORS_ORIGIN`), and must be `application/json`, which no
cross-site form can send without a CORS preflight that only that origin passes. The session cookie is
SameSite=Lax, so the UI must be served from the same site as the service (e.g. two hosts of one domain).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from shielding import access, messages, store
from shielding.codec import EncryptionCodec, PayloadRefused, RefusingCodec, binding_of, codec_from_settings
from shielding.domain import REQUEST_ID_PATTERN, AuditAction
from shielding.log import get_logger
from shielding.store import access_log
from shielding.store.access_log import AccessKind, FrontEnd, Reader
from starter.identity import NotSignedIn, Session
from web.deps import SESSION_COOKIE, PartsDep, bearer_token

log = get_logger(__name__)

router = APIRouter(prefix="/codec", tags=["codec"])

PERMISSION = "decode payloads"
ALLOWED_METHODS = "POST, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type, X-Namespace"
# A workflow history page can hold many payloads; documents never pass through Temporal, so this is ample.
MAX_BODY_BYTES = 16 * 1024 * 1024
# How many request ids one audit entry names (a history page holds one request; a list view, a few).
MAX_AUDITED_IDS = 50


def _origin(request: Request, p: PartsDep) -> tuple[str | None, bool]:
    """The request's Origin header, and whether it is allowed (absent: not a browser, so allowed)."""
    origin = request.headers.get("origin")
    return origin, origin is None or origin.rstrip("/") == p.settings.codec_cors_origin.rstrip("/")


def _cors(response: Response, origin: str | None, allowed: bool) -> Response:
    response.headers["Vary"] = "Origin"
    if origin is not None and allowed:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
    return response


def _problem(status: int, message: str, origin: str | None, allowed: bool, **headers: str) -> Response:
    return _cors(JSONResponse({"detail": message}, status_code=status, headers=headers or None), origin, allowed)


async def _session(request: Request, p: PartsDep) -> Session:
    token = bearer_token(request)
    if token is not None:
        return await p.identity.session(token, kind="bearer")
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise NotSignedIn("You are not signed in: sign in to the shielding service in this browser first.")
    return await p.identity.session(cookie, kind="cookie")


def _codec(p: PartsDep) -> EncryptionCodec:
    codec = p.client.data_converter.payload_codec
    return codec.inner if isinstance(codec, RefusingCodec) else codec_from_settings(p.settings)


def _namespace(request: Request) -> str:
    namespace = request.headers.get("x-namespace", "")
    return namespace if namespace.isprintable() and len(namespace) <= 200 else "(not a namespace)"


def _decode_each(codec: EncryptionCodec, payloads: list[Payload]) -> tuple[list[Payload], int, set[str]]:
    """Each payload opened, or returned as it came (still encrypted, or plaintext) if it cannot be; how many
    were opened; and the request ids the opened ones are bound to."""
    decoded, opened, request_ids = [], 0, set()
    for payload in payloads:
        try:
            decoded.append(codec.decode_one(payload))
        except PayloadRefused:
            decoded.append(payload)
            continue
        opened += 1
        binding = binding_of(payload)
        if binding is not None and REQUEST_ID_PATTERN.fullmatch(binding.workflow_id):
            request_ids.add(binding.workflow_id)
    return decoded, opened, request_ids


@router.options("/decode", include_in_schema=False)
@router.options("/encode", include_in_schema=False)
async def preflight(request: Request, p: PartsDep) -> Response:
    origin, allowed = _origin(request, p)
    if origin is None or not allowed:
        log.warning("codec preflight refused", reason="origin not allowed")
        return Response(status_code=403, headers={"Vary": "Origin"})
    response = Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Methods": ALLOWED_METHODS,
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": "600",
        },
    )
    return _cors(response, origin, allowed)


@router.post(
    "/decode",
    summary="The Temporal Web UI's remote codec: decrypt payloads for a signed-in manager (audited)",
    response_model=None,
)
async def decode(request: Request, p: PartsDep) -> Response:
    origin, allowed = _origin(request, p)
    if not allowed:
        return _problem(403, messages.CODEC_ORIGIN_REFUSED, origin, allowed)
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        return _problem(415, 'Send the payloads as JSON: {"payloads": [...]}.', origin, allowed)
    try:
        session = await _session(request, p)
        await access.require(p.pool, session.name, PERMISSION)
    except NotSignedIn as err:
        return _problem(401, str(err), origin, allowed, **{"WWW-Authenticate": "Bearer"})
    except access.AccessDenied as err:
        return _problem(403, str(err), origin, allowed)
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return _problem(413, "Too many payloads at once; open a smaller part of the history.", origin, allowed)
    try:
        incoming = json_format.Parse(body, Payloads(), ignore_unknown_fields=True)
    except (json_format.ParseError, UnicodeDecodeError, ValueError):
        return _problem(400, 'The body must be JSON of the form {"payloads": [...]}.', origin, allowed)
    decoded, opened, request_ids = _decode_each(_codec(p), list(incoming.payloads))
    named = sorted(request_ids)
    async with p.pool.acquire() as conn, conn.transaction():
        await store.append_audit(
            conn,
            action=AuditAction.PAYLOADS_DECODED,
            actor=session.name,
            request_id=named[0] if len(named) == 1 else None,
            reason=f"{opened} of {len(decoded)} payloads decoded in the Temporal Web UI",
            details={
                "payloads": len(decoded),
                "decoded": opened,
                "namespace": _namespace(request),
                "request_ids": named[:MAX_AUDITED_IDS],
            },
        )
        # Who looked, in the access log too: the children's details may be in what was decoded.
        await access_log.record(
            conn,
            Reader(actor=session.name, front_end=FrontEnd.WEB),
            AccessKind.DECODE,
            request_id=named[0] if len(named) == 1 else None,
            details={"payloads": len(decoded), "decoded": opened, "request_ids": named[:MAX_AUDITED_IDS]},
        )
    log.info("codec decode", actor=session.name, payloads=len(decoded), decoded=opened, requests=len(named))
    response = Response(content=json_format.MessageToJson(Payloads(payloads=decoded)), media_type="application/json")
    return _cors(response, origin, allowed)


@router.post("/encode", include_in_schema=False)
async def encode(request: Request, p: PartsDep) -> Response:
    origin, allowed = _origin(request, p)
    log.warning("codec encode refused", reason="read-only")
    return _problem(403, messages.CODEC_ENCODE_REFUSED, origin, allowed)
