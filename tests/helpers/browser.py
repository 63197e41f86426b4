"""A real browser for page tests: Debian's Chromium driven by Playwright, axe-core checks and screenshots.

    async with launched_chromium() as browser:
        async with browser_page(browser, base_url) as (page, watch):
            await page.goto("/sign-in")
            await check_accessibility(page)            # WCAG 2.0, 2.1 and 2.2, A and AA
            await save_screenshot(page, "sign-in")     # test-artifacts/screenshots/sign-in.png
        watch.assert_clean()                           # every response no-store; no console errors (CSP)

Playwright's own browser download cannot run here: the browser is Debian's package (`apt-get install -y
chromium`, which `scripts/test` does when `/usr/bin/chromium` is missing). axe-core comes from the pages' own
npm lock file (`web/frontend`, `python -m web.assets`) and is evaluated through the DevTools protocol, so it
needs no exception to the pages' Content-Security-Policy.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, ConsoleMessage, Page, Response, async_playwright

from web.assets import AXE_SCRIPT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS_DIR = REPO / "test-artifacts" / "screenshots"
TIMEOUT_MS = 15_000


@asynccontextmanager
async def launched_chromium() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        raise RuntimeError(
            f"{CHROMIUM} is missing: the page tests need Debian's Chromium (`apt-get install -y chromium`, "
            "which scripts/test runs when it is missing)"
        )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class PageWatch:
    """What one browser context saw: every response's headers, console errors and uncaught page errors."""

    responses: list[tuple[str, int, dict[str, str]]] = field(default_factory=list)
    failed_resources: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def on_response(self, response: Response) -> None:
        self.responses.append((response.url, response.status, response.headers))
        # A page answered 403 or 404 is what some tests ask for; a stylesheet, script or image must load.
        if response.status >= 400 and response.request.resource_type != "document":
            self.failed_resources.append(f"{response.status} {response.request.resource_type} {response.url}")

    def on_console(self, message: ConsoleMessage) -> None:
        # Chromium also logs every 4xx response as "Failed to load resource"; those are judged in on_response.
        if message.type == "error" and not message.text.startswith("Failed to load resource:"):
            self.console_errors.append(f"{message.text} ({message.location.get('url', '')})")

    def assert_no_store(self) -> None:
        assert self.responses, "the browser received no response"
        cached = [
            f"{status} {url}: {headers.get('cache-control')!r}"
            for url, status, headers in self.responses
            if headers.get("cache-control") != "no-store"
        ]
        assert not cached, "responses without Cache-Control: no-store:\n" + "\n".join(cached)

    def assert_clean(self) -> None:
        """Every response no-store, every resource loaded, and no error in the console (a CSP violation is one)."""
        self.assert_no_store()
        problems = self.failed_resources + self.console_errors + self.page_errors
        assert not problems, "the browser reported errors:\n" + "\n".join(problems)


@asynccontextmanager
async def browser_page(
    browser: Browser, base_url: str, *, javascript: bool = True
) -> AsyncIterator[tuple[Page, PageWatch]]:
    """A fresh context (no cookies) and page, British English, its responses and errors watched."""
    context = await browser.new_context(
        base_url=base_url, java_script_enabled=javascript, locale="en-GB", viewport={"width": 1024, "height": 768}
    )
    context.set_default_timeout(TIMEOUT_MS)
    watch = PageWatch()
    page = await context.new_page()
    page.on("response", watch.on_response)
    page.on("console", watch.on_console)
    page.on("pageerror", lambda error: watch.page_errors.append(str(error)))
    try:
        yield page, watch
    finally:
        await context.close()


def _describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for violation in violations:
        lines.append(f"- {violation['id']} ({violation['impact']}): {violation['help']} <{violation['helpUrl']}>")
        for node in violation["nodes"][:5]:
            summary = " ".join(str(node["summary"] or "").split())
            lines.append(f"    at {json.dumps(node['target'])}: {summary}")
            lines.append(f"       {node['html'][:200]}")
        if len(violation["nodes"]) > 5:
            lines.append(f"    ... and {len(violation['nodes']) - 5} more")
    return "\n".join(lines)


_RUN_AXE = """async (tags) => {
  const results = await window.axe.run(document, {
    runOnly: {type: "tag", values: tags},
    resultTypes: ["violations"],
  });
  return results.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
    nodes: v.nodes.map((n) => ({target: n.target, summary: n.failureSummary, html: n.html})),
  }));
}"""


async def check_accessibility(page: Page) -> None:
    """Run axe-core (WCAG 2.0, 2.1 and 2.2 at A and AA) on the page as it is now; fail listing every violation."""
    if not AXE_SCRIPT.is_file():
        raise RuntimeError(f"{AXE_SCRIPT} is missing: run `python -m web.assets` (npm ci in web/frontend)")
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.evaluate(AXE_SCRIPT.read_text())
    violations = await page.evaluate(_RUN_AXE, AXE_TAGS)
    if violations:
        title = await page.title()
        found = f"axe found {len(violations)} accessibility violation(s) on {page.url} ({title!r})"
        raise AssertionError(f"{found}:\n{_describe(violations)}")


async def save_screenshot(page: Page, name: str) -> Path:
    """The whole page as test-artifacts/screenshots/<name>.png; returns the path."""
    SCREENSHOTS_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS_DIR / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
