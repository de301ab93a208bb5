"""In Chromium: a released result that reached the HIS is corrected, validated again and
approved; the outbox worker then sends the HIS (an MLLP receiver on loopback TCP) an
ORU^R01 whose OBX-11 is C with the new value. In Vietnamese and in English."""

from __future__ import annotations

from collections.abc import Iterator

import hl7
import pytest
from playwright.sync_api import Page, expect

from lis_gateway.lifecycle import Policy
from lis_gateway.validation import validate_sample
from tests.mllp_his import MllpHis
from tests.webapp.live import Live, add_user, glucose, receive, start_outbox

from .steps import TEXTS, flash_ok, form, log_in, log_out, wait_for


@pytest.fixture
def his(live: Live) -> Iterator[MllpHis]:
    """The HIS on loopback, and the gateway's outbox worker sending to it."""
    receiver = MllpHis()
    worker = start_outbox(live, receiver.port)
    next(worker)
    try:
        yield receiver
    finally:
        worker.close()  # stops the worker
        receiver.close()


def shows_delivered(page: Page, lang: str) -> bool:
    """After a reload, the sample page says the HIS has the result's latest version."""
    page.reload()
    return TEXTS[lang]["delivered"] in page.locator("table.results").inner_text()


def parsed(message: bytes) -> hl7.Message:
    """An HL7 message read by python-hl7 (not the gateway's parser)."""
    return hl7.parse(message.decode("utf-8"))


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_a_correction_leaves_as_a_corrected_oru(live: Live, page: Page, his: MllpHis,
                                                lang: str) -> None:
    """F first; after correct, validate and approve on the page, a C with 6.5 follows."""
    add_user(live.engine, "lan", "technician", display="Nguyễn Thị Lan")
    add_user(live.engine, "dr_minh", "doctor", display="BS Minh")
    receive(live.engine, [glucose("K1", "5.4")], patient=("Trần", "Văn", "Bình"),
            hospital_id="BN1")
    with live.engine.begin() as conn:
        validate_sample(conn, "K1", "lan", Policy(), approve=False, at=live.now())
        validate_sample(conn, "K1", "dr_minh", Policy(), approve=True, at=live.now())
    [first] = wait_for("the first ORU^R01", lambda: his.messages())
    assert str(parsed(first).segment("OBX")[11]) == "F"
    text = TEXTS[lang]

    log_in(page, live, "lan", lang)
    page.goto(live.url + "/sample?s=K1")
    wait_for("the delivery on the sample page", lambda: shows_delivered(page, lang))
    correct = form(page, "correct")
    correct.locator("input[name=value]").fill("6.5")
    correct.locator("input[name=reason]").fill("nhập nhầm máy")
    correct.get_by_role("button", name=text["correct"]).click()
    flash_ok(page, lang, "corrected")
    expect(page.locator("table.results")).to_contain_text("6.5")
    form(page, "validate").get_by_role("button").click()
    flash_ok(page, lang, "awaiting")
    log_out(page)

    log_in(page, live, "dr_minh", lang)
    page.goto(live.url + "/sample?s=K1")
    form(page, "approve").get_by_role("button").click()
    flash_ok(page, lang, "released")

    first_again, second = wait_for("the corrected ORU^R01",
                                   lambda: his.messages() if len(his.messages()) > 1 else None)
    assert first_again == first
    oru = parsed(second)
    assert str(oru.segment("MSH")[9]) == "ORU^R01^ORU_R01"
    assert str(oru.segment("OBX")[11]) == "C"
    assert str(oru.segment("OBX")[5]) == "6.5"
    assert str(oru.segment("PID")[3]).startswith("BN1^^^BV_TEST")
    assert str(oru.segment("MSH")[10]) != str(parsed(first).segment("MSH")[10])
    wait_for("the corrected version's delivery on the page",
             lambda: shows_delivered(page, lang))
