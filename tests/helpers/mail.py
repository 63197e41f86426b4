"""Message providers for relay tests: a real SMTP server (aiosmtpd) and a fake GOV.UK Notify API (stdlib HTTP).

    with SmtpSink() as sink:                 # sink.port; sink.messages (email.message.EmailMessage, as received)
        sink.refuse.add("bad@example.org")   # 550 at RCPT for that address
        sink.stop(); sink.start()            # an outage: connection refused, then the same port again

    with FakeNotify() as notify:             # notify.url, notify.api_key; notify.sent: what was accepted
        notify.down = True                   # 503 to every call
        notify.refuse.add("07700 900999")    # 400 ValidationError for that address or number
        notify.lose_answers = 2              # accept the next 2 sends, then answer 500 (a lost reply)

GOV.UK Notify is the one part outside the product, so it is the one part faked: the fake checks the bearer
token as Notify does (HS256 JWT, `iss` the service id, signed with the key's secret).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from aiosmtpd.controller import Controller

from shielding.processes import free_ports


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.sink.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.sink.delay:
            await asyncio.sleep(self.sink.delay)
        parsed = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.sink.lock:
            for rcpt in envelope.rcpt_tos:
                self.sink.received.append((rcpt, parsed))
        return "250 Message accepted"


class SmtpSink:
    def __init__(self) -> None:
        (self.port,) = free_ports(1)
        self.refuse: set[str] = set()
        self.delay = 0.0
        self.received: list[tuple[str, EmailMessage]] = []
        self.lock = threading.Lock()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def messages(self) -> list[tuple[str, EmailMessage]]:
        with self.lock:
            return list(self.received)

    def to(self, address: str) -> list[EmailMessage]:
        return [m for rcpt, m in self.messages if rcpt == address]

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FakeNotify:
    """The three calls the relay makes: POST /v2/notifications/email and /sms, GET /v2/notifications?reference."""

    def __init__(self) -> None:
        self.service_id = str(uuid.uuid4())
        self.secret = str(uuid.uuid4())
        self.api_key = f"shielding_test-{self.service_id}-{self.secret}"
        self.sent: list[dict[str, Any]] = []
        self.refuse: set[str] = set()
        self.down = False
        self.lose_answers = 0
        self.lookups: list[str] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeNotify:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                try:
                    claims = jwt.decode(token, fake.secret, algorithms=["HS256"], options={"require": ["iss", "iat"]})
                except jwt.PyJWTError:
                    return False
                return bool(claims["iss"] == fake.service_id and abs(time.time() - claims["iat"]) < 30)

            def do_GET(self) -> None:  # noqa: N802
                if fake.down:
                    return self._answer(503, {"status_code": 503, "errors": [{"error": "Down"}]})
                if not self._authorised():
                    return self._answer(403, {"status_code": 403, "errors": [{"error": "AuthError"}]})
                reference = parse_qs(urlsplit(self.path).query).get("reference", [""])[0]
                with fake.lock:
                    fake.lookups.append(reference)
                    found = [n for n in fake.sent if n["reference"] == reference]
                return self._answer(
                    200, {"notifications": [{"id": n["id"], "reference": n["reference"]} for n in found]}
                )

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                if fake.down:
                    return self._answer(503, {"status_code": 503, "errors": [{"error": "Down"}]})
                if not self._authorised():
                    return self._answer(403, {"status_code": 403, "errors": [{"error": "AuthError"}]})
                kind = urlsplit(self.path).path.rsplit("/", 1)[-1]
                field = {"email": "email_address", "sms": "phone_number"}.get(kind)
                if field is None or field not in body:
                    return self._answer(400, {"status_code": 400, "errors": [{"error": "BadRequestError"}]})
                if body[field] in fake.refuse:
                    error = {"error": "ValidationError", "message": f"{field} Not a valid {kind} address"}
                    return self._answer(400, {"status_code": 400, "errors": [error]})
                record = {"id": str(uuid.uuid4()), "kind": kind, "to": body[field], **body}
                with fake.lock:
                    fake.sent.append(record)
                    lose = fake.lose_answers > 0
                    fake.lose_answers -= 1 if lose else 0
                if lose:
                    return self._answer(500, {"status_code": 500, "errors": [{"error": "Exception"}]})
                return self._answer(201, {"id": record["id"], "reference": body.get("reference")})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-notify", daemon=True)
        self._thread.start()
        return self

    def to(self, address: str) -> list[dict[str, Any]]:
        with self.lock:
            return [n for n in self.sent if n["to"] == address]

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
