"""The reviewers', child protection officers' and managers' pages in a real browser (Debian's Chromium), against the
real service, its database, the Temporal dev server and an in-process worker.

Reviews fall due within the test: the worker's workflows read `shielding.deadlines.review_7_day_at` through the
sandbox (passed through), so a stand-in clock set here before a request is taken makes its 7-day review fall due
seconds after shielding (or two days before, for a review that is already overdue). Requests are taken through a
`ShieldingService` on the same client and pool, as the intake page does.

Every page is checked with axe-core (WCAG 2.2 AA); every response the browser receives must be no-store and clean;
and no HTML the browser (or a test's own request) receives carries any withheld value of a shielded child, except
the one break-glass view. Screenshots land in test-artifacts/screenshots/.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote, urlsplit

import asyncpg
import pytest
from playwright.async_api import Browser, Error, Page, expect
from playwright.async_api import Response as PageResponse
from temporalio.testing import WorkflowEnvironment

from shielding import deadlines, messages, store
from shielding.domain import Address, Carer, ChildRecord, IntakeAcknowledgement
from shielding.settings import Settings
from shielding.store import accounts
from shielding.store import reviews as review_store
from starter import ShieldingService
from starter.identity import digest
from tests.helpers.browser import PageWatch, browser_page, check_accessibility, launched_chromium, save_screenshot
from tests.helpers.lifecycle import draft
from tests.helpers.records import make_child
from tests.helpers.servers import TEST_ACTION_KEYS, running_worker
from tests.helpers.webapp import RunningApp, add_staff
from web.assets import ensure_frontend_installed
from web.deps import SESSION_COOKIE

pytestmark = pytest.mark.devserver

PASSWORD = "correct-horse-battery-staple"
DUE_SOON = timedelta(seconds=4)
OVERDUE = timedelta(days=-2)
FALL_DUE_TIMEOUT = 45.0
# Every withheld value of every child these tests shield: none may reach a page but the break-glass view.
CANARIES: list[str] = []


# ------------------------------------------------------------------------------------------- the review clock


class ReviewClock:
    """`deadlines.review_7_day_at` for the worker: the real rule, except for the requests taken while `armed` is
    set, whose 7-day review falls due `armed` after shielding. Each answer is kept (by the shielding instant),
    so a request's review time never changes while its workflow runs or replays."""

    def __init__(self) -> None:
        self.real = deadlines.review_7_day_at
        self.armed: timedelta | None = None
        self.answers: dict[datetime, datetime] = {}

    def __call__(self, shielded_at: datetime) -> datetime:
        if shielded_at not in self.answers:
            self.answers[shielded_at] = shielded_at + self.armed if self.armed is not None else self.real(shielded_at)
        return self.answers[shielded_at]

    @contextmanager
    def falling_due(self, after: timedelta | None) -> Iterator[None]:
        self.armed = after
        try:
            yield
        finally:
            self.armed = None


@pytest.fixture(scope="module")
def review_clock() -> Iterator[ReviewClock]:
    clock = ReviewClock()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(deadlines, "review_7_day_at", clock)
        # Every request these tests take on one page (the whole suite's, when it runs first, are in the database).
        patch.setattr(review_store, "PAGE_SIZE", 500)
        yield clock


@pytest.fixture(scope="module")
def web_settings(settings: Settings, dev_env: WorkflowEnvironment) -> Settings:
    ensure_frontend_installed()
    return settings.model_copy(
        update={
            "temporal_address": dev_env.client.service_client.config.target_host,
            "task_queue": f"tq-pages-reviews-{uuid.uuid4().hex[:8]}",
        }
    )


@pytest.fixture(scope="module")
async def worker(
    review_clock: ReviewClock, dev_env: WorkflowEnvironment, pool: asyncpg.Pool, web_settings: Settings
) -> AsyncIterator[None]:
    async with running_worker(dev_env.client, pool, web_settings, web_settings.task_queue):
        yield


@pytest.fixture(scope="module")
def service(worker: None, dev_env: WorkflowEnvironment, pool: asyncpg.Pool, web_settings: Settings) -> ShieldingService:
    return ShieldingService(
        dev_env.client,
        pool,
        task_queue=web_settings.task_queue,
        max_document_bytes=1024 * 1024,
        action_keys=TEST_ACTION_KEYS,
    )


@pytest.fixture(scope="module")
def app(web_settings: Settings, worker: None) -> Iterator[RunningApp]:
    with RunningApp(web_settings) as running:
        yield running


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with launched_chromium() as chromium:
        yield chromium


@dataclass
class Staff:
    intake: str
    reviewer: str
    # Takes requests and reviews: never the reviews of the requests they took.
    intake_reviewer: str
    child_protection: str
    manager: str
    practitioner: str


@pytest.fixture
async def staff(pool: asyncpg.Pool) -> Staff:
    tag = uuid.uuid4().hex[:6]
    return Staff(
        intake=await add_staff(pool, f"ivy-{tag}", PASSWORD, "intake"),
        reviewer=await add_staff(pool, f"ravi-{tag}", PASSWORD, "reviewer"),
        intake_reviewer=await add_staff(pool, f"rhea-{tag}", PASSWORD, "intake", "reviewer"),
        child_protection=await add_staff(pool, f"cleo-{tag}", PASSWORD, "child-protection"),
        manager=await add_staff(pool, f"morgan-{tag}", PASSWORD, "manager"),
        practitioner=await add_staff(pool, f"priya-{tag}", PASSWORD, "practitioner"),
    )


# --------------------------------------------------------------------------------------- children and requests


def canary_child() -> ChildRecord:
    """A child whose every withheld value is unique to this test run, so a leak can be found in any page."""
    mark = secrets.token_hex(4).upper()
    phone = f"01632 9{secrets.randbelow(10**5):05d}"
    child = make_child().model_copy(
        update={
            "address": Address(lines=[f"{mark} Canary Row", "Maida Vale"], postcode=f"ZZ{mark}"),
            "carers": [Carer(name=f"Carer {mark}", relationship="grandmother", phone=phone)],
            "school": f"School {mark}",
            "gp_practice": f"Surgery {mark}",
            "practitioners": [f"Social worker {mark}"],
        }
    )
    CANARIES.extend([f"{mark} Canary Row", f"ZZ{mark}", f"Carer {mark}", phone, f"School {mark}"])
    CANARIES.extend([f"Surgery {mark}", f"Social worker {mark}"])
    return child


async def take_request(
    service: ShieldingService,
    pool: asyncpg.Pool,
    clock: ReviewClock,
    actor: str,
    *,
    review_after: timedelta | None = None,
) -> tuple[IntakeAcknowledgement, ChildRecord]:
    """A new child, shielded by a request `actor` took; its 7-day review falls due `review_after` after shielding."""
    child = canary_child()
    await store.import_children(pool, [child], actor="test-import")
    with clock.falling_due(review_after):
        ack = await service.submit_request(draft([child.uid]), actor=actor)
    return ack, child


async def stage_of(pool: asyncpg.Pool, request_id: str) -> str:
    return await pool.fetchval(  # type: ignore[no-any-return]
        "SELECT stage FROM shielding_requests WHERE request_id = $1", request_id
    )


async def review_falls_due(pool: asyncpg.Pool, request_id: str) -> None:
    deadline = asyncio.get_running_loop().time() + FALL_DUE_TIMEOUT
    while await stage_of(pool, request_id) != "review-due":
        assert asyncio.get_running_loop().time() < deadline, f"the review of {request_id} never fell due"
        await asyncio.sleep(0.2)


async def reminded(pool: asyncpg.Pool, request_id: str) -> None:
    deadline = asyncio.get_running_loop().time() + FALL_DUE_TIMEOUT
    while not await pool.fetchval("SELECT 1 FROM audit_log WHERE request_id = $1 AND action = 'reminder'", request_id):
        assert asyncio.get_running_loop().time() < deadline, f"no reminder was sent for {request_id}"
        await asyncio.sleep(0.2)


# ----------------------------------------------------------------------------------------------- the browser


@dataclass
class Documents:
    """Every HTML document the browser received (method, path, body), read as it arrives."""

    bodies: list[tuple[str, str, str]] = field(default_factory=list)
    pending: list[asyncio.Task[None]] = field(default_factory=list)

    def on_response(self, response: PageResponse) -> None:
        if response.request.resource_type == "document":
            self.pending.append(asyncio.ensure_future(self._read(response)))

    async def _read(self, response: PageResponse) -> None:
        try:
            body = await response.text()
        except Error:  # a redirect has no body
            return
        self.bodies.append((response.request.method, urlsplit(response.url).path, body))

    async def settle(self) -> list[tuple[str, str, str]]:
        await asyncio.gather(*self.pending)
        self.pending.clear()
        return self.bodies


def is_break_glass_view(method: str, path: str, body: str) -> bool:
    return method == "POST" and path.endswith("/break-glass") and 'id="withheld-details"' in body


def assert_no_canary(method: str, path: str, body: str) -> None:
    leaked = [value for value in CANARIES if value in body]
    assert not leaked, f"{method} {path} carries withheld values {leaked}"


@asynccontextmanager
async def signed_in_page(
    browser: Browser, app: RunningApp, name: str, *, javascript: bool = True
) -> AsyncIterator[tuple[Page, PageWatch, Documents]]:
    """A fresh browser signed in as `name`; afterwards: every response clean, and no withheld value anywhere but
    in a break-glass view."""
    documents = Documents()
    async with browser_page(browser, app.url, javascript=javascript) as (page, watch):
        page.on("response", documents.on_response)
        await page.goto("/sign-in")
        await page.get_by_label("User name").fill(name)
        await page.get_by_label("Password", exact=True).fill(PASSWORD)
        await page.get_by_role("button", name="Sign in", exact=True).click()
        await page.wait_for_load_state()
        assert urlsplit(page.url).path == "/", f"{name} did not sign in"
        yield page, watch, documents
        for method, path, body in await documents.settle():
            if not is_break_glass_view(method, path, body):
                assert_no_canary(method, path, body)
    if javascript:
        watch.assert_clean()
    else:
        watch.assert_no_store()


def row_of(page: Page, request_id: str):  # noqa: ANN201 - a Playwright locator
    return page.locator(f'tr[data-request-id="{request_id}"]')


async def row_order(page: Page, *request_ids: str) -> list[str]:
    """The given requests in the order the table lists them."""
    listed = await page.locator("tr[data-request-id]").evaluate_all("rows => rows.map(r => r.dataset.requestId)")
    return [r for r in listed if r in request_ids]


async def time_attribute(page: Page, request_id: str, column: int) -> datetime:
    cell = row_of(page, request_id).locator("td").nth(column)
    return datetime.fromisoformat(await cell.locator("time").first.get_attribute("datetime") or "")


async def csrf_of(page: Page) -> str:
    return await page.locator('input[name="csrf_token"]').first.input_value()


def path_of(page: Page) -> str:
    parts = urlsplit(page.url)
    return parts.path + (f"?{unquote(parts.query)}" if parts.query else "")


# ------------------------------------------------------------------------------------------------ the queue


async def test_the_queue_lists_reviews_due_and_forms_waiting_filtered_and_sorted_on_the_server(
    browser: Browser,
    app: RunningApp,
    service: ShieldingService,
    pool: asyncpg.Pool,
    review_clock: ReviewClock,
    staff: Staff,
    web_settings: Settings,
) -> None:
    overdue, _ = await take_request(service, pool, review_clock, staff.intake, review_after=OVERDUE)
    due, _ = await take_request(service, pool, review_clock, staff.intake, review_after=DUE_SOON)
    waiting, _ = await take_request(service, pool, review_clock, staff.intake)
    ids = (overdue.request_id, due.request_id, waiting.request_id)
    await review_falls_due(pool, due.request_id)
    await reminded(pool, overdue.request_id)
    assert overdue.review_7_day_at and due.review_7_day_at and waiting.form_due_at

    async with signed_in_page(browser, app, staff.reviewer) as (page, _, _):
        await page.get_by_role("navigation", name="Tasks").get_by_role("link", name="Reviews").click()
        assert path_of(page) == "/reviews"
        await expect(page.get_by_role("heading", level=1)).to_have_text("Reviews due")
        for request_id in ids:
            await expect(row_of(page, request_id)).to_have_count(1)

        # What each row says, and when, read aloud and machine-readable.
        overdue_row, due_row, waiting_row = (row_of(page, r) for r in ids)
        await expect(overdue_row).to_contain_text("7-day review")
        await expect(overdue_row.locator(".govuk-tag")).to_have_text("Overdue")
        await expect(overdue_row).to_contain_text("1 reminder sent")
        await expect(overdue_row).to_contain_text(deadlines.describe(overdue.review_7_day_at))
        await expect(due_row.locator(".govuk-tag")).to_have_text("Due")
        await expect(due_row).to_contain_text(deadlines.describe(due.review_7_day_at))
        assert await time_attribute(page, due.request_id, 0) == due.review_7_day_at
        await expect(due_row.get_by_role("link", name=f"Decide the review of {due.request_id}")).to_be_visible()
        await expect(waiting_row).to_contain_text("Written form and documents")
        await expect(waiting_row.locator(".govuk-tag")).to_have_text("Waiting for form")
        await expect(waiting_row).to_contain_text(f"By {deadlines.describe(waiting.form_due_at)}")
        assert await time_attribute(page, waiting.request_id, 0) == waiting.form_due_at
        await expect(waiting_row.get_by_role("link", name="Decide")).to_have_count(0)

        # Sorted on the server: by due date, earliest first, then the other way round.
        assert await row_order(page, *ids) == list(ids)
        await expect(page.get_by_role("columnheader", name="Due")).to_have_attribute("aria-sort", "ascending")
        await check_accessibility(page)
        await save_screenshot(page, "reviews-queue")
        await page.get_by_role("link", name=re.compile(r"^Due\W+sort by due date$")).click()
        assert "sort=due&order=desc" in path_of(page)
        assert await row_order(page, *ids) == list(reversed(ids))
        await expect(page.get_by_role("columnheader", name="Due")).to_have_attribute("aria-sort", "descending")
        await expect(page.get_by_text("Sorted by due date, latest first.")).to_be_visible()

        # Filtered on the server (MOJ Filter a list); the order chosen is kept.
        await page.get_by_label("Reviews due", exact=True).check()
        await page.get_by_role("button", name="Apply filters").click()
        assert "status=due" in path_of(page) and "order=desc" in path_of(page)
        assert await row_order(page, *ids) == [due.request_id]
        await expect(page.get_by_role("heading", name=re.compile(r"match(es)? the filters"))).to_be_visible()
        selected = page.locator(".moj-filter__selected")
        await expect(selected.get_by_role("link", name="Remove this filter Reviews due")).to_be_visible()
        await page.get_by_text("For operations staff").click()
        ui_link = page.get_by_role("link", name="Open these stages in the Temporal Web UI")
        await expect(ui_link).to_have_attribute(
            "href",
            f"http://localhost:{web_settings.dev_ui_port}/namespaces/{web_settings.temporal_namespace}"
            "/workflows?query=ShieldingStage%3D%22review-due%22",
        )
        await check_accessibility(page)
        await save_screenshot(page, "reviews-queue-filtered")

        await page.get_by_label("Reviews due", exact=True).uncheck()
        await page.get_by_label("Overdue reviews").check()
        await page.get_by_role("button", name="Apply filters").click()
        assert await row_order(page, *ids) == [overdue.request_id]

        await selected.get_by_role("link", name="Clear filters").click()
        await page.get_by_label("Waiting for the written form").check()
        await page.get_by_role("button", name="Apply filters").click()
        assert await row_order(page, *ids) == [waiting.request_id]
        ui_href = await page.locator("a", has_text="Open these stages in the Temporal Web UI").get_attribute("href")
        assert "ShieldingStage%3D%22awaiting-form%22" in (ui_href or "")

        await page.get_by_role("link", name="Remove this filter Waiting for the written form").click()
        await page.get_by_label("Request id").fill(overdue.request_id[:9].lower())
        await page.get_by_role("button", name="Apply filters").click()
        assert await row_order(page, *ids) == [overdue.request_id]
        await expect(page.get_by_label("Request id")).to_have_value(overdue.request_id[:9])


async def test_the_queue_pages_on_the_server(
    browser: Browser,
    app: RunningApp,
    service: ShieldingService,
    pool: asyncpg.Pool,
    review_clock: ReviewClock,
    staff: Staff,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for _ in range(2):
        await take_request(service, pool, review_clock, staff.intake)
    monkeypatch.setattr(review_store, "PAGE_SIZE", 1)
    async with signed_in_page(browser, app, staff.reviewer) as (page, _, _):
        await page.goto("/reviews?status=form")
        await expect(page.locator("tr[data-request-id]")).to_have_count(1)
        first = await page.locator("tr[data-request-id]").get_attribute("data-request-id")
        pagination = page.get_by_role("navigation", name="Pagination")
        await pagination.get_by_role("link", name="Next page").click()
        assert "page=2" in path_of(page) and "status=form" in path_of(page)
        await expect(page.locator("tr[data-request-id]")).to_have_count(1)
        assert await page.locator("tr[data-request-id]").get_attribute("data-request-id") != first
        await expect(page.get_by_text(re.compile(r"Showing 2 to 2\."))).to_be_visible()
        await check_accessibility(page)


# ---------------------------------------------------------------------------------------------- decisions


async def test_a_reviewer_approves_a_review_from_the_queue(
    browser: Browser,
    app: RunningApp,
    service: ShieldingService,
    pool: asyncpg.Pool,
    review_clock: ReviewClock,
    staff: Staff,
) -> None:
    ack, child = await take_request(service, pool, review_clock, staff.intake, review_after=DUE_SOON)
    await review_falls_due(pool, ack.request_id)
    async with signed_in_page(browser, app, staff.reviewer) as (page, _, _):
        await page.goto("/reviews")
        await row_of(page, ack.request_id).get_by_role("link", name="Decide").click()
        assert path_of(page) == f"/reviews/{ack.request_id}"
        await expect(page.get_by_role("heading", level=1)).to_have_text("Decide the 7-day review")
        main = page.get_by_role("main")
        await expect(main).to_contain_text(child.uid)
        await expect(main).to_contain_text("Refuge/ safe house")
        await expect(main).to_contain_text(staff.intake)
        await check_accessibility(page)
        await save_screenshot(page, "review-decide")

        await page.get_by_role("button", name="Approve review").click()
        await page.wait_for_load_state()
        assert path_of(page) == f"/reviews?decided={ack.request_id}"
        banner = page.locator(".govuk-notification-banner--success")
        await expect(banner).to_contain_text("The record stays shielded")
        await expect(banner).to_contain_text(f"7-day review approved; request {ack.request_id} stays shielded.")
        # The form has not come yet: the request is back in the queue, waiting for it.
        await expect(row_of(page, ack.request_id).locator(".govuk-tag")).to_have_text("Waiting for form")
        await check_accessibility(page)
        await save_screenshot(page, "reviews-queue-after-approval")

    decided = await pool.fetchrow(
        "SELECT actor FROM audit_log WHERE request_id = $1 AND action = 'approved'", ack.request_id
    )
    assert decided is not None and decided["actor"] == staff.reviewer
    assert await stage_of(pool, ack.request_id) == "awaiting-form"
    assert (await store.view_child(pool, child.uid) or {})["shielded"] is True


async def test_ending_the_shielding_needs_a_reason_and_works_without_javascript(
    browser: Browser,
    app: RunningApp,
    service: ShieldingService,
    pool: asyncpg.Pool,
    review_clock: ReviewClock,
    staff: Staff,
) -> None:
    ack, child = await take_request(service, pool, review_clock, staff.intake, review_after=DUE_SOON)
    await review_falls_due(pool, ack.request_id)
    # The refusal as the browser shows it (axe needs JavaScript) ...
    async with signed_in_page(browser, app, staff.reviewer) as (page, _, _):
        await page.goto(f"/reviews/{ack.request_id}")
        await page.get_by_role("button", name="End shielding").click()
        await page.wait_for_load_state()
        await expect(page.locator("#reason-error")).to_have_text("Error: Enter why the shielding should end")
        await check_accessibility(page)
        await save_screenshot(page, "review-decide-no-reason")

    # ... and the whole decision without JavaScript.
    async with signed_in_page(browser, app, staff.reviewer, javascript=False) as (page, _, _):
        await page.goto(f"/reviews/{ack.request_id}")
        await page.get_by_role("button", name="End shielding").click()
        await page.wait_for_load_state()

        assert (await page.title()).startswith("Error: 7-day review of ")
        summary = page.locator(".govuk-error-summary")
        await expect(summary.get_by_role("heading")).to_have_text("There is a problem")
        await expect(summary.get_by_role("link", name="Enter why the shielding should end")).to_have_attribute(
            "href", "#reason"
        )
        await expect(page.locator("#reason-error")).to_have_text("Error: Enter why the shielding should end")
        assert await stage_of(pool, ack.request_id) == "review-due", "nothing was decided"

        await page.get_by_label("Why should the shielding end?").fill("Family rehoused out of area; risk ended.")
        await page.get_by_role("button", name="End shielding").click()
        await page.wait_for_load_state()
        assert path_of(page) == f"/reviews?decided={ack.request_id}"
        await expect(page.locator(".govuk-notification-banner--success")).to_contain_text(
            messages.unshielded(ack.request_id)
        )
        await expect(row_of(page, ack.request_id)).to_have_count(0)

    assert (await store.view_child(pool, child.uid) or {})["shielded"] is False
    reason = await pool.fetchval(
        "SELECT reason FROM audit_log WHERE request_id = $1 AND action = 'unshielded'", ack.request_id
    )
    assert reason == "Family rehoused out of area; risk ended."


async def test_whoever_took_a_request_is_offered_no_decision_and_a_forged_one_is_refused_and_audited(
    browser: Browser,
    app: RunningApp,
    service: ShieldingService,
    pool: asyncpg.Pool,
    review_clock: ReviewClock,
    staff: Staff,
) -> None:
    ack, _ = await take_request(service, pool, review_clock, staff.intake_reviewer, review_after=DUE_SOON)
    await review_falls_due(pool, ack.request_id)
    async with signed_in_page(browser, app, staff.intake_reviewer) as (page, _, documents):
        await page.goto("/reviews")
        row = row_of(page, ack.request_id)
        await expect(row).to_contain_text("You took this request: another reviewer must decide it")
        await expect(row.get_by_role("link", name=re.compile("Decide"))).to_have_count(0)

        await page.goto(f"/reviews/{ack.request_id}")
        await expect(page.get_by_role("main")).to_contain_text("You took this request, so you cannot decide its review")
        for button in ("Approve review", "End shielding"):
            await expect(page.get_by_role("button", name=button)).to_have_count(0)
        await expect(page.locator(f'form[action="/reviews/{ack.request_id}"]')).to_have_count(0)
        await check_accessibility(page)
        await save_screenshot(page, "review-own-request")

        # The decision they were not offered, posted anyway with their own valid session and CSRF token.
        forged = await page.request.post(
            f"{app.url}/reviews/{ack.request_id}",
            form={"csrf_token": await csrf_of(page), "decision": "approve"},
            max_redirects=0,
        )
        assert forged.status == 403
        body = await forged.text()
        assert "You cannot do this" in body and f"took request {ack.request_id}" in body
        assert forged.headers["cache-control"] == "no-store"
        documents.bodies.append(("POST", f"/reviews/{ack.request_id}", body))

    refused = await pool.fetchrow(
        "SELECT actor, reason, details FROM audit_log WHERE request_id = $1 AND action = 'unauthorised'",
        ack.request_id,
    )
    assert refused is not None and refused["actor"] == staff.intake_reviewer
    assert refused["details"] == {"attempted": "review"}
    assert await stage_of(pool, ack.request_id) == "review-due", "the review is still waiting for a decision"
    assert not await pool.fetchval(
        "SELECT 1 FROM audit_log WHERE request_id = $1 AND action = 'approved'", ack.request_id
    )


# ---------------------------------------------------------------------------------------------- break-glass


async def test_break_glass_warns_then_checks_the_password_then_shows_the_details_once(
    browser: Browser,
    app: RunningApp,
    service: ShieldingService,
    pool: asyncpg.Pool,
    review_clock: ReviewClock,
    staff: Staff,
) -> None:
    ack, child = await take_request(service, pool, review_clock, staff.intake)
    path = f"/children/{child.uid}/break-glass"
    assert child.address is not None
    async with signed_in_page(browser, app, staff.child_protection) as (page, _, documents):
        await page.goto(path)
        await expect(page.get_by_role("heading", level=1)).to_contain_text("See the withheld details")
        main = page.get_by_role("main")
        await expect(main).to_contain_text("Only continue if a child is at risk now")
        await expect(main).to_contain_text("the managers are told at once")
        await expect(main).to_contain_text(f"{child.given_name} {child.family_name}")
        await check_accessibility(page)
        await save_screenshot(page, "break-glass-warning")

        # No password: refused, nothing shown.
        await page.get_by_label("Why do you need to see these details now?").fill("Child missing; police need address")
        await page.get_by_role("button", name="Show the withheld details").click()
        await page.wait_for_load_state()
        summary = page.locator(".govuk-error-summary")
        await expect(summary.get_by_role("link", name="Enter your password to confirm it is you")).to_have_attribute(
            "href", "#password"
        )
        await expect(page.get_by_label("Why do you need to see these details now?")).to_have_value(
            "Child missing; police need address"
        )
        await check_accessibility(page)

        # The wrong password: refused, and recorded against the record.
        await page.get_by_label("Your password").fill("not-my-password-at-all")
        await page.get_by_role("button", name="Show the withheld details").click()
        await page.wait_for_load_state()
        await expect(page.locator("#password-error")).to_have_text(
            "Error: Re-authentication failed: the password is not right."
        )
        await check_accessibility(page)
        await save_screenshot(page, "break-glass-wrong-password")
        refused = await pool.fetchrow(
            "SELECT actor, reason FROM audit_log WHERE child_uid = $1 AND action = 'unauthorised'", child.uid
        )
        assert refused is not None and refused["actor"] == staff.child_protection
        assert await pool.fetchval(
            "SELECT 1 FROM audit_log WHERE actor = $1 AND action = 'sign-in-failed'", staff.child_protection
        )
        assert not await pool.fetchval(
            "SELECT 1 FROM audit_log WHERE child_uid = $1 AND action = 'override-viewed'", child.uid
        )

        # The right password: the details, as the answer to this POST.
        await page.get_by_label("Your password").fill(PASSWORD)
        form = {
            "csrf_token": await csrf_of(page),
            "form_token": await page.locator('input[name="form_token"]').input_value(),
            "reason": "Child missing; police need address",
            "password": PASSWORD,
        }
        async with page.expect_response(lambda r: r.request.method == "POST") as answered:
            await page.get_by_role("button", name="Show the withheld details").click()
        answer = await answered.value
        await page.wait_for_load_state()
        assert answer.status == 200 and answer.headers["cache-control"] == "no-store"
        assert path_of(page) == path, "the view has no address of its own"
        details = page.locator("#withheld-details")
        for value in [*child.address.lines, child.address.postcode, child.school, child.gp_practice]:
            await expect(details).to_contain_text(str(value))
        await expect(details).to_contain_text(child.carers[0].name)
        await expect(page.get_by_role("main")).to_contain_text("This page is shown once")
        await check_accessibility(page)
        await save_screenshot(page, "break-glass-view")

        # The same form again (a resubmission): refused, nothing shown, nothing alerted twice.
        again = await page.request.post(app.url + path, form=form)
        again_body = await again.text()
        assert again.status == 200 and "has already been used" in again_body
        documents.bodies.append(("POST", path + " (again)", again_body))
        # And no GET shows the details: the address gives the warning.
        await page.goto(path)
        await expect(page.locator("#withheld-details")).to_have_count(0)
        await expect(page.get_by_role("button", name="Show the withheld details")).to_be_visible()

    views = [b for b in documents.bodies if is_break_glass_view(*b)]
    assert len(views) == 1, "the details were shown exactly once"
    viewed = await pool.fetch(
        "SELECT actor, reason, request_id FROM audit_log WHERE child_uid = $1 AND action = 'override-viewed'",
        child.uid,
    )
    assert [(r["actor"], r["reason"], r["request_id"]) for r in viewed] == [
        (staff.child_protection, "Child missing; police need address", ack.request_id)
    ]

    # The managers' alert, to investigate.
    async with signed_in_page(browser, app, staff.manager) as (page, _, _):
        await page.goto("/users")
        await page.get_by_role("link", name="See the break-glass alerts to investigate").click()
        assert path_of(page) == "/managers/alerts"
        alert = page.get_by_role("row").filter(has_text=f"Break-glass view of record {child.uid}")
        await expect(alert).to_have_count(1)
        await expect(alert).to_contain_text(messages.override_body(child.uid, staff.child_protection))
        await check_accessibility(page)
        await save_screenshot(page, "managers-alerts")
        await alert.get_by_role("link", name=re.compile("Investigate")).click()
        assert path_of(page) == f"/audit?request={ack.request_id}"
        await expect(page.locator("#entries")).to_contain_text("Break-glass: withheld details seen")


async def test_break_glass_with_single_sign_on_asks_for_a_fresh_sign_in_first(
    browser: Browser,
    app: RunningApp,
    service: ShieldingService,
    pool: asyncpg.Pool,
    review_clock: ReviewClock,
    staff: Staff,
) -> None:
    _, child = await take_request(service, pool, review_clock, staff.intake)
    path = f"/children/{child.uid}/break-glass"
    # A session as the single sign-on callback leaves it, signed in at the provider an hour ago.
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    await accounts.create_session(
        pool,
        token_digest=digest(token),
        name=staff.child_protection,
        kind="cookie",
        csrf_token=csrf,
        auth_method="oidc",
        authenticated_at=datetime.now(UTC) - timedelta(hours=1),
    )
    documents = Documents()
    async with browser_page(browser, app.url) as (page, watch):
        page.on("response", documents.on_response)
        await page.context.add_cookies([{"name": SESSION_COOKIE, "value": token, "url": app.url}])
        await page.goto(path)
        sign_in_again = page.get_by_role("button", name="Sign in again")
        await expect(sign_in_again).to_have_attribute(
            "href", f"/auth/oidc/login?fresh=1&next=%2Fchildren%2F{child.uid}%2Fbreak-glass"
        )
        await expect(page.get_by_label("Why do you need to see these details now?")).to_have_count(0)
        await check_accessibility(page)
        await save_screenshot(page, "break-glass-sign-in-again")

        # Back from the provider's fresh sign-in (the callback marks the session): the reason only, no password.
        await accounts.reauthenticated(pool, digest(token), datetime.now(UTC))
        await page.goto(path)
        await expect(page.get_by_label("Your password")).to_have_count(0)
        reason = page.get_by_label("Why do you need to see these details now?")
        await reason.fill("Strategy meeting: child at risk")
        # The sign-in grew old while the form was open: refused, and asked to sign in again.
        await accounts.reauthenticated(pool, digest(token), datetime.now(UTC) - timedelta(hours=1))
        await page.get_by_role("button", name="Show the withheld details").click()
        await page.wait_for_load_state()
        await expect(page.locator(".govuk-error-summary").get_by_role("link")).to_have_attribute(
            "href", "#sign-in-again"
        )
        await expect(page.locator("#withheld-details")).to_have_count(0)
        await check_accessibility(page)

        await accounts.reauthenticated(pool, digest(token), datetime.now(UTC))
        await page.goto(path)
        await reason.fill("Strategy meeting: child at risk")
        await page.get_by_role("button", name="Show the withheld details").click()
        await page.wait_for_load_state()
        await expect(page.locator("#withheld-details")).to_contain_text(str(child.school))
    watch.assert_clean()
    bodies = await documents.settle()
    assert sum(is_break_glass_view(*b) for b in bodies) == 1
    for body in bodies:
        if not is_break_glass_view(*body):
            assert_no_canary(*body)


async def test_a_practitioner_is_refused_the_reviews_and_break_glass(
    browser: Browser,
    app: RunningApp,
    service: ShieldingService,
    pool: asyncpg.Pool,
    review_clock: ReviewClock,
    staff: Staff,
) -> None:
    ack, child = await take_request(service, pool, review_clock, staff.intake, review_after=DUE_SOON)
    async with signed_in_page(browser, app, staff.practitioner) as (page, _, _):
        await expect(page.get_by_role("navigation", name="Tasks").get_by_role("link", name="Reviews")).to_have_count(0)
        for path, needed in [
            ("/reviews", "Only a child protection officer or reviewer can review shielded records."),
            (f"/reviews/{ack.request_id}", "Only a child protection officer or reviewer can review shielded records."),
            (
                f"/children/{child.uid}/break-glass",
                "Only a child protection officer can see the withheld details of a shielded record.",
            ),
            ("/audit", "can see the audit log"),
            ("/users", "Only a manager can manage staff accounts."),
            ("/managers/alerts", "Only a manager can manage staff accounts."),
        ]:
            response = await page.goto(path)
            assert response is not None and response.status == 403, path
            await expect(page.get_by_role("heading", level=1)).to_have_text("You cannot do this")
            await expect(page.get_by_role("main")).to_contain_text(needed)
        await check_accessibility(page)
        await save_screenshot(page, "break-glass-refused-practitioner")

        forged = await page.request.post(
            f"{app.url}/children/{child.uid}/break-glass",
            form={"csrf_token": await csrf_of(page), "reason": "curious", "password": PASSWORD},
        )
        assert forged.status == 403 and "withheld-details" not in await forged.text()
    attempts = await pool.fetch(
        "SELECT details FROM audit_log WHERE actor = $1 AND action = 'unauthorised' AND child_uid = $2",
        staff.practitioner,
        child.uid,
    )
    assert [a["details"] for a in attempts] == [{"attempted": "override"}] * 2


# ------------------------------------------------------------------------------------------ users and audit


async def test_a_manager_adds_a_user_with_a_role_and_removes_a_role(
    browser: Browser, app: RunningApp, pool: asyncpg.Pool, staff: Staff
) -> None:
    newcomer = f"nadia-{uuid.uuid4().hex[:6]}"
    async with signed_in_page(browser, app, staff.manager) as (page, _, _):
        await page.get_by_role("navigation", name="Tasks").get_by_role("link", name="Staff").click()
        assert path_of(page) == "/users"
        await expect(page.get_by_role("heading", level=1)).to_have_text("Staff accounts")
        await check_accessibility(page)
        await save_screenshot(page, "users")

        await page.get_by_role("button", name="Add user").click()
        await page.wait_for_load_state()
        summary = page.locator(".govuk-error-summary")
        await expect(summary.get_by_role("link")).to_have_text(["Enter a user name", "Select a role"])
        await check_accessibility(page)
        await save_screenshot(page, "users-with-errors")

        await page.get_by_label("User name").fill(newcomer)
        await page.get_by_label("Reviewer", exact=True).check()
        await page.get_by_label("Password", exact=True).fill("short")
        await page.get_by_role("button", name="Add user").click()
        await page.wait_for_load_state()
        await expect(page.locator("#password-error")).to_have_text("Error: Password must be at least 12 characters")
        await expect(page.get_by_label("User name")).to_have_value(newcomer)

        await page.get_by_label("Reviewer", exact=True).check()
        await page.get_by_label("Password", exact=True).fill("a-long-enough-passphrase")
        await page.get_by_role("button", name="Add user").click()
        await page.wait_for_load_state()
        await expect(page.locator(".govuk-notification-banner--success")).to_contain_text(
            f"{newcomer} can now sign in as a reviewer."
        )
        row = page.locator(f'tr[data-user="{newcomer}"]')
        await expect(row).to_contain_text("Reviewer")
        await expect(row).to_contain_text("Password")

        # Intake as well as reviewer would let one person check their own work: a second manager must approve it.
        await page.get_by_label("User name").fill(newcomer)
        await page.get_by_label("Intake officer", exact=True).check()
        await page.get_by_role("button", name="Add user").click()
        await page.wait_for_load_state()
        await expect(page.locator("#role-error")).to_contain_text("needs a second manager's approval")
        await expect(page.locator(".govuk-notification-banner--success")).to_have_count(0)
        await check_accessibility(page)

        # Another role for the same person (no new password).
        await page.get_by_label("User name").fill(newcomer)
        await page.get_by_label("Practitioner", exact=True).check()
        await page.get_by_role("button", name="Add user").click()
        await page.wait_for_load_state()
        await expect(page.locator(".govuk-notification-banner--success")).to_contain_text(
            f"{newcomer} now has the practitioner role."
        )

        await row.get_by_role("button", name=f"Remove the reviewer role from {newcomer}").click()
        await page.wait_for_load_state()
        await expect(page.locator(".govuk-notification-banner--success")).to_contain_text(
            f"{newcomer} no longer has the reviewer role."
        )
        await expect(row).not_to_contain_text("Reviewer")
        await expect(row).to_contain_text("Practitioner")
        await check_accessibility(page)

    roles = await pool.fetch("SELECT role FROM user_roles WHERE name = $1", newcomer)
    assert [r["role"] for r in roles] == ["practitioner"]
    audited = await pool.fetch(
        "SELECT action, reason FROM audit_log WHERE actor = $1 AND reason LIKE $2 ORDER BY entry_id",
        staff.manager,
        f"{newcomer} %",
    )
    assert [(a["action"], a["reason"]) for a in audited] == [
        ("role-granted", f"{newcomer} granted reviewer"),
        ("role-approval-asked", f"{newcomer} to be granted intake: waiting for a second manager's approval"),
        ("role-granted", f"{newcomer} granted practitioner"),
        ("role-removed", f"{newcomer} lost reviewer"),
    ]
    # The new account signs in with the password it was given.
    async with browser_page(browser, app.url) as (page, _):
        await page.goto("/sign-in")
        await page.get_by_label("User name").fill(newcomer)
        await page.get_by_label("Password", exact=True).fill("a-long-enough-passphrase")
        await page.get_by_role("button", name="Sign in", exact=True).click()
        await expect(page.locator(".app-signed-in-bar")).to_contain_text(f"Signed in as {newcomer} (practitioner)")


async def test_the_audit_page_shows_a_requests_entries_and_the_chain_is_intact(
    browser: Browser,
    app: RunningApp,
    service: ShieldingService,
    pool: asyncpg.Pool,
    review_clock: ReviewClock,
    staff: Staff,
) -> None:
    ack, child = await take_request(service, pool, review_clock, staff.intake)
    async with signed_in_page(browser, app, staff.reviewer) as (page, _, _):
        await page.get_by_role("navigation", name="Tasks").get_by_role("link", name="Audit").click()
        await page.get_by_role("button", name="Show the request's log").click()
        await page.wait_for_load_state()
        await expect(page.locator(".govuk-error-summary").get_by_role("link")).to_have_text(["Enter a request id"])
        await expect(page.locator("#request-error")).to_have_text("Error: Enter a request id")
        await check_accessibility(page)

        await page.get_by_label("Request id").fill(ack.request_id.lower())
        await page.get_by_role("button", name="Show the request's log").click()
        await page.wait_for_load_state()
        assert path_of(page).startswith("/audit?") and f"request={ack.request_id.lower()}" in path_of(page)
        entries = page.locator("#entries")
        await expect(page.get_by_role("heading", name=f"2 entries for request {ack.request_id}")).to_be_visible()
        await expect(entries.locator("tbody tr")).to_have_count(2)
        await expect(entries.locator("tbody tr").nth(0)).to_contain_text("Request taken")
        await expect(entries.locator("tbody tr").nth(0)).to_contain_text(staff.intake)
        await expect(entries.locator("tbody tr").nth(1)).to_contain_text("Record shielded")
        await expect(entries.locator("tbody tr").nth(1)).to_contain_text(child.uid)
        await check_accessibility(page)
        await save_screenshot(page, "audit-request")

        await page.goto(f"/audit?child={child.uid}")
        await expect(page.get_by_role("heading", name=f"3 entries for record {child.uid}")).to_be_visible()

        await page.get_by_role("button", name="Check the audit log").click()
        await page.wait_for_load_state()
        assert path_of(page) == "/audit/verify"
        verdict = await store.verify_chain(pool)
        assert verdict.intact
        banner = page.locator("#verdict")
        await expect(banner).to_contain_text(re.compile(r"Audit log intact: \d+ entries verified\."))
        await expect(banner).to_contain_text("none has been changed or removed")
        await check_accessibility(page)
        await save_screenshot(page, "audit-verified")
