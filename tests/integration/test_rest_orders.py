"""Orders in over REST (``POST /api/orders``), answered to host queries over ASTM and HL7.

Real parts: ``lis-gateway run --config`` in a subprocess on SQLite; the HIS
is the standard library's ``urllib`` over loopback TCP; the ASTM analyzer is
the sans-IO link in the instrument role over TCP; the HL7 analyzer (Mindray
style QRY^Q02) is plain sockets with MLLP framing written here, and
python-hl7 reads the gateway's answers.
"""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import hl7
import pytest

from .test_astm_host_query import MAPPING, ask, tcp_reader
from .test_crash import Gateway

TOKEN = "his-orders-token-0123456789"
MINDRAY_MAPPING = MAPPING.replace("G1,GLU", "GLU-M,GLU").replace("K1,K", "K-M,K")
ORDER = {
    "message_id": "HIS-0001",
    "patient": {"hospital_id": "BN0009", "national_id": "079123456789",
                "family_name": "Nguyễn", "middle_name": "Văn", "given_name": "An",
                "birth_date": "1980-01-02", "sex": "M", "visit_number": "VV9"},
    "orders": [{"barcode": "CD0009", "placer_order": "P9", "tests": ["GLU", "K"],
                "priority": "stat", "ordered_at": "2026-11-22T08:00:00+07:00"}],
}


def web_port(log: Path) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = re.search(r"web listening on 127\.0\.0\.1:(\d+)",
                          log.read_text("utf-8", "replace"))
        if match:
            return int(match.group(1))
        time.sleep(0.05)  # polling a file, not asserting on speed
    raise AssertionError("no web listener:\n" + log.read_text("utf-8", "replace"))


def post(port: int, body: bytes, token: str = TOKEN) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/orders", data=body,
                                     method="POST",
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def qry(barcode: str, control: str) -> bytes:
    """A Mindray QRY^Q02 by barcode (QRD-8), as in the Mindray host-interface manual."""
    return (f"MSH|^~\\&|||||20261122080500||QRY^Q02|{control}|P|2.3.1||||||ASCII|||\r"
            f"QRD|20261122080500|R|D|1|||RD|{barcode}|OTH|||T|\r"
            f"QRF||||||RCT|COR|ALL||\r").encode()


def hl7_exchange(sock: socket.socket, message: bytes, answers: int) -> list[hl7.Message]:
    """Send one framed message; read ``answers`` framed replies; ACK each DSR^Q03."""
    sock.sendall(b"\x0b" + message + b"\x1c\r")
    got: list[hl7.Message] = []
    buffer = b""
    deadline = time.monotonic() + 30
    while len(got) < answers and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        assert chunk, "the gateway closed the connection"
        buffer += chunk
        while b"\x1c\r" in buffer:
            block, buffer = buffer.split(b"\x1c\r", 1)
            parsed = hl7.parse(block.lstrip(b"\x0b").decode("utf-8"))
            got.append(parsed)
            if str(parsed.segment("MSH")[9]) == "DSR^Q03":
                control = str(parsed.segment("MSH")[10])
                sock.sendall(b"\x0bMSH|^~\\&|||||20261122080501||ACK^Q03|A1|P|2.3.1\r"
                             b"MSA|AA|" + control.encode() + b"\r\x1c\r")
    return got


@pytest.mark.integration
def test_rest_orders_answer_astm_and_hl7_host_queries(tmp_path: Path) -> None:
    """201 for a good order, 422 kept with problems, 401 without the token; the ordered
    barcode answers both analyzers with their own codes; after a REST cancellation the
    ASTM analyzer hears "no order"."""
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "generic-astm.csv").write_text(MAPPING, encoding="utf-8")
    (tmp_path / "maps" / "mindray-bs.csv").write_text(MINDRAY_MAPPING, encoding="utf-8")
    (tmp_path / "orders.token").write_text(TOKEN + "\n", encoding="utf-8")
    config = tmp_path / "lis-gateway.toml"
    config.write_text(f"""
[database]
url = "sqlite:///{tmp_path / 'lis.db'}"
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
[[analyzers]]
name = "bs1"
driver = "mindray-bs"
transport = "tcp-server"
listen = "127.0.0.1:0"
""", encoding="utf-8")
    log = tmp_path / "gateway.log"
    gateway = Gateway(config, log)
    try:
        astm_port, mindray_port, port = gateway.port("chem1"), gateway.port("bs1"), web_port(log)
        assert post(port, json.dumps(ORDER).encode()) == (
            201, {"accepted": True, "order_message_id": 1, "samples": ["CD0009"]})
        assert post(port, b'{"orders": []}') == (
            422, {"accepted": False, "order_message_id": 2,
                  "problems": ["orders: expected a non-empty list", "patient: missing"]})
        assert post(port, json.dumps(ORDER).encode(), token="wrong-token-0123456789")[0] == 401
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as health:
            assert (health.status, health.read()) == (200, b"ok\n")

        with socket.create_connection(("127.0.0.1", astm_port), timeout=5) as sock:
            read = tcp_reader(sock)
            found = ask(sock.sendall, read, "CD0009")
            assert [re.sub(r"\d{14}", "<now>", line) for line in found] == [
                "H|\\^&|||LIS-GATEWAY|||||||P|LIS2-A2|<now>",
                "P|1|BN0009|||Nguyen^An^Van||19800102|M",
                "O|1|CD0009^12^3||^^^G1\\^^^K1|S|<now>|||||N||||||||||||||Q",
                "L|1|F"]

            with socket.create_connection(("127.0.0.1", mindray_port), timeout=5) as hl7_sock:
                hl7_sock.settimeout(10)
                qck, dsr = hl7_exchange(hl7_sock, qry("CD0009", "Q1"), 2)
                assert (str(qck.segment("MSH")[9]), str(qck.segment("QAK")[2])) == (
                    "QCK^Q02", "OK")
                assert str(dsr.segment("MSH")[9]) == "DSR^Q03"
                fields = [str(seg[3]) for seg in dsr.segments("DSP")]
                assert "CD0009" in fields
                assert any(f.startswith("GLU-M") for f in fields)
                assert any(f.startswith("K-M") for f in fields)
                [unknown] = hl7_exchange(hl7_sock, qry("NOPE", "Q2"), 1)
                assert str(unknown.segment("QAK")[2]) == "NF"

            cancel = {"message_id": "HIS-0002",
                      "orders": [{"action": "cancel", "barcode": "CD0009"}]}
            assert post(port, json.dumps(cancel).encode())[0] == 201
            after = ask(sock.sendall, read, "CD0009")
            assert after[-1] == "L|1|I" and len(after) == 2
    finally:
        assert gateway.stop() == 0, log.read_text("utf-8")
