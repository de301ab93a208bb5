"""In Chromium: a critical value arriving while the worklist is open shows up, banner and
row, without a reload; the banner is on every page until someone records who was told
and when; then it is gone everywhere. In Vietnamese and in English."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from lis_gateway.webapp import pages
from tests.webapp.live import Live, add_user, glucose, receive

from .steps import TEXTS, flash_ok, form, log_in


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_a_critical_value_is_acknowledged(live: Live, page: Page, lang: str,
                                          screenshot: Callable[[str], Path],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The technician's open worklist gets the banner by itself; the banner follows her to
    another sample's page; she acknowledges it on the sample page (who, when, how)."""
    monkeypatch.setattr(pages, "REFRESH_SECONDS", 1)
    add_user(live.engine, "lan", "technician", display="Nguyễn Thị Lan")
    receive(live.engine, [glucose("R1", "5.4")], patient=("Lê", "Thị", "Hồng"))
    text = TEXTS[lang]
    log_in(page, live, "lan", lang)
    expect(page.locator(".critical-banner")).to_have_count(0)
    page.evaluate("window.notReloaded = true")

    receive(live.engine, [glucose("C1", "2.0", critical="LL")], patient=("Phạm", "Đức", "Anh"))
    banner = page.locator(".critical-banner")
    expect(banner).to_contain_text(text["banner"])
    expect(banner).to_contain_text("C1 GLU = 2.0 mmol/L (LL)")
    expect(page.locator("table.worklist tbody tr").first).to_contain_text("C1")
    assert page.evaluate("window.notReloaded") is True
    if lang == "vi":
        screenshot("critical")

    page.locator('table.worklist a[href="/sample?s=R1"]').click()
    expect(page.locator(".critical-banner")).to_contain_text("C1")
    page.locator('.critical-banner a[href="/sample?s=C1"]').click()
    expect(page.locator("h1")).to_contain_text(f"{text['sample']} C1")
    acknowledge = form(page, "acknowledge")
    acknowledge.locator("input[name=informed]").fill("BS Hoa")
    acknowledge.locator("input[name=how]").fill("điện thoại")
    acknowledge.get_by_role("button", name=text["acknowledge"]).click()
    flash_ok(page, lang, "held")
    expect(page.locator(".critical-banner")).to_have_count(0)
    expect(page.locator("table.results")).to_contain_text(text["told"])
    page.goto(live.url + "/worklist")
    expect(page.locator("h1")).to_have_text(text["worklist"])
    expect(page.locator(".critical-banner")).to_have_count(0)
