"""The pages' foundations without a server: strict templates, the govuk-frontend-jinja macros, forms, tasks, assets."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from jinja2 import UndefinedError
from starlette.requests import Request

from shielding.access import PERMISSIONS, ROLES
from starter.identity import Session
from web import assets
from web.pages.forms import Problems
from web.pages.rendering import ENVIRONMENT, TEMPLATES_DIR, render, render_html, roles_text, with_article
from web.pages.tasks import ACTION_TEXT, TASKS, tasks_for


def page_request(path: str = "/", session: Session | None = None) -> Request:
    request = Request({"type": "http", "method": "GET", "path": path, "query_string": b"", "headers": []})
    if session is not None:
        request.state.session = session
    return request


def session_of(*roles: str) -> Session:
    return Session(
        name="ivy",
        roles=frozenset(roles),
        kind="cookie",
        csrf_token="the-csrf-token",
        auth_method="password",
        authenticated_at=datetime.now(UTC),
        token_digest="digest",
    )


@pytest.mark.parametrize("source", ["{{ misspelt }}", "{% if misspelt %}x{% endif %}", "{{ values.misspelt }}"])
def test_an_undefined_name_in_our_templates_is_an_error(source: str) -> None:
    with pytest.raises(UndefinedError):
        ENVIRONMENT.from_string(source).render(values={})


def test_the_govuk_macros_keep_their_options_optional_and_escape_what_they_are_given() -> None:
    html = ENVIRONMENT.from_string(
        '{% from "govuk_frontend_jinja/components/notification-banner/macro.html" import govukNotificationBanner %}'
        '{% from "govuk_frontend_jinja/components/input/macro.html" import govukInput %}'
        "{{ govukNotificationBanner({'text': 'Saved'}) }}"
        "{{ govukInput({'id': 'name', 'name': 'name', 'label': {'text': 'Name'}, 'value': value}) }}"
    ).render(value='"><script>alert(1)</script>')
    assert 'class="govuk-notification-banner"' in html and "Saved" in html
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_every_page_template_is_valid_jinja() -> None:
    for path in sorted(TEMPLATES_DIR.rglob("*.html")):
        ENVIRONMENT.get_template(path.relative_to(TEMPLATES_DIR).as_posix())


def test_the_layout_titles_the_page_and_shows_the_error_summary_only_with_errors() -> None:
    context = {
        "values": {"name": ""},
        "notice": None,
        "idle_minutes": "15",
        "pre_session_field": "pre_session_token",
        "pre_session_token": "t",
        "single_sign_on_href": None,
    }
    clean = render_html(page_request("/sign-in"), "sign_in.html", **context)
    assert "<title>Sign in – Shielding service – Children&#39;s Services</title>" in clean
    assert '<html lang="en-GB"' in clean and "govuk-error-summary" not in clean
    assert 'href="#main-content"' in clean and 'id="main-content"' in clean
    assert "<script>" not in clean and 'type="module" src="/assets/application.mjs"' in clean
    assert "govuk-header__logotype" not in clean and "govuk-generic-header" in clean

    problems = Problems()
    problems.add("name", "Enter your user name")
    problems.add("name", "a second problem with the same field is not shown")
    with_errors = render_html(page_request("/sign-in"), "sign_in.html", **{**context, "errors": problems})
    assert "<title>Error: Sign in – " in with_errors
    assert "There is a problem" in with_errors and '<a href="#name">Enter your user name</a>' in with_errors
    assert "a second problem" not in with_errors


def test_a_signed_in_page_names_the_person_and_carries_the_csrf_token() -> None:
    response = render(page_request("/", session_of("reviewer", "intake")), "start.html", tasks=tasks_for([]))
    html = bytes(response.body).decode()
    assert response.headers["cache-control"] == "no-store"
    assert "Signed in as <strong>ivy</strong> (intake officer and reviewer)" in html
    assert '<input type="hidden" name="csrf_token" value="the-csrf-token">' in html
    assert 'href="/reviews"' in html and 'href="/users"' not in html, "the navigation shows what the roles allow"


def test_the_navigation_marks_the_section_of_the_page() -> None:
    html = render_html(page_request("/requests/new", session_of("intake")), "start.html", tasks=[])
    assert 'href="/requests/new" aria-current="page"' in html
    assert 'href="/requests" aria-current' not in html, "only the longest matching task is marked"


def test_every_task_and_action_text_names_a_permission() -> None:
    assert {task.action for task in TASKS} <= set(PERMISSIONS)
    assert set(ACTION_TEXT) == set(PERMISSIONS)
    assert len({task.href for task in TASKS}) == len(TASKS)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_is_offered_exactly_the_tasks_it_may_do(role: str) -> None:
    offered = {task.action for task in tasks_for([role])}
    assert offered == {task.action for task in TASKS if role in PERMISSIONS[task.action]}
    assert offered, f"{role} is offered nothing"


def test_roles_read_as_words() -> None:
    assert roles_text({"intake"}) == "intake officer"
    assert roles_text({"reviewer", "manager", "child-protection"}, "or") == (
        "child protection officer, manager or reviewer"
    )
    assert with_article("intake officer") == "an intake officer" and with_article("manager") == "a manager"


def test_the_front_end_is_installed_from_the_lock_file_and_built_once() -> None:
    assets.ensure_frontend_installed()
    assert assets.ensure_frontend_installed() == [], "nothing to do the second time"
    locked = Path(assets.PACKAGE_LOCK).read_text()
    assert '"node_modules/govuk-frontend": {\n      "version": "6.3.' in locked
    assert assets.AXE_SCRIPT.is_file() and assets.STYLESHEET.is_file()
    assert "GDS Transport" not in assets.STYLESHEET.read_text()
