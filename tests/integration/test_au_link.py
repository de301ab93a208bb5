"""Beckman AU online analyzers against the real gateway: one on loopback TCP, one on a pty.

``lis-gateway run --config`` runs in a subprocess with two ``beckman-au``
links and a SQLite store. The analyzer is played here by the sans-IO
:class:`~lis_gateway.au_online.AuSender` over a blocking socket and over the
master side of a pseudo-terminal (the gateway opens the slave as its serial
device). It sends the AU480 capture texts with a BCC: a corrupted block
first (NAK), then the same text again (ACK once stored), the 17-test text in
ETB blocks between DB and DE, and a text resent as after a lost ACK. The
results are then read with ``lis-gateway results --json`` and the messages
from the store.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import sys
import time
import tty
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select as sql_select

from lis_gateway.au_online import (
    AuSender,
    SenderConfig,
    TextFailed,
    TextSent,
    encode_block,
    encode_text,
)
from lis_gateway.store import repository as repo
from lis_gateway.store import schema as s
from lis_gateway.store.engine import make_engine

from ._harness import GatewayProcess, wait_for_recording
from .test_crash import STARTUP_TIMEOUT, Gateway

ACK, NAK = b"\x06", b"\x15"
TIMEOUT = 30.0
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "astm" / "beckman-au"
TEXT_2 = (FIXTURES / "beckman_2.bin").read_bytes()[1:-1]  # DOEJAN 41, 17 tests
TEXT_3 = (FIXTURES / "beckman_3.bin").read_bytes()[1:-1]  # ROEMARY 7, 098 = 3.68
#: beckman_2's (test number, value) pairs, read off the fixture bytes
BECKMAN_2 = {
    "005": "3.58", "006": "79.66", "007": "11.34", "009": "23.19", "011": "116.09",
    "013": "1.80", "015": "0.72", "017": "0.20", "018": "14.15", "020": "40.42",
    "026": "0.72", "027": "6.71", "028": "96.23", "030": "31.69", "097": "131.69",
    "098": "4.44", "099": "100.00"}
#: a site table for the test: 098 mapped to a made-up local code, the rest left unmapped
MAPPING = ("analyzer_code,local_code,national_code,appendix11_code,loinc,name_vi,name_en,"
           "analyzer_unit,unit_ucum,factor,offset,decimals,critical_low,critical_high,"
           "autoverify_low,autoverify_high\n"
           "098,AU098,,,,Xet nghiem 098,Test 098,,mmol/L,1,0,2,,,,\n")

Write = Callable[[bytes], None]
Read = Callable[[float], bytes]


def play(texts: list[bytes], write: Write, read: Read, max_block: int = 0) -> bytes:
    """Send ``texts`` as the analyzer until each is acknowledged; return every reply byte."""
    sender = AuSender(SenderConfig(max_block=max_block, reply_timeout=5.0))
    for text in texts:
        sender.send(text, time.monotonic())
    replies, sent = b"", 0
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        out = sender.data_to_send()
        if out:
            write(out)
        for event in sender.events():
            if isinstance(event, TextFailed):
                raise AssertionError(f"the gateway did not take a text: {event.reason}")
            sent += isinstance(event, TextSent)
        if sent == len(texts):
            return replies
        data = read(0.1)
        now = time.monotonic()
        if data:
            replies += data
            sender.receive_data(data, now)
        sender.handle_timer(now)
    raise AssertionError("texts not acknowledged in time")


def reply_to(block: bytes, write: Write, read: Read) -> bytes:
    """Write one block and return the gateway's one-byte answer."""
    write(block)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        data = read(0.1)
        if data:
            return data
    raise AssertionError("no answer to the block")


def corrupted(block: bytes) -> bytes:
    """The block with a flipped bit in its text: its BCC no longer matches."""
    return block[:10] + bytes([block[10] ^ 0x01]) + block[11:]


def socket_io(sock: socket.socket) -> tuple[Write, Read]:
    def read(wait: float) -> bytes:
        sock.settimeout(wait)
        try:
            data = sock.recv(4096)
        except TimeoutError:
            return b""
        if not data:
            raise AssertionError("the gateway closed the connection")
        return data

    return sock.sendall, read


def pty_io(master: int) -> tuple[Write, Read]:
    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(master, view):]

    def read(wait: float) -> bytes:
        ready, _, _ = select.select([master], [], [], wait)
        return os.read(master, 4096) if ready else b""

    return write, read


def session(write: Write, read: Read, *, text2_blocks: int) -> None:
    """One analyzer's traffic: NAK then retransmission, DB/ETB text/DE, a resend."""
    good = encode_block(TEXT_3)
    assert reply_to(corrupted(good), write, read) == NAK
    assert play([TEXT_3], write, read) == ACK  # the retransmission, ACKed once stored
    blocks = len(encode_text(TEXT_2, max_block=text2_blocks))
    replies = play([b"DB", TEXT_2, b"DE"], write, read, max_block=text2_blocks)
    assert replies == ACK * (blocks + 2)
    assert play([TEXT_3], write, read) == ACK  # as after a lost ACK: stored once


def config_for(tmp_path: Path, device: str) -> Path:
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "beckman-au.csv").write_text(MAPPING, encoding="utf-8")
    config = tmp_path / "lis-gateway.toml"
    config.write_text(f"""
[database]
url = "sqlite:///{tmp_path / 'lis.db'}"
[mappings]
directories = ["maps"]
[[analyzers]]
name = "au-tcp"
driver = "beckman-au"
transport = "tcp-server"
listen = "127.0.0.1:0"
[[analyzers]]
name = "au-pty"
driver = "beckman-au"
transport = "serial"
device = "{device}"
""", encoding="utf-8")
    return config


def wait_opened(log: Path, name: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if re.search(name + r" opened /dev/", log.read_text("utf-8", "replace")):
            return
        time.sleep(0.05)  # polling a file, not asserting on speed
    raise AssertionError(f"{name} was not opened:\n" + log.read_text("utf-8"))


def check_results(results: list[dict[str, object]], analyzer: str) -> None:
    """Both capture texts, each result once, values as sent, 098 mapped, held for a person."""
    mine = [r for r in results if r["analyzer"] == analyzer]
    one = [r for r in mine if r["sample_id"] == "ROEMARY 7"]
    assert [(r["test"], r["value"], r["code"]) for r in one] == [("098", "3.68", "AU098")]
    seventeen = {r["test"]: r for r in mine if r["sample_id"] == "DOEJAN 41"}
    assert {t: r["value"] for t, r in seventeen.items()} == BECKMAN_2
    assert len(mine) == 18
    assert (seventeen["098"]["code"], seventeen["098"]["number"]) == ("AU098", "4.44")
    assert seventeen["005"]["code"] == ""  # not in the site's table: kept, not mapped
    assert {r["state"] for r in mine} == {"held"}


@pytest.mark.integration
def test_au_analyzers_over_tcp_and_a_pty_reach_the_store(tmp_path: Path) -> None:
    """NAK on a bad BCC, the retransmission stored, ETB blocks joined, a resend stored once."""
    master, slave = os.openpty()
    tty.setraw(master)
    config = config_for(tmp_path, os.ttyname(slave))
    log = tmp_path / "gateway.log"
    gateway = Gateway(config, log)
    try:
        port = gateway.port("au-tcp")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            session(*socket_io(sock), text2_blocks=64)
        wait_opened(log, "au-pty")
        session(*pty_io(master), text2_blocks=100)
    finally:
        status = gateway.stop()
        os.close(master)
        os.close(slave)
    assert status == 0, log.read_text("utf-8")

    out = subprocess.run([sys.executable, "-m", "lis_gateway", "results", "--config",
                          str(config), "--json"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    results = [json.loads(line) for line in out.splitlines()]
    check_results(results, "au-tcp")
    check_results(results, "au-pty")

    engine = make_engine(f"sqlite:///{tmp_path / 'lis.db'}")
    try:
        with engine.begin() as conn:
            rows = conn.execute(sql_select(s.messages.c.id, s.messages.c.analyzer_id,
                                           s.messages.c.protocol, s.messages.c.raw)).all()
            receptions = {row.id: [r for _, r in repo.message_receptions(conn, row.id)]
                          for row in rows}
    finally:
        engine.dispose()
    assert {row.protocol for row in rows} == {"au"} and len(rows) == 4
    assert len({row.analyzer_id for row in rows}) == 2
    for row in rows:  # TEXT_3 twice on each link, the second time a repeat
        again = bytes(row.raw) == encode_block(TEXT_3)
        assert receptions[row.id] == ([False, True] if again else [False])
    raws = {bytes(row.raw) for row in rows}
    assert b"".join(encode_text(TEXT_2, max_block=64)) in raws  # the blocks as received
    assert b"".join(encode_text(TEXT_2, max_block=100)) in raws
    text = log.read_text("utf-8")
    assert '"block-rejected"' in text and "ROEMARY" not in text and "DOEJAN" not in text


@pytest.mark.integration
def test_receive_prints_an_au_analyzers_results(tmp_path: Path) -> None:
    """``lis-gateway receive --driver beckman-au`` ACKs each block and prints the rows."""
    record_dir = tmp_path / "wire"
    gateway = GatewayProcess(["--tcp-listen", "127.0.0.1:0", "--name", "au",
                              "--driver", "beckman-au", "--record-dir", str(record_dir)])
    try:
        port = int(gateway.wait_for_status(r"au listening on 127\.0\.0\.1:(\d+)").group(1))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            write, read = socket_io(sock)
            assert play([b"DB", TEXT_3, b"DE"], write, read, max_block=30) == ACK * 5
            rows = gateway.rows(1)
        expected = b"".join([encode_block(b"DB"), *encode_text(TEXT_3, max_block=30),
                             encode_block(b"DE")])
        assert wait_for_recording(record_dir, expected) == expected
    finally:
        status = gateway.stop()
    assert status == 0
    assert [(r["link"], r["sample_id"], r["test"], r["value"]) for r in rows] == [
        ("au", "ROEMARY 7", "098", "3.68")]
