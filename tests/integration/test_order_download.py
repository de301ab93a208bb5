"""Orders and reruns pushed to an analyzer that takes downloads (``order_download``).

Real parts: ``lis-gateway run`` in a subprocess on SQLite; the HIS posts
orders over loopback HTTP; the analyzer is the sans-IO ASTM link in the
instrument role over TCP (it connects after the order was committed, so the
download also proves the queue waited for it); the rerun is asked with the
``lis-gateway rerun`` command from another process.
"""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from lis_gateway.astm.events import FrameAccepted, MessageSent, SendFailed, TransferEnded
from lis_gateway.astm.link import LinkConfig, LinkConnection, Role

from .test_astm_host_query import MAPPING, tcp_reader
from .test_crash import Gateway
from .test_outbox_delivery import cli
from .test_rest_orders import ORDER, TOKEN, post, web_port

TIMEOUT = 30.0


class Instrument:
    """The analyzer's side of one TCP connection: takes downloads, sends results."""

    def __init__(self, sock: socket.socket) -> None:
        self.write: Callable[[bytes], None] = sock.sendall
        self.read = tcp_reader(sock)
        self.link = LinkConnection(LinkConfig(role=Role.INSTRUMENT, reply_timeout=5.0))

    def _turn(self, until: Callable[[object], bool]) -> None:
        text = b""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            for event in self.link.events():
                if isinstance(event, SendFailed):
                    raise AssertionError(f"not accepted: {event.reason}")
                if isinstance(event, FrameAccepted):
                    text += event.text
                if isinstance(event, TransferEnded):
                    self.received = text.decode("latin-1").strip("\r").split("\r")
                    text = b""
                if until(event):
                    return
            out = self.link.data_to_send()
            if out:
                self.write(out)
            data = self.read(0.1)
            now = time.monotonic()
            if data:
                self.link.receive_data(data, now)
            self.link.handle_timer(now)
        raise AssertionError("nothing within the timeout")

    def download(self) -> list[str]:
        """The record lines of the next message the gateway sends, times as <now>."""
        self._turn(lambda e: isinstance(e, TransferEnded))
        return [re.sub(r"\d{14}", "<now>", line) for line in self.received]

    def send(self, message: bytes) -> None:
        """Send one message and wait until the gateway has acknowledged it."""
        self.link.send(message, time.monotonic())
        self._turn(lambda e: isinstance(e, MessageSent))


def rows(db: Path) -> list[tuple[str, str, str, str, int]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT analyzer, action, test_code, state, attempts FROM downloads "
                            "ORDER BY id").fetchall()


def wait_for(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)  # polling the database, not asserting on speed
    raise AssertionError(what)


@pytest.mark.integration
def test_orders_cancellations_and_reruns_are_pushed_to_the_analyzer(tmp_path: Path) -> None:
    """An order waits for the analyzer to connect, then arrives as H/P/O (O-12 N, its own
    codes, names folded)/L; a rerun from the CLI arrives as O-12 A; a cancellation as C.
    Each row is sent only after the analyzer acknowledged it; a rerun of a result of an
    analyzer without order_download is not-sent, saying why."""
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "generic-astm.csv").write_text(MAPPING, encoding="utf-8")
    (tmp_path / "orders.token").write_text(TOKEN + "\n", encoding="utf-8")
    db = tmp_path / "lis.db"
    config = tmp_path / "lis-gateway.toml"
    config.write_text(f"""
[database]
url = "sqlite:///{db}"
[mappings]
directories = ["maps"]
[orders]
api_token_file = "orders.token"
[web]
listen = "127.0.0.1:0"
[[analyzers]]
name = "chem1"
driver = "generic-astm"
transport = "tcp-server"
listen = "127.0.0.1:0"
order_download = true
[[analyzers]]
name = "chem2"
driver = "generic-astm"
transport = "tcp-server"
listen = "127.0.0.1:0"
""", encoding="utf-8")
    log = tmp_path / "gateway.log"
    gateway = Gateway(config, log)
    try:
        port = web_port(log)
        assert post(port, json.dumps(ORDER).encode())[0] == 201
        assert rows(db) == [("chem1", "new", "GLU", "pending", 0),
                            ("chem1", "new", "K", "pending", 0)]
        with socket.create_connection(("127.0.0.1", gateway.port("chem1")), timeout=5) as sock:
            analyzer = Instrument(sock)
            assert analyzer.download() == [
                "H|\\^&|||LIS-GATEWAY|||||||P|LIS2-A2|<now>",
                "P|1|BN0009|||Nguyen^An^Van||19800102|M",
                "O|1|CD0009||^^^G1\\^^^K1|S|<now>|||||N||||||||||||||O",
                "L|1|N"]
            wait_for(lambda: [r[3] for r in rows(db)] == ["sent", "sent"], "not recorded sent")

            analyzer.send(b"H|\\^&|||SIM^1\rP|1\rO|1|CD0009||^^^G1\r"
                          b"R|1|^^^G1|35.0|mmol/L||H||F||||20261122081000\rL|1|N\r")
            cli(config, "user", "add", "lan", "--roles", "technician")
            cli(config, "rerun", "CD0009", "GLU", "--user", "lan", "--reason", "35 mmol/L?")
            rerun = analyzer.download()
            assert rerun[2] == "O|1|CD0009||^^^G1|S|<now>|||||A||||||||||||||O"

            cancel = {"message_id": "HIS-0002",
                      "orders": [{"action": "cancel", "barcode": "CD0009"}]}
            assert post(port, json.dumps(cancel).encode())[0] == 201
            cancelled = analyzer.download()
            assert cancelled[2] == "O|1|CD0009||^^^G1\\^^^K1|R|<now>|||||C||||||||||||||O"
            wait_for(lambda: all(r[3] == "sent" for r in rows(db)), "not all sent")

        with socket.create_connection(("127.0.0.1", gateway.port("chem2")), timeout=5) as sock:
            Instrument(sock).send(b"H|\\^&|||SIM^2\rP|1\rO|1|CD0010||^^^G1\r"
                                  b"R|1|^^^G1|5.0|mmol/L||N||F||||20261122081500\rL|1|N\r")
        cli(config, "rerun", "CD0010", "G1", "--user", "lan", "--reason", "check")
        wait_for(lambda: rows(db)[-1][:4] == ("chem2", "rerun", "G1", "not-sent"),
                 f"chem2's rerun not settled: {rows(db)}")
        with sqlite3.connect(db) as conn:
            (why,) = conn.execute("SELECT last_error FROM downloads WHERE analyzer = 'chem2'"
                                  ).fetchone()
        assert "takes no downloads" in why
        listed = [json.loads(line) for line in cli(
            config, "downloads", "list", "--state", "not-sent", "--json").stdout.splitlines()]
        assert [(r["analyzer"], r["sample"], r["action"], r["test"]) for r in listed] == [
            ("chem2", "CD0010", "rerun", "G1")]
        retried = cli(config, "downloads", "retry", str(listed[0]["id"]), "--user", "lan")
        assert "is pending again" in retried.stdout

        # the same process's /metrics counted what crossed the links; /readyz is ready
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            scraped = answer.read().decode()
        for line in ('lis_gateway_frames_total{analyzer="chem1",outcome="accepted"}',
                     'lis_gateway_messages_total{analyzer="chem1",outcome="stored"} 1.0',
                     'lis_gateway_messages_total{analyzer="chem2",outcome="stored"} 1.0',
                     'lis_gateway_downloads_total{analyzer="chem1",state="sent"} 5.0',
                     'lis_gateway_commit_ack_seconds_count{analyzer="chem1"} 1.0'):
            assert line in scraped, line
        assert "BN0009" not in scraped and "Nguy" not in scraped
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            assert (answer.status, answer.read()) == (200, b"ready\n")
    finally:
        assert gateway.stop() == 0, log.read_text("utf-8")
