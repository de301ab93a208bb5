"""The delivery page over loopback TCP: the outbox per destination, a dead letter with the
HIS's reason retried from the page (CSRF, audited, admin only), the reconciliation report."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from lis_gateway.outbound.delivery import DeliveryStatus, EntryState
from lis_gateway.store import outbox
from lis_gateway.store.audit import audit_entries
from lis_gateway.webapp.admin import AdminSetup

from ..store.test_outbox import answer, enqueue, release
from .live import Browser, Live, add_user, glucose, receive
from .live_admin import start_app


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """Three released samples queued for "his": one delivered, one dead, one pending;
    one held sample; nothing yet for "lab-file"; users."""
    setup = AdminSetup(destinations=("his", "lab-file"))
    with start_app(tmp_path_factory.mktemp("delivery"), lambda _pool: setup) as started:
        engine = started.engine
        add_user(engine, "root", "admin")
        add_user(engine, "lan", "technician")
        for sample in ("D1", "D2", "D3"):
            receive(engine, [glucose(sample, "5.0")])
            release(engine, sample)
        receive(engine, [glucose("H1", "12.0")])
        enqueue(engine, "his")
        with engine.begin() as conn:
            first, second, _third = outbox.entries(conn, destination="his")
        answer(engine, first, DeliveryStatus.DELIVERED)
        answer(engine, second, DeliveryStatus.REJECTED, "PID-3: unknown patient")
        yield started


def logged_in(live: Live, user: str) -> Browser:
    """A browser logged in as ``user``."""
    browser = Browser(live)
    assert browser.login(user).status == 303
    return browser


def entry_of(live: Live, accession: str) -> outbox.OutboxEntry:
    """The "his" entry of a sample."""
    with live.engine.begin() as conn:
        return next(e for e in outbox.entries(conn, destination="his")
                    if e.accession == accession)


def test_each_destination_with_its_counts_dead_letters_and_pending(lab: Live) -> None:
    """his: 1 pending, 1 dead (with the HIS's text and a retry button), 1 delivered;
    lab-file is listed though nothing was queued for it; the view is audited."""
    page = logged_in(lab, "root").get("/delivery")
    assert page.status == 200
    his = page.text.split('data-destination="his"')[1].split("</tr>")[0]
    assert re.findall(r'<td class="(pending|dead[^"]*|delivered)">(\d+)</td>', his) == [
        ("pending", "1"), ("dead undelivered", "1"), ("delivered", "1")]
    assert 'data-destination="lab-file"' in page.text
    dead = entry_of(lab, "D2")
    dead_row = page.text.split(f'<tr data-entry="{dead.id}">')[1].split("</tr>")[0]
    assert "<strong>rejected</strong>: PID-3: unknown patient" in dead_row
    assert f'name="entry" value="{dead.id}"' in dead_row and "Gửi lại" in dead_row
    with lab.engine.begin() as conn:
        view = [e for e in audit_entries(conn) if e.action == "view.delivery"][-1]
    assert view.actor == "root" and json.loads(view.detail) == {"samples": ["D2", "D3"]}


def test_retry_needs_the_form_token_and_an_admin(lab: Live) -> None:
    """Without the CSRF token: 403, nothing done; a technician: 403; the admin: the entry
    is pending again, due now, audited with who; retrying it again is refused on the page."""
    dead = entry_of(lab, "D2")
    admin = logged_in(lab, "root")
    admin.get("/delivery")
    assert admin.post("/delivery/retry", [("entry", str(dead.id))], csrf=False).status == 403
    tech = logged_in(lab, "lan")
    tech.get("/worklist")
    assert tech.post("/delivery/retry", [("entry", str(dead.id))]).status == 403
    assert tech.get("/delivery").status == 403
    assert entry_of(lab, "D2").state is EntryState.DEAD
    answer_ = admin.post("/delivery/retry", [("entry", str(dead.id))])
    assert (answer_.status, answer_.header("location")) == (303, "/delivery")
    assert entry_of(lab, "D2").state is EntryState.PENDING
    page = admin.get("/delivery")
    assert f"Mục {dead.id} gửi his đã được xếp lại vào hàng đợi." in page.text
    with lab.engine.begin() as conn:
        retried = [e for e in audit_entries(conn) if e.action == "outbox.retry"][-1]
    assert (retried.actor, retried.target) == ("root", f"outbox:{dead.id}")
    admin.post("/delivery/retry", [("entry", str(dead.id))])
    assert "Không gửi lại: outbox entry" in admin.get("/delivery").text


def test_the_reconciliation_lists_what_is_not_delivered_everywhere(lab: Live) -> None:
    """Since the day the samples arrived: D1 is delivered to his but not queued for lab-file, the
    held H1 waits for validation; with "all" the delivered ones are counted too."""
    browser = logged_in(lab, "root")
    page = browser.get("/delivery/reconcile?since=01/11/2026")
    assert page.status == 200
    rows = page.text.split('<table class="admin reconcile">')[1]
    assert ">H1</a>" in rows and "chờ duyệt" in rows and "chưa vào hàng đợi" in rows
    assert "glu-limits" in rows  # why H1 waits
    totals = page.text.split('class="totals"')[1].split("</p>")[0]
    assert "đã gửi: <strong>1</strong>" in totals
    everything = browser.get("/delivery/reconcile?since=2026-11-01&all=1")
    assert everything.text.count('href="/sample?s=') >= 4
    bad = browser.get("/delivery/reconcile?since=h%C3%B4m%20qua")
    assert bad.status == 200 and "Ngày không hợp lệ (dd/mm/yyyy): hôm qua" in bad.text
    with lab.engine.begin() as conn:
        view = [e for e in audit_entries(conn) if e.action == "view.reconcile"]
    assert len(view) == 3 and json.loads(view[0].detail)["samples"] == ["D1", "D2", "D3", "H1"]
