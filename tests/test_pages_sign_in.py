"""The sign-in pages in a real browser (Debian's Chromium) against the real service, its database and Temporal.

Every page is checked with axe-core (WCAG 2.0, 2.1, 2.2 at A and AA), every response the browser receives must
be `Cache-Control: no-store`, and the browser must report no error (a Content-Security-Policy violation is one).
Screenshots land in test-artifacts/screenshots/.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Annotated
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from fastapi import Request, Response
from playwright.async_api import Browser, Page, expect
from temporalio.testing import WorkflowEnvironment

from shielding.settings import Settings
from starter.identity import SIGN_IN_FAILED, Session
from tests.helpers.browser import browser_page, check_accessibility, launched_chromium, save_screenshot
from tests.helpers.webapp import RunningApp, add_staff
from web.assets import ensure_frontend_installed
from web.deps import SESSION_COOKIE
from web.pages.rendering import render
from web.pages.routing import page_router
from web.pages.session import PRE_SESSION_COOKIE, PRE_SESSION_FIELD, may

pytestmark = pytest.mark.devserver

PASSWORD = "correct-horse-battery-staple"
# Set up, never reached: the sign-in page only links to it.
SINGLE_SIGN_ON = {
    "oidc_issuer": "https://sso.council.example",
    "oidc_client_id": "shielding",
    "oidc_client_secret": "not-used-by-these-tests",
}
FORGED_FORM = """<!DOCTYPE html><html lang="en"><head><title>Elsewhere</title></head><body><main>
<form method="post" action="{action}">{fields}<button>Continue</button></form></main></body></html>"""

# A page behind a permission, for the access-denied page (the real ones come with the next pages).
audit_only = page_router()


@audit_only.get("/test-only/audit")
async def audit_page(request: Request, session: Annotated[Session, may("audit")]) -> Response:
    return render(request, "problem.html", heading="Audit", paragraphs=["Only for those who may audit."])


@pytest.fixture(scope="module")
def web_settings(settings: Settings, dev_env: WorkflowEnvironment) -> Settings:
    ensure_frontend_installed()
    return settings.model_copy(update={"temporal_address": dev_env.client.service_client.config.target_host})


@pytest.fixture(scope="module")
def app(web_settings: Settings) -> Iterator[RunningApp]:
    with RunningApp(web_settings, routers=[audit_only]) as running:
        yield running


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with launched_chromium() as chromium:
        yield chromium


@pytest.fixture
async def intake_officer(pool: asyncpg.Pool) -> str:
    return await add_staff(pool, f"ivy-{uuid.uuid4().hex[:6]}", PASSWORD, "intake")


def path_of(page: Page) -> str:
    parts = urlsplit(page.url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def sign_in(page: Page, name: str, password: str) -> None:
    await page.goto("/sign-in")
    await page.get_by_label("User name").fill(name)
    await page.get_by_label("Password", exact=True).fill(password)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await page.wait_for_load_state()


async def forged_post(page: Page, action: str, fields: dict[str, str]) -> None:
    """Submit a form to `action` from a page that is not the service's (about:blank: another origin)."""
    inputs = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in fields.items())
    await page.goto("about:blank")
    await page.set_content(FORGED_FORM.format(action=action, fields=inputs))
    await page.get_by_role("button", name="Continue").click()
    await page.wait_for_load_state()


async def test_a_wrong_password_is_explained_on_the_form(
    browser: Browser, app: RunningApp, intake_officer: str
) -> None:
    async with browser_page(browser, app.url) as (page, watch):
        await page.goto("/")
        assert path_of(page) == "/sign-in", "the start page sends someone not signed in to sign in"
        assert await page.title() == "Sign in – Shielding service – Children's Services"
        await expect(page.locator(".govuk-error-summary")).to_have_count(0)
        await check_accessibility(page)

        await page.get_by_label("User name").fill(intake_officer)
        await page.get_by_label("Password", exact=True).fill("not-the-password-at-all")
        await page.get_by_role("button", name="Sign in", exact=True).click()
        await page.wait_for_load_state()

        assert path_of(page) == "/sign-in"
        assert (await page.title()).startswith("Error: Sign in – ")
        summary = page.locator(".govuk-error-summary")
        await expect(summary.get_by_role("heading")).to_have_text("There is a problem")
        link = summary.get_by_role("link", name=SIGN_IN_FAILED)
        await expect(link).to_have_attribute("href", "#password")
        await expect(page.locator("#password-error")).to_have_text(f"Error: {SIGN_IN_FAILED}")
        await expect(page.locator("#name-error")).to_have_count(0)
        await expect(page.get_by_label("User name")).to_have_value(intake_officer)
        await expect(page.get_by_label("Password", exact=True)).to_have_value("")
        await check_accessibility(page)
        await save_screenshot(page, "sign-in-with-error")

        await link.click()
        await expect(page.get_by_label("Password", exact=True)).to_be_focused()
        assert all(c["name"] != SESSION_COOKIE for c in await page.context.cookies()), "nobody is signed in"
    watch.assert_clean()


async def test_signing_in_names_the_person_and_their_role_then_signing_out_ends_it(
    browser: Browser, app: RunningApp, intake_officer: str
) -> None:
    async with browser_page(browser, app.url) as (page, watch):
        await sign_in(page, intake_officer, PASSWORD)

        assert path_of(page) == "/"
        banner = page.locator(".app-signed-in-bar")
        await expect(banner).to_contain_text(f"Signed in as {intake_officer} (intake officer)")
        await expect(page.get_by_role("heading", level=1)).to_have_text("What do you need to do?")
        main = page.get_by_role("main")
        await expect(main.get_by_role("link", name="Take a shielding request")).to_have_attribute(
            "href", "/requests/new"
        )
        await expect(main.get_by_role("link", name="Find a child's record")).to_be_visible()
        for not_theirs in ("Review shielded records", "Check the audit log", "Manage staff accounts"):
            await expect(page.get_by_role("link", name=not_theirs)).to_have_count(0)
        await expect(page.get_by_role("navigation", name="Tasks").get_by_role("link", name="Reviews")).to_have_count(0)
        # The module script ran under the CSP (no inline script needed).
        await expect(page.locator("body")).to_have_class("govuk-template__body js-enabled govuk-frontend-supported")
        cookie = next(c for c in await page.context.cookies() if c["name"] == SESSION_COOKIE)
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
        assert all(c["name"] != PRE_SESSION_COOKIE for c in await page.context.cookies()), "used up at sign-in"
        await check_accessibility(page)
        await save_screenshot(page, "start-page")

        await banner.get_by_role("button", name="Sign out").click()
        await page.wait_for_load_state()
        assert path_of(page) == "/sign-in?session=signed-out"
        notice = page.locator(".govuk-notification-banner")
        await expect(notice).to_contain_text("You have signed out")
        await expect(page.locator(".app-signed-in-bar")).to_have_count(0)
        await check_accessibility(page)
        await save_screenshot(page, "signed-out")

        await page.goto("/")
        assert path_of(page) == "/sign-in", "the session ended: the start page is not shown again"
    watch.assert_clean()


async def test_the_pages_work_without_javascript(browser: Browser, app: RunningApp, intake_officer: str) -> None:
    async with browser_page(browser, app.url, javascript=False) as (page, watch):
        await page.goto("/sign-in")
        await page.get_by_role("button", name="Sign in", exact=True).click()
        await page.wait_for_load_state()
        summary = page.locator(".govuk-error-summary")
        await expect(summary.get_by_role("link")).to_have_text(["Enter your user name", "Enter your password"])
        await expect(page.locator("#name-error")).to_have_text("Error: Enter your user name")
        await expect(page.locator("#password-error")).to_have_text("Error: Enter your password")

        await sign_in(page, intake_officer, PASSWORD)
        assert path_of(page) == "/"
        await expect(page.locator(".app-signed-in-bar")).to_contain_text(f"Signed in as {intake_officer}")
        await page.get_by_role("button", name="Sign out").click()
        await page.wait_for_load_state()
        await expect(page.locator(".govuk-notification-banner")).to_contain_text("You have signed out")
    watch.assert_no_store()


async def test_an_ended_session_says_so_on_the_sign_in_page(browser: Browser, app: RunningApp) -> None:
    async with browser_page(browser, app.url) as (page, watch):
        await page.context.add_cookies([{"name": SESSION_COOKIE, "value": "expired-or-made-up", "url": app.url}])
        await page.goto("/")
        assert path_of(page) == "/sign-in?session=ended"
        await expect(page.locator(".govuk-notification-banner")).to_contain_text("You have been signed out")
        assert all(c["name"] != SESSION_COOKIE for c in await page.context.cookies()), "the dead cookie is removed"
        await check_accessibility(page)
    watch.assert_clean()


async def test_a_sign_in_post_without_the_pre_session_token_is_refused(
    browser: Browser, app: RunningApp, intake_officer: str
) -> None:
    sign_in_url = app.url + "/sign-in"
    credentials = {"name": intake_officer, "password": PASSWORD}
    async with httpx.AsyncClient() as client:
        # No cookie, no field; a cookie but no field; a field but no cookie; a field that is not the cookie.
        no_token = await client.post(sign_in_url, data=credentials)
        form = await client.get(sign_in_url)
        token = form.cookies[PRE_SESSION_COOKIE]
        assert f'name="{PRE_SESSION_FIELD}" value="{token}"' in form.text
        cookie_only = await client.post(sign_in_url, data=credentials)
        client.cookies.clear()
        field_only = await client.post(sign_in_url, data={**credentials, PRE_SESSION_FIELD: token})
        other = await client.post(
            sign_in_url,
            data={**credentials, PRE_SESSION_FIELD: "x" * len(token)},
            headers={"Cookie": f"{PRE_SESSION_COOKIE}={token}"},
        )
    for refused in (no_token, cookie_only, field_only, other):
        assert refused.status_code == 403, refused.text
        assert "This form could not be checked" in refused.text
        assert SESSION_COOKIE not in refused.cookies
        assert refused.headers["cache-control"] == "no-store"

    # In a browser: a page elsewhere posts the attacker's own credentials to sign the victim in as them.
    async with browser_page(browser, app.url) as (page, watch):
        await page.goto("/sign-in")
        await forged_post(page, sign_in_url, credentials)
        await expect(page.get_by_role("heading", level=1)).to_have_text("This form could not be checked")
        await expect(page.get_by_role("main")).to_contain_text("You have not been signed in")
        await check_accessibility(page)
        await page.goto("/")
        assert path_of(page) == "/sign-in", "the forged post signed nobody in"
    watch.assert_clean()


async def test_a_sign_out_post_without_the_csrf_token_is_refused(
    browser: Browser, app: RunningApp, intake_officer: str
) -> None:
    async with browser_page(browser, app.url) as (page, watch):
        await sign_in(page, intake_officer, PASSWORD)
        assert path_of(page) == "/"

        missing = await page.request.post(app.url + "/sign-out", form={}, max_redirects=0)
        wrong = await page.request.post(app.url + "/sign-out", form={"csrf_token": "not-it"}, max_redirects=0)
        for refused in (missing, wrong):
            assert refused.status == 403
            assert "This form could not be checked" in await refused.text()
            assert refused.headers["cache-control"] == "no-store"

        # The refusal page, as a browser shows it to someone whose form lost its token.
        await page.goto("/")
        await page.locator('.app-signed-in-bar input[name="csrf_token"]').evaluate("input => input.remove()")
        await page.get_by_role("button", name="Sign out").click()
        await page.wait_for_load_state()
        await expect(page.get_by_role("heading", level=1)).to_have_text("This form could not be checked")
        await expect(page.get_by_role("main")).to_contain_text("Nothing was changed")
        await check_accessibility(page)

        # From another site the session cookie (SameSite=Lax) is not even sent: nothing happens either.
        await forged_post(page, app.url + "/sign-out", {})
        await page.goto("/")
        await expect(page.locator(".app-signed-in-bar")).to_contain_text(f"Signed in as {intake_officer}")
    watch.assert_clean()


async def test_a_page_the_role_does_not_allow_is_its_own_page(
    browser: Browser, app: RunningApp, intake_officer: str
) -> None:
    async with browser_page(browser, app.url) as (page, watch):
        await page.goto("/test-only/audit")
        assert path_of(page) == "/sign-in"
        await sign_in(page, intake_officer, PASSWORD)
        response = await page.goto("/test-only/audit")
        assert response is not None and response.status == 403
        await expect(page.get_by_role("heading", level=1)).to_have_text("You cannot do this")
        await expect(page.get_by_role("main")).to_contain_text(
            "Only a child protection officer, manager or reviewer can see the audit log. "
            "Your account is set up as an intake officer."
        )
        await expect(page.locator(".govuk-error-summary")).to_have_count(0)
        assert not (await page.title()).startswith("Error:")
        await check_accessibility(page)
        await save_screenshot(page, "access-denied")

        response = await page.goto("/no-such-page-here")
        assert response is not None and response.status == 404
    watch.assert_no_store()


async def test_single_sign_on_is_offered_when_it_is_set_up(
    browser: Browser, app: RunningApp, web_settings: Settings
) -> None:
    async with browser_page(browser, app.url) as (page, _):
        await page.goto("/sign-in")
        await expect(page.get_by_role("button", name="Sign in with your council account")).to_have_count(0)

    with RunningApp(web_settings.model_copy(update=SINGLE_SIGN_ON)) as sso_app:
        async with browser_page(browser, sso_app.url) as (page, watch):
            await page.goto("/sign-in")
            link = page.get_by_role("button", name="Sign in with your council account")
            await expect(link).to_have_attribute("href", "/auth/oidc/login")
            await check_accessibility(page)
            await save_screenshot(page, "sign-in-with-single-sign-on")
        watch.assert_clean()


async def test_the_assets_come_from_the_installed_packages_without_gds_transport(app: RunningApp) -> None:
    async with httpx.AsyncClient(base_url=app.url) as client:
        css = await client.get("/assets/application.css")
        script = await client.get("/assets/application.mjs")
        govuk = await client.get("/assets/govuk/govuk-frontend.min.js")
        moj_image = await client.get("/assets/images/icon-progress-tick.svg")
        missing = await client.get("/assets/nothing-here.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "GDS Transport" not in css.text and "font-family:arial,sans-serif" in css.text
    assert ".app-signed-in-bar" in css.text
    assert script.status_code == 200 and "initAll" in script.text
    assert govuk.status_code == 200 and "export{" in govuk.text
    assert moj_image.status_code == 200
    assert missing.status_code == 404
    for response in (css, script, govuk, moj_image, missing):
        assert response.headers["cache-control"] == "no-store"


async def test_signing_in_ends_the_session_the_browser_still_held(app: RunningApp, pool: asyncpg.Pool) -> None:
    first = await add_staff(pool, f"ravi-{uuid.uuid4().hex[:6]}", PASSWORD, "reviewer")
    second = await add_staff(pool, f"priya-{uuid.uuid4().hex[:6]}", PASSWORD, "practitioner")
    async with httpx.AsyncClient(base_url=app.url) as client:
        await client.get("/sign-in")
        token = client.cookies[PRE_SESSION_COOKIE]
        signed_in = await client.post("/sign-in", data={"name": first, "password": PASSWORD, PRE_SESSION_FIELD: token})
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"
        first_session = client.cookies[SESSION_COOKIE]
        again = await client.get("/sign-in")
        assert again.status_code == 303 and again.headers["location"] == "/", "signed in already: the start page"

        # A sign-in page opened before, posted now by someone else at the same browser.
        cookies = f"{PRE_SESSION_COOKIE}={token}; {SESSION_COOKIE}={first_session}"
    async with httpx.AsyncClient(base_url=app.url) as browser_tab:
        switched = await browser_tab.post(
            "/sign-in",
            data={"name": second, "password": PASSWORD, PRE_SESSION_FIELD: token},
            headers={"Cookie": cookies},
        )
        assert switched.status_code == 303 and switched.headers["location"] == "/"
        second_session = switched.cookies[SESSION_COOKIE]
        assert second_session != first_session
        start = await browser_tab.get("/", headers={"Cookie": f"{SESSION_COOKIE}={second_session}"})
        assert start.status_code == 200 and f"Signed in as <strong>{second}</strong>" in start.text
        ended = await browser_tab.get("/", headers={"Cookie": f"{SESSION_COOKIE}={first_session}"})
        assert ended.status_code == 303 and ended.headers["location"] == "/sign-in?session=ended"


@pytest.mark.parametrize(
    ("name", "password"),
    [("ivy\x00", PASSWORD), ("ivy", "pass\x00word-long-enough"), ("n" * 5000, PASSWORD), ("ivy", "p" * 5000)],
    ids=["nul-name", "nul-password", "long-name", "long-password"],
)
async def test_hostile_sign_in_text_is_a_failed_sign_in_not_a_fault(app: RunningApp, name: str, password: str) -> None:
    async with httpx.AsyncClient(base_url=app.url) as client:
        await client.get("/sign-in")
        token = client.cookies[PRE_SESSION_COOKIE]
        answer = await client.post("/sign-in", data={"name": name, "password": password, PRE_SESSION_FIELD: token})
    assert answer.status_code == 200
    assert "There is a problem" in answer.text and SIGN_IN_FAILED in answer.text
    assert SESSION_COOKIE not in answer.cookies


async def test_an_address_no_page_answers_is_a_page_not_found_page_and_the_api_keeps_json(
    browser: Browser, app: RunningApp, intake_officer: str
) -> None:
    async with browser_page(browser, app.url) as (page, _):
        await sign_in(page, intake_officer, PASSWORD)
        answer = await page.goto("/no-such-page")
        assert answer is not None and answer.status == 404
        assert answer.headers["cache-control"] == "no-store"
        await expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
        await expect(page.get_by_role("main")).to_contain_text("check it is correct")
        await check_accessibility(page)
        await save_screenshot(page, "page-not-found")
    async with httpx.AsyncClient(base_url=app.url) as http:
        signed_out = await http.get("/requests/SR-ABCDEFGHJKLM/nothing-here")
        assert signed_out.status_code == 404 and "Page not found" in signed_out.text
        api = await http.get("/api/no-such-route")
        assert api.status_code == 404 and api.headers["content-type"].startswith("application/json")
