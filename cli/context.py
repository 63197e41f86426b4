"""A command's line to the shielding service: where it is, the saved session, and one HTTP client.

The service is `SHIELDING_API_URL`, else the running `shielding dev` (its stack file names `web_url`). A
saved session is used only with the service that issued it, so a token never goes anywhere else. Every
answer that is not a success becomes one exception whose message is the service's own sentence.
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from cli import credentials
from cli.credentials import SavedSession
from cli.errors import CommandError, NotSignedIn, ServiceRefused
from shielding.settings import ConfigurationError, Settings

CONNECT_TIMEOUT_SECONDS = 10.0
# Longer than the service may take to confirm an intake, so its own answer (or its timeout) always arrives.
READ_MARGIN_SECONDS = 30.0


def api_url(settings: Settings) -> str:
    url = settings.api_url
    if not url:
        try:
            stack = json.loads(settings.stack_file().read_text())
        except (OSError, ValueError):
            stack = {}
        url = stack.get("web_url") if isinstance(stack, dict) else None
    if not url or not isinstance(url, str):
        raise ConfigurationError(
            "No shielding service configured: start `shielding dev`, or set SHIELDING_API_URL to the service."
        )
    return url.rstrip("/")


def segment(value: str) -> str:
    """One path segment, whatever the text holds (a request id or uid typed by a person)."""
    return quote(value, safe="")


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if response.status_code == 404 and detail == "Not Found":  # the framework's own: no such route
        return "the shielding service found nothing at that address; check the identifier given"
    if isinstance(detail, str) and detail.strip():
        return detail
    return f"the shielding service answered HTTP {response.status_code} with no explanation"


def answer(response: httpx.Response) -> Any:
    """The JSON of a successful answer; else the service's sentence as an exception."""
    if response.is_success:
        try:
            return response.json() if response.content else None
        except ValueError:
            raise CommandError(
                f"the answer from {response.url.scheme}://{response.url.host} is not the shielding service's; "
                "is SHIELDING_API_URL right?"
            ) from None
    # The service marks "no live session" (never signed in, signed out, idle too long) with a challenge;
    # a 401 without one is a failed sign-in or re-authentication, whose own sentence says so.
    if response.status_code == 401 and "www-authenticate" in response.headers:
        raise NotSignedIn()
    raise ServiceRefused(response.status_code, _detail(response))


class Context:
    """`with Context(settings) as ctx:` then `ctx.get(...)`, `ctx.post(...)`, `ctx.delete(...)`, as the person
    signed in; `anonymous=True` sends no session at all (signing in)."""

    def __init__(self, settings: Settings, *, anonymous: bool = False, url: str | None = None) -> None:
        self.settings = settings
        self.url = url or api_url(settings)
        self.session: SavedSession | None = None
        if not anonymous:
            saved = credentials.load(settings)
            if saved is None:
                raise NotSignedIn()
            if saved.api_url != self.url:  # never send a token to a service other than the one that issued it
                raise NotSignedIn(f"you are signed in to {saved.api_url}, not {self.url}: run `shielding login` first")
            self.session = saved
        headers = {"Accept": "application/json", "User-Agent": "shielding-cli"}
        if self.session is not None:
            headers["Authorization"] = f"Bearer {self.session.token}"
        timeout = httpx.Timeout(settings.intake_timeout_seconds + READ_MARGIN_SECONDS, connect=CONNECT_TIMEOUT_SECONDS)
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, follow_redirects=False)

    def get(self, path: str, **params: str | None) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        return answer(self.http.get(path, params=query))

    def post(self, path: str, **kwargs: Any) -> Any:
        return answer(self.http.post(path, **kwargs))

    def put(self, path: str, **kwargs: Any) -> Any:
        return answer(self.http.put(path, **kwargs))

    def delete(self, path: str, **params: str | None) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        return answer(self.http.delete(path, params=query))

    def __enter__(self) -> Context:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.http.close()
