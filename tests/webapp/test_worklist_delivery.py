"""Delivered and not delivered in the worklist and on the sample page, from the outbox.

Four released samples and two destinations (``his``, ``his2``): D1 acknowledged by both
(delivered), D2 dead-lettered by ``his`` (AR), D3 failed once at ``his`` and waiting to
be retried (both not delivered), D4 queued and not yet tried (released).
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from lis_gateway.lifecycle import Policy
from lis_gateway.outbound.delivery import Decision, DeliveryStatus, EntryState
from lis_gateway.store import outbox
from lis_gateway.validation import validate_sample

from .live import Browser, Live, add_user, glucose, receive


def entry(live: Live, accession: str, destination: str) -> outbox.OutboxEntry:
    """The result entry of a sample for one destination."""
    with live.engine.begin() as conn:
        [found] = [e for e in outbox.entries(conn, destination=destination)
                   if e.accession == accession and e.kind == outbox.RESULT]
    return found


def answer(live: Live, accession: str, destination: str, status: DeliveryStatus,
           state: EntryState, error: str = "") -> None:
    """Record one attempt's answer for a sample's entry, as the outbox worker does."""
    at = live.now()
    later = at + timedelta(minutes=1) if state is EntryState.PENDING else None
    entry_id = entry(live, accession, destination).id
    with live.engine.begin() as conn:
        outbox.record_attempt(conn, entry_id, status,
                              Decision(state, later.timestamp() if later else None),
                              error=error, at=at, next_attempt_at=later)


@pytest.fixture(scope="module", autouse=True)
def lab(live: Live) -> None:
    """Released samples and what each destination answered."""
    add_user(live.engine, "lan", "technician")
    add_user(live.engine, "dr_minh", "doctor")
    for sample in ("D1", "D2", "D3", "D4"):
        receive(live.engine, [glucose(sample, "5.4")])
        with live.engine.begin() as conn:
            validate_sample(conn, sample, "lan", Policy(), approve=False, at=live.now())
            validate_sample(conn, sample, "dr_minh", Policy(), approve=True, at=live.now())
    receive(live.engine, [glucose("H1", "12.0")])
    with live.engine.begin() as conn:
        for destination in ("his", "his2"):
            assert outbox.enqueue_released(conn, destination, live.now()) == 4
    answer(live, "D1", "his", DeliveryStatus.DELIVERED, EntryState.DELIVERED)
    answer(live, "D1", "his2", DeliveryStatus.DELIVERED, EntryState.DELIVERED)
    answer(live, "D2", "his", DeliveryStatus.REJECTED, EntryState.DEAD,
           "unknown patient in HIS")
    answer(live, "D2", "his2", DeliveryStatus.DELIVERED, EntryState.DELIVERED)
    answer(live, "D3", "his", DeliveryStatus.TIMEOUT, EntryState.PENDING)


def rows(page: str) -> dict[str, str]:
    """Each worklist row's barcode and its state cell, as text."""
    found = {}
    for row in re.findall(r"<tr class=\"[^\"]*\">(.*?)</tr>", page, re.S):
        barcode = re.search(r'href="/sample\?s=(\w+)"', row)
        if barcode:
            cells = re.findall(r"<td>(.*?)</td>", row, re.S)
            found[barcode.group(1)] = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", cells[4]))
    return found


def test_the_worklist_says_delivered_not_delivered_or_released(live: Live) -> None:
    """Each released sample shows where it is; failing ones say which destination answered
    what, and come before the released and delivered ones."""
    browser = Browser(live)
    browser.login("lan")
    page = browser.get("/worklist").text
    shown = rows(page)
    assert shown["D1"].strip() == "Đã gửi HIS"
    assert shown["D2"].strip().startswith("Chưa gửi được HIS")
    assert "GLU: his: rejected; unknown patient in HIS (dead, 1)" in shown["D2"]
    assert "GLU: his: timeout (pending, 1)" in shown["D3"]
    assert shown["D4"].strip() == "Đã phát hành"
    order = list(shown)
    assert order.index("D2") < order.index("D4") and order.index("D3") < order.index("D1")
    assert order[0] == "H1"


@pytest.mark.parametrize("state,expected", [
    ("delivered", {"D1"}), ("not-delivered", {"D2", "D3"}), ("released", {"D4"}),
    ("held", {"H1"})])
def test_the_state_filter_selects_delivered_and_not_delivered(live: Live, state: str,
                                                             expected: set[str]) -> None:
    """Delivered, not delivered and released are three different filters."""
    browser = Browser(live)
    browser.login("lan")
    page = browser.get(f"/worklist?state={state}").text
    assert set(rows(page)) == expected
    assert f'<option value="{state}" selected>' in page


def test_the_sample_page_shows_each_destination(live: Live) -> None:
    """Per destination: delivered with the time, or not delivered with the HIS's answer."""
    browser = Browser(live)
    browser.login("lan")
    page = browser.get("/sample?s=D2").text
    assert "his: <strong>chưa gửi được</strong>: rejected; unknown patient in HIS" in page
    assert "his2: đã gửi lúc 22/11/2026 08:00" in page
    retrying = browser.get("/sample?s=D3").text
    assert "his: <strong>chưa gửi được</strong>, đang thử lại (1 lần gửi): timeout" in retrying
    assert "đang chờ gửi" in browser.get("/sample?s=D4").text


def test_a_retried_entry_that_arrives_makes_the_sample_delivered(live: Live) -> None:
    """A person retries the dead entry; once the HIS acknowledges it, D2 is delivered."""
    entry_id = entry(live, "D2", "his").id
    with live.engine.begin() as conn:
        outbox.retry(conn, entry_id, actor="lan", at=live.now())
    answer(live, "D2", "his", DeliveryStatus.DELIVERED, EntryState.DELIVERED)
    browser = Browser(live)
    browser.login("lan")
    assert set(rows(browser.get("/worklist?state=delivered").text)) == {"D1", "D2"}
    assert set(rows(browser.get("/worklist?state=not-delivered").text)) == {"D3"}
