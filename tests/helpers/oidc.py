"""A real OpenID Connect provider for tests, and a script that signs in through its pages like a browser would.

The provider is panva's ``oidc-provider`` (npm), run by ``tests/oidc/provider.mjs`` under Node. Install it once
with :func:`ensure_oidc_provider_installed` (``python -m tests.helpers.oidc``); nothing is downloaded at test time.

    with OidcProvider([OidcAccount(...)], redirect_uris=["http://127.0.0.1:8000/auth/callback"]) as op:
        op.discovery_url, op.client_id, op.client_secret
        callback_url = browserless_login(authorize_url, "alice", "secret", httpx.Client())

Every page of the provider is a plain HTML form; the helpers below fill them in with httpx and never follow the
final redirect back to the relying party, so a test can hand that URL to the service under test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

OIDC_DIR = Path(__file__).resolve().parent.parent / "oidc"
PROVIDER_SCRIPT = OIDC_DIR / "provider.mjs"
READY_PREFIX = "oidc-provider ready "
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
_MAX_STEPS = 25


class OidcProviderError(RuntimeError):
    """The provider is not installed, did not start, or stopped."""


class OidcLoginError(RuntimeError):
    """A page of the provider did not lead on: wrong password, bad user code, error page, unexpected page."""

    def __init__(self, message: str, *, url: str = "", status: int = 0, page: str = "") -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.page = page


@dataclass(frozen=True)
class OidcAccount:
    """A user of the provider; ``subject`` becomes the ``sub`` claim."""

    subject: str
    username: str
    password: str
    name: str = ""
    email: str = ""
    groups: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "username": self.username,
            "password": self.password,
            "name": self.name or self.username,
            "email": self.email,
            "groups": list(self.groups),
        }


# --- installation ----------------------------------------------------------------------------------------------


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise OidcProviderError("Node.js (node) is not on PATH: the OIDC provider for the tests needs Node 20 or later")
    return node


def _locked_version() -> str:
    lock = json.loads((OIDC_DIR / "package-lock.json").read_text())
    return str(lock["packages"]["node_modules/oidc-provider"]["version"])


def _installed_version() -> str | None:
    try:
        manifest = json.loads((OIDC_DIR / "node_modules" / "oidc-provider" / "package.json").read_text())
    except (OSError, ValueError):
        return None
    return str(manifest.get("version"))


def check_oidc_provider_installed() -> str:
    """Return the path of ``node`` if the pinned oidc-provider is installed in tests/oidc, else raise."""
    node = _node()
    installed, locked = _installed_version(), _locked_version()
    if installed != locked:
        found = f"version {installed} is installed" if installed else "it is not installed"
        raise OidcProviderError(
            f"the tests need oidc-provider {locked} in {OIDC_DIR}/node_modules, but {found}: "
            "run `python -m tests.helpers.oidc` (npm ci) before the tests"
        )
    return node


def ensure_oidc_provider_installed() -> None:
    """Install the locked npm packages of tests/oidc (``npm ci``) unless they already are. For install scripts."""
    _node()
    if _installed_version() == _locked_version():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise OidcProviderError("npm is not on PATH: it is needed to install oidc-provider for the tests")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=OIDC_DIR, check=True)
    check_oidc_provider_installed()


# --- the provider process --------------------------------------------------------------------------------------


class OidcProvider:
    """Runs tests/oidc/provider.mjs on a free 127.0.0.1 port with one confidential client and fixed accounts.

    Use as a context manager (or call :meth:`start` and :meth:`stop`). State is in memory: a restart forgets
    sessions and tokens, and the signing key is new each start.
    """

    def __init__(
        self,
        accounts: Iterable[OidcAccount],
        *,
        redirect_uris: Iterable[str],
        post_logout_redirect_uris: Iterable[str] = (),
        client_id: str = "shielding-test",
        client_secret: str = "shielding-test-secret",
        token_endpoint_auth_method: str = "client_secret_basic",
        client_name: str = "Shielding (test)",
        ttl: Mapping[str, int] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 30.0,
    ) -> None:
        self.accounts = list(accounts)
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uris = list(redirect_uris)
        self.post_logout_redirect_uris = list(post_logout_redirect_uris)
        self.token_endpoint_auth_method = token_endpoint_auth_method
        self._config: dict[str, Any] = {
            "client": {
                "client_id": client_id,
                "client_secret": client_secret,
                "client_name": client_name,
                "redirect_uris": self.redirect_uris,
                "post_logout_redirect_uris": self.post_logout_redirect_uris,
                "token_endpoint_auth_method": token_endpoint_auth_method,
            },
            "accounts": [account.to_json() for account in self.accounts],
            "ttl": dict(ttl or {}),
        }
        self._host = host
        self._port = port
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._lines: list[str] = []
        self._ready = threading.Event()
        self._issuer: str | None = None
        self.startup_seconds: float | None = None

    @property
    def issuer(self) -> str:
        if self._issuer is None:
            raise OidcProviderError("the OIDC provider is not running")
        return self._issuer

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def output(self) -> str:
        """Everything the provider printed so far (stdout and stderr)."""
        return "".join(self._lines)

    def metadata(self) -> dict[str, Any]:
        """The discovery document."""
        response = httpx.get(self.discovery_url, timeout=10)
        response.raise_for_status()
        return dict(response.json())

    def start(self) -> OidcProvider:
        if self._process is not None:
            raise OidcProviderError("the OIDC provider is already running")
        node = check_oidc_provider_installed()
        self._tempdir = tempfile.TemporaryDirectory(prefix="oidc-provider-")
        config_path = Path(self._tempdir.name) / "config.json"
        config_path.write_text(json.dumps(self._config))
        started = time.monotonic()
        command = [node, str(PROVIDER_SCRIPT), "--config", str(config_path), "--host", self._host]
        command += ["--port", str(self._port), "--exit-with-stdin"]
        self._process = subprocess.Popen(
            command,
            cwd=OIDC_DIR,
            stdin=subprocess.PIPE,  # closed when this process dies, and then the provider stops too
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read_output, name="oidc-provider-output", daemon=True)
        self._reader.start()
        deadline = started + self._startup_timeout
        while not self._ready.wait(0.05):
            if self._process.poll() is not None or time.monotonic() > deadline:
                code = self._process.poll()
                self.stop()
                reason = f"exited with code {code}" if code is not None else f"not ready in {self._startup_timeout} s"
                raise OidcProviderError(f"the OIDC provider {reason}; its output:\n{self.output}")
        self.startup_seconds = time.monotonic() - started
        return self

    def _read_output(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.append(line)
            if not self._ready.is_set() and line.startswith(READY_PREFIX):
                self._issuer = line[len(READY_PREFIX) :].strip()
                self._ready.set()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
            if self._reader is not None:
                self._reader.join(timeout=5)
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()
        self._reader = None
        self._issuer = None
        self._ready.clear()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# --- reading the provider's pages ------------------------------------------------------------------------------


@dataclass
class _Form:
    id: str
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class _Page:
    url: str
    status: int
    html: str
    forms: dict[str, _Form]
    marks: dict[str, str]  # text of the elements with id="error" / id="success"

    def form(self, form_id: str) -> _Form | None:
        return self.forms.get(form_id)

    def describe(self) -> str:
        detail = self.marks.get("error") or "no error message on the page"
        return f"{detail} (HTTP {self.status} at {self.url})"


class _PageParser(HTMLParser):
    _MARKS = ("error", "success")
    _SKIPPED_INPUTS = ("submit", "button", "image", "reset", "file")

    def __init__(self, base_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base_url = base_url
        self.forms: dict[str, _Form] = {}
        self.marks: dict[str, str] = {}
        self._form: _Form | None = None
        self._mark: tuple[str, str, int] | None = None  # (id, tag, nesting depth)
        self._mark_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if self._mark is not None and tag == self._mark[1]:
            self._mark = (self._mark[0], tag, self._mark[2] + 1)
        elif self._mark is None and attributes.get("id") in self._MARKS:
            self._mark = (attributes["id"], tag, 1)
            self._mark_text = []
        if tag == "form":
            form_id = attributes.get("id") or f"form-{len(self.forms)}"
            action = urljoin(self.base_url, attributes.get("action") or self.base_url)
            self._form = _Form(form_id, action, (attributes.get("method") or "get").upper())
            self.forms[form_id] = self._form
        elif tag == "input" and self._form is not None and self._is_field(attributes):
            self._form.fields[attributes["name"]] = attributes.get("value", "")

    @classmethod
    def _is_field(cls, attributes: dict[str, str]) -> bool:
        return bool(attributes.get("name")) and attributes.get("type", "text").lower() not in cls._SKIPPED_INPUTS

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        if self._mark is not None and tag == self._mark[1]:
            mark_id, mark_tag, depth = self._mark
            if depth > 1:
                self._mark = (mark_id, mark_tag, depth - 1)
            else:
                self.marks[mark_id] = " ".join("".join(self._mark_text).split())
                self._mark = None

    def handle_data(self, data: str) -> None:
        if self._mark is not None:
            self._mark_text.append(data)


def _parse_page(response: httpx.Response) -> _Page:
    parser = _PageParser(str(response.url))
    parser.feed(response.text)
    parser.close()
    return _Page(str(response.url), response.status_code, response.text, parser.forms, parser.marks)


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


# A flow is a generator: it yields (method, url, form data) and is sent each response; it returns its result.
_Request = tuple[str, str, dict[str, str] | None]
_Flow = Generator[_Request, httpx.Response, Any]


def _submit(form: _Form, **values: str) -> _Request:
    return form.method, form.action, {**form.fields, **values}


def _login_flow(authorize_url: str, username: str, password: str, redirect_uri: str | None) -> _Flow:
    provider = _origin(authorize_url)
    request: _Request = ("GET", authorize_url, None)
    password_sent = False
    for _ in range(_MAX_STEPS):
        response = yield request
        if response.is_redirect:
            location = urljoin(str(response.url), response.headers["location"])
            leaves = _origin(location) != provider
            if leaves or (redirect_uri is not None and location.split("?")[0] == redirect_uri.split("?")[0]):
                return location
            request = ("GET", location, None)
            continue
        page = _parse_page(response)
        login = page.form("login")
        if login is not None and not password_sent:
            request = _submit(login, username=username, password=password)
            password_sent = True
            continue
        if login is not None:
            raise OidcLoginError(f"login refused: {page.describe()}", url=page.url, status=page.status, page=page.html)
        raise OidcLoginError(
            f"the provider did not redirect to the client: {page.describe()}",
            url=page.url,
            status=page.status,
            page=page.html,
        )
    raise OidcLoginError(f"no redirect to the client after {_MAX_STEPS} requests")


def _device_flow(verification_uri: str, username: str, password: str, user_code: str | None) -> _Flow:
    provider = _origin(verification_uri)
    request: _Request = ("GET", verification_uri, None)
    done: set[str] = set()
    for _ in range(_MAX_STEPS):
        response = yield request
        if response.is_redirect:
            location = urljoin(str(response.url), response.headers["location"])
            if _origin(location) != provider:
                raise OidcLoginError(f"the device sign-in left the provider for {location}")
            request = ("GET", location, None)
            continue
        page = _parse_page(response)
        if "success" in page.marks:
            return None
        forms = page.forms
        step: tuple[str, _Request] | None = None
        if "login" in forms:
            step = "login", _submit(forms["login"], username=username, password=password)
        elif "op.deviceInputForm" in forms:
            if user_code is None:
                raise OidcLoginError("the provider asks for the user code, but none was given", url=page.url)
            step = "user code", _submit(forms["op.deviceInputForm"], user_code=user_code)
        elif "op.deviceConfirmForm" in forms:
            step = "confirmation", _submit(forms["op.deviceConfirmForm"])
        elif len(forms) == 1 and page.status == 200 and not page.marks:
            # verification_uri_complete answers with a form that a browser's script submits at once.
            step = "auto-submitted form", _submit(next(iter(forms.values())))
        if step is None or step[0] in done:
            what = f"the {step[0]} was refused" if step else "unexpected page"
            raise OidcLoginError(
                f"device sign-in failed, {what}: {page.describe()}", url=page.url, status=page.status, page=page.html
            )
        done.add(step[0])
        request = step[1]
    raise OidcLoginError(f"device sign-in did not finish after {_MAX_STEPS} requests")


def _logout_flow(end_session_url: str) -> _Flow:
    provider = _origin(end_session_url)
    request: _Request = ("GET", end_session_url, None)
    confirmed = False
    for _ in range(_MAX_STEPS):
        response = yield request
        if response.is_redirect:
            location = urljoin(str(response.url), response.headers["location"])
            if _origin(location) != provider:
                return location
            request = ("GET", location, None)
            continue
        page = _parse_page(response)
        if "success" in page.marks:
            return page.url
        form = page.form("op.logoutForm")
        if form is None or confirmed:
            raise OidcLoginError(f"logout failed: {page.describe()}", url=page.url, status=page.status, page=page.html)
        request = _submit(form, logout="yes")
        confirmed = True
    raise OidcLoginError(f"logout did not finish after {_MAX_STEPS} requests")


def _drive(flow: _Flow, client: httpx.Client) -> Any:
    try:
        method, url, data = next(flow)
        while True:
            response = client.request(method, url, data=data, follow_redirects=False)
            method, url, data = flow.send(response)
    except StopIteration as finished:
        return finished.value


async def _adrive(flow: _Flow, client: httpx.AsyncClient) -> Any:
    try:
        method, url, data = next(flow)
        while True:
            response = await client.request(method, url, data=data, follow_redirects=False)
            method, url, data = flow.send(response)
    except StopIteration as finished:
        return finished.value


# --- the public flows ------------------------------------------------------------------------------------------


def browserless_login(
    authorize_url: str, username: str, password: str, http_client: httpx.Client, *, redirect_uri: str | None = None
) -> str:
    """Sign in at the provider for an authorization request; return the redirect to the client, not followed.

    The returned URL is the client's redirect_uri with ``code``, ``state`` and ``iss`` (or ``error``). The
    ``http_client`` keeps the provider's session cookie, like a browser. Raises :class:`OidcLoginError` when the
    password is refused (the login form comes back with an error) or any other page stops the flow.
    """
    return str(_drive(_login_flow(authorize_url, username, password, redirect_uri), http_client))


async def abrowserless_login(
    authorize_url: str,
    username: str,
    password: str,
    http_client: httpx.AsyncClient,
    *,
    redirect_uri: str | None = None,
) -> str:
    """:func:`browserless_login` with an ``httpx.AsyncClient``."""
    return str(await _adrive(_login_flow(authorize_url, username, password, redirect_uri), http_client))


def complete_device_login(
    verification_uri: str,
    username: str,
    password: str,
    *,
    user_code: str | None = None,
    http_client: httpx.Client | None = None,
) -> None:
    """Do a person's part of the device flow: enter the user code, confirm, sign in; the device's poll then succeeds.

    Pass ``verification_uri_complete`` alone, or ``verification_uri`` and ``user_code``. Without ``http_client``
    a fresh one (a browser with no session) is used. Raises :class:`OidcLoginError` if the provider refuses.
    """
    if http_client is None:
        with httpx.Client(timeout=10) as client:
            _drive(_device_flow(verification_uri, username, password, user_code), client)
    else:
        _drive(_device_flow(verification_uri, username, password, user_code), http_client)


async def acomplete_device_login(
    verification_uri: str,
    username: str,
    password: str,
    *,
    user_code: str | None = None,
    http_client: httpx.AsyncClient | None = None,
) -> None:
    """:func:`complete_device_login` with an ``httpx.AsyncClient``."""
    if http_client is None:
        async with httpx.AsyncClient(timeout=10) as client:
            await _adrive(_device_flow(verification_uri, username, password, user_code), client)
    else:
        await _adrive(_device_flow(verification_uri, username, password, user_code), http_client)


def browserless_logout(end_session_url: str, http_client: httpx.Client) -> str:
    """Follow an RP-initiated logout URL, confirm "sign me out", return the redirect to post_logout_redirect_uri.

    Without a post_logout_redirect_uri in the URL the provider's "signed out" page URL is returned.
    """
    return str(_drive(_logout_flow(end_session_url), http_client))


if __name__ == "__main__":
    ensure_oidc_provider_installed()
    print(f"oidc-provider {_installed_version()} is installed in {OIDC_DIR}")
