"""The worklist and the sample page over loopback TCP, on a real SQLite store.

The samples (judged by the test rule set: limits 3..10, critical, delta):
routine autoverified ones, a held one, a critical one and a STAT one.
"""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import Engine

from lis_gateway.lifecycle import ResultState
from lis_gateway.store import judgements
from lis_gateway.store import repository as repo
from lis_gateway.store.audit import audit_entries

from .live import Browser, Live, add_user, glucose, receive

S = ResultState


@pytest.fixture(scope="module", autouse=True)
def lab(live: Live) -> None:
    """Users and samples."""
    add_user(live.engine, "lan", "technician", display="Lan")
    add_user(live.engine, "dr_minh", "doctor")
    add_user(live.engine, "dr_hoa", "doctor")
    receive(live.engine, [glucose("R1", "5.4")], patient=("Trần", "Văn", "Bình"))
    receive(live.engine, [glucose("R2", "5.0")], patient=("Lê", "", "Hà"))
    receive(live.engine, [glucose("R3", "4.8")])
    receive(live.engine, [glucose("H1", "12.0")], patient=("Phạm", "Thị", "Ánh"))
    receive(live.engine, [glucose("C1", "2.0", critical="LL")])
    receive(live.engine, [glucose("T1", "5.5")], stat=True)
    receive(live.engine, [glucose("D1", "5.0", minute=1)], hospital_id="BN9")
    receive(live.engine, [glucose("D2", "8.0", minute=30)], hospital_id="BN9")


def state(engine: Engine, accession: str) -> list[S]:
    """The states of a sample's results."""
    with engine.begin() as conn:
        return [judgements.result_status(conn, i.id).state
                for i in repo.results_for_sample(conn, accession)]


def version(engine: Engine, accession: str) -> str:
    """The latest version id of the sample's first result."""
    with engine.begin() as conn:
        return str(repo.results_for_sample(conn, accession)[0].latest.id)


def logged_in(live: Live, user: str) -> Browser:
    """A browser logged in as ``user``."""
    browser = Browser(live)
    assert browser.login(user).status == 303
    return browser


def flashes(page: str) -> list[str]:
    """The messages shown at the top of a page."""
    return [re.sub(r"\s+", " ", m) for m in re.findall(
        r'<p class="flash \w+" role="status">(.*?)</p>', page, re.S)]


def test_worklist_orders_critical_then_stat_then_held(live: Live) -> None:
    """Open critical values first, then STAT, then held, then routine; names with diacritics;
    the critical banner; the view is audited with the barcodes shown."""
    page = logged_in(live, "lan").get("/worklist")
    assert page.status == 200
    order = [m for m in re.findall(r'href="/sample\?s=(\w+)"', page.text.split("<main>")[1])]
    assert order[:3] == ["C1", "T1", "H1"]
    assert set(order[3:]) == {"R1", "R2", "R3", "D1", "D2"}
    assert "Trần Văn Bình" in page.text and "Phạm Thị Ánh" in page.text
    assert "glu-limits: 12.0 outside 3..10" in page.text
    banner = page.text.split('class="critical-banner"')[1].split("</section>")[0]
    assert "C1" in banner and "LL" in banner
    with live.engine.begin() as conn:
        views = [e for e in audit_entries(conn) if e.action == "view.worklist"]
    assert views[-1].actor == "lan" and "H1" in json.loads(views[-1].detail)["samples"]


def test_held_and_critical_samples_cannot_be_batch_validated(live: Live) -> None:
    """Routine samples have a checkbox; held and critical ones do not, and a forged
    selection of them is refused with the reason, changing nothing."""
    browser = logged_in(live, "lan")
    page = browser.get("/worklist")
    boxes = re.findall(r'name="v" value="([\d.]+)" aria-label="(\w+)"', page.text)
    labelled = {label for _, label in boxes}
    assert {"R1", "R2", "T1"} <= labelled and not {"H1", "C1"} & labelled
    answer = browser.post("/worklist", [("v", version(live.engine, "H1")),
                                        ("v", version(live.engine, "C1")),
                                        ("action", "validate")])
    assert answer.status == 303
    shown = flashes(browser.get("/worklist").text)
    assert any("Bị từ chối: GLU: needs an individual look on the sample page" in m
               for m in shown)
    assert state(live.engine, "H1") == [S.HELD] and state(live.engine, "C1") == [S.HELD]


def test_batch_validation_of_routine_samples(live: Live) -> None:
    """The technician validates two routine samples in one form: both await approval."""
    browser = logged_in(live, "lan")
    page = browser.get("/worklist")
    boxes = dict((label, value) for value, label in re.findall(
        r'name="v" value="([\d.]+)" aria-label="(\w+)"', page.text))
    browser.post("/worklist", [("v", boxes["R2"]), ("v", boxes["R3"]), ("action", "validate"),
                               ("back", "/worklist?state=autoverified")])
    assert browser.last.header("location") == "/worklist?state=autoverified"
    assert state(live.engine, "R2") == [S.TECH_VALIDATED]
    assert state(live.engine, "R3") == [S.TECH_VALIDATED]
    assert "Đã thực hiện: GLU (Chờ phê duyệt), GLU (Chờ phê duyệt)" in flashes(
        browser.get("/worklist").text)


def test_a_technician_cannot_approve_a_doctor_can(live: Live) -> None:
    """Approval is the doctor's: the technician's attempt is refused with the lifecycle's
    reason; another doctor's approval releases the result."""
    tech = logged_in(live, "lan")
    tech.get("/sample?s=R1")
    tech.post("/sample", [("s", "R1"), ("version", version(live.engine, "R1")),
                          ("action", "validate")])
    tech.post("/sample", [("s", "R1"), ("version", version(live.engine, "R1")),
                          ("action", "approve")])
    page = tech.get("/sample?s=R1")
    assert any("may not approve" in m for m in flashes(page.text))
    assert state(live.engine, "R1") == [S.TECH_VALIDATED]
    doctor = logged_in(live, "dr_minh")
    doctor.get("/sample?s=R1")
    doctor.post("/sample", [("s", "R1"), ("version", version(live.engine, "R1")),
                            ("action", "approve")])
    assert state(live.engine, "R1") == [S.RELEASED]
    assert "Đã lưu: GLU (Đã phát hành)" in flashes(doctor.get("/sample?s=R1").text)


def test_the_sample_page_shows_everything_and_is_audited(live: Live) -> None:
    """Patient, range, rule outcomes, the previous result with its delta; the view audited."""
    browser = logged_in(live, "dr_hoa")
    page = browser.get("/sample?s=D2")
    assert page.status == 200
    assert "3.9-6.1" in page.text and "mmol/L" in page.text and "BN9" in page.text
    assert "glu-limits: pass" in page.text
    assert "5.0 <small>(22/11/2026 08:01)</small>" in page.text and "Δ +3" in page.text
    with live.engine.begin() as conn:
        entry = [e for e in audit_entries(conn) if e.action == "view.sample"][-1]
    assert (entry.actor, entry.target) == ("dr_hoa", "sample:D2")
    assert browser.get("/sample?s=NOPE").status == 404
    assert browser.get("/sample").status == 400


def test_reject_needs_a_reason_and_rerun_is_recorded(live: Live) -> None:
    """A rejection without a reason is refused (shown); with one it is recorded."""
    browser = logged_in(live, "lan")
    browser.get("/sample?s=H1")
    browser.post("/sample", [("s", "H1"), ("version", version(live.engine, "H1")),
                             ("action", "reject"), ("reason", "  ")])
    assert any("reject requires a reason" in m for m in flashes(browser.get("/sample?s=H1").text))
    assert state(live.engine, "H1") == [S.HELD]
    browser.post("/sample", [("s", "H1"), ("version", version(live.engine, "H1")),
                             ("action", "rerun"), ("reason", "mẫu đông")])
    assert state(live.engine, "H1") == [S.RERUN_REQUESTED]
    with live.engine.begin() as conn:
        [info] = repo.results_for_sample(conn, "H1")
        assert judgements.result_status(conn, info.id).reasons == ("mẫu đông",)


def test_correcting_a_released_result_makes_a_new_version(live: Live) -> None:
    """A released result is corrected with a reason: version 2, CORRECTED, flags from the range."""
    browser = logged_in(live, "lan")
    browser.get("/sample?s=T1")
    browser.post("/sample", [("s", "T1"), ("version", version(live.engine, "T1")),
                             ("action", "validate")])
    doctor = logged_in(live, "dr_hoa")
    doctor.get("/sample?s=T1")
    doctor.post("/sample", [("s", "T1"), ("version", version(live.engine, "T1")),
                            ("action", "approve")])
    assert state(live.engine, "T1") == [S.RELEASED]
    old = version(live.engine, "T1")
    browser.get("/sample?s=T1")
    browser.post("/sample", [("s", "T1"), ("version", old), ("action", "correct"),
                             ("value", "6.5"), ("reason", "")])
    assert state(live.engine, "T1") == [S.RELEASED]
    browser.post("/sample", [("s", "T1"), ("version", old), ("action", "correct"),
                             ("value", "6.5"), ("reason", "nhập nhầm")])
    assert state(live.engine, "T1") == [S.CORRECTED]
    with live.engine.begin() as conn:
        [info] = repo.results_for_sample(conn, "T1")
    assert (info.latest.version, info.latest.content.value_raw) == (2, "6.5")
    assert info.latest.content.flags == ("H",) and info.latest.reason == "nhập nhầm"
    browser.post("/sample", [("s", "T1"), ("version", old), ("action", "comment"),
                             ("text", "xem lại")])
    assert any("changed since it was shown" in m for m in flashes(browser.get("/sample?s=T1").text))


def test_a_critical_value_is_acknowledged_with_who_and_when(live: Live) -> None:
    """The banner stays until someone records who was told and when; then it is gone."""
    browser = logged_in(live, "lan")
    browser.get("/sample?s=C1")
    browser.post("/sample", [("s", "C1"), ("version", version(live.engine, "C1")),
                             ("action", "acknowledge"), ("informed", ""),
                             ("informed_at", "2026-11-22T08:10"), ("how", "điện thoại")])
    assert 'class="critical-banner"' in browser.get("/sample?s=C1").text
    assert browser.post("/sample", [("s", "C1"), ("version", version(live.engine, "C1")),
                                    ("action", "acknowledge"), ("informed", "BS Hoa"),
                                    ("informed_at", "sáng nay")]).status == 400
    browser.get("/sample?s=C1")
    browser.post("/sample", [("s", "C1"), ("version", version(live.engine, "C1")),
                             ("action", "acknowledge"), ("informed", "BS Hoa"),
                             ("informed_at", "2026-11-22T08:10"), ("how", "điện thoại")])
    assert any("is in the future" in m for m in flashes(browser.get("/sample?s=C1").text))
    browser.post("/sample", [("s", "C1"), ("version", version(live.engine, "C1")),
                             ("action", "acknowledge"), ("informed", "BS Hoa"),
                             ("informed_at", "2026-11-22T07:55"), ("how", "điện thoại")])
    page = browser.get("/sample?s=C1")
    assert 'class="critical-banner"' not in page.text
    assert "Đã báo giá trị nguy hiểm cho BS Hoa lúc 22/11/2026 07:55 (điện thoại)" in page.text


def test_filters_and_bad_filter_values(live: Live) -> None:
    """The state filter narrows the list; a bad date or state is named on the page."""
    browser = logged_in(live, "dr_minh")
    held = browser.get("/worklist?state=held").text
    assert "/sample?s=C1" in held and "/sample?s=R2" not in held
    assert "/sample?s=T1" in browser.get("/worklist?priority=S").text
    assert "/sample?s=T1" not in browser.get("/worklist?priority=R").text
    assert "/sample?s=R2" in browser.get("/worklist?day=01/11/2026").text  # received 15:00
    assert "/sample?s=R2" not in browser.get("/worklist?day=2026-11-02").text
    bad = browser.get("/worklist?day=32/13/2026&state=lost").text
    assert "Ngày không hợp lệ (dd/mm/yyyy): 32/13/2026" in bad
    assert "Trạng thái không hợp lệ: lost" in bad
    assert "/sample?s=R2" not in browser.get("/worklist?analyzer=other").text


def test_no_patient_data_reaches_the_logs(live: Live) -> None:
    """Logins, page views and actions log ids and kinds only: no name, no patient number."""
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        browser = logged_in(live, "dr_hoa")
        browser.get("/worklist")
        browser.get("/sample?s=D2")
        browser.post("/sample", [("s", "D2"), ("version", version(live.engine, "D2")),
                                 ("action", "comment"), ("text", "gọi bà Phạm Thị Ánh")])
        Browser(live).login("dr_hoa", "sai")
    assert [e["event"] for e in logs] == ["webapp-login", "webapp-login-refused"]
    text = repr(logs)
    for secret in ("Phạm", "Ánh", "Trần", "Bình", "BN9", "D2"):
        assert secret not in text
