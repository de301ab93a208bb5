"""In Chromium: a result held by the delta check is validated by a technician from its
sample page (which shows the previous value, the delta and the rule's reason) and
approved by a lab doctor, in Vietnamese and in English."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from lis_gateway.lifecycle import ResultState
from lis_gateway.store import judgements
from lis_gateway.store import repository as repo
from tests.webapp.live import Live, add_user, glucose, receive

from .steps import TEXTS, flash_ok, form, log_in, log_out


def state(live: Live, accession: str) -> ResultState:
    """The state of a sample's only result."""
    with live.engine.begin() as conn:
        [info] = repo.results_for_sample(conn, accession)
        return judgements.result_status(conn, info.id).state


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_a_delta_failure_is_validated_then_approved(live: Live, page: Page, lang: str) -> None:
    """The patient's glucose was 5.0 half an hour ago and is 8.0 now: held "glu-delta";
    the technician sees why and validates, a doctor approves: released."""
    add_user(live.engine, "lan", "technician", display="Nguyễn Thị Lan")
    add_user(live.engine, "dr_minh", "doctor", display="BS Minh")
    patient = ("Trần", "Văn", "Bình")
    receive(live.engine, [glucose("P1", "5.0", minute=1)], patient=patient,
            hospital_id="BN9", ordered=True)
    receive(live.engine, [glucose("P2", "8.0", minute=30)], patient=patient,
            hospital_id="BN9", ordered=True)
    assert state(live, "P2") is ResultState.HELD
    text = TEXTS[lang]

    log_in(page, live, "lan", lang)
    row = page.locator("table.worklist tr", has=page.locator('a[href="/sample?s=P2"]'))
    expect(row).to_contain_text(text["held"])
    expect(row).to_contain_text("glu-delta: delta 3.0 exceeds 2")
    page.locator('a[href="/sample?s=P2"]').click()
    expect(page.locator("h1")).to_contain_text(f"{text['sample']} P2")
    results = page.locator("table.results")
    expect(results).to_contain_text("8.0")
    expect(results).to_contain_text("Δ +3")
    expect(results).to_contain_text("5.0")
    page.locator("details summary").click()
    expect(results).to_contain_text("glu-delta: hold — delta 3.0 exceeds 2")
    form(page, "validate").get_by_role("button").click()
    flash_ok(page, lang, "awaiting")
    expect(form(page, "approve")).to_have_count(0)  # approval is the doctor's
    log_out(page)

    log_in(page, live, "dr_minh", lang)
    page.locator("select[name=state]").select_option("tech-validated")
    page.locator("form.filters button[type=submit]").click()
    expect(page.locator("table.worklist tbody tr")).to_have_count(1)
    page.locator('a[href="/sample?s=P2"]').click()
    form(page, "approve").get_by_role("button").click()
    flash_ok(page, lang, "released")
    assert state(live, "P2") is ResultState.RELEASED
