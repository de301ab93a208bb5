"""Outages: the HIS down, the database unavailable, the serial device unplugged.

* The HIS down for twelve simulated hours: the real outbox worker, HIS
  client and MLLP channel on a ``task.Clock`` over a real SQLite file; the
  HIS's endpoint refuses every connection until it comes back. Then the same
  with the real gateway in a subprocess and an HIS that is simply not
  listening for a while: analyzers are still acknowledged, results queue,
  delivery resumes by itself, each sample's results in order.
* The database unavailable: an SQLite file locked by another process, and a
  PostgreSQL server stopped with ``pg_ctl`` and started again. The analyzer
  gets NAK (or its own timeout), never an ACK for what is not stored; an
  HL7 analyzer gets AE; the gateway recovers by itself.
* A serial analyzer unplugged and plugged back: the pseudo-terminal the
  configuration names (through a symlink, as ``/dev/serial/by-id`` does) is
  closed, a new one appears at the same path, and the link reopens.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
import tty
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IProtocol, IProtocolFactory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from lis_gateway.astm import constants as C
from lis_gateway.astm.link import LinkConfig, Role
from lis_gateway.hl7.datatypes import HierarchicDesignator, MessageRoute
from lis_gateway.hl7.mllp import FS, VT
from lis_gateway.outbound.channel import MllpChannel
from lis_gateway.outbound.delivery import Backoff, EntryState
from lis_gateway.outbound.sender import HisClient
from lis_gateway.outbound.worker import OutboxWorker
from lis_gateway.simulator import CHEMISTRY, chemistry_message
from lis_gateway.store import outbox, schema
from lis_gateway.store import repository as repo
from lis_gateway.store.engine import make_engine
from lis_gateway.store.migrations import migrate
from lis_gateway.store.pool import NonThreadPool
from tests.mllp_his import MllpHis

from ..adapters.test_mllp_protocol import his_ack
from ..store.test_lifecycle_store import ingest, users
from ..store.test_outbox import ONE_STEP, release
from ..store.test_repository import RAW, T0, result
from ._resilience import (
    PgCluster,
    PtyLine,
    SocketLine,
    cli_json,
    control_id,
    free_port,
    in_sample_order,
    outbox_entries,
    send_messages,
    stored_tests,
    wait_for,
    write_config,
)
from .test_crash import Gateway

WHEN = datetime(2024, 5, 6, 7, 8, 9)
TESTS = [c[0] for c in CHEMISTRY]
PEER = IPv4Address("TCP", "127.0.0.1", 2575)
HOUR = 3600.0


# ------------------------------------------------------------------ the HIS down (simulated)


class HisEndpoint:
    """The HIS's address: refuses connections while down, else a StringTransport per one."""

    def __init__(self) -> None:
        self.up = False
        self.refused = 0
        self.transports: list[StringTransport] = []
        self.protocols: list[IProtocol] = []

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        if not self.up:
            self.refused += 1
            return fail(ConnectionRefusedError("the HIS is down"))
        proto = factory.buildProtocol(PEER)
        assert proto is not None
        transport = StringTransport()
        proto.makeConnection(transport)
        self.protocols.append(proto)
        self.transports.append(transport)
        return succeed(proto)

    def sent(self) -> list[bytes]:
        """Every message written to the HIS, unframed, in order."""
        data = b"".join(t.value() for t in self.transports)
        return [block.strip(b"\r\n").lstrip(VT) for block in data.split(FS) if block.strip()]


def _released(engine: Engine, first: int, count: int) -> None:
    """Samples S<first>..: each with a glucose and a creatinine result, released."""
    for n in range(first, first + count):
        accession = f"S{n}"
        ingest(engine, [result(sample=accession), result(sample=accession, test="CREA")],
               raw=RAW + accession.encode(), policy=ONE_STEP)
        with engine.begin() as conn:
            repo.ensure_sample(conn, accession, T0, repo.PatientIds(f"H{n}"))
        release(engine, accession)


def _entries(engine: Engine) -> list[outbox.OutboxEntry]:
    with engine.begin() as conn:
        return outbox.entries(conn)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite store (WAL, a real file) with the test users."""
    url = f"sqlite:///{tmp_path / 'lis.db'}"
    engine = make_engine(url)
    migrate(url, engine=engine)
    users(engine)
    yield engine
    engine.dispose()


def test_his_down_twelve_hours_queues_everything_and_resumes_in_order(
        sqlite_store: Engine) -> None:
    """Twelve simulated hours without the HIS: every released result stays queued (none
    lost, none sent), reconnection keeps trying at its capped pace; once the HIS is back
    the queue drains by itself, oldest first, each message once."""
    engine = sqlite_store
    clock, endpoint = Clock(), HisEndpoint()
    clock.advance((T0 + timedelta(minutes=10)).timestamp())
    client = HisClient(endpoint, clock, ack_timeout=30.0)  # the production reconnect policy
    channel = MllpChannel(client, MessageRoute(
        sending_application=HierarchicDesignator("LIS_GATEWAY"),
        receiving_application=HierarchicDesignator("HIS")), HierarchicDesignator("BV_TEST"))
    worker = OutboxWorker("his", NonThreadPool(engine), channel, clock, poll_interval=2.0,
                          backoff=Backoff(first=5.0, cap=900.0), rand=lambda: 0.5)
    _released(engine, 1, 20)
    worker.startService()
    for step in range(12 * 720):  # twelve hours, five seconds at a time
        clock.advance(5.0)
        if step == 6 * 720:
            _released(engine, 21, 20)  # the lab goes on working meanwhile
    queued = _entries(engine)
    # The worker waits for the HIS on its oldest entry; what was released meanwhile is
    # queued when it goes on (reconcile lists it as released, not queued, until then).
    assert 40 <= len(queued) <= 80
    assert {e.state for e in queued} == {EntryState.PENDING}
    assert endpoint.sent() == []
    # the HIS client's reconnect back-off: 1 s growing to at most 10 s (HIS_RECONNECT_MAX,
    # plus ClientService's jitter of up to a second), seen in this test's 5 s steps
    assert 12 * HOUR / 15 <= endpoint.refused <= 12 * HOUR / 10 + 20

    endpoint.up = True
    answered: list[bytes] = []
    first_sent: int | None = None
    for second in range(30 * 60):
        clock.advance(1.0)
        if first_sent is None and endpoint.sent():
            first_sent = second + 1
        for message in endpoint.sent()[len(answered):]:
            answered.append(message)
            endpoint.protocols[-1].dataReceived(his_ack(control_id(message).encode(), b"AA"))
        if all(e.state is EntryState.DELIVERED for e in _entries(engine)):
            break
    delivered = _entries(engine)
    assert len(delivered) == 80
    assert {e.state for e in delivered} == {EntryState.DELIVERED}
    assert [control_id(m) for m in answered] == [e.control_id for e in delivered]
    # The oldest entry was tried through the outage, each try counted (so the alerts on
    # attempts and age move), at most one back-off cap plus one deadline apart; the
    # destination backed off, not the entries, so every other entry went once, in order.
    assert 12 * HOUR / (900 + 30) <= delivered[0].attempts <= 12 * HOUR / 30
    assert all(e.attempts == 1 for e in delivered[1:])
    # the worker's pause (up to the 15 min cap) ends when the client reconnects, which
    # it retries at most 10 s (and a second of jitter) apart
    assert first_sent is not None and first_sent <= 12
    worker.stopService()


# ------------------------------------------------------------------ the HIS down (real)


@pytest.mark.integration
def test_his_not_listening_then_back_the_real_gateway_delivers_everything(
        tmp_path: Path) -> None:
    """With the HIS not listening the analyzer is still acknowledged and results queue;
    when the HIS listens again on its port everything arrives, each sample in order,
    and reconcile says delivered."""
    url = f"sqlite:///{tmp_path / 'lis.db'}"
    his_port = free_port()
    config = write_config(tmp_path, url, his_port=his_port)
    log = tmp_path / "gateway.log"
    gateway = Gateway(config, log)
    his: MllpHis | None = None
    try:
        port = gateway.port()
        messages = [chemistry_message(n, WHEN) for n in range(1, 9)]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            exchange = send_messages(SocketLine(sock), messages, timeout=60)
        assert exchange.acked == messages  # ingest does not wait for the HIS
        wait_for(lambda: len(outbox_entries(url)) == len(messages) * len(TESTS),
                 "every released result queued")
        time.sleep(3)  # the HIS stays down a while; asserts nothing
        assert {e.state for e in outbox_entries(url)} == {EntryState.PENDING}
        his = MllpHis(port=his_port)
        wait_for(lambda: {e.state for e in outbox_entries(url)} == {EntryState.DELIVERED},
                 "delivery after the HIS came back")
    finally:
        assert gateway.stop() == 0, log.read_text("utf-8")
        if his is not None:
            his.close()
    assert his is not None
    received = his.messages()
    assert len({control_id(m) for m in received}) == len(messages) * len(TESTS)
    assert in_sample_order(received, url)
    rows = cli_json(config, "reconcile")
    assert {r["destinations"][0]["where"] for r in rows} == {"delivered"}


# ------------------------------------------------------------------ the database unavailable

HL7_ANALYZER = """
[[analyzers]]
name = "hl7an"
driver = "generic-hl7"
transport = "tcp-server"
listen = "127.0.0.1:0"
"""
ASTM_ANALYZER = """
[[analyzers]]
name = "chem1"
driver = "generic-astm"
transport = "tcp-server"
listen = "127.0.0.1:0"
unsolicited = true
"""


def _hl7_exchange(port: int, control: str) -> bytes:
    """Send one ORU^R01 over MLLP; return MSA-1 of the gateway's answer."""
    oru = (f"MSH|^~\\&|AN|LAB|LIS||20240506070809||ORU^R01|{control}|P|2.5.1\r"
           f"PID|1||P1\rOBR|1|X{control}||GLU\rOBX|1|NM|GLU||5.5|mmol/L|||||F\r").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"\x0b" + oru + b"\x1c\r")
        data = b""
        while b"\x1c\r" not in data:
            chunk = sock.recv(4096)
            assert chunk, "the gateway closed the connection without an answer"
            data += chunk
    msa = next(seg for seg in data.strip(b"\x0b\x1c\r").split(b"\r") if seg.startswith(b"MSA"))
    return msa.split(b"|")[1]


def _until_acked(port: int, message: bytes, timeout: float) -> tuple[float, int]:
    """Send ``message`` until the gateway acknowledges it (the analyzer keeps trying);
    return when it was acknowledged and how many NAKs came before."""
    deadline = time.monotonic() + timeout
    naks = 0
    while time.monotonic() < deadline:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            exchange = send_messages(SocketLine(sock), [message], timeout=60)
        naks += exchange.received.count(C.NAK)
        if exchange.acked:
            return exchange.acked_at[0], naks
        time.sleep(0.5)  # the analyzer's own pause before trying again; asserts nothing
    raise AssertionError(f"not acknowledged within {timeout} s")


@pytest.mark.integration
def test_sqlite_locked_by_another_process_no_ack_until_stored_then_recovers(
        tmp_path: Path) -> None:
    """While another process holds the SQLite write lock nothing can be stored, so the
    analyzer must get no ACK for its message (NAK or its own timeout); once the lock is
    gone the resend is acknowledged and stored once, and delivery carries on."""
    db = tmp_path / "lis.db"
    url = f"sqlite:///{db}"
    his = MllpHis()
    config = write_config(tmp_path, url, his_port=his.port)
    log = tmp_path / "gateway.log"
    gateway = Gateway(config, log)
    try:
        port = gateway.port()
        first, second, third = (chemistry_message(n, WHEN) for n in (1, 2, 3))
        _until_acked(port, first, 30)
        locker = sqlite3.connect(db, timeout=30, isolation_level=None, check_same_thread=False)
        locker.execute("BEGIN EXCLUSIVE")  # the write lock (WAL: readers still read)
        locked_at = time.monotonic()
        unlock = threading.Timer(12.0, locker.execute, args=("ROLLBACK",))
        unlock.start()
        try:
            acked_at, naks = _until_acked(port, second, 90)
        finally:
            unlock.join()
            locker.close()
        assert acked_at >= locked_at + 12.0, "acknowledged while the database was locked"
        print(f"NAKs while locked: {naks}")
        _until_acked(port, third, 30)  # the gateway recovered by itself
        wait_for(lambda: len({control_id(m) for m in his.messages()}) == 3 * len(TESTS),
                 "delivery of the three messages' results")
    finally:
        assert gateway.stop() == 0, log.read_text("utf-8")
        his.close()
    assert stored_tests(url, ["C240001", "C240002", "C240003"]) == {
        "C240001": TESTS, "C240002": TESTS, "C240003": TESTS}


@pytest.mark.integration
def test_sqlite_locked_enq_answered_busy_until_the_store_is_back(tmp_path: Path) -> None:
    """E1381 8.2.5 while the database cannot commit: the message's completing frame is
    NAKed (the store failed), the analyzer's next ENQ is answered NAK (busy) before it
    sends anything, and once the lock is gone its next ENQ is ACKed and the message is
    stored exactly once."""
    db = tmp_path / "lis.db"
    url = f"sqlite:///{db}"
    config = write_config(tmp_path, url)
    log = tmp_path / "gateway.log"
    gateway = Gateway(config, log)
    # This analyzer gives up at the first NAK, and waits long enough for it: the store's
    # answer comes after SQLite's 10 s busy timeout, queued behind the wire recording's.
    one_try = LinkConfig(role=Role.INSTRUMENT, max_attempts=1, reply_timeout=60)
    try:
        port = gateway.port()
        first, second = chemistry_message(1, WHEN), chemistry_message(2, WHEN)
        _until_acked(port, first, 30)
        locker = sqlite3.connect(db, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            locker.execute("BEGIN EXCLUSIVE")  # the write lock (WAL: readers still read)
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                line = SocketLine(sock)
                refused = send_messages(line, [second], timeout=60, config=one_try)
                assert (refused.acked, refused.failed) == ([], [second])
                assert refused.frames > 0 and refused.received.endswith(C.NAK)
                busy = send_messages(line, [second], timeout=30, config=one_try)
                assert (busy.acked, busy.failed) == ([], [second])
                assert (bytes(busy.received), busy.frames) == (C.NAK, 0)  # nothing sent
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        wait_for(lambda: "store-available-again" in log.read_text("utf-8"),
                 "the gateway's probe transaction after the lock")
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            taken = send_messages(SocketLine(sock), [second], timeout=60)
        assert taken.acked == [second]
        assert C.NAK not in taken.received
    finally:
        assert gateway.stop() == 0, log.read_text("utf-8")
    text = log.read_text("utf-8")
    assert '"enq-refused"' in text and "C240002" not in text  # logged, without the sample
    assert stored_tests(url, ["C240001", "C240002"]) == {"C240001": TESTS, "C240002": TESTS}
    assert _receptions(url) == 2  # the refused tries left nothing behind


def _receptions(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            return len(conn.execute(select(schema.message_receptions.c.id)).all())
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def pg() -> Iterator[PgCluster]:
    """A PostgreSQL cluster of this module's own (the tests stop and start it)."""
    cluster = PgCluster()
    yield cluster
    cluster.remove()


@pytest.mark.integration
def test_postgresql_stopped_nak_and_ae_then_recovers_when_it_is_back(
        tmp_path: Path, pg: PgCluster) -> None:
    """PostgreSQL stopped under the running gateway: the ASTM analyzer's completing frame
    is NAKed (six times, then it gives up) and nothing is stored; the HL7 analyzer gets
    AE; started again, the gateway stores and acknowledges the resends by itself and
    delivers."""
    url = pg.create_database("lis_outage")
    his = MllpHis()
    config = write_config(tmp_path, url, his_port=his.port,
                          analyzers=ASTM_ANALYZER + HL7_ANALYZER)
    log = tmp_path / "gateway.log"
    gateway = Gateway(config, log)
    try:
        astm_port, hl7_port = gateway.port("chem1"), gateway.port("hl7an")
        first, second = chemistry_message(1, WHEN), chemistry_message(2, WHEN)
        _until_acked(astm_port, first, 30)
        assert _hl7_exchange(hl7_port, "H1") == b"AA"
        pg.stop()
        with socket.create_connection(("127.0.0.1", astm_port), timeout=10) as sock:
            refused = send_messages(SocketLine(sock), [second], timeout=60)
        assert (refused.acked, refused.failed) == ([], [second])
        assert refused.received.count(C.NAK) == 6  # the frame's six tries (E1381)
        assert _hl7_exchange(hl7_port, "H2") == b"AE"
        pg.start()
        assert stored_tests(url, ["C240002"]) == {"C240002": []}  # NAK: not stored
        _until_acked(astm_port, second, 60)
        deadline = time.monotonic() + 30
        while _hl7_exchange(hl7_port, "H2") != b"AA":
            assert time.monotonic() < deadline, "HL7 not acknowledged after the restart"
            time.sleep(0.5)  # the analyzer's pause before resending; asserts nothing
        wait_for(lambda: len({control_id(m) for m in his.messages()}) == 2 * len(TESTS),
                 "delivery of both messages' results")
    finally:
        assert gateway.stop() == 0, log.read_text("utf-8")
        his.close()
    assert stored_tests(url, ["C240001", "C240002"]) == {"C240001": TESTS,
                                                         "C240002": TESTS}
    rows = cli_json(config, "reconcile")
    assert {(r["analyzer"], r["destinations"][0]["where"]) for r in rows
            if r["analyzer"] == "chem1"} == {("chem1", "delivered")}


# ------------------------------------------------------------------ the serial line unplugged


def _plug(link: Path) -> tuple[int, int]:
    """A new pseudo-terminal, named by ``link`` (replaced atomically, like udev's by-id)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    tmp = link.with_suffix(".new")
    tmp.symlink_to(os.ttyname(slave))
    tmp.replace(link)
    return master, slave


@pytest.mark.integration
def test_serial_device_unplugged_and_plugged_back_the_link_recovers(tmp_path: Path) -> None:
    """The configured device (a symlink to a pty) goes away mid-session and a new one
    appears at the same path: the gateway reopens it by itself and the analyzer's
    messages are acknowledged and stored again."""
    url = f"sqlite:///{tmp_path / 'lis.db'}"
    device = tmp_path / "ttyANALYZER"
    master, slave = _plug(device)
    config = write_config(tmp_path, url, analyzers=f"""
[[analyzers]]
name = "serial1"
driver = "generic-astm"
transport = "serial"
device = "{device}"
baudrate = 9600
unsolicited = true
""")
    log = tmp_path / "gateway.log"
    gateway = Gateway(config, log)
    fds = [master, slave]
    try:
        wait_for(lambda: "serial1 opened" in log.read_text("utf-8", "replace"),
                 "the serial link opening", 20)
        first = chemistry_message(1, WHEN)
        assert send_messages(PtyLine(master), [first], timeout=30).acked == [first]
        fds = []
        os.close(master)  # unplugged: the gateway reads EIO/HUP from its side
        os.close(slave)
        device.unlink()
        wait_for(lambda: "serial-lost" in log.read_text("utf-8", "replace"),
                 "the gateway noticing the loss", 20)
        wait_for(lambda: "open-failed" in log.read_text("utf-8", "replace"),
                 "a reopening attempt failing while the device is absent", 20)
        master, slave = fds = list(_plug(device))
        wait_for(lambda: log.read_text("utf-8", "replace").count('"serial-opened"') >= 2,
                 "the gateway reopening the device", 30)
        second = chemistry_message(2, WHEN)
        assert send_messages(PtyLine(master), [second], timeout=30).acked == [second]
    finally:
        assert gateway.stop() == 0, log.read_text("utf-8")
        for fd in fds:
            os.close(fd)
    assert stored_tests(url, ["C240001", "C240002"]) == {"C240001": TESTS,
                                                         "C240002": TESTS}
