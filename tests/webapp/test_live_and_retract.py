"""The worklist's live part (what its script asks every few seconds) and retraction from
the sample page, over loopback TCP on a real SQLite store."""

from __future__ import annotations

import json
import re

import pytest

from lis_gateway.lifecycle import Policy, ResultState
from lis_gateway.store import judgements, outbox
from lis_gateway.store import repository as repo
from lis_gateway.store.audit import audit_entries
from lis_gateway.validation import validate_sample
from lis_gateway.webapp.sessions import IDLE_TIMEOUT

from .live import Browser, Live, add_user, glucose, receive


@pytest.fixture(scope="module", autouse=True)
def lab(live: Live) -> None:
    """People, an autoverified sample, a critical one and two released ones."""
    add_user(live.engine, "lan", "technician")
    add_user(live.engine, "dr_minh", "doctor")
    receive(live.engine, [glucose("L1", "5.4")])
    receive(live.engine, [glucose("L2", "2.0", critical="LL")])
    for sample in ("R1", "R2"):
        receive(live.engine, [glucose(sample, "5.0")])
        with live.engine.begin() as conn:
            validate_sample(conn, sample, "lan", Policy(), approve=False, at=live.now())
            validate_sample(conn, sample, "dr_minh", Policy(), approve=True, at=live.now())


def worklist_views(live: Live, user: str) -> list[dict[str, object]]:
    """The details of ``user``'s worklist views, oldest first."""
    with live.engine.begin() as conn:
        return [json.loads(e.detail) for e in audit_entries(conn)
                if e.action == "view.worklist" and e.actor == user]


def state(live: Live, accession: str) -> ResultState:
    """The state of a sample's only result."""
    with live.engine.begin() as conn:
        [info] = repo.results_for_sample(conn, accession)
        return judgements.result_status(conn, info.id).state


def test_the_live_part_is_the_list_and_the_banner_and_keeps_messages(live: Live) -> None:
    """With the page's filters: the rows and the banner only, no page around them; a
    message waiting for the next page is left for it."""
    browser = Browser(live)
    browser.login("lan")
    page = browser.get("/worklist?priority=R").text
    assert 'data-url="/worklist?priority=R&amp;part=live"' in page
    browser.post("/worklist", [("action", "validate")])  # nothing selected: a message
    part = browser.get("/worklist?priority=R&part=live")
    assert part.status == 200 and "<html" not in part.text
    assert 'id="live-rows"' in part.text and "/sample?s=L1" in part.text
    assert 'class="critical-banner"' in part.text and "L2" in part.text
    assert "Chưa chọn mẫu nào." not in part.text
    assert "Chưa chọn mẫu nào." in browser.get("/worklist").text
    assert browser.get("/worklist?part=live&state=lost").status == 200


def test_the_live_part_is_audited_only_when_the_list_changes(live: Live) -> None:
    """Asking again with nothing new writes nothing; a new sample is audited once, marked
    as a refresh, with the barcodes then shown."""
    browser = Browser(live)
    browser.login("lan")
    browser.get("/worklist")
    before = len(worklist_views(live, "lan"))
    browser.get("/worklist?part=live")
    browser.get("/worklist?part=live")
    assert len(worklist_views(live, "lan")) == before
    receive(live.engine, [glucose("L3", "5.2")])
    assert "/sample?s=L3" in browser.get("/worklist?part=live").text
    browser.get("/worklist?part=live")
    views = worklist_views(live, "lan")
    assert len(views) == before + 1
    shown = views[-1]["samples"]
    assert views[-1]["refresh"] is True and isinstance(shown, list) and "L3" in shown


def test_the_live_part_does_not_keep_a_session_alive(live: Live) -> None:
    """A screen left alone ends its session though its script keeps asking: the live part
    answers 401 (the script then reloads, and the reload meets the login page)."""
    browser = Browser(live)
    browser.login("lan")
    browser.get("/worklist")
    live.advance(IDLE_TIMEOUT - 1)
    assert browser.get("/worklist?part=live").status == 200
    live.advance(2)
    assert browser.get("/worklist?part=live").status == 401
    assert browser.get("/worklist").status == 303
    assert Browser(live).get("/worklist?part=live").status == 401


def test_a_doctor_retracts_a_released_result_from_the_page(live: Live) -> None:
    """Only a lab doctor is offered the retraction; a technician's forged one is refused, a
    doctor's without a reason too; with one the result is retracted (audited) and every
    destination is then queued a deletion after the result itself."""
    tech = Browser(live)
    tech.login("lan")
    page = tech.get("/sample?s=R1").text
    assert 'value="retract"' not in page
    version = re.search(r'name="version" value="(\d+)"', page)
    assert version is not None
    tech.post("/sample", [("s", "R1"), ("version", version.group(1)), ("action", "retract"),
                          ("reason", "nhầm bệnh nhân")])
    assert "may not retract" in tech.get("/sample?s=R1").text
    doctor = Browser(live)
    doctor.login("dr_minh")
    page = doctor.get("/sample?s=R1").text
    assert 'value="retract"' in page and "Lý do phải thu hồi" in page
    doctor.post("/sample", [("s", "R1"), ("version", version.group(1)), ("action", "retract"),
                            ("reason", " ")])
    assert "retract requires a reason" in doctor.get("/sample?s=R1").text
    assert state(live, "R1") is ResultState.RELEASED
    doctor.post("/sample", [("s", "R1"), ("version", version.group(1)), ("action", "retract"),
                            ("reason", "nhầm bệnh nhân")])
    page = doctor.get("/sample?s=R1").text
    assert "Đã lưu: GLU (Đã thu hồi)" in page and "nhầm bệnh nhân" in page
    assert state(live, "R1") is ResultState.RETRACTED
    with live.engine.begin() as conn:
        [event] = [e for e in audit_entries(conn) if e.action == "lifecycle.retract"]
        assert event.actor == "dr_minh"
        assert json.loads(event.detail)["reason"] == "nhầm bệnh nhân"
        outbox.enqueue_released(conn, "his", live.now())
        kinds = [(e.accession, e.kind) for e in outbox.entries(conn, destination="his")]
    assert kinds == [("R1", "result"), ("R2", "result"), ("R1", "retraction")]
