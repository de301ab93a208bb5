"""A Mindray BC's worklist request (ORM^O01, ORC-1 RF) answered ORR^O02 from the HIS's
order, over real loopback TCP.

``lis-gateway run --config`` runs in a subprocess on SQLite with an order link
and one ``mindray-bc`` link (tcp-server) using the shipped mindray-bc mapping
table. The HIS's ORM^O01 orders go in over MLLP; the analyzer, played here on
a plain socket, sends the worklist request for each tube and reads the
ORR^O02: the patient, the order and the run settings (Test Mode chosen from
the ordered tests) when ordered, ``MSA|AR`` alone when not. Each request is
stored before it is answered, and nothing else (no ACK) comes back.
"""

from __future__ import annotations

import shutil
import socket
import sqlite3
from pathlib import Path

import pytest

from .test_crash import Gateway
from .test_outbox_delivery import order_port, send_order

ROOT = Path(__file__).resolve().parent.parent.parent
VT, FS, CR = b"\x0b", b"\x1c", b"\r"
#: Counts only (local codes WBC, HGB, PLT) for one tube; a differential (MONO%, the
#: table's local code for the analyzer's MON%) for the other, as a STAT.
ORDERS = (
    b"MSH|^~\\&|HIS|BV_TEST|LIS||20261122080000||ORM^O01|ORD1|P|2.3.1\r"
    b"PID|1||BN0101^^^BV_TEST^PI||Nguy\xe1\xbb\x85n^An^V\xc4\x83n||19800102|M\r"
    b"ORC|NW|CD0101\rOBR|1|CD0101||WBC\rORC|NW|CD0101\rOBR|2|CD0101||HGB\r"
    b"ORC|NW|CD0101\rOBR|3|CD0101||PLT\r",
    b"MSH|^~\\&|HIS|BV_TEST|LIS||20261122080100||ORM^O01|ORD2|P|2.3.1\r"
    b"PID|1||BN0102^^^BV_TEST^PI||\xc4\x90\xe1\xba\xb7ng^\xc3\x81nh||19900701|F\r"
    b"ORC|NW|CD0102|||||^^^^^S\rOBR|1|CD0102||WBC\rORC|NW|CD0102\rOBR|2|CD0102||MONO%\r",
)


def request(sample_id: str, control_id: str) -> bytes:
    """The BC's worklist request for one tube, framed."""
    return (VT + f"MSH|^~\\&|BC-5300|Mindray|||20261122081500||ORM^O01|{control_id}|P|"
            f"2.3.1||||||UNICODE\rORC|RF||{sample_id}||IP\r".encode() + FS + CR)


def ask(sock: socket.socket, sample_id: str, control_id: str) -> list[str]:
    """Send one request; return the segments of the one answer, MSH-7 as <now>."""
    sock.sendall(request(sample_id, control_id))
    data = b""
    while FS + CR not in data:
        chunk = sock.recv(4096)
        assert chunk, "the gateway closed the link without answering"
        data += chunk
    block, rest = data.split(FS + CR, 1)
    assert block.startswith(VT) and rest == b"", data
    segments = block[1:].decode("utf-8").split("\r")[:-1]
    msh = segments[0].split("|")
    msh[6] = "<now>"
    msh[9] = "<id>"
    return ["|".join(msh), *segments[1:]]


def config_for(tmp_path: Path) -> Path:
    maps = tmp_path / "maps"
    maps.mkdir()
    for name in ("mindray-bc.csv", "mindray-bc.ranges.csv"):
        shutil.copy(ROOT / "mappings" / name, maps / name)
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
name = "bc1"
driver = "mindray-bc"
transport = "tcp-server"
listen = "127.0.0.1:0"
""", encoding="utf-8")
    return config


def stored_requests(db: Path) -> list[bytes]:
    """The ORM^O01 messages the gateway stored for the analyzer, oldest first."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT raw FROM messages ORDER BY id").fetchall()
    return [raw for (raw,) in rows if b"|ORM^O01|" in raw]


@pytest.mark.integration
def test_worklist_requests_are_answered_from_the_his_orders(tmp_path: Path) -> None:
    """Counts ordered: CBC; a differential ordered: CBC+DIFF; unknown tube: MSA|AR alone."""
    config = config_for(tmp_path)
    log = tmp_path / "gateway.log"
    gateway = Gateway(config, log)
    try:
        port = gateway.port("bc1")
        for order in ORDERS:
            assert str(send_order(order_port(log), order).segment("MSA")[1]) == "AA"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            counts = ask(sock, "CD0101", "21")
            diff = ask(sock, "CD0102", "22")
            unknown = ask(sock, "NOPE", "23")
        header = "MSH|^~\\&|||||<now>||ORR^O02|<id>|P|2.3.1||||||UNICODE"
        assert counts == [
            header, "MSA|AA|21",
            "PID|1||BN0101^^^^MR||Nguyễn^Văn An||19800102|Male",
            "PV1|1",
            "ORC|AF|CD0101",
            "OBR|1|CD0101||00001^Automated Count^99MRC||||||||||||||||||||HM",
            "OBX|1|IS|08002^Blood Mode^99MRC||W||||||F",
            "OBX|2|IS|08003^Test Mode^99MRC||CBC||||||F"]
        assert diff[1:3] == ["MSA|AA|22", "PID|1||BN0102^^^^MR||Đặng^Ánh||19900701|Female"]
        assert diff[4] == "ORC|AF|CD0102"
        assert diff[-1] == "OBX|2|IS|08003^Test Mode^99MRC||CBC+DIFF||||||F"
        assert unknown == [header, "MSA|AR|23"]
    finally:
        assert gateway.stop() == 0, log.read_text("utf-8")
    stored = stored_requests(tmp_path / "lis.db")
    assert [raw.split(b"|")[9] for raw in stored] == [b"21", b"22", b"23"]
    text = log.read_text("utf-8")
    assert "query-answered" in text
    for secret in ("Nguy", "BN0101", "19800102", "\\u0110"):
        assert secret not in text, secret
