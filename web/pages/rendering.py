"""Rendering the staff pages: one Jinja2 environment (autoescaped, strict) with the govuk-frontend-jinja macros.

`render(request, "page.html", **context)` gives every template what the layout needs: who is signed in
(`session`, from `web.pages.session`), their CSRF token (`csrf_token`, for every POST form), the navigation their
roles allow, the form's problems (`errors`, a `web.pages.forms.Problems`; empty unless given) and the path;
every page it returns is `Cache-Control: no-store`.

Undefined names fail loudly in our templates (`StrictUndefined`), so a misspelt variable is an error, not an
empty string. The govuk-frontend-jinja macros are written for Jinja's lenient default (an option that is not
given is simply absent), so inside them an undefined value keeps that behaviour. Always pass a macro its
options dict, even an empty one (`govukFooter({})`).
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import govuk_frontend_jinja
import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, PrefixLoader, Undefined
from starlette.datastructures import URL

from shielding import deadlines
from starter.identity import Session
from web.pages.forms import Problems
from web.pages.tasks import tasks_for

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
SERVICE_NAME = "Shielding service"
# The generic header names the organisation; a council service is not on GOV.UK (no crown, no logotype).
ORGANISATION_NAME = "Children's Services"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

ROLE_LABELS = {
    "intake": "intake officer",
    "reviewer": "reviewer",
    "manager": "manager",
    "practitioner": "practitioner",
    "child-protection": "child protection officer",
    "operations": "operations officer",
}

_GOVUK_TEMPLATES = str(Path(govuk_frontend_jinja.__file__).resolve().parent / "templates")
_JINJA = str(Path(jinja2.__file__).resolve().parent)

# How a gender is shown on every page.
GENDER_LABELS = {"female": "Female", "male": "Male", "other": "Other", "unknown": "Not known"}


def _inside_govuk_macro() -> bool:
    """Whether the innermost template running now is one of govuk-frontend-jinja's (its compiled code's filename)."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename != __file__ and not filename.startswith(_JINJA):
            return filename.startswith(_GOVUK_TEMPLATES)
        frame = frame.f_back  # type: ignore[assignment]
    return False


class PageUndefined(Undefined):
    """`StrictUndefined` in our templates; Jinja's default `Undefined` inside the govuk-frontend-jinja macros."""

    __slots__ = ()

    def _strict(self) -> None:
        if not _inside_govuk_macro():
            self._fail_with_undefined_error()

    def __str__(self) -> str:
        self._strict()
        return ""

    def __iter__(self) -> Any:
        self._strict()
        return iter(())

    def __len__(self) -> int:
        self._strict()
        return 0

    def __bool__(self) -> bool:
        self._strict()
        return False

    def __eq__(self, other: object) -> bool:
        self._strict()
        return type(self) is type(other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        self._strict()
        return id(type(self))

    def __contains__(self, item: object) -> bool:
        self._strict()
        return False


def roles_text(roles: Any, conjunction: str = "and") -> str:
    """`{"reviewer", "intake"}` -> "intake officer and reviewer"."""
    labels = [ROLE_LABELS.get(role, role) for role in sorted(roles)]
    if len(labels) <= 1:
        return "".join(labels) or "no role"
    return ", ".join(labels[:-1]) + f" {conjunction} " + labels[-1]


def with_article(noun_phrase: str) -> str:
    """ "intake officer" -> "an intake officer"."""
    return ("an " if noun_phrase[:1].lower() in "aeiou" else "a ") + noun_phrase


def when(instant: datetime) -> str:
    """A London date and time as GOV.UK writes it: "Tuesday 1 December 2026 at 6:03pm"."""
    return deadlines.describe(instant)


def datetime_attribute(instant: datetime) -> str:
    """The `datetime` attribute of a `<time>` element."""
    return instant.isoformat()


def build_environment() -> Environment:
    environment = Environment(
        loader=ChoiceLoader(
            [
                FileSystemLoader(TEMPLATES_DIR),
                PrefixLoader({"govuk_frontend_jinja": PackageLoader("govuk_frontend_jinja")}),
            ]
        ),
        autoescape=True,
        undefined=PageUndefined,
        # Jinja's default whitespace handling: what govuk-frontend-jinja is tested against.
    )
    environment.filters.update(roles=roles_text, when=when, datetime_attribute=datetime_attribute)
    environment.globals.update(service_name=SERVICE_NAME, organisation_name=ORGANISATION_NAME)
    return environment


ENVIRONMENT = build_environment()


def signed_in(request: Request) -> Session | None:
    """The session a page dependency found for this request (`web.pages.session.page_session`), if any."""
    session = getattr(request.state, "session", None)
    return session if isinstance(session, Session) else None


def _navigation(session: Session | None, path: str) -> list[dict[str, Any]]:
    """The tasks the person may do; the one whose path is the longest prefix of this page's is marked."""
    if session is None:
        return []
    tasks = tasks_for(session.roles)
    within = [t.href for t in tasks if path == t.href or path.startswith(t.href.rstrip("/") + "/")]
    active = max(within, key=len, default=None)
    return [{"href": t.href, "text": t.nav_label, "active": t.href == active, "current": t.href == path} for t in tasks]


def render_html(request: Request, template: str, **context: Any) -> str:
    session = signed_in(request)
    context.setdefault("errors", Problems())
    values = {
        "request": request,
        "session": session,
        "csrf_token": session.csrf_token if session else "",
        "navigation": _navigation(session, request.url.path),
        "current_path": request.url.path,
        **context,
    }
    return ENVIRONMENT.get_template(template).render(values)


def render(request: Request, template: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page from `web/templates/<template>`, never cached."""
    return HTMLResponse(render_html(request, template, **context), status_code=status_code, headers=NO_STORE)


def redirect(url: str | URL) -> RedirectResponse:
    """303 See Other (after a form post, the browser GETs the next page), never cached."""
    return RedirectResponse(str(url), status_code=303, headers=NO_STORE)
