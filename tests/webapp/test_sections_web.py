"""Per-section authorisation over loopback TCP: who sees which samples, and the refusals.

Analyzer ``cobas`` is in section "hoá sinh" (biochemistry), ``xn`` in "huyết học"
(haematology). Lan holds biochemistry, Hùng haematology, Mới no section; ``root`` is
an admin only, ``quan`` an admin and technician. (A lab without sections works as
before: tests/webapp/test_pages.py runs without any.)
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
from lis_gateway.store.sections import set_user_sections

from ..store.test_repository import result
from .live import Browser, Live, add_user, glucose, receive, set_sections

S = ResultState
CHEM, HAEM = "hoá sinh", "huyết học"
REFUSED = "kết quả thuộc bộ phận huyết học, bạn không được phân công bộ phận này"


@pytest.fixture(scope="module", autouse=True)
def lab(live: Live) -> None:
    """Two sections, their people, and samples of each (M1 has a result of each)."""
    set_sections(live.engine, {"cobas": CHEM, "xn": HAEM})
    add_user(live.engine, "lan", "technician", sections=[CHEM])
    add_user(live.engine, "hung", "technician", sections=[HAEM])
    add_user(live.engine, "moi", "technician")
    add_user(live.engine, "root", "admin")
    add_user(live.engine, "quan", "admin", "technician")
    for sample, value, critical in (("B1", "5.4", ""), ("B2", "2.0", "LL"), ("B3", "5.2", "")):
        receive(live.engine, [glucose(sample, value, critical=critical)])
    for sample, value, critical in (("H1", "5.0", ""), ("H2", "1.9", "LL"), ("H3", "5.1", ""),
                                    ("H4", "5.3", "")):
        receive(live.engine, [glucose(sample, value, critical=critical)], analyzer="xn")
    receive(live.engine, [glucose("M1", "5.1")])
    receive(live.engine, [result(sample="M1", test="HGB", value="7.0")], analyzer="xn")


def logged_in(live: Live, user: str) -> Browser:
    """A browser logged in as ``user``."""
    browser = Browser(live)
    assert browser.login(user).status == 303
    return browser


def listed(page: str) -> set[str]:
    """The barcodes of the worklist's rows."""
    return set(re.findall(r'<td><a href="/sample\?s=(\w+)">', page))


def banner(page: str) -> str:
    """The critical-value banner ("" when none)."""
    parts = page.split('class="critical-banner"')
    return parts[1].split("</section>")[0] if len(parts) > 1 else ""


def flashes(page: str) -> list[str]:
    """The messages at the top of a page."""
    return [re.sub(r"\s+", " ", m) for m in re.findall(
        r'<p class="flash \w+" role="status">(.*?)</p>', page, re.S)]


def states(engine: Engine, accession: str) -> list[S]:
    """The states of a sample's results."""
    with engine.begin() as conn:
        return [judgements.result_status(conn, i.id).state
                for i in repo.results_for_sample(conn, accession)]


def version(engine: Engine, accession: str, test: str = "GLU") -> str:
    """The latest version id of the sample's result of ``test``."""
    with engine.begin() as conn:
        return str(next(i.latest.id for i in repo.results_for_sample(conn, accession)
                        if i.test_code == test))


def test_each_person_sees_their_sections_only(live: Live) -> None:
    """Lan sees biochemistry (M1 with its GLU only, B2's critical in the banner), Hùng
    haematology, Mới nothing with the reason, the admin everything with a section filter."""
    lan = logged_in(live, "lan").get("/worklist").text
    assert listed(lan) == {"B1", "B2", "B3", "M1"}
    assert "HGB" not in lan and "Bộ phận của bạn: hoá sinh" in lan
    assert "B2" in banner(lan) and "H2" not in banner(lan)
    assert f'<option value="{HAEM}"' not in lan and f'<option value="{CHEM}"' in lan

    hung = logged_in(live, "hung").get("/worklist").text
    assert listed(hung) == {"H1", "H2", "H3", "H4", "M1"}
    assert "HGB 7.0" in hung and "H2" in banner(hung) and "B2" not in banner(hung)

    moi = logged_in(live, "moi").get("/worklist").text
    assert listed(moi) == set() and banner(moi) == ""
    assert "Bạn chưa được phân công bộ phận xét nghiệm nào" in moi

    root = logged_in(live, "root")
    everything = root.get("/worklist").text
    assert listed(everything) == {"B1", "B2", "B3", "H1", "H2", "H3", "H4", "M1"}
    assert "B2" in banner(everything) and "H2" in banner(everything)
    assert listed(root.get("/worklist?section=huy%E1%BA%BFt+h%E1%BB%8Dc").text) == {
        "H1", "H2", "H3", "H4", "M1"}
    with live.engine.begin() as conn:
        views = [json.loads(e.detail)["samples"] for e in audit_entries(conn)
                 if e.action == "view.worklist" and e.actor == "lan"]
    assert set(views[-1]) == {"B1", "B2", "B3", "M1"}


def test_a_sample_of_another_section_is_refused_on_screen(live: Live) -> None:
    """Lan opening a haematology sample: 403 saying whose it is, audited as refused; a
    sample shared by both sections shows her result only."""
    lan = logged_in(live, "lan")
    page = lan.get("/sample?s=H1")
    assert page.status == 403
    assert "Kết quả của mẫu H1 thuộc bộ phận huyết học, bạn không được phân công" in page.text
    assert "5.0" not in page.text
    with live.engine.begin() as conn:
        refused = [(e.actor, e.target, json.loads(e.detail)) for e in audit_entries(conn)
                   if e.action == "view.sample-refused"]
    assert refused[-1] == ("lan", "sample:H1", {"sections": [HAEM]})
    shared = lan.get("/sample?s=M1").text
    assert "GLU" in shared and "HGB" not in shared and "hoá sinh" in shared
    assert logged_in(live, "root").get("/sample?s=H1").status == 200


@pytest.mark.parametrize("action,fields", [
    ("validate", []), ("reject", [("reason", "tan máu")]),
    ("rerun", [("reason", "đông")]), ("comment", [("text", "xem")]),
    ("acknowledge", [("informed", "BS Hoa"), ("informed_at", "2026-11-22T07:55"),
                     ("how", "điện thoại")])])
def test_actions_on_another_sections_result_are_refused(live: Live, action: str,
                                                        fields: list[tuple[str, str]]) -> None:
    """Every action of Lan's on a haematology result (a forged form) is refused with the
    reason in her language and changes nothing; nothing is audited as done."""
    lan = logged_in(live, "lan")
    lan.get("/worklist")
    target = "H2" if action == "acknowledge" else "H3"
    before = states(live.engine, target)
    with live.engine.begin() as conn:
        audited = len(audit_entries(conn))
    answer = lan.post("/sample", [("s", target), ("version", version(live.engine, target)),
                                  ("action", action), *fields])
    assert answer.status == 303
    assert f"Bị từ chối: GLU: {REFUSED}" in flashes(lan.get("/worklist").text)
    assert states(live.engine, target) == before
    with live.engine.begin() as conn:
        new = [e.action for e in audit_entries(conn)[audited:]]
    assert new == ["view.worklist"]


def test_a_forged_batch_and_a_section_given_later(live: Live) -> None:
    """A batch with a haematology version is refused for it and done for hers; once an
    administrator gives Lan haematology, she may validate it (read at every action)."""
    lan = logged_in(live, "lan")
    lan.get("/worklist")
    lan.post("/worklist", [("v", version(live.engine, "H3")), ("v", version(live.engine, "B3")),
                           ("action", "validate")])
    shown = flashes(lan.get("/worklist").text)
    assert f"Bị từ chối: GLU: {REFUSED}" in shown
    assert "Đã thực hiện: GLU (Chờ phê duyệt)" in shown
    assert states(live.engine, "H3") == [S.AUTOVERIFIED]
    assert states(live.engine, "B3") == [S.TECH_VALIDATED]
    with live.engine.begin() as conn:
        set_user_sections(conn, "lan", [CHEM, HAEM], live.now())
    try:
        lan.get("/sample?s=H3")
        lan.post("/sample", [("s", "H3"), ("version", version(live.engine, "H3")),
                             ("action", "validate")])
        assert states(live.engine, "H3") == [S.TECH_VALIDATED]
    finally:
        with live.engine.begin() as conn:
            set_user_sections(conn, "lan", [CHEM], live.now())


def test_an_admin_sees_everything_and_acts_by_their_other_roles(live: Live) -> None:
    """The admin role shows every section but grants no lifecycle action; an admin who is
    also a technician validates in any section."""
    root = logged_in(live, "root")
    root.get("/sample?s=H4")
    root.post("/sample", [("s", "H4"), ("version", version(live.engine, "H4")),
                          ("action", "validate")])
    assert any("may not validate" in m for m in flashes(root.get("/sample?s=H4").text))
    assert states(live.engine, "H4") == [S.AUTOVERIFIED]
    quan = logged_in(live, "quan")
    quan.get("/sample?s=H4")
    quan.post("/sample", [("s", "H4"), ("version", version(live.engine, "H4")),
                          ("action", "validate")])
    assert states(live.engine, "H4") == [S.TECH_VALIDATED]
