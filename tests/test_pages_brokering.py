"""Brokering contact, in a real browser (Debian's Chromium) against the real service, its database and the dev
server, with a worker running ContactBrokeringWorkflow.

A practitioner finds a shielded child whose hidden details are canaries, follows "Ask the team to broker
contact", meets the error summary, then sends the request; a manager sees it in the queue, takes it (and only
then sees the withheld details), meets the close form's errors and closes it; the practitioner reads the outcome.
Every page the practitioner's browser received, and every URL either browser asked for, is scanned for every
canary (and the purpose text, which only the manager who took it may read). Every page passes axe-core.
Screenshots: contact-ask*.png, contact-requests.png, contact-request-*.png.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from playwright.async_api import Browser, Page, Response, expect
from temporalio.testing import WorkflowEnvironment

from activities.brokering import BrokeringActivities
from activities.shielding import ShieldingActivities
from shielding import store
from shielding.settings import Settings
from tests.helpers.browser import browser_page, check_accessibility, launched_chromium, save_screenshot
from tests.helpers.webapp import RunningApp, add_staff
from tests.test_brokering import Canaries, canary_child, shield
from web.assets import ensure_frontend_installed
from worker.main import build_worker

pytestmark = pytest.mark.devserver
PASSWORD = "correct-horse-battery-staple"
ASKED_TAKEN_SEEN_CLOSED = (
    "Contact asked for (brokering)",
    "Contact request taken",
    "Brokering: withheld details seen",
    "Contact request closed",
)


@pytest.fixture(scope="module")
def task_queue_name() -> str:
    return f"tq-pages-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def web_settings(settings: Settings, dev_env: WorkflowEnvironment, task_queue_name: str) -> Settings:
    ensure_frontend_installed()
    return settings.model_copy(
        update={"temporal_address": dev_env.client.service_client.config.target_host, "task_queue": task_queue_name}
    )


@pytest.fixture(scope="module")
def app(web_settings: Settings) -> Iterator[RunningApp]:
    with RunningApp(web_settings) as running:
        yield running


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with launched_chromium() as chromium:
        yield chromium


async def sign_in(page: Page, name: str) -> None:
    await page.goto("/sign-in")
    await page.get_by_label("User name").fill(name)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await page.wait_for_load_state()
    await expect(page.locator(".app-signed-in-bar")).to_contain_text(f"Signed in as {name}")


def _leaks(text: str, values: dict[str, str]) -> list[str]:
    lowered = text.lower()
    return [name for name, value in values.items() if value.lower() in lowered]


async def test_ask_take_and_close_through_the_pages_without_a_hidden_detail_reaching_the_asker(
    browser: Browser,
    app: RunningApp,
    dev_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    settings: Settings,
    task_queue_name: str,
) -> None:
    canaries = Canaries.new()
    child = canary_child(canaries)
    await store.import_children(pool, [child], actor="test-import")
    await shield(pool, child.uid, canaries.reason)
    practitioner = await add_staff(pool, f"priya-{uuid.uuid4().hex[:6]}", PASSWORD, "practitioner")
    manager = await add_staff(pool, f"morgan-{uuid.uuid4().hex[:6]}", PASSWORD, "manager")
    secret = canaries.values()
    worker = build_worker(
        dev_env.client,
        ShieldingActivities(pool),
        settings.model_copy(update={"task_queue": task_queue_name}),
        brokering=BrokeringActivities(pool),
    )
    asker_pages: list[str] = []
    urls: list[str] = []

    async def keep(response: Response) -> None:
        urls.append(response.url)
        if response.request.resource_type == "document" and not 300 <= response.status < 400:
            asker_pages.append(await response.text())

    async with worker, browser_page(browser, app.url) as (page, watch):
        page.on("response", keep)
        await sign_in(page, practitioner)
        await page.goto(f"/children/{child.uid}")
        await page.get_by_role("link", name="Ask the team to broker contact").click()
        await page.wait_for_load_state()
        assert page.url.endswith(f"/children/{child.uid}/contact")
        await check_accessibility(page)
        await save_screenshot(page, "contact-ask")

        # Nothing filled in: the error summary and each field's own message.
        await page.get_by_role("button", name="Send request").click()
        await page.wait_for_load_state()
        assert (await page.title()).startswith("Error: ")
        summary = page.locator(".govuk-error-summary")
        await expect(summary).to_contain_text("There is a problem")
        await expect(summary).to_contain_text("Enter why you need to contact the child or their family")
        await expect(summary).to_contain_text("Select whether the request is urgent or routine")
        await expect(summary).to_contain_text("Enter your email address or phone number")
        await expect(page.locator("#purpose-error")).to_contain_text("Enter why you need to contact")
        await check_accessibility(page)
        await save_screenshot(page, "contact-ask-errors")

        await page.get_by_label("Why do you need to contact the child or their family?").fill(canaries.purpose)
        await page.get_by_label("Urgent", exact=True).check()
        await page.get_by_label("Email address").fill("nurse@school.example.org")
        await page.get_by_role("button", name="Send request").click()
        await page.wait_for_load_state()
        await expect(page.locator(".govuk-panel")).to_contain_text("Request sent")
        contact_request_id = page.url.split("/contact-requests/")[1].split("?")[0]
        assert contact_request_id.startswith("CR-")
        await check_accessibility(page)
        await save_screenshot(page, "contact-request-asked")
        watch.assert_clean()

        async with browser_page(browser, app.url) as (manager_page, manager_watch):
            manager_page.on("response", lambda r: urls.append(r.url))
            await sign_in(manager_page, manager)
            await manager_page.goto("/contact-requests")
            await expect(manager_page.locator("#contact-requests")).to_contain_text(contact_request_id)
            await check_accessibility(manager_page)
            await save_screenshot(manager_page, "contact-requests")
            await manager_page.get_by_role("link", name=contact_request_id).click()
            await manager_page.wait_for_load_state()
            # Before taking it: no withheld detail, no purpose.
            assert _leaks(await manager_page.content(), secret) == []
            await check_accessibility(manager_page)
            await manager_page.get_by_role("button", name="Take this request").click()
            await manager_page.wait_for_load_state()
            await expect(manager_page.locator("#withheld-details")).to_contain_text(canaries.address)
            await expect(manager_page.locator("#purpose")).to_contain_text(canaries.purpose)
            await check_accessibility(manager_page)
            await save_screenshot(manager_page, "contact-request-taken")

            await manager_page.get_by_role("button", name="Close the request").click()
            await manager_page.wait_for_load_state()
            await expect(manager_page.locator(".govuk-error-summary")).to_contain_text("Select the outcome")
            await expect(manager_page.locator(".govuk-error-summary")).to_contain_text("Enter the reason")
            await check_accessibility(manager_page)
            await manager_page.get_by_label("Passed on", exact=True).check()
            await manager_page.get_by_label("Reason").fill("Spoke to the refuge manager")
            await manager_page.get_by_role("button", name="Close the request").click()
            await manager_page.wait_for_load_state()
            await expect(manager_page.locator("#contact-request")).to_contain_text("Passed on")
            assert _leaks(await manager_page.content(), secret) == []  # closed: the details are gone
            # Everything is in the audit log under the contact request and under the child.
            for query in (f"request={contact_request_id}", f"child={child.uid}"):
                await manager_page.goto(f"/audit?{query}")
                entries = manager_page.locator("#entries")
                for label in ASKED_TAKEN_SEEN_CLOSED:
                    await expect(entries).to_contain_text(label)
            await check_accessibility(manager_page)
            manager_watch.assert_clean()

        await page.goto(f"/contact-requests/{contact_request_id}")
        await expect(page.locator("#told")).to_contain_text("passed your details on")
        await check_accessibility(page)
        await save_screenshot(page, "contact-request-outcome")
        watch.assert_clean()

    for html in asker_pages:
        found = _leaks(html, {k: v for k, v in secret.items() if k != "purpose"})
        assert found == [], f"hidden details reached the asker's browser: {found}"
    # The purpose came back to the asker only in the form they typed it into (re-shown after the errors): never
    # on a page about the request.
    assert not any(canaries.purpose.lower() in h.lower() for h in asker_pages if "Request sent" in h)
    for url in urls:
        assert _leaks(url, secret) == [], url
        assert "nurse@school" not in url
