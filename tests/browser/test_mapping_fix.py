"""In Chromium: an unmapped code arrives and is held; the administrator opens Mapping
problems, fixes the row in place and reprocesses; the result is no longer held and carries
the new table version. In Vietnamese, and once in English.

The analyzer's message crosses a real loopback socket in E1381 framing to the gateway's
own link, store sink and live tables (tests/webapp/live_admin.py). The Vietnamese run
also visits the analyzers, delivery and audit pages and saves their screenshots.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import update

from lis_gateway.lifecycle import ResultState
from lis_gateway.outbound.delivery import DeliveryStatus
from lis_gateway.store import judgements, outbox
from lis_gateway.store import repository as repo
from lis_gateway.store import schema as s
from tests.store.test_outbox import answer, enqueue, release
from tests.webapp.live import PASSWORD, add_user
from tests.webapp.live_admin import SPEC, AdminLive, alt_message, send_astm, start_admin_live

TEXTS = {
    "vi": {"title": "Lỗi ánh xạ mã", "problem": "Mã không có trong bảng", "fix": "Sửa dòng",
           "save": "Kiểm tra và lưu bảng", "saved": "Đã lưu dòng của 685 vào",
           "reprocess": "Xử lý lại các kết quả bị giữ",
           "reprocessed": "Đã xử lý lại 1 kết quả của 685: 1 có phiên bản mới, 0 vẫn bị giữ.",
           "empty": "Không có kết quả nào bị giữ vì lỗi ánh xạ."},
    "en": {"title": "Mapping problems", "problem": "Code not in the table", "fix": "Fix the row",
           "save": "Validate and save the table", "saved": "Saved the row of 685 in",
           "reprocess": "Reprocess held results",
           "reprocessed": "Reprocessed 1 result(s) of 685: 1 with a new version, 0 still held.",
           "empty": "No result is held for a mapping problem."},
}
ROW = {"local_code": "ALT", "loinc": "1744-2", "name_vi": "Alanin aminotransferase (ALT/GPT)",
       "name_en": "Alanine aminotransferase", "unit_ucum": "U/L", "factor": "1",
       "decimals": "0"}


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[AdminLive]:
    """The app with the analyzer link, an administrator and a technician."""
    with start_admin_live(tmp_path) as started:
        add_user(started.live.engine, "root", "admin", display="Nguyễn Văn Quản")
        add_user(started.live.engine, "lan", "technician", display="Nguyễn Thị Lan")
        yield started


def held_alt(lab: AdminLive, accession: str) -> None:
    """The analyzer sends ALT for ``accession`` (a patient's sample); it is held."""
    send_astm(lab.link_port, alt_message(accession))
    with lab.live.engine.begin() as conn:
        conn.execute(update(s.samples).where(s.samples.c.accession == accession).values(
            family_name="Trần", middle_name="Văn", given_name="Bình", hospital_id="BN100",
            patient_source="his"))
        (info,) = repo.results_for_sample(conn, accession)
        assert judgements.result_status(conn, info.id).state is ResultState.HELD


def result_now(lab: AdminLive, accession: str) -> tuple[ResultState, str, str]:
    """State, local code and mapping version of the sample's result."""
    with lab.live.engine.begin() as conn:
        (info,) = repo.results_for_sample(conn, accession)
        return (judgements.result_status(conn, info.id).state, info.latest.content.code,
                info.latest.content.mapping_version)


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_fix_an_unmapped_code_in_place_and_reprocess(lab: AdminLive, page: Page, lang: str,
                                                     screenshot: Callable[[str], Path]) -> None:
    """Held for an unmapped code, fixed from the page, reprocessed: autoverified with the
    table version the fix wrote."""
    held_alt(lab, "B1")
    before = lab.tables.get(SPEC.table_name)
    assert before is not None and before.lookup("685") is None
    text = TEXTS[lang]

    page.goto(lab.url + "/mapping")
    expect(page.locator("h1")).to_have_text("Đăng nhập")
    if lang == "en":
        page.get_by_role("button", name="English").click()
    page.locator("input[name=username]").fill("root")
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("form.login button[type=submit]").click()

    expect(page.locator("h1")).to_have_text(text["title"])
    row = page.locator('tr[data-analyzer="chem1"][data-code="685"]')
    expect(row).to_contain_text(text["problem"])
    expect(row.locator("td.count")).to_have_text("1")
    expect(row).to_contain_text("B1")
    if lang == "vi":
        screenshot("mapping-problems")
    row.get_by_role("link", name=text["fix"]).click()

    form = page.locator("form.mapping-row")
    expect(form.locator("input[name=col_analyzer_code]")).to_have_value("685")
    expect(form.locator("input[name=col_analyzer_unit]")).to_have_value("U/L")
    for column, value in ROW.items():
        form.locator(f"input[name=col_{column}]").fill(value)
    if lang == "vi":
        screenshot("mapping-fix")
    form.get_by_role("button", name=text["save"]).click()

    expect(page.locator("p.flash.ok")).to_contain_text(text["saved"])
    fixed = lab.tables.get(SPEC.table_name)
    assert fixed is not None and fixed.version != before.version
    expect(page.locator("p.flash.ok")).to_contain_text(fixed.version[:12])
    assert result_now(lab, "B1") == (ResultState.HELD, "", before.version)
    page.locator('tr[data-code="685"]').get_by_role("button", name=text["reprocess"]).click()

    expect(page.locator("p.flash.ok")).to_have_text(text["reprocessed"])
    expect(page.locator("p.empty")).to_have_text(text["empty"])
    assert result_now(lab, "B1") == (ResultState.AUTOVERIFIED, "ALT", fixed.version)
    if lang == "vi":
        other_pages(lab, page, screenshot)


def other_pages(lab: AdminLive, page: Page, screenshot: Callable[[str], Path]) -> None:
    """The analyzers, delivery (a dead letter retried) and audit pages, with screenshots."""
    page.get_by_role("link", name="Máy xét nghiệm").click()
    link = page.locator('tr[data-link="chem1"]')
    expect(link).to_contain_text("đã lưu 1")
    screenshot("analyzers")
    link.get_by_role("link", name="Bản ghi đường truyền").click()
    expect(page.locator("pre.bytes").first).to_be_visible()
    expect(page.locator("table.wire")).to_contain_text("O|1|B1||^^^685")
    screenshot("wire")

    release(lab.live.engine, "B1")
    enqueue(lab.live.engine, "his")
    with lab.live.engine.begin() as conn:
        (entry,) = outbox.entries(conn, destination="his")
    answer(lab.live.engine, entry, DeliveryStatus.REJECTED, "PID-3: unknown patient")
    page.get_by_role("link", name="Gửi kết quả").click()
    dead = page.locator(f'tr[data-entry="{entry.id}"]')
    expect(dead).to_contain_text("PID-3: unknown patient")
    screenshot("delivery")
    dead.get_by_role("button", name="Gửi lại").click()
    expect(page.locator("p.flash.ok")).to_contain_text(f"Mục {entry.id} gửi his")

    page.get_by_role("link", name="Nhật ký truy vết").click()
    page.locator("input[name=patient]").fill("văn bình")
    page.get_by_role("button", name="Tìm kiếm").click()
    table = page.locator("table.audit")
    for action in ("view.mapping-problems", "result.reprocess", "outbox.retry"):
        expect(table).to_contain_text(action)
    screenshot("audit")
