"""A whole lifecycle through the pages, in a real browser (Debian's Chromium) against the real service, its
database, the Temporal dev server and a worker in this process: an intake officer takes a call for two siblings
and uploads the written form; a reviewer sees the 7-day review fall due, approves it, then unshields the request.

Nothing is done through the API or the database: the browser does it all (the database is only read, to check).
The 7-day review falls due seconds after shielding: `shielding.deadlines.review_7_day_at` is replaced for this
module (the worker's workflows read it through the sandbox, passed through). Every page is checked with axe-core;
every response the browser receives is scanned for the children's hidden details, each unique to this run.
Screenshots land in test-artifacts/screenshots/lifecycle-NN-*.png.
"""

from __future__ import annotations

import asyncio
import html
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta

import asyncpg
import pytest
from playwright.async_api import Browser, Error, Page, Response, expect
from temporalio.testing import WorkflowEnvironment

from shielding import deadlines, messages, store
from shielding.domain import ChildRecord, Gender
from shielding.settings import Settings
from shielding.store import reviews as review_store
from tests.helpers.browser import browser_page, check_accessibility, launched_chromium, save_screenshot
from tests.helpers.servers import running_worker
from tests.helpers.webapp import RunningApp, add_staff
from tests.test_pages_intake import canary_child, click, fill_the_call, find_and_add, hidden_values, path_of
from web.assets import ensure_frontend_installed

pytestmark = pytest.mark.devserver

PASSWORD = "correct-horse-battery-staple"
# Long enough for the call and the form to come first; the review then falls due while the reviewer waits.
REVIEW_AFTER = timedelta(seconds=20)
FALL_DUE_TIMEOUT = 60.0
TASK_QUEUE = f"pages-lifecycle-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def review_clock() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(deadlines, "review_7_day_at", lambda shielded_at: shielded_at + REVIEW_AFTER)
        patch.setattr(review_store, "PAGE_SIZE", 500)
        yield


@pytest.fixture(scope="module")
def web_settings(settings: Settings, dev_env: WorkflowEnvironment) -> Settings:
    ensure_frontend_installed()
    return settings.model_copy(
        update={"temporal_address": dev_env.client.service_client.config.target_host, "task_queue": TASK_QUEUE}
    )


@pytest.fixture(scope="module")
async def worker(
    review_clock: None, dev_env: WorkflowEnvironment, pool: asyncpg.Pool, web_settings: Settings
) -> AsyncIterator[None]:
    async with running_worker(dev_env.client, pool, web_settings, TASK_QUEUE):
        yield


@pytest.fixture(scope="module")
def app(web_settings: Settings, worker: None) -> Iterator[RunningApp]:
    with RunningApp(web_settings) as running:
        yield running


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with launched_chromium() as chromium:
        yield chromium


class BodiesSeen:
    """Every response body the browser received (pages, styles, scripts), read as it arrives."""

    def __init__(self) -> None:
        self._reads: list[asyncio.Task[None]] = []
        self.bodies: list[tuple[str, str]] = []

    def on_response(self, response: Response) -> None:
        if not 300 <= response.status < 400:
            self._reads.append(asyncio.ensure_future(self._read(response)))

    async def _read(self, response: Response) -> None:
        try:
            body = await response.body()
        except Error:  # gone with its page
            return
        self.bodies.append((response.url, html.unescape(body.decode("utf-8", errors="replace"))))

    async def assert_never_shown(self, children: list[ChildRecord]) -> None:
        await asyncio.gather(*self._reads)
        assert self.bodies, "no response was seen"
        for url, body in self.bodies:
            for child in children:
                for value in hidden_values(child):
                    assert value not in body, f"{url} shows a hidden detail of {child.uid}: {value!r}"


class Steps:
    """Axe on the page as it is now, and its screenshot, numbered in order."""

    def __init__(self, page: Page) -> None:
        self.page, self.count, self.names = page, 0, []

    async def check(self, name: str) -> None:
        await check_accessibility(self.page)
        self.count += 1
        self.names.append(f"lifecycle-{self.count:02d}-{name}")
        await save_screenshot(self.page, self.names[-1])


async def sign_in(page: Page, steps: Steps, name: str, label: str) -> None:
    await page.goto("/sign-in")
    await steps.check(f"sign-in-{label}")
    await page.get_by_label("User name").fill(name)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await click(page, "Sign in")
    assert path_of(page) == "/", f"{name} did not sign in"
    await expect(page.locator(".app-signed-in-bar")).to_contain_text(f"Signed in as {name}")
    await steps.check(f"start-{label}")


async def test_a_whole_lifecycle_through_the_pages(browser: Browser, app: RunningApp, pool: asyncpg.Pool) -> None:
    tag = uuid.uuid4().hex[:6]
    officer = await add_staff(pool, f"ivy-{tag}", PASSWORD, "intake")
    reviewer = await add_staff(pool, f"ravi-{tag}", PASSWORD, "reviewer")
    family = "Hartley-" + "".join(chr(ord("a") + int(ch, 16) % 26) for ch in uuid.uuid4().hex[:8])
    siblings = [
        canary_child("Amelia", family, date(2015, 3, 14), Gender.FEMALE),
        canary_child("Oliver", family, date(2017, 9, 2), Gender.MALE),
    ]
    await store.import_children(pool, siblings, actor="test-import")
    seen = BodiesSeen()
    async with browser_page(browser, app.url) as (page, watch):
        page.on("response", seen.on_response)
        steps = Steps(page)
        main = page.get_by_role("main")

        # (1) The intake officer signs in, (2) takes the call for both siblings.
        await sign_in(page, steps, officer, "intake")
        await main.get_by_role("link", name="Take a shielding request").click()
        await page.wait_for_load_state()
        assert path_of(page) == "/requests/new"
        await steps.check("intake-form")
        for child in siblings:
            await find_and_add(page, child)
        chosen = page.locator("#chosen")
        for child in siblings:
            await expect(chosen).to_contain_text(child.uid)
        await fill_the_call(page)
        await steps.check("intake-form-filled")
        await click(page, "Shield records")
        match = re.search(r"SR-[A-Z0-9]{12}", await page.locator(".govuk-panel").inner_text())
        assert match, page.url
        request_id = match[0]
        await expect(main).to_contain_text(re.compile(r"must arrive\s+by the end of \w+"))
        await steps.check("confirmation")

        # (3) The written form and a supporting document, on the request's page.
        await page.goto(f"/requests/{request_id}")
        await steps.check("request-awaiting-form")
        await page.get_by_label("The completed form and supporting documents").set_input_files(
            [
                {"name": "form.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.7 the form"},
                {"name": "court-order.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.7 the order"},
            ]
        )
        await click(page, "Record the written form")
        await expect(page.locator(".govuk-notification-banner--success")).to_contain_text(
            f"Form received for request {request_id}; the record stays shielded."
        )
        await steps.check("form-received")

        # (4) Signed out; the reviewer, someone else, signs in.
        await click(page, "Sign out")
        await expect(page.locator(".app-signed-in-bar")).to_have_count(0)
        await steps.check("signed-out")
        await sign_in(page, steps, reviewer, "reviewer")

        # (5) The queue, reloaded until the review is due (the clock above makes it seconds away); approved.
        await page.get_by_role("navigation", name="Tasks").get_by_role("link", name="Reviews").click()
        await page.wait_for_load_state()
        assert path_of(page) == "/reviews"
        row = page.locator(f'tr[data-request-id="{request_id}"]')
        decide = row.get_by_role("link", name=f"Decide the review of {request_id}")
        deadline = asyncio.get_running_loop().time() + FALL_DUE_TIMEOUT
        while not await decide.count():
            assert asyncio.get_running_loop().time() < deadline, f"the review of {request_id} never fell due"
            await asyncio.sleep(1)
            await page.reload()
        await expect(row.locator(".govuk-tag")).to_have_text(re.compile(r"^\s*(Due|Overdue)\s*$"))
        await steps.check("reviews-due")
        await decide.click()
        await page.wait_for_load_state()
        assert path_of(page) == f"/reviews/{request_id}"
        await expect(page.get_by_role("heading", level=1)).to_have_text("Decide the 7-day review")
        await steps.check("review-decide")
        await click(page, "Approve review")
        assert path_of(page) == f"/reviews?decided={request_id}"
        banner = page.locator(".govuk-notification-banner--success")
        await expect(banner).to_contain_text("The record stays shielded")
        await expect(banner).to_contain_text(f"7-day review approved; request {request_id} stays shielded.")
        await steps.check("review-approved")

        # (6) No review is due now: the request's page ends the shielding, with a reason.
        await page.goto(f"/requests/{request_id}")
        await steps.check("request-approved")
        await page.get_by_label("Why are you unshielding the records?").fill("Family rehoused out of the area")
        await click(page, "Unshield records")
        await expect(page.locator(".govuk-notification-banner--success")).to_contain_text(
            messages.unshielded(request_id)
        )
        await expect(main.locator(".govuk-tag")).to_have_text("Unshielded")
        await steps.check("unshielded")
    watch.assert_clean()

    # (7) Both children unshielded; the audit log tells the story, each step by whoever took it.
    for child in siblings:
        assert await pool.fetchval("SELECT shield_request_id FROM children WHERE uid = $1", child.uid) is None
    entries = await pool.fetch(
        "SELECT action, actor, child_uid, reason FROM audit_log WHERE request_id = $1 ORDER BY entry_id", request_id
    )
    story = [(e["action"], e["actor"]) for e in entries if not e["action"].startswith("signed-")]
    assert story == [
        ("received", officer),
        ("shielded", officer),
        ("shielded", officer),
        ("form-received", officer),
        ("review-due", "system"),
        ("approved", reviewer),
        ("unshielded", reviewer),
        ("unshielded", reviewer),
    ], story
    uids = sorted(c.uid for c in siblings)
    for action in ("shielded", "unshielded"):
        assert sorted(e["child_uid"] for e in entries if e["action"] == action) == uids, action
    assert {e["reason"] for e in entries if e["action"] == "unshielded"} == {"Family rehoused out of the area"}
    await seen.assert_never_shown(siblings)
