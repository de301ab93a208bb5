"""Released results reach an MLLP receiver through AE, silence, a dropped connection, AR
and a gateway restart; the outbox and ``lis-gateway reconcile`` say exactly what happened.

Real parts: ``lis-gateway run --config`` in a subprocess on SQLite in
``tmp_path``, the analyzer over loopback TCP (the sans-IO link in the
instrument role), and an MLLP receiver written here on plain sockets (it
shares no code with the gateway) that answers each message as scripted.
python-hl7, not our parser, reads what it received. The HIS's order comes
first, as an ORM^O01 over MLLP to the gateway's order port; a broken one
is answered AR with the reason.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import hl7
import pytest

from lis_gateway.outbound.delivery import EntryState
from lis_gateway.simulator import CHEMISTRY, chemistry_message
from lis_gateway.store import outbox
from lis_gateway.store.engine import make_engine
from tests.mllp_his import MllpHis

from .test_crash import Gateway, send_recording_acks

WHEN = datetime(2024, 5, 6, 7, 8, 9)
SAMPLE = "C240001"
TIMEOUT = 60.0
CLI = [sys.executable, "-m", "lis_gateway"]
#: The site's table for the simulator's chemistry codes (the shipped generic table is empty).
MAPPING = """analyzer_code,local_code,national_code,appendix11_code,loinc,name_vi,name_en,\
analyzer_unit,unit_ucum,factor,offset,decimals,critical_low,critical_high,autoverify_low,\
autoverify_high
GLU,GLU,,,2345-7,Glucose,Glucose,mmol/L,mmol/L,1,0,1,,,,
CREA,CREA,,,2160-0,Creatinin,Creatinine,umol/L,umol/L,1,0,0,,,,
UREA,UREA,,,22664-7,Ure,Urea,mmol/L,mmol/L,1,0,1,,,,
ALT,ALT,,,1742-6,ALT,ALT,U/L,U/L,1,0,0,,,,
NA,NA,,,2951-2,Natri,Sodium,mmol/L,mmol/L,1,0,0,,,,
K,K,,,2823-3,Kali,Potassium,mmol/L,mmol/L,1,0,1,,,,
"""


def entries(url: str) -> list[outbox.OutboxEntry]:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            return outbox.entries(conn)
    finally:
        engine.dispose()


def wait_until(url: str, done: object, what: str) -> list[outbox.OutboxEntry]:
    """Poll the outbox until ``done(entries)`` holds (bounded by TIMEOUT)."""
    assert callable(done)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        got = entries(url)
        if done(got):
            return got
        time.sleep(0.2)  # polling the database, not asserting on speed
    raise AssertionError(f"{what} did not happen; outbox: {[e.to_dict() for e in got]}")


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*CLI, *args, "--config", str(config)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done


ORDER = (b"MSH|^~\\&|HIS|BV_TEST|LIS||20240506070000||ORM^O01|ORD1|P|2.3.1\r"
         b"PID|1||BN0001^^^BV_TEST^PI||Tran^Binh^Thi||19700304|F\r"
         + b"".join(b"ORC|NW|C240001\rOBR|%d|C240001||%s\r" % (i, code.encode())
                    for i, (code, *_rest) in enumerate(CHEMISTRY, 1)))


def order_port(log: Path) -> int:
    """The order link's port, from the gateway's status line."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        match = re.search(r"his-orders listening on 127\.0\.0\.1:(\d+)",
                          log.read_text("utf-8", "replace"))
        if match:
            return int(match.group(1))
        time.sleep(0.05)  # polling a file, not asserting on speed
    raise AssertionError("no order link:\n" + log.read_text("utf-8", "replace"))


def send_order(port: int, message: bytes) -> hl7.Message:
    """Send one order over MLLP as the HIS would; return the gateway's ACK (python-hl7)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"\x0b" + message + b"\x1c\r")
        data = b""
        while b"\x1c\r" not in data:
            chunk = sock.recv(4096)
            assert chunk, "the gateway closed the order link without an ACK"
            data += chunk
    return hl7.parse(data.split(b"\x1c", 1)[0].lstrip(b"\x0b").decode("utf-8"))


def reconciled(config: Path) -> list[str]:
    """Where each result is for destination "his", by ``lis-gateway reconcile --json``."""
    rows = [json.loads(line) for line in cli(config, "reconcile", "--json").stdout.splitlines()]
    return [row["destinations"][0]["where"] for row in rows]


@pytest.mark.integration
def test_results_reach_the_his_through_every_kind_of_trouble(tmp_path: Path) -> None:
    """AE, silence, a dropped connection, AR and a restart: every result delivered once
    acknowledged, each resend with the same MSH-10, and the outbox exact throughout."""
    # message 1: AE, 2: silence, 3: drop, 4: AA (entry 1 after 4 attempts);
    # 5-8: AA (entries 2-5); 9: AR (entry 6 dead-lettered); after the retry: AA.
    # The retry after the drop (4-8 s with retry_first 2) must come after the HIS
    # client's reconnection (1-2 s plus connecting): with retry_cap 2 it sometimes
    # came first and counted a fifth, not-sent, attempt.
    receiver = MllpHis(["AE", "silence", "drop", "AA", "AA", "AA", "AA", "AA", "AR"])
    db = tmp_path / "lis.db"
    url = f"sqlite:///{db}"
    config = tmp_path / "lis-gateway.toml"
    config.write_text(f"""
[database]
url = "{url}"
[mappings]
directories = ["site-mappings"]
[lifecycle]
require_approval = false
[orders]
mllp_listen = "127.0.0.1:0"
hospital = "BV_TEST"
[[analyzers]]
name = "chem1"
driver = "generic-astm"
transport = "tcp-server"
listen = "127.0.0.1:0"
[[destinations]]
name = "his"
type = "hl7-mllp"
host = "127.0.0.1"
port = {receiver.port}
ack_timeout = 1
retry_first = 2
retry_cap = 8
hospital = "BV_TEST"
""", encoding="utf-8")
    log = tmp_path / "gateway.log"
    (tmp_path / "site-mappings").mkdir()
    (tmp_path / "site-mappings" / "generic-astm.csv").write_text(MAPPING, encoding="utf-8")
    gateway = Gateway(config, log)
    try:
        port = gateway.port()
        orders_port = order_port(log)
        refused = send_order(orders_port, ORDER.replace(b"BN0001^^^BV_TEST^PI", b""))
        assert (str(refused.segment("MSA")[1]), str(refused.segment("MSA")[3])) == (
            "AR", "PID-3 carries no hospital ID (PI), national ID (NNVNM) or insurance card "
            "(HC)")
        accepted = send_order(orders_port, ORDER)
        assert str(accepted.segment("MSA")[1]) == "AA"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            assert send_recording_acks([chemistry_message(1, WHEN)], sock) == {0}
        cli(config, "user", "add", "lan", "--roles", "technician")
        validated = cli(config, "validate", SAMPLE, "--user", "lan", "--json")
        assert validated.stdout.count('"released"') == len(CHEMISTRY)

        got = wait_until(url, lambda es: len(es) == 6 and es[-1].state is EntryState.DEAD,
                         "delivery of five results and the dead-lettering of the sixth")
        assert [(e.state, e.attempts) for e in got] == [
            (EntryState.DELIVERED, 4), *[(EntryState.DELIVERED, 1)] * 4, (EntryState.DEAD, 1)]
        assert (got[-1].last_status, got[-1].last_error) == (
            "rejected", "unknown patient in HIS")
        assert receiver.connections == 2  # the dropped connection was re-established
    finally:
        assert gateway.stop() == 0, log.read_text("utf-8")

    assert reconciled(config) == ["delivered"] * 5 + ["dead"]
    # the gateway is down; the cause is fixed in the HIS; a person retries; it restarts
    listed = cli(config, "outbox", "list", "--state", "dead", "--json")
    [dead] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (dead["sample"], dead["last_error"]) == (SAMPLE, "unknown patient in HIS")
    cli(config, "outbox", "retry", str(dead["id"]), "--user", "lan")
    gateway = Gateway(config, log)
    try:
        gateway.port()
        got = wait_until(url, lambda es: all(e.state is EntryState.DELIVERED for e in es),
                         "delivery after the retry")
        assert [e.attempts for e in got] == [4, 1, 1, 1, 1, 2]
    finally:
        assert gateway.stop() == 0, log.read_text("utf-8")
        receiver.close()

    # what the receiver got, read with python-hl7: each entry's control ID, resends equal
    parsed = [hl7.parse(m.decode("utf-8")) for m in receiver.received]
    controls = [str(p.segment("MSH")[10]) for p in parsed]
    ids = [e.control_id for e in got]
    assert controls == [ids[0]] * 4 + ids[1:5] + [ids[5]] * 2
    assert len(set(ids)) == 6
    tests = [str(p.segment("OBX")[3]).split("^")[3] for p in parsed[3:9]]
    assert sorted(tests) == sorted(c[0] for c in CHEMISTRY)
    for p in parsed:
        assert str(p.segment("PID")[3]) == "BN0001^^^BV_TEST^PI"
        assert (str(p.segment("PID")[5]), str(p.segment("PID")[7]), str(p.segment("PID")[8])) \
            == ("Tran^Binh^Thi^^^^L", "19700304", "F")
        assert str(p.segment("OBR")[3]) == SAMPLE
        assert str(p.segment("ORC")[2]) == str(p.segment("OBR")[2]) == SAMPLE  # placer
        assert str(p.segment("OBX")[11]) == "F"
    assert reconciled(config) == ["delivered"] * 6
    summary = cli(config, "reconcile").stdout.splitlines()
    assert summary == ["6 result(s) received", "his: 6 delivered"]
    audit = subprocess.run([*CLI, "audit", "verify", "--database", url], capture_output=True,
                           text=True, timeout=60, check=False)
    assert audit.returncode == 0, audit.stderr
