"""Debian's Chromium driven by Playwright (``make chromium`` installs it; never a download).

One headless browser per module; each test gets a fresh context (no cookies
shared) and a live web app of its own (loopback TCP, SQLite, see
tests/webapp/live.py). Screenshots go to ``var/screenshots/`` for the docs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.webapp.live import Live, start_live

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Headless Chromium from Debian's package."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make chromium` (Debian package chromium)",
                    pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    """A fresh browser context and page (nothing shared with other tests)."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    """A web app of this test's own."""
    yield from start_live(tmp_path)


@pytest.fixture
def screenshot(page: Page) -> Iterator[object]:
    """Save the page as var/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    yield take
