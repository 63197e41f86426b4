"""Taking a call and following a request through its pages, in a real browser (Debian's Chromium) against the real
service, its database, the Temporal dev server and a worker in this process.

Every page is checked with axe-core (WCAG 2.2 AA); every HTML response the browser (or the test) receives is
scanned for the shielded children's hidden details (address lines, postcode, carer, school, GP), each unique to
this module, which must never appear. Screenshots land in test-artifacts/screenshots/.
"""

from __future__ import annotations

import asyncio
import html
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlsplit

import asyncpg
import pytest
from playwright.async_api import APIResponse, Browser, Page, Response, expect
from temporalio.testing import WorkflowEnvironment

from shielding import deadlines, store
from shielding.domain import CRITERION_LABELS, Address, Carer, ChildRecord, Criterion, Gender
from shielding.lifecycle import review_due_at
from shielding.settings import Settings
from shielding.store import queues
from starter import ShieldingService
from tests.helpers.browser import browser_page, check_accessibility, launched_chromium, save_screenshot
from tests.helpers.lifecycle import draft
from tests.helpers.servers import TEST_ACTION_KEYS, running_worker
from tests.helpers.webapp import RunningApp, add_staff
from web.assets import ensure_frontend_installed
from web.pages.intake_form import parse_clock, refusal_problems
from web.pages.request_views import long_date

pytestmark = pytest.mark.devserver

PASSWORD = "correct-horse-battery-staple"
MAX_DOCUMENT_BYTES = 2048
TASK_QUEUE = f"pages-intake-{uuid.uuid4().hex[:8]}"
SEEDED_OBJECTION = (
    "An objection to the directory in principle is not a shielding criterion. "
    "It is not appropriate to shield a record if there is an objection to ContactPoint in principle"
)


# ------------------------------------------------------------------------------------------- the parts


@pytest.fixture(scope="module")
def web_settings(settings: Settings, dev_env: WorkflowEnvironment) -> Settings:
    ensure_frontend_installed()
    return settings.model_copy(
        update={
            "temporal_address": dev_env.client.service_client.config.target_host,
            "task_queue": TASK_QUEUE,
            "max_document_bytes": MAX_DOCUMENT_BYTES,
        }
    )


@pytest.fixture(scope="module")
async def worker(dev_env: WorkflowEnvironment, pool: asyncpg.Pool, web_settings: Settings) -> AsyncIterator[None]:
    async with running_worker(dev_env.client, pool, web_settings, TASK_QUEUE):
        yield


@pytest.fixture(scope="module")
def app(web_settings: Settings, worker: None) -> Iterator[RunningApp]:
    with RunningApp(web_settings) as running:
        yield running


@pytest.fixture(scope="module")
def service(dev_env: WorkflowEnvironment, pool: asyncpg.Pool, worker: None) -> ShieldingService:
    """The service as the web app builds it, for setting up requests the pages then show."""
    return ShieldingService(
        dev_env.client,
        pool,
        task_queue=TASK_QUEUE,
        max_document_bytes=MAX_DOCUMENT_BYTES,
        action_keys=TEST_ACTION_KEYS,
    )


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with launched_chromium() as chromium:
        yield chromium


def _letters(count: int) -> str:
    return "".join(chr(ord("a") + int(ch, 16) % 26) for ch in uuid.uuid4().hex[:count])


def canary_child(given_name: str, family_name: str, born: date, gender: Gender) -> ChildRecord:
    """A child whose hidden details are unique strings, so finding one in a page can only be a leak."""
    tag = _letters(10)
    digits = str(uuid.uuid4().int)[:8]
    return ChildRecord(
        uid=f"C-{uuid.uuid4().hex[:12]}",
        given_name=given_name,
        family_name=family_name,
        gender=gender,
        date_of_birth=born,
        address=Address(
            lines=[f"Flat 9 Canary{tag} Court", f"Canary{tag} Lane"], postcode=f"QX{digits[:2]} 7{tag[:2]}"
        ),
        carers=[Carer(name=f"Carer Canary{tag}", relationship="mother", phone=f"020 {digits[:4]} {digits[4:]}")],
        school=f"Canary{tag} Academy",
        gp_practice=f"Canary{tag} Surgery",
        practitioners=[f"Social worker Canary{tag}"],
    )


def hidden_values(child: ChildRecord) -> list[str]:
    assert child.address is not None and child.address.postcode is not None and child.school and child.gp_practice
    values = [*child.address.lines, child.address.postcode, child.school, child.gp_practice, *child.practitioners]
    for carer in child.carers:
        values += [carer.name, *([carer.phone] if carer.phone else [])]
    return values


@pytest.fixture
async def siblings(pool: asyncpg.Pool) -> list[ChildRecord]:
    family = f"Hartley-{_letters(8)}"
    records = [
        canary_child("Amelia", family, date(2015, 3, 14), Gender.FEMALE),
        canary_child("Oliver", family, date(2017, 9, 2), Gender.MALE),
    ]
    await store.import_children(pool, records, actor="test-import")
    return records


async def staff(pool: asyncpg.Pool, prefix: str, *roles: str) -> str:
    return await add_staff(pool, f"{prefix}-{uuid.uuid4().hex[:6]}", PASSWORD, *roles)


# ---------------------------------------------------------------------------------- what pages carry


class HtmlSeen:
    """Every HTML response one browser context received (and any the test fetched itself), read as it arrives."""

    def __init__(self) -> None:
        self._reads: list[asyncio.Task[None]] = []
        self.bodies: list[tuple[str, str]] = []

    def on_response(self, response: Response) -> None:
        if 300 <= response.status < 400 or "text/html" not in response.headers.get("content-type", ""):
            return
        self._reads.append(asyncio.ensure_future(self._read(response)))

    async def _read(self, response: Response) -> None:
        self.bodies.append((response.url, await response.text()))

    async def add(self, response: APIResponse) -> None:
        self.bodies.append((response.url, await response.text()))

    async def assert_never_shown(self, children: list[ChildRecord]) -> None:
        await asyncio.gather(*self._reads)
        assert self.bodies, "no HTML was seen"
        for url, body in self.bodies:
            text = html.unescape(body)
            for child in children:
                for value in hidden_values(child):
                    assert value not in text, f"{url} shows a hidden detail of {child.uid}: {value!r}"


@asynccontextmanager
async def watched(browser: Browser, app: RunningApp, seen: HtmlSeen, *, javascript: bool = True) -> AsyncIterator[Page]:
    async with browser_page(browser, app.url, javascript=javascript) as (page, watch):
        page.on("response", seen.on_response)
        yield page
    if javascript:
        watch.assert_clean()
    else:
        watch.assert_no_store()


def path_of(page: Page) -> str:
    parts = urlsplit(page.url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def sign_in(page: Page, name: str) -> None:
    await page.goto("/sign-in")
    await page.get_by_label("User name").fill(name)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await page.wait_for_load_state()
    assert path_of(page) == "/"


async def click(page: Page, name: str) -> None:
    await page.get_by_role("button", name=name, exact=True).click()
    await page.wait_for_load_state()


async def find_and_add(page: Page, child: ChildRecord, *, family_only: bool = False) -> None:
    await page.get_by_label("Given name").fill("" if family_only else child.given_name)
    await page.get_by_label("Family name").fill(child.family_name)
    born = child.date_of_birth
    await page.get_by_label("Day").first.fill("" if family_only else str(born.day))
    await page.get_by_label("Month").first.fill("" if family_only else str(born.month))
    await page.get_by_label("Year").first.fill("" if family_only else str(born.year))
    await click(page, "Find child")
    assert path_of(page) == "/requests/new", "the search terms never go in the address"
    await click(page, f"Add {child.given_name} {child.family_name}, born {long_date(born)}")


async def fill_the_call(page: Page, *, phone: str | None = "020 7946 0303") -> None:
    await page.get_by_label(CRITERION_LABELS[Criterion.DOMESTIC_VIOLENCE]).check()
    await page.get_by_label("Reason for the request").fill("Father made threats; mother and children moved to a refuge")
    await page.get_by_label("A member of the public").check()
    await page.get_by_label("Their name").fill("Grace Okoro")
    if phone is not None:
        await page.get_by_label("Phone number").fill(phone)


async def summary_problems(page: Page) -> list[str]:
    summary = page.locator(".govuk-error-summary")
    await expect(summary.get_by_role("heading")).to_have_text("There is a problem")
    return [" ".join(t.split()) for t in await summary.get_by_role("link").all_inner_texts()]


async def assert_problem_at(page: Page, field_id: str, problem: str, error_id: str | None = None) -> None:
    link = page.locator(".govuk-error-summary").get_by_role("link", name=problem, exact=True)
    await expect(link).to_have_attribute("href", f"#{field_id}")
    await expect(page.locator(f"#{error_id or field_id + '-error'}")).to_contain_text(problem)


# ------------------------------------------------------------------------------- the form's own rules


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("2:30pm", time(14, 30)),
        ("2.30 PM", time(14, 30)),
        ("9am", time(9, 0)),
        ("12am", time(0, 0)),
        ("12:15pm", time(12, 15)),
        ("14:30", time(14, 30)),
        ("midday", time(12, 0)),
        ("midnight", time(0, 0)),
        ("2", None),
        ("13pm", None),
        ("24:00", None),
        ("9:60am", None),
        ("half past ten", None),
    ],
)
def test_the_time_of_the_call_is_read_as_people_write_it(typed: str, expected: time | None) -> None:
    assert parse_clock(typed) == expected


def test_a_refusal_is_split_into_its_problems_each_at_its_field() -> None:
    problems, listed = refusal_problems(
        "Refused: at least one shielding criterion is needed; the requestor's phone number or email address is "
        "needed so they can be contacted; a professional requestor's organisation is needed; the time of the call "
        "is in the future; the requestor name is missing."
    )
    assert listed
    assert [field for field, _ in problems] == [
        "criteria",
        "requestor_phone",
        "requestor_organisation",
        "called-at-day",
        "requestor_name",
    ]
    # One refusal of whole sentences stays whole (the seed's words on an objection in principle).
    objection, listed = refusal_problems("Refused: " + SEEDED_OBJECTION + ".")
    assert objection == [("criteria", SEEDED_OBJECTION)] and not listed
    unknown, _ = refusal_problems("Refused: No child in the directory has the identifier X-1. Check it.")
    assert unknown[0][0] == "children"


# ---------------------------------------------------------------------------------------------- intake


async def test_taking_a_call_for_two_siblings_shields_both_then_confirms(
    browser: Browser, app: RunningApp, pool: asyncpg.Pool, service: ShieldingService, siblings: list[ChildRecord]
) -> None:
    officer = await staff(pool, "ivy", "intake")
    seen = HtmlSeen()
    async with watched(browser, app, seen) as page:
        await sign_in(page, officer)
        await page.get_by_role("main").get_by_role("link", name="Take a shielding request").click()
        await page.wait_for_load_state()
        assert path_of(page) == "/requests/new"
        assert await page.title() == "Take a shielding request – Shielding service – Children's Services"
        await check_accessibility(page)
        await save_screenshot(page, "intake-form")

        # Both found by their name and date of birth, each added; the search stays for the sibling.
        await find_and_add(page, siblings[0])
        await find_and_add(page, siblings[1])
        chosen = page.locator("#chosen")
        for child in siblings:
            await expect(chosen).to_contain_text(f"{child.given_name} {child.family_name}")
            await expect(chosen).to_contain_text(child.uid)
        await expect(page.locator("input[type=hidden][name=children]")).to_have_count(2)

        # By family name and date of birth (every search names both): found, and shown as added already.
        await page.get_by_label("Given name").fill("")
        await click(page, "Find child")
        results = page.locator("#search-results")
        await expect(results.get_by_role("caption")).to_contain_text("1 child found")
        await expect(results.get_by_text("Added", exact=True)).to_have_count(1)
        await check_accessibility(page)

        await fill_the_call(page)
        await save_screenshot(page, "intake-form-filled")
        await click(page, "Shield records")

        # The confirmation is the POST's answer (no second request while the caller waits).
        assert path_of(page) == "/requests/new", page.url
        panel = page.locator(".govuk-panel")
        match = re.search(r"SR-[A-Z0-9]{12}", await panel.inner_text())
        assert match, await panel.inner_text()
        request_id = match[0]
        await expect(panel.get_by_role("heading", level=1)).to_have_text("Records shielded")
        await expect(panel.locator(".govuk-panel__body")).to_have_text(
            re.compile(rf"^\s*Request reference\s*{request_id}\s*$")
        )
        status = await service.status(request_id)
        assert status.form_due_at is not None and status.shielded_at is not None
        main = page.get_by_role("main")
        await expect(main).to_contain_text(f"must arrive by {deadlines.describe(status.form_due_at)}")
        assert deadlines.describe(status.form_due_at).startswith("the end of ")
        for instant in (status.form_due_at, review_due_at(status.shielded_at, 0), review_due_at(status.shielded_at, 1)):
            when = main.locator(f'time[datetime="{instant.isoformat()}"]')
            await expect(when.first).to_have_text(deadlines.describe(instant))
        for child in siblings:
            await expect(main).to_contain_text(f"{child.given_name} {child.family_name} ({child.uid})")
        await check_accessibility(page)
        await save_screenshot(page, "intake-confirmation")

        # Shielded before the answer: the very next read is redacted; a reload changes nothing.
        for child in siblings:
            view = await store.view_child(pool, child.uid)
            assert view is not None and view["shielded"] and "address" not in view
        # A reload posts the same form again: it joins the same request (its reference is in the form).
        await page.reload()
        await expect(panel).to_contain_text(request_id)
        assert await pool.fetchval("SELECT count(*) FROM shielding_requests WHERE received_by = $1", officer) == 1
        # The confirmation has its own address too, to come back to.
        await page.goto(f"/requests/{request_id}/confirmation")
        await expect(panel.get_by_role("heading", level=1)).to_have_text("Records shielded")
        await expect(panel).to_contain_text(request_id)
        # A second call about the same child: found as shielded (identity only), recorded against the first request.
        await page.goto("/requests/new")
        await page.get_by_label("Family name").fill(siblings[0].family_name)
        born = siblings[0].date_of_birth
        for part, value in (("Day", born.day), ("Month", born.month), ("Year", born.year)):
            await page.get_by_label(part).first.fill(str(value))
        await click(page, "Find child")
        await expect(page.locator("#search-results").get_by_text("Already shielded")).to_have_count(1)
        await click(
            page, f"Add {siblings[0].given_name} {siblings[0].family_name}, born {long_date(siblings[0].date_of_birth)}"
        )
        await fill_the_call(page)
        await click(page, "Shield record")
        await expect(panel.get_by_role("heading", level=1)).to_have_text("Already shielded")
        await expect(panel.locator(".govuk-panel__body")).to_contain_text(request_id)
        await expect(main.get_by_role("link", name=request_id)).to_have_attribute("href", f"/requests/{request_id}")
        await check_accessibility(page)
        await save_screenshot(page, "intake-confirmation-already-shielded")
    await seen.assert_never_shown(siblings)


async def test_every_refusal_names_each_problem_at_its_field(
    browser: Browser, app: RunningApp, pool: asyncpg.Pool, siblings: list[ChildRecord]
) -> None:
    officer = await staff(pool, "ivy", "intake")
    child = siblings[0]
    seen = HtmlSeen()
    async with watched(browser, app, seen) as page:
        await sign_in(page, officer)
        await page.goto("/requests/new")
        await click(page, "Find child")
        assert await summary_problems(page) == ["Give at least one search field"]
        await assert_problem_at(page, "search-given-name", "Give at least one search field")

        await find_and_add(page, child)
        # No criterion, no reason, no way to contact the requestor, and a call tomorrow: all four at once.
        await page.get_by_label("A member of the public").check()
        await page.get_by_label("Their name").fill("Grace Okoro")
        tomorrow = deadlines.to_london(datetime.now(UTC) + timedelta(days=1))
        called = page.get_by_role("group", name="When did the call start?")
        await called.get_by_label("Day").fill(str(tomorrow.day))
        await called.get_by_label("Month").fill(str(tomorrow.month))
        await called.get_by_label("Year").fill(str(tomorrow.year))
        await called.get_by_label("Time").fill("10:30am")
        await click(page, "Shield record")

        assert path_of(page) == "/requests/new"
        assert (await page.title()).startswith("Error: Take a shielding request")
        assert await summary_problems(page) == [
            "At least one shielding criterion is needed",
            "The reason is missing",
            "The requestor's phone number or email address is needed so they can be contacted",
            "The time of the call is in the future",
        ]
        await assert_problem_at(page, "criteria", "At least one shielding criterion is needed")
        await assert_problem_at(page, "reason", "The reason is missing")
        await assert_problem_at(
            page, "requestor_phone", "The requestor's phone number or email address is needed so they can be contacted"
        )
        await assert_problem_at(page, "called-at-day", "The time of the call is in the future", "called-at-error")
        # Everything typed is still there, and the child too.
        await expect(page.get_by_label("Their name")).to_have_value("Grace Okoro")
        await expect(called.get_by_label("Time")).to_have_value("10:30am")
        await expect(page.locator("#chosen")).to_contain_text(child.uid)
        await check_accessibility(page)
        await save_screenshot(page, "intake-refused")
        await page.locator(".govuk-error-summary").get_by_role("link", name="The reason is missing").click()
        await expect(page.get_by_label("Reason for the request")).to_be_focused()

        # An objection in principle: refused on its own, in the seed's words.
        await page.get_by_label("The caller objects to the directory in principle").check()
        await page.get_by_label("Reason for the request").fill("They do not want to be on any database")
        await page.get_by_label("Phone number").fill("020 7946 0303")
        for part in ("Day", "Month", "Year", "Time"):
            await called.get_by_label(part).fill("")
        await click(page, "Shield record")
        assert await summary_problems(page) == [SEEDED_OBJECTION]
        await assert_problem_at(page, "criteria", SEEDED_OBJECTION)
        await check_accessibility(page)
        await save_screenshot(page, "intake-refused-objection")

        # Any other significant harm needs its description.
        await page.get_by_label("The caller objects to the directory in principle").uncheck()
        await page.get_by_label(CRITERION_LABELS[Criterion.OTHER_SIGNIFICANT_HARM]).check()
        await click(page, "Shield record")
        problem = "The criterion other-significant-harm needs a description of the circumstances"
        assert await summary_problems(page) == [problem]
        await assert_problem_at(page, "other_description", problem)
        await check_accessibility(page)

        # A time the page cannot read is named with every other problem, and nothing is sent.
        await page.get_by_label("Describe the circumstances").fill("Threats made at the school gate")
        await page.get_by_label("Phone number").fill("")
        await called.get_by_label("Time").fill("half past ten")
        await click(page, "Shield record")
        assert await summary_problems(page) == [
            "The requestor's phone number or email address is needed so they can be contacted",
            "The time of the call must be a time of day, for example 2:30pm or 14:30",
        ]
    view = await store.view_child(pool, child.uid)
    assert view is not None and view["shielded"] is False, "no refusal shielded anything"
    refused = await pool.fetchval("SELECT count(*) FROM audit_log WHERE actor = $1 AND action = 'refused'", officer)
    assert refused == 3, "each refusal the service gave is in the audit log (the page's own is not sent)"
    await seen.assert_never_shown(siblings)


async def test_a_call_can_be_taken_without_javascript(
    browser: Browser, app: RunningApp, pool: asyncpg.Pool, siblings: list[ChildRecord]
) -> None:
    officer = await staff(pool, "ivy", "intake")
    seen = HtmlSeen()
    async with watched(browser, app, seen, javascript=False) as page:
        await sign_in(page, officer)
        await page.goto("/requests/new")
        await find_and_add(page, siblings[1])
        # Added by mistake, then removed: the hidden field goes with it.
        await find_and_add(page, siblings[0])
        await click(page, f"Remove {siblings[0].given_name} {siblings[0].family_name}")
        await expect(page.locator("input[type=hidden][name=children]")).to_have_count(1)
        await fill_the_call(page, phone=None)
        await page.get_by_label("Email address").fill("grace.okoro@example.org")
        # Enter in a text field presses the form's first button, "Find child": it searches and shields nothing.
        await page.get_by_label("Their name").press("Enter")
        await page.wait_for_load_state()
        await expect(page.get_by_label("Email address")).to_have_value("grace.okoro@example.org")
        await click(page, "Shield record")
        await expect(page.locator(".govuk-panel")).to_contain_text("Record shielded")
    assert (await store.view_child(pool, siblings[1].uid) or {})["shielded"] is True
    assert (await store.view_child(pool, siblings[0].uid) or {})["shielded"] is False
    await seen.assert_never_shown(siblings)


# ---------------------------------------------------------------------------------------- the request


async def test_a_request_takes_its_form_then_a_reviewer_unshields_it(
    browser: Browser,
    app: RunningApp,
    pool: asyncpg.Pool,
    service: ShieldingService,
    web_settings: Settings,
    siblings: list[ChildRecord],
) -> None:
    officer = await staff(pool, "ivy", "intake")
    reviewer = await staff(pool, "ravi", "reviewer")
    ack = await service.submit_request(draft([c.uid for c in siblings]), actor=officer)
    request_id = ack.request_id
    assert ack.form_due_at is not None
    seen = HtmlSeen()
    async with watched(browser, app, seen) as page:
        await sign_in(page, officer)
        await page.goto("/requests/awaiting-form")
        row = page.get_by_role("row").filter(has=page.get_by_role("link", name=request_id))
        # Other tests' requests share today's deadline: the officer pages on until the request is there.
        for _ in range(50):
            if await row.count() or not await page.get_by_role("link", name="Next").count():
                break
            await page.get_by_role("link", name="Next").first.click()
        await expect(row).to_contain_text(deadlines.describe(ack.form_due_at))
        await expect(row).to_contain_text(f"{siblings[0].given_name} {siblings[0].family_name}")
        await check_accessibility(page)
        await save_screenshot(page, "requests-awaiting-form")

        # Found by its reference, typed as people type it; the reference goes in the body, then the address.
        await page.goto("/requests")
        await page.get_by_label("Find a shielding request").fill("SR-NOSUCHREQUE2")
        await click(page, "Find request")
        assert await summary_problems(page) == ["There is no shielding request SR-NOSUCHREQUE2"]
        await check_accessibility(page)
        await save_screenshot(page, "request-find-not-found")
        await page.get_by_label("Find a shielding request").fill(request_id.lower())
        await click(page, "Find request")
        assert path_of(page) == f"/requests/{request_id}"

        main = page.get_by_role("main")
        await expect(main.locator(".govuk-tag")).to_have_text("Awaiting form")
        await expect(main).to_contain_text(f"Due by {deadlines.describe(ack.form_due_at)}")
        timeline = main.locator(".moj-timeline")
        await expect(timeline.locator(".moj-timeline__title")).to_have_text(["Records shielded", "Call taken"])
        await expect(main.get_by_role("button", name="Unshield records")).to_have_count(0)
        ui = main.get_by_role("link", name="This request's workflow in the Temporal Web UI")
        await expect(ui).to_have_attribute(
            "href", f"http://localhost:{web_settings.dev_ui_port}/namespaces/default/workflows/{request_id}"
        )
        await check_accessibility(page)
        await save_screenshot(page, "request-awaiting-form")

        upload = page.get_by_label("The completed form and supporting documents")
        await upload.set_input_files([{"name": "form.pdf", "mimeType": "application/pdf", "buffer": b""}])
        await click(page, "Record the written form")
        problem = "The document 'form.pdf' is empty; nothing was recorded"
        assert await summary_problems(page) == [problem]
        await assert_problem_at(page, "documents", problem)
        big = b"%PDF" + b"x" * MAX_DOCUMENT_BYTES
        await upload.set_input_files(
            [
                {"name": "form.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.7 the form"},
                {"name": "court-order.pdf", "mimeType": "application/pdf", "buffer": big},
            ]
        )
        await click(page, "Record the written form")
        problem = f"The document 'court-order.pdf' is {len(big):,} bytes, over the {MAX_DOCUMENT_BYTES:,}-byte limit"
        assert await summary_problems(page) == [f"{problem}; nothing was recorded"]
        await check_accessibility(page)
        await save_screenshot(page, "request-form-refused")
        await click(page, "Record the written form")
        assert await summary_problems(page) == [
            "A form needs at least one document (the completed form, then any supporting documents)"
        ]
        assert await pool.fetchval("SELECT count(*) FROM form_documents WHERE request_id = $1", request_id) == 0

        await upload.set_input_files(
            [
                {"name": "form.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.7 the form"},
                {"name": "court-order.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.7 the order"},
            ]
        )
        await click(page, "Record the written form")
        banner = page.locator(".govuk-notification-banner--success")
        await expect(banner).to_contain_text(f"Form received for request {request_id}; the record stays shielded.")
        await expect(main.get_by_label("The completed form and supporting documents")).to_have_count(0)
        await expect(timeline.locator(".moj-timeline__title").first).to_have_text("Written form received")
        await check_accessibility(page)
        await save_screenshot(page, "request-form-received")
        accepted = await pool.fetchval(
            "SELECT count(*) FROM form_documents WHERE request_id = $1 AND accepted_at IS NOT NULL", request_id
        )
        assert accepted == 2

    async with watched(browser, app, seen) as page:
        await sign_in(page, reviewer)
        await page.goto(f"/requests/{request_id}")
        main = page.get_by_role("main")
        titles = main.locator(".moj-timeline .moj-timeline__title")
        await expect(titles).to_have_text(
            ["Written form received", "Record shielded", "Record shielded", "Request taken"]
        )
        await expect(main.locator(".moj-timeline")).to_contain_text(f"by {officer}")
        await expect(main.locator(".moj-timeline time[datetime]")).to_have_count(4)
        await click(page, "Unshield records")
        assert await summary_problems(page) == ["Unshielding needs a reason"]
        await assert_problem_at(page, "unshield-reason", "Unshielding needs a reason")
        await check_accessibility(page)
        await page.get_by_label("Why are you unshielding the records?").fill("Family rehoused out of the area")
        await click(page, "Unshield records")
        await expect(page.locator(".govuk-notification-banner--success")).to_contain_text(
            f"Request {request_id} closed; its records are no longer shielded."
        )
        await expect(main.locator(".govuk-tag")).to_have_text("Unshielded")
        await expect(main.get_by_role("button", name="Unshield records")).to_have_count(0)
        await expect(main.locator(".moj-timeline__title").first).to_have_text("Record unshielded")
        await check_accessibility(page)
        await save_screenshot(page, "request-unshielded")
    for child in siblings:
        assert (await store.view_child(pool, child.uid) or {})["shielded"] is False
    # While shielded, nothing hidden was shown; the test's children are unshielded now, so the scan ends here.
    await seen.assert_never_shown(siblings)


async def test_the_reviewer_who_took_a_request_is_never_offered_unshield(
    browser: Browser, app: RunningApp, pool: asyncpg.Pool, service: ShieldingService, siblings: list[ChildRecord]
) -> None:
    both = await staff(pool, "sam", "intake", "reviewer")
    ack = await service.submit_request(draft([siblings[0].uid]), actor=both)
    seen = HtmlSeen()
    async with watched(browser, app, seen) as page:
        await sign_in(page, both)
        await page.goto(f"/requests/{ack.request_id}")
        main = page.get_by_role("main")
        await expect(main.get_by_role("button", name="Unshield records")).to_have_count(0)
        await expect(main).to_contain_text("You took this request, so another reviewer must decide")
        await check_accessibility(page)
        # Posted anyway, with the right token: the service refuses it as the access-denied page.
        token = await page.locator('input[name="csrf_token"]').first.input_value()
        answer = await page.request.post(
            f"{app.url}/requests/{ack.request_id}/unshield", form={"csrf_token": token, "reason": "Mine to end"}
        )
        await seen.add(answer)
        assert answer.status == 403 and "You cannot do this" in await answer.text()
    assert (await service.status(ack.request_id)).stage.value == "awaiting-form"
    await seen.assert_never_shown(siblings)


async def test_forged_posts_without_the_csrf_token_change_nothing(
    browser: Browser, app: RunningApp, pool: asyncpg.Pool, service: ShieldingService, siblings: list[ChildRecord]
) -> None:
    officer = await staff(pool, "ivy", "intake")
    reviewer = await staff(pool, "ravi", "reviewer")
    ack = await service.submit_request(draft([siblings[0].uid]), actor=officer)
    intake = {
        "action": "shield",
        "children": siblings[1].uid,
        "criteria": "refuge",
        "reason": "Placed in a refuge",
        "requestor_type": "public",
        "requestor_name": "Grace Okoro",
        "requestor_phone": "020 7946 0303",
    }
    seen = HtmlSeen()
    async with watched(browser, app, seen) as page:
        await sign_in(page, officer)
        for path, form in ((f"{app.url}/requests/new", intake), (f"{app.url}/requests/{ack.request_id}/form", {})):
            for fields in (form, {**form, "csrf_token": "not-the-token"}):
                refused = await page.request.post(path, form=fields, max_redirects=0)
                await seen.add(refused)
                assert refused.status == 403 and "This form could not be checked" in await refused.text()
        refused = await page.request.post(
            f"{app.url}/requests/{ack.request_id}/form",
            multipart={"documents": {"name": "form.pdf", "mimeType": "application/pdf", "buffer": b"%PDF form"}},
        )
        assert refused.status == 403 and "This form could not be checked" in await refused.text()
        await page.goto("/requests/new")
        await check_accessibility(page)
    async with watched(browser, app, seen) as page:
        await sign_in(page, reviewer)
        refused = await page.request.post(
            f"{app.url}/requests/{ack.request_id}/unshield", form={"reason": "Forged"}, max_redirects=0
        )
        await seen.add(refused)
        assert refused.status == 403 and "This form could not be checked" in await refused.text()
    assert (await store.view_child(pool, siblings[1].uid) or {})["shielded"] is False
    status = await service.status(ack.request_id)
    assert status.stage.value == "awaiting-form" and status.form_received_at is None
    assert await pool.fetchval("SELECT count(*) FROM form_documents WHERE request_id = $1", ack.request_id) == 0
    await seen.assert_never_shown(siblings)


async def test_a_practitioner_reaching_the_request_pages_directly_is_refused(
    browser: Browser, app: RunningApp, pool: asyncpg.Pool, service: ShieldingService, siblings: list[ChildRecord]
) -> None:
    practitioner = await staff(pool, "priya", "practitioner")
    intake = await staff(pool, "ivy", "intake")
    ack = await service.submit_request(draft([siblings[0].uid]), actor=intake)
    seen = HtmlSeen()
    async with watched(browser, app, seen) as page:
        await sign_in(page, practitioner)
        await expect(page.get_by_role("link", name="Take a shielding request")).to_have_count(0)
        refusals = {
            "/requests/new": "Only an intake officer can take shielding requests.",
            f"/requests/{ack.request_id}": "can see shielding requests.",
            f"/requests/{ack.request_id}/confirmation": "Only an intake officer can take shielding requests.",
            "/requests/awaiting-form": "Only an intake officer can record written forms.",
            "/requests": "can see shielding requests.",
        }
        for path, words in refusals.items():
            response = await page.goto(path)
            assert response is not None and response.status == 403, path
            await expect(page.get_by_role("heading", level=1)).to_have_text("You cannot do this")
            await expect(page.get_by_role("main")).to_contain_text(words)
            await expect(page.get_by_role("main")).to_contain_text("Your account is set up as a practitioner.")
            assert siblings[0].family_name not in await page.content()
        await check_accessibility(page)
        await save_screenshot(page, "request-access-denied")
        response = await page.goto("/requests/not-a-request")
        assert response is not None and response.status == 404
    denied = await pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE actor = $1 AND action = 'unauthorised' AND request_id = $2",
        practitioner,
        ack.request_id,
    )
    assert denied == 2, "each refusal on the request is audited against it"
    await seen.assert_never_shown(siblings)


async def test_the_forms_due_list_is_paged_without_gaps_or_repeats(
    pool: asyncpg.Pool, service: ShieldingService, siblings: list[ChildRecord]
) -> None:
    officer = await staff(pool, "iona", "intake")
    for child in siblings:
        await service.submit_request(draft([child.uid]), actor=officer)
    everything = await queues.awaiting_form(pool, limit=100_000)
    assert everything.total == len(everything.items) >= len(siblings)
    paged: list[str] = []
    for offset in range(everything.total):
        page = await queues.awaiting_form(pool, limit=1, offset=offset)
        assert page.total == everything.total and len(page.items) == 1
        paged += [item.request_id for item in page.items]
    assert (await queues.awaiting_form(pool, limit=1, offset=everything.total)).items == []
    assert paged == [item.request_id for item in everything.items]
    due = [item.form_due_at for item in everything.items]
    assert due == sorted(due), "soonest deadline first"
