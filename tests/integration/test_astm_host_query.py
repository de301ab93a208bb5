"""An ASTM analyzer's host query answered from the HIS's order, over real loopback TCP
and over a real serial line (a pseudo-terminal pair).

``lis-gateway run --config`` runs in a subprocess with an order link and two
ASTM links; the HIS's ORM^O01 goes in over MLLP; the analyzer, played here
by the sans-IO link in the instrument role, sends ``H, Q, L`` and then
receives the gateway's reply session (ENQ, frames, EOT), acknowledging each
frame. An unknown barcode gets ``L|1|I``. A Roche cobas e 411 (roche-cobas
driver) asking in its ``TSREQ^REAL`` form gets the ``TSDWN^REPLY`` form of its
manual (corpus roche_5), its sequence, carrier and position echoed in O-4.
"""

from __future__ import annotations

import os
import re
import socket
import time
import tty
from collections.abc import Callable
from pathlib import Path

import pytest

from lis_gateway.astm.events import FrameAccepted, MessageSent, SendFailed, TransferEnded
from lis_gateway.astm.link import LinkConfig, LinkConnection, Role

from .test_crash import Gateway
from .test_outbox_delivery import order_port, send_order

TIMEOUT = 30.0
ORDER = (b"MSH|^~\\&|HIS|BV_TEST|LIS||20261122080000||ORM^O01|ORD7|P|2.3.1\r"
         b"PID|1||BN0007^^^BV_TEST^PI||Nguy\xe1\xbb\x85n^An||19800102|M\r"
         b"ORC|NW|CD0007|||||^^^^^S\rOBR|1|CD0007||GLU\r"
         b"ORC|NW|CD0007\rOBR|2|CD0007||K\r")
MAPPING = """analyzer_code,local_code,national_code,appendix11_code,loinc,name_vi,name_en,\
analyzer_unit,unit_ucum,factor,offset,decimals,critical_low,critical_high,autoverify_low,\
autoverify_high
G1,GLU,,,2345-7,Glucose,Glucose,mmol/L,mmol/L,1,0,1,,,,
K1,K,,,2823-3,Kali,Potassium,mmol/L,mmol/L,1,0,1,,,,
"""
#: A site table for the e 411: its application codes for the same two local tests.
ROCHE_MAPPING = MAPPING.replace("G1,GLU", "10,GLU").replace("K1,K", "30,K")


def cobas_query(barcode: str) -> bytes:
    """The e 411's query in the cobas form (manual p. 51), for ``barcode``."""
    return (f"H|\\^&|||cobas-e411^1|||||host|TSREQ^REAL|P|1\r"
            f"Q|1|^^{barcode}^40^0^5^^S1^SC||ALL||||||||O\r"
            f"L|1|N\r").encode()


def query(barcode: str) -> bytes:
    return (f"H|\\^&|||SIM-CHEM^1|||||||P|LIS2-A2|20261122080500\r"
            f"Q|1|^{barcode}^12^3||ALL||||||||O\rL|1|N\r").encode()


def ask(write: Callable[[bytes], None], read: Callable[[float], bytes | None],
        barcode: str, message: bytes | None = None) -> list[str]:
    """Send one query as the instrument; return the record lines of the gateway's reply."""
    link = LinkConnection(LinkConfig(role=Role.INSTRUMENT, reply_timeout=5.0))
    link.send(message or query(barcode), time.monotonic())
    sent, text = False, b""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        for event in link.events():
            if isinstance(event, SendFailed):
                raise AssertionError(f"the query was not accepted: {event.reason}")
            if isinstance(event, MessageSent):
                sent = True
            if isinstance(event, FrameAccepted):
                text += event.text
            if isinstance(event, TransferEnded) and sent:
                return text.decode("latin-1").strip("\r").split("\r")
        out = link.data_to_send()
        if out:
            write(out)
        data = read(0.1)
        now = time.monotonic()
        if data:
            link.receive_data(data, now)
        link.handle_timer(now)
    raise AssertionError("no reply within the timeout")


def tcp_reader(sock: socket.socket) -> Callable[[float], bytes | None]:
    """``read(wait)`` for :func:`ask` over a socket: None when nothing came in time."""
    def read(wait: float) -> bytes | None:
        sock.settimeout(wait)
        try:
            return sock.recv(4096)
        except TimeoutError:
            return None
    return read


def config_for(tmp_path: Path, device: str) -> Path:
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "generic-astm.csv").write_text(MAPPING, encoding="utf-8")
    (tmp_path / "maps" / "roche-cobas.csv").write_text(ROCHE_MAPPING, encoding="utf-8")
    config = tmp_path / "lis-gateway.toml"
    config.write_text(f"""
[database]
url = "sqlite:///{tmp_path / 'lis.db'}"
[mappings]
directories = ["maps"]
[orders]
mllp_listen = "127.0.0.1:0"
hospital = "BV_TEST"
[[analyzers]]
name = "chem1"
driver = "generic-astm"
transport = "tcp-server"
listen = "127.0.0.1:0"
[[analyzers]]
name = "chem2"
driver = "generic-astm"
transport = "serial"
device = "{device}"
[[analyzers]]
name = "e411"
driver = "roche-cobas"
transport = "tcp-server"
listen = "127.0.0.1:0"
""", encoding="utf-8")
    return config


@pytest.mark.integration
def test_host_queries_are_answered_over_tcp_and_serial(tmp_path: Path) -> None:
    """Ordered barcode: P (patient, unaccented) and O (the analyzer's codes, stat); unknown: I."""
    master, slave = os.openpty()
    tty.setraw(master)
    config = config_for(tmp_path, os.ttyname(slave))
    log = tmp_path / "gateway.log"
    gateway = Gateway(config, log)
    try:
        port = gateway.port()
        ack = send_order(order_port(log), ORDER)
        assert str(ack.segment("MSA")[1]) == "AA"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            found = ask(sock.sendall, tcp_reader(sock), "CD0007")
            unknown = ask(sock.sendall, tcp_reader(sock), "NOPE")
        assert [re.sub(r"\d{14}", "<now>", line) for line in found] == [
            "H|\\^&|||LIS-GATEWAY|||||||P|LIS2-A2|<now>",
            "P|1|BN0007|||Nguyen^An||19800102|M",
            "O|1|CD0007^12^3||^^^G1\\^^^K1|S|<now>|||||N||||||||||||||Q",
            "L|1|F"]
        assert unknown[-1] == "L|1|I" and len(unknown) == 2

        def read_serial(wait: float) -> bytes | None:
            import select

            ready, _, _ = select.select([master], [], [], wait)
            return os.read(master, 4096) if ready else None

        over_serial = ask(lambda data: os.write(master, data) and None, read_serial, "CD0007")
        assert [re.sub(r"\d{14}", "<now>", x) for x in over_serial] == \
            [re.sub(r"\d{14}", "<now>", x) for x in found]

        with socket.create_connection(("127.0.0.1", gateway.port("e411")), timeout=5) as sock:
            cobas = ask(sock.sendall, tcp_reader(sock), "CD0007", cobas_query("CD0007"))
            nothing = ask(sock.sendall, tcp_reader(sock), "NOPE", cobas_query("NOPE"))
        assert cobas == [
            "H|\\^&|||host^1|||||cobas-e411|TSDWN^REPLY|P|1",
            "P|1",
            "O|1|CD0007|40^0^5^^S1^SC|^^^10^\\^^^30^|S||||||A||||1||||||||||O",
            "L|1|N"]
        assert nothing == [
            "H|\\^&|||host^1|||||cobas-e411|TSDWN^REPLY|P|1",
            "P|1",
            "O|1|NOPE|40^0^5^^S1^SC||R||||||A||||1||||||||||O",
            "L|1|N"]
    finally:
        assert gateway.stop() == 0, log.read_text("utf-8")
        os.close(master)
        os.close(slave)
