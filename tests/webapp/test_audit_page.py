"""The audit page over loopback TCP: who viewed or changed a patient's results, searched by
patient (name or ID), sample, user and time; every search is itself audited."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest

from lis_gateway.store.audit import audit_entries
from lis_gateway.webapp.admin import AdminSetup

from .live import Browser, Live, add_user, glucose, receive
from .live_admin import start_app


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """Two samples of Trần Văn Bình (BN100), one of Lê Thị Hà (BN200); the technician
    looks at the worklist and at P1, the doctor at Q1."""
    with start_app(tmp_path_factory.mktemp("audit"), lambda _pool: AdminSetup()) as live:
        for user, role in (("root", "admin"), ("dr_minh", "doctor"), ("lan", "technician")):
            add_user(live.engine, user, role)
        receive(live.engine, [glucose("P1", "5.0")], patient=("Trần", "Văn", "Bình"),
                hospital_id="BN100")
        receive(live.engine, [glucose("P2", "5.2")], patient=("Trần", "Văn", "Bình"),
                hospital_id="BN100")
        receive(live.engine, [glucose("Q1", "5.1")], patient=("Lê", "Thị", "Hà"),
                hospital_id="BN200")
        lan = logged_in(live, "lan")
        assert lan.get("/worklist").status == 200
        assert lan.get("/sample?s=P1").status == 200
        live.advance(3600)
        assert logged_in(live, "dr_minh").get("/sample?s=Q1").status == 200
        yield live


def logged_in(live: Live, user: str) -> Browser:
    """A browser logged in as ``user``."""
    browser = Browser(live)
    assert browser.login(user).status == 303
    return browser


def rows(page: str) -> list[tuple[str, str, str]]:
    """(user, action, about) of each row found."""
    table = page.split('<table class="admin audit">')[1] if 'class="admin audit"' in page else ""
    return [(m[0], m[1], re.sub(r"<[^>]+>", "", m[2])) for m in re.findall(
        r"<tr data-seq=\"\d+\">\s*<td>[^<]*</td><td>([^<]*)</td><td><code>([^<]*)</code></td>"
        r"\s*<td>(.*?)</td>", table, re.S)]


def search(browser: Browser, **criteria: str) -> str:
    """The audit page for these criteria."""
    answer = browser.get("/audit?" + urlencode(criteria))
    assert answer.status == 200
    return answer.text


def test_who_viewed_a_patients_results_by_name(lab: Live) -> None:
    """Part of the name, in another case: the technician's view of P1 and the worklist
    that listed P1 and P2 are found; the doctor's view of the other patient is not."""
    page = search(logged_in(lab, "root"), patient="văn bình")
    found = rows(page)
    assert ("lan", "view.sample", "sample:P1") in found
    assert ("lan", "view.worklist", "worklist") in found
    assert not [r for r in found if r[0] == "dr_minh"]
    matched = page.split('class="matched"')[1].split("</p>")[0]
    assert ">P1</a>" in matched and ">P2</a>" in matched and ">Q1</a>" not in matched


def test_by_identifier_sample_user_and_time(lab: Live) -> None:
    """The hospital ID finds the same rows as the name; a barcode finds who looked at that
    sample; a user finds what they did; days bound the rows (until included)."""
    browser = logged_in(lab, "dr_minh")
    by_id = rows(search(browser, patient="BN100"))
    by_name = rows(search(browser, patient="Bình"))
    assert ("dr_minh", "view.audit", "audit") in by_name  # the search by ID is about them too
    assert [r for r in by_id if r[1] != "view.audit"] == [
        r for r in by_name if r[1] != "view.audit"]
    about_q1 = {r[:2] for r in rows(search(browser, sample="Q1"))}
    assert about_q1 == {("dr_minh", "view.sample"), ("lan", "view.worklist"),
                        ("rule:all-passed@2026-11-a", "lifecycle.autoverify")}
    mine = rows(search(browser, user="lan"))
    assert {r[1] for r in mine} >= {"auth.login", "view.worklist", "view.sample"}
    assert all(r[0] == "lan" or r[2] == "user:lan" for r in mine)
    assert rows(search(browser, user="lan", since="23/11/2026")) == []
    assert rows(search(browser, user="lan", since="22/11/2026", until="22/11/2026")) == mine
    assert rows(search(browser, user="lan", until="21/11/2026")) == []
    assert "Không có dòng nhật ký nào khớp." in search(browser, patient="Nguyễn Không Có")


def test_each_search_is_audited_and_bad_days_are_named(lab: Live) -> None:
    """The search's criteria and the number of rows shown go to the audit log; a day that
    is not one is said so and left out."""
    browser = logged_in(lab, "root")
    page = search(browser, sample="P1", since="hôm qua")
    assert "Ngày không hợp lệ (dd/mm/yyyy): hôm qua" in page
    with lab.engine.begin() as conn:
        last = audit_entries(conn)[-1]
    assert (last.actor, last.action, last.target) == ("root", "view.audit", "audit")
    detail = json.loads(last.detail)
    assert detail["criteria"] == {"sample": "P1"} and detail["rows"] == len(rows(page)) > 0
    search(browser)
    with lab.engine.begin() as conn:
        assert json.loads(audit_entries(conn)[-1].detail) == {"criteria": {}, "rows": 0,
                                                              "samples": []}


def test_technicians_may_not_search(lab: Live) -> None:
    """The audit page is for administrators and doctors."""
    answer = logged_in(lab, "lan").get("/audit?patient=BN100")
    assert answer.status == 403 and "Trang này chỉ dành cho: Quản trị viên, Bác sĩ." in answer.text


def test_no_patient_data_reaches_the_logs(lab: Live) -> None:
    """Searching by a patient's name, number or barcode, and a refused search, log the user
    and the page only."""
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        browser = logged_in(lab, "root")
        for criteria in ({"patient": "Trần Văn Bình"}, {"patient": "BN100"}, {"sample": "P1"}):
            search(browser, **criteria)
        logged_in(lab, "lan").get("/audit?patient=BN100&sample=P1")
    assert [e["event"] for e in logs] == ["webapp-login", "webapp-login", "webapp-forbidden"]
    assert logs[-1]["page"] == "/audit"
    for secret in ("Trần", "Bình", "Tran", "Binh", "BN100", "P1"):
        assert secret not in repr(logs)
