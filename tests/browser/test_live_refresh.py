"""In Chromium: the worklist takes in new samples without a reload, and waits while the
person has a sample selected or is typing in a field."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from lis_gateway.webapp import pages
from tests.webapp.live import Live, add_user, glucose, receive

from .steps import log_in, wait_for


def skipped(page: Page) -> int:
    """How many refreshes the script has let pass because the person was busy."""
    return int(page.locator("#live").get_attribute("data-skipped") or 0)


def wait_skipped(page: Page, more: int) -> None:
    """Wait until the script has let ``more`` further refreshes pass (the CSP forbids
    wait_for_function's string evaluation, so the attribute is polled from here)."""
    target = skipped(page) + more
    wait_for("refreshes let pass", lambda: skipped(page) >= target)


def row(page: Page, barcode: str) -> object:
    """The worklist row of a sample."""
    return page.locator("table.worklist tbody tr", has=page.locator(
        f'a[href="/sample?s={barcode}"]'))


def test_new_samples_come_in_unless_the_person_is_busy(live: Live, page: Page,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A new sample appears by itself; while a box is ticked or the day field has the
    focus nothing changes (the tick stays); once free, the waiting samples come in."""
    monkeypatch.setattr(pages, "REFRESH_SECONDS", 1)
    add_user(live.engine, "lan", "technician")
    receive(live.engine, [glucose("A1", "5.4")])
    receive(live.engine, [glucose("A2", "5.1")])
    log_in(page, live, "lan", "vi")
    page.evaluate("window.notReloaded = true")

    receive(live.engine, [glucose("N1", "5.0")])
    expect(row(page, "N1")).to_have_count(1)

    box = page.locator('input[name=v][aria-label="A1"]')
    box.check()
    receive(live.engine, [glucose("N2", "5.2")])
    wait_skipped(page, 2)
    expect(row(page, "N2")).to_have_count(0)
    expect(box).to_be_checked()
    box.uncheck()
    expect(row(page, "N2")).to_have_count(1)

    day = page.locator("input[name=day]")
    day.click()
    day.type("22/11")
    receive(live.engine, [glucose("N3", "5.3")])
    wait_skipped(page, 2)
    expect(row(page, "N3")).to_have_count(0)
    expect(day).to_have_value("22/11")
    page.locator("h1").click()  # the field loses the focus
    expect(row(page, "N3")).to_have_count(1)
    assert page.evaluate("window.notReloaded") is True
