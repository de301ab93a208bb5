"""``lis-gateway his-sim`` over real loopback TCP: answers as told, orders sent, counts kept."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

from lis_gateway.hl7.message import parse_message
from lis_gateway.hl7.orders_in import parse_order_message

TIMEOUT = 30.0
ORU = (b"MSH|^~\\&|LIS-GATEWAY|LAB|HIS|BV|20261122083000+0700||ORU^R01^ORU_R01|R%d|P|2.5.1\r"
       b"PID|1||BN1^^^BV^PI||Tran^Binh\rOBR|1|S1|C240001|GLU\r"
       b"OBX|1|NM|GLU^Glucose^L||5.4|mmol/L|||||F\r")


def his_sim(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "lis_gateway", "his-sim", "--json", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def first_event(proc: subprocess.Popen[str]) -> dict[str, object]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, proc.stderr.read() if proc.stderr else ""
    return dict(json.loads(line))


def exchange(port: int, n: int) -> bytes:
    """Send ORU number ``n`` framed, return what comes back before the sim answers or closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"\x0b" + ORU % n + b"\x1c\r")
        sock.settimeout(2.0)
        data = b""
        try:
            while not data.endswith(b"\x1c\r"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            pass  # "none": the simulated HIS keeps silent
    return data


def test_answers_in_turn_and_stops_after_count() -> None:
    """aa, ae, none, drop in turn; each message printed as one JSON line; exit 0 after 4."""
    proc = his_sim("--listen", "127.0.0.1:0", "--answer", "aa,ae,none,drop", "--count", "4")
    try:
        listening = first_event(proc)
        port = int(str(listening["port"]))
        answers = [exchange(port, n) for n in range(1, 5)]
        assert proc.wait(timeout=TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert b"MSA|AA|R1" in answers[0] and b"MSA|AE|R2" in answers[1]
    assert answers[2] == b"" and answers[3] == b""
    assert proc.stdout is not None
    events = [json.loads(line) for line in proc.stdout.read().splitlines()]
    assert [(e["control_id"], e["answer"], e["samples"]) for e in events] == [
        ("R1", "aa", ["C240001"]), ("R2", "ae", ["C240001"]), ("R3", "none", ["C240001"]),
        ("R4", "drop", ["C240001"])]


def test_orders_go_to_the_order_listener(tmp_path: Path) -> None:
    """--send-orders sends ORM^O01 the gateway can read; a refused plan is a clear error."""
    server = socket.create_server(("127.0.0.1", 0))
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            data = b""
            while len(got) < 2:
                data += conn.recv(4096)
                while b"\x1c\r" in data:
                    block, data = data.split(b"\x1c\r", 1)
                    message = block.lstrip(b"\x0b")
                    got.append(message)
                    control = re.search(rb"\|ORM\^O01\^ORM_O01\|([^|]+)\|", message)
                    assert control is not None
                    conn.sendall(b"\x0bMSH|^~\\&|LIS|LAB|HIS-SIM|BV|20261122||ACK^O01|A1|P|2.5.1\r"
                                 b"MSA|AA|" + control.group(1) + b"\r\x1c\r")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = server.getsockname()[1]
    proc = his_sim("--listen", "127.0.0.1:0", "--send-orders", f"127.0.0.1:{port}",
                   "--order-interval", "0.2", "--tests", "GLU,K", "--barcode-prefix", "T")
    try:
        first_event(proc)
        orders = [first_event(proc) for _ in range(2)]
    finally:
        proc.terminate()
        proc.wait(timeout=TIMEOUT)
        server.close()
    assert [(o["barcode"], o["status"], o["code"]) for o in orders] == [
        ("T000001", "delivered", "AA"), ("T000002", "delivered", "AA")]
    read = parse_order_message(parse_message(got[0]))
    assert read.problems == ()
    assert [(o.barcode, o.tests) for o in read.orders] == [("T000001", ("GLU",)),
                                                          ("T000001", ("K",))]
    bad = subprocess.run([sys.executable, "-m", "lis_gateway", "his-sim", "--answer", "maybe"],
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert bad.returncode == 2 and "'maybe' is not an answer" in bad.stderr
