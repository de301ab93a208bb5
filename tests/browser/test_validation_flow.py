"""In Chromium: log in and validate a batch of routine samples, in Vietnamese and in English."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from lis_gateway.lifecycle import ResultState
from lis_gateway.store import judgements
from lis_gateway.store import repository as repo
from tests.webapp.live import PASSWORD, Live, add_user, glucose, receive

TEXTS = {
    "vi": {"login": "Đăng nhập", "worklist": "Danh sách công việc",
           "validate": "Duyệt các mẫu đã chọn", "held": "Bị giữ lại",
           "done": "Đã thực hiện: GLU (Chờ phê duyệt), GLU (Chờ phê duyệt)"},
    "en": {"login": "Log in", "worklist": "Worklist", "validate": "Validate selected",
           "held": "Held", "done": "Done: GLU (Awaiting approval), GLU (Awaiting approval)"},
}


def states(live: Live, accession: str) -> list[ResultState]:
    """The states of a sample's results."""
    with live.engine.begin() as conn:
        return [judgements.result_status(conn, i.id).state
                for i in repo.results_for_sample(conn, accession)]


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_log_in_and_validate_a_batch(live: Live, page: Page, lang: str,
                                     screenshot: Callable[[str], Path]) -> None:
    """A technician logs in, selects every routine sample with the keyboard and validates
    them with one form; the held sample has no checkbox and stays held."""
    add_user(live.engine, "lan", "technician", display="Nguyễn Thị Lan")
    receive(live.engine, [glucose("A1", "5.4")], patient=("Trần", "Văn", "Bình"))
    receive(live.engine, [glucose("A2", "5.1")], patient=("Lê", "Thị", "Hồng"))
    receive(live.engine, [glucose("A3", "12.0")], patient=("Phạm", "Đức", "Anh"))
    text = TEXTS[lang]

    page.goto(live.url + "/worklist")
    expect(page.locator("h1")).to_have_text("Đăng nhập")  # Vietnamese by default
    if lang == "en":
        page.get_by_role("button", name="English").click()
        expect(page.locator("h1")).to_have_text("Log in")
    page.locator("input[name=username]").fill("lan")
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("form.login button[type=submit]").click()

    expect(page.locator("h1")).to_have_text(text["worklist"])
    expect(page.locator("table.worklist")).to_contain_text("Trần Văn Bình")
    expect(page.locator("tr", has_text="A3")).to_contain_text(text["held"])
    expect(page.locator('input[name=v][aria-label="A3"]')).to_have_count(0)
    if lang == "vi":
        screenshot("worklist")
    page.locator("#select-all").focus()
    page.keyboard.press("Space")
    expect(page.locator('input[name=v][aria-label="A1"]')).to_be_checked()
    expect(page.locator('input[name=v][aria-label="A2"]')).to_be_checked()
    page.get_by_role("button", name=text["validate"]).click()

    expect(page.locator("p.flash.ok")).to_have_text(text["done"])
    assert states(live, "A1") == [ResultState.TECH_VALIDATED]
    assert states(live, "A2") == [ResultState.TECH_VALIDATED]
    assert states(live, "A3") == [ResultState.HELD]
    if lang == "vi":
        page.locator('a[href="/sample?s=A3"]').first.click()
        expect(page.locator("h1")).to_contain_text("Mẫu A3")
        expect(page.locator("table.results")).to_contain_text("glu-limits: 12.0 outside 3..10")
        screenshot("sample")
