"""Steps the browser flows share: logging in and out in a language, the sample page's
forms, the texts each language shows, waiting for the HIS."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from playwright.sync_api import Locator, Page, expect

from tests.webapp.live import PASSWORD, Live

T = TypeVar("T")

TEXTS = {
    "vi": {"worklist": "Danh sách công việc", "validate": "Duyệt", "approve": "Phê duyệt",
           "held": "Bị giữ lại", "awaiting": "Chờ phê duyệt", "released": "Đã phát hành",
           "corrected": "Đã sửa, chờ duyệt", "acknowledge": "Xác nhận đã báo giá trị nguy hiểm",
           "banner": "Giá trị nguy hiểm chưa được xác nhận", "correct": "Sửa kết quả",
           "saved": "Đã lưu: GLU ({state})", "sample": "Mẫu",
           "told": "Đã báo giá trị nguy hiểm cho BS Hoa lúc 22/11/2026 08:00 (điện thoại), "
                   "người báo: lan",
           "delivered": "his: đã gửi lúc"},
    "en": {"worklist": "Worklist", "validate": "Validate", "approve": "Approve",
           "held": "Held", "awaiting": "Awaiting approval", "released": "Released",
           "corrected": "Corrected, to validate", "acknowledge": "Acknowledge critical value",
           "banner": "Critical values not yet acknowledged", "correct": "Correct",
           "saved": "Saved: GLU ({state})", "sample": "Sample",
           "told": "Critical value told to BS Hoa at 22 Nov 2026 08:00 (điện thoại), by lan",
           "delivered": "his: delivered at"},
}


def log_in(page: Page, live: Live, user: str, lang: str) -> None:
    """Open the login page, switch to ``lang`` when it is English, log in as ``user``."""
    page.goto(live.url + "/login")
    if lang == "en" and page.locator("html").get_attribute("lang") != "en":
        page.get_by_role("button", name="English").click()
        expect(page.locator("h1")).to_have_text("Log in")
    page.locator("input[name=username]").fill(user)
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("form.login button[type=submit]").click()
    expect(page.locator("h1")).to_have_text(TEXTS[lang]["worklist"])


def log_out(page: Page) -> None:
    """The header's logout button."""
    page.locator("form[action='/logout'] button").click()
    expect(page.locator("input[name=username]")).to_be_visible()


def form(page: Page, action: str) -> Locator:
    """The sample page's form of ``action`` (one result on the page)."""
    return page.locator("form", has=page.locator(f"input[name=action][value={action}]"))


def flash_ok(page: Page, lang: str, state: str) -> None:
    """The page says the action was saved, with the state reached."""
    expect(page.locator("p.flash.ok")).to_have_text(
        TEXTS[lang]["saved"].format(state=TEXTS[lang][state]))


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 30.0) -> T:
    """Poll ``check`` until it gives something (bounded; polling, not timing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout:g} s")
