"""The analyzers page over loopback TCP: a real ASTM link's state, NAKs and messages on the
status board, and its newest wire recording with control characters named."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from lis_gateway.store.audit import audit_entries
from lis_gateway.webapp.i18n import load_locales

from .live import Answer, Browser, add_user
from .live_admin import AdminLive, alt_message, send_astm, send_raw, start_admin_live

#: A frame whose checksum is wrong (the right one is 7F): the gateway answers NAK.
BAD_FRAME = b"\x021H|\\^&|||c311^1\r\x0300\r\n"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminLive]:
    """The app, the link, an administrator, a technician and a doctor."""
    with start_admin_live(tmp_path_factory.mktemp("analyzers")) as started:
        add_user(started.live.engine, "root", "admin")
        add_user(started.live.engine, "lan", "technician")
        add_user(started.live.engine, "dr_minh", "doctor")
        yield started


def logged_in(lab: AdminLive, user: str) -> Browser:
    """A browser logged in as ``user``."""
    browser = Browser(lab.live)
    assert browser.login(user).status == 303
    return browser


def row(page: Answer, link: str = "chem1") -> str:
    """The table row of one link."""
    return page.text.split(f'data-link="{link}"')[1].split("</tr>")[0]


def until_row_says(browser: Browser, text: str, tries: int = 100) -> str:
    """The link's row once it says ``text`` (the server notices a closed socket on its own
    turn; this waits for it, up to ``tries`` page loads)."""
    for _ in range(tries):
        found = row(browser.get("/analyzers"))
        if text in found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"the row never said {text!r}: {found}")


def test_a_link_never_connected_is_listed(lab: AdminLive) -> None:
    """Before any connection the configured link is listed, idle, with no errors; the
    technician sees the page but no wire-recording link."""
    page = logged_in(lab, "lan").get("/analyzers")
    assert page.status == 200
    found = row(page)
    assert "Chưa từng kết nối" in found and "roche-cobas · tcp-server 127.0.0.1:0" in found
    assert "/analyzers/wire" not in page.text


def test_nak_connection_and_messages_are_shown(lab: AdminLive) -> None:
    """A bad checksum is answered NAK (counted as sent), the connection is shown while open
    and its loss after; a message sent properly is counted with its time."""
    reply = send_raw(lab.link_port, b"\x05" + BAD_FRAME, expect=2)
    assert reply == b"\x06\x15"  # ACK to the ENQ, NAK to the frame
    browser = logged_in(lab, "lan")
    found = until_row_says(browser, "Mất kết nối")
    assert '<td class="naks">1 / 0</td>' in found
    send_astm(lab.link_port, alt_message("W1"))
    found = until_row_says(browser, "đã lưu 1 ·")
    status = lab.board.get("chem1")
    assert status is not None and status.messages == 1 and status.last_message is not None
    shown = load_locales()["vi"].datetime(datetime.fromtimestamp(status.last_message, UTC))
    assert f"<td>{shown}</td>" in found and '<td class="naks">1 / 0</td>' in found
    assert status.bytes_in > 0 and status.bytes_out >= 3


def test_the_admin_reads_the_newest_recording_and_the_view_is_audited(lab: AdminLive) -> None:
    """The wire page shows the last message's frames with <ENQ>, <STX>, <ETX>, <EOT> named
    and the barcode in the text; the view is audited with the file's name."""
    send_astm(lab.link_port, alt_message("W2"))
    browser = logged_in(lab, "root")
    assert "/analyzers/wire?link=chem1" in browser.get("/analyzers").text
    page = browser.get("/analyzers/wire?link=chem1&kb=4")
    assert page.status == 200
    for name in ("ENQ", "STX", "ETX", "EOT", "ACK", "CR"):
        assert f'<span class="ctl ctl-{name.lower()}">&lt;{name}&gt;</span>' in page.text
    assert "O|1|W2||^^^685" in page.text
    newest = max(lab.record_dir.glob("chem1-*.wire.jsonl"), key=lambda p: p.stat().st_mtime_ns)
    with lab.live.engine.begin() as conn:
        view = [e for e in audit_entries(conn) if e.action == "view.wire"][-1]
    assert (view.actor, view.target) == ("root", "link:chem1")
    assert json.loads(view.detail)["file"] == newest.name


def test_only_known_links_and_only_admins_get_recordings(lab: AdminLive) -> None:
    """An unknown link name (a path, say) is refused; a technician and a doctor get 403 on
    the recording, and the doctor on the status page too."""
    admin = logged_in(lab, "root")
    assert admin.get("/analyzers/wire?link=../lis.db").status == 400
    assert admin.get("/analyzers/wire?link=chem1&kb=lots").status == 400
    tech = logged_in(lab, "lan")
    refused = tech.get("/analyzers/wire?link=chem1")
    assert refused.status == 403 and "Quản trị viên" in refused.text
    doctor = logged_in(lab, "dr_minh")
    assert doctor.get("/analyzers").status == 403
