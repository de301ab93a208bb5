"""Listeners limit message size and connection count (issue 9, hostile input).

First the adapters on a ``StringTransport`` and a ``task.Clock`` with small
limits (so the tests are cheap), then the real gateway (``lis-gateway run``
in a subprocess on SQLite) over loopback TCP with its default limits:
:data:`~lis_gateway.adapters.tcp.MAX_CONNECTIONS` connections per listening
link, :data:`~lis_gateway.adapters.astm_protocol.MAX_MESSAGE` bytes of ASTM
text per message and :data:`~lis_gateway.hl7.mllp.MAX_MESSAGE` bytes per MLLP
block. Refused input is kept (as an incomplete transmission with the reason)
and the link goes on serving the next message.
"""

from __future__ import annotations

import socket
import time
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

import drivers
from lis_gateway.adapters.astm_protocol import (
    MAX_MESSAGE,
    AstmLinkProtocol,
    BareRecordProtocol,
    too_long,
)
from lis_gateway.adapters.tcp import MAX_CONNECTIONS, LinkFactory
from lis_gateway.astm import constants as C
from lis_gateway.astm.assembler import AstmMessage, IncompleteTransmission
from lis_gateway.astm.events import AbortReason
from lis_gateway.astm.frames import encode_frame, split_text
from lis_gateway.astm.link import LinkConfig, Role
from lis_gateway.hl7 import mllp
from lis_gateway.simulator import chemistry_message
from lis_gateway.store import schema
from lis_gateway.store.engine import make_engine

from ._resilience import SocketLine, send_messages
from .test_crash import Gateway

WHEN = datetime(2024, 5, 6, 7, 8, 9)
GENERIC = drivers.get("generic-astm")
PEER = IPv4Address("TCP", "127.0.0.1", 40000)


class Sink:
    """Keeps what a link hands over; every message is stored at once."""

    def __init__(self) -> None:
        self.messages: list[AstmMessage] = []
        self.incompletes: list[IncompleteTransmission] = []

    def message_received(self, msg: AstmMessage) -> None:
        self.messages.append(msg)

    def incomplete(self, item: IncompleteTransmission) -> None:
        self.incompletes.append(item)

    def message_sent(self, message: bytes) -> None:
        """Nothing is sent on these links."""

    def send_failed(self, messages: tuple[bytes, ...], reason: AbortReason) -> None:
        """Nothing is sent on these links."""


def frames_of(message: bytes) -> list[bytes]:
    """The E1381 frames an instrument sends for ``message`` (FN from 1, 240-byte texts)."""
    return [encode_frame((i + 1) % 8, text, final=final)
            for i, (text, final) in enumerate(split_text(message, per_record=False))]


def long_message(size: int) -> bytes:
    """An H/R.../L message of at least ``size`` bytes of text."""
    records = [b"H|\\^&|||LIMIT\r", b"P|1\r", b"O|1|S1||^^^GLU\r"]
    n = 1
    while sum(map(len, records)) < size:
        records.append(b"R|%d|^^^GLU|5.%d|mmol/L||N||F\r" % (n, n))
        n += 1
    return b"".join([*records, b"L|1|N\r"])


# ------------------------------------------------------------------ adapters


def test_astm_frame_beyond_the_message_limit_is_naked_and_the_text_kept() -> None:
    """A frame that would make the message too long gets NAK each time it comes; at the
    sender's EOT the text before it is an incomplete transmission saying why, and the
    link then takes the next message as usual."""
    sink, clock = Sink(), Clock()
    proto = AstmLinkProtocol(GENERIC.link_config(), clock, "latin-1", sink, max_message=600)
    transport = StringTransport()
    proto.makeConnection(transport)
    frames = frames_of(long_message(1000))
    assert len(frames) >= 4
    proto.dataReceived(C.ENQ)
    replies = [transport.value()]
    for frame in frames[:2]:
        transport.clear()
        proto.dataReceived(frame)
        replies.append(transport.value())
    for _attempt in range(6):  # the sender's six tries of the third frame
        transport.clear()
        proto.dataReceived(frames[2])
        replies.append(transport.value())
    assert replies == [C.ACK, C.ACK, C.ACK] + [C.NAK] * 6
    transport.clear()
    proto.dataReceived(C.EOT)
    assert sink.messages == []
    [kept] = sink.incompletes
    assert kept.reason == "message longer than 600 bytes: refused"
    assert kept.raw == b"".join(text for text, _ in
                                split_text(long_message(1000), per_record=False)[:2])

    ok = chemistry_message(1, WHEN)
    proto.dataReceived(C.ENQ + b"".join(frames_of(ok)) + C.EOT)
    assert [m.raw for m in sink.messages] == [ok]
    assert transport.value() == C.ACK * (1 + len(frames_of(ok)))


def test_astm_limit_counts_from_the_last_complete_message() -> None:
    """Many messages in one transfer are each measured alone (the limit is per message)."""
    sink, clock = Sink(), Clock()
    proto = AstmLinkProtocol(GENERIC.link_config(), clock, "latin-1", sink,
                             max_message=len(chemistry_message(1, WHEN)) + 10)
    transport = StringTransport()
    proto.makeConnection(transport)
    messages = [chemistry_message(i, WHEN) for i in range(1, 6)]
    frames = [encode_frame((i + 1) % 8, text, final=final) for i, (text, final) in
              enumerate(t for m in messages for t in split_text(m))]
    proto.dataReceived(C.ENQ + b"".join(frames) + C.EOT)
    assert [m.raw for m in sink.messages] == messages
    assert C.NAK not in transport.value()
    assert sink.incompletes == []


def test_bare_record_link_closes_beyond_the_message_limit_and_keeps_the_text() -> None:
    """Records without an L record beyond the limit: kept as incomplete, connection closed."""
    sink, clock = Sink(), Clock()
    proto = BareRecordProtocol(clock, "latin-1", sink, max_message=500)
    transport = StringTransport()
    proto.makeConnection(transport)
    text = long_message(800).rsplit(b"L|", 1)[0]  # no L record: the message never ends
    proto.dataReceived(text)
    assert transport.disconnecting
    proto.connectionLost(Failure(ConnectionError("closed")))
    assert sink.messages == []
    assert [i.reason for i in sink.incompletes] == ["message longer than 500 bytes"]
    assert b"".join(i.raw for i in sink.incompletes).replace(b"\r", b"") == \
        text.replace(b"\r", b"")


class Counting(Protocol):
    """A link protocol stand-in that notes what it is told."""

    def __init__(self) -> None:
        self.data = b""
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = True


def test_link_factory_refuses_connections_beyond_its_limit_until_one_closes() -> None:
    """At the limit buildProtocol refuses (Twisted closes the socket); a closed
    connection frees its place; the link protocol sees the real transport."""
    built: list[Counting] = []

    def build(_session: str) -> Protocol:
        built.append(Counting())
        return built[-1]

    factory = LinkFactory(build, max_connections=2)
    first, second = factory.buildProtocol(PEER), factory.buildProtocol(PEER)
    assert first is not None and second is not None
    transport = StringTransport()
    first.makeConnection(transport)
    assert built[0].transport is transport
    first.dataReceived(b"\x05")
    assert built[0].data == b"\x05"
    assert factory.buildProtocol(PEER) is None
    assert len(built) == 2
    first.connectionLost(Failure(ConnectionError("gone")))
    assert built[0].lost
    third = factory.buildProtocol(PEER)
    assert third is not None and len(built) == 3
    assert factory.open_connections == 2


class Resting(Counting):
    """A link protocol stand-in at rest since ``since`` (None: in the middle of a message)."""

    def __init__(self, since: float | None) -> None:
        super().__init__()
        self.since = since

    def idle_since(self) -> float | None:
        return self.since


def test_at_the_limit_the_connection_idle_longest_at_rest_is_evicted() -> None:
    """A newcomer at the limit closes the connection at rest that has been idle longest
    (busy ones are never chosen, however old), logs it, and is served; with every
    connection busy the newcomer is refused."""
    stand_ins = [Resting(None), Resting(50.0), Resting(20.0), Resting(None)]
    pending = [*stand_ins, Resting(None), Resting(None)]
    factory = LinkFactory(lambda _s: pending.pop(0), max_connections=4)
    transports, wrappers = [], []
    for _ in range(4):
        counted = factory.buildProtocol(PEER)
        assert counted is not None
        wrappers.append(counted)
        transports.append(StringTransport())
        counted.makeConnection(transports[-1])
    with capture_logs() as logs:
        newcomer = factory.buildProtocol(IPv4Address("TCP", "127.0.0.2", 40001))
    assert newcomer is not None
    assert [t.disconnecting for t in transports] == [False, False, True, False]
    assert factory.open_connections == 4
    [evicted] = [e for e in logs if e["event"] == "tcp-connection-evicted"]
    assert (evicted["session"], evicted["peer"], evicted["newcomer"]) == (
        "3", "127.0.0.1:40000", "127.0.0.2:40001")
    wrappers[2].connectionLost(Failure(ConnectionError("aborted")))  # the close arrives
    assert stand_ins[2].lost and factory.open_connections == 4  # its place was already given
    stand_ins[1].since = None  # now every open connection is in the middle of a message
    newcomer.makeConnection(StringTransport())
    with capture_logs() as logs:
        assert factory.buildProtocol(PEER) is None
    assert [e["event"] for e in logs] == ["tcp-connection-refused"]


def test_outgoing_link_factory_has_no_limit() -> None:
    """A client link's factory (one connection at a time anyway) builds the protocol itself."""
    factory = LinkFactory(lambda _s: Counting(), max_connections=None)
    protocols = [factory.buildProtocol(PEER) for _ in range(MAX_CONNECTIONS + 2)]
    assert all(isinstance(p, Counting) for p in protocols)


# ------------------------------------------------------------------ the real gateway


@pytest.fixture
def gateway(tmp_path: Path) -> tuple[Gateway, Path, str]:
    """``lis-gateway run`` with an ASTM and an HL7 analyzer listening on loopback."""
    url = f"sqlite:///{tmp_path / 'lis.db'}"
    config = tmp_path / "lis-gateway.toml"
    config.write_text(f"""
[database]
url = "{url}"

[[analyzers]]
name = "chem1"
driver = "generic-astm"
transport = "tcp-server"
listen = "127.0.0.1:0"

[[analyzers]]
name = "hl7an"
driver = "generic-hl7"
transport = "tcp-server"
listen = "127.0.0.1:0"
""", encoding="utf-8")
    gw = Gateway(config, tmp_path / "gateway.log")
    yield gw, tmp_path / "gateway.log", url
    assert gw.stop() == 0, (tmp_path / "gateway.log").read_text("utf-8")


def _bid(sock: socket.socket) -> bool:
    """Send ENQ: an ACK means the link serves this connection (which is then in the middle
    of a transfer until EOT); a close means it was refused."""
    try:
        sock.sendall(C.ENQ)
        sock.settimeout(10)
        reply = sock.recv(16)
    except (ConnectionResetError, BrokenPipeError):
        return False
    assert reply in (C.ACK, b""), reply
    return reply == C.ACK


def _closed_by_gateway(sock: socket.socket) -> bool:
    """Whether the gateway has closed this connection (waits for the close, bounded)."""
    sock.settimeout(10)
    try:
        return sock.recv(16) == b""
    except ConnectionResetError:
        return True


@pytest.mark.integration
def test_gateway_evicts_the_longest_idle_connection_for_a_newcomer(
        gateway: tuple[Gateway, Path, str]) -> None:
    """Sixteen silent connections (a hostile peer, or half-open ones) fill a link; the
    analyzer's connection is still served: the one idle longest is closed for it, logged
    with its peer, and the others stay open."""
    gw, log, _url = gateway
    port = gw.port("chem1")
    silent = [socket.create_connection(("127.0.0.1", port), timeout=10)
              for _ in range(MAX_CONNECTIONS)]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as analyzer:
            line = SocketLine(analyzer)
            ok = chemistry_message(1, WHEN)
            assert send_messages(line, [ok], timeout=30).acked == [ok]
        assert _closed_by_gateway(silent[0])
        silent[1].settimeout(0.5)
        with pytest.raises(TimeoutError):
            silent[1].recv(16)  # still open: nothing to read, no close
    finally:
        for s in silent:
            s.close()
    assert '"tcp-connection-evicted"' in log.read_text("utf-8")


@pytest.mark.integration
def test_gateway_refuses_a_newcomer_only_when_every_connection_is_busy(
        gateway: tuple[Gateway, Path, str]) -> None:
    """With sixteen connections each in the middle of a transfer the 17th is closed at
    once; when one of them ends its transfer (EOT) it is at rest, and the next newcomer
    is served in its place; other links are not affected."""
    gw, log, _url = gateway
    port = gw.port("chem1")
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10)
             for _ in range(MAX_CONNECTIONS)]
    try:
        assert all(_bid(s) for s in socks)  # each now holds a transfer open (no EOT)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
            assert not _bid(extra)
        socks[5].sendall(C.EOT)  # this one's transfer is over: at rest
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # until the gateway has read the EOT
            with socket.create_connection(("127.0.0.1", port), timeout=10) as again:
                if _bid(again):
                    again.sendall(C.EOT)
                    break
            time.sleep(0.1)  # polling the gateway, not asserting on speed
        else:
            raise AssertionError("no newcomer served after one connection came to rest")
        assert _closed_by_gateway(socks[5])
        with socket.create_connection(("127.0.0.1", gw.port("hl7an")), timeout=10) as hl7:
            hl7.sendall(b"\x0bMSH|^~\\&|AN|LAB|LIS||20240506070809||ORU^R01|X1|P|2.5.1\r"
                        b"\x1c\r")
            assert b"MSA|" in hl7.recv(4096)
    finally:
        for s in socks:
            s.close()
    text = log.read_text("utf-8")
    assert "too many connections, none at rest" in text
    assert '"tcp-connection-evicted"' in text


def _incomplete_reasons(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            return [peer for (peer,) in conn.execute(select(schema.raw_sessions.c.peer))
                    if peer and peer.startswith("incomplete:")]
    finally:
        engine.dispose()


@pytest.mark.integration
def test_oversized_mllp_block_is_refused_and_the_next_message_acknowledged(
        gateway: tuple[Gateway, Path, str]) -> None:
    """A block over 16 MiB is answered AR (MSA-2 its MSH-10, ERR "message too large"),
    its MSH is kept as incomplete with the size and the reason, and the same connection
    then has its next message acknowledged AA."""
    gw, _log, url = gateway
    port = gw.port("hl7an")
    header = b"MSH|^~\\&|AN|LAB|LIS||20240506070809||ORU^R01|BIG1|P|2.5.1\r"
    big = header + b"OBX|1|ED|IMG||" + b"A" * (mllp.MAX_MESSAGE + 1000) + b"\r"
    small = b"MSH|^~\\&|AN|LAB|LIS||20240506070809||ORU^R01|OK1|P|2.5.1\r"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"\x0b" + big + b"\x1c\r" + b"\x0b" + small + b"\x1c\r")
        data = b""
        while data.count(b"\x1c\r") < 2:
            chunk = sock.recv(4096)
            assert chunk, "the gateway closed the connection"
            data += chunk
    refused, accepted = (block.strip(b"\x0b") for block in data.split(b"\x1c\r")[:2])
    assert b"MSA|AR|BIG1|message too large" in refused
    assert b"\rERR|||207^message too large" in refused  # 2.5: ERR-3 holds the 0357 code
    assert b"MSA|AA|OK1" in accepted
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not _incomplete_reasons(url):
        time.sleep(0.1)  # polling the database, not asserting on speed
    assert _incomplete_reasons(url) == [
        f"incomplete: message longer than {mllp.MAX_MESSAGE} bytes: {len(big)} bytes "
        f"received, the first {len(header)} kept; answered AR"]
    assert _incomplete_raw(url) == [header]


def _incomplete_raw(url: str) -> list[bytes]:
    """The bytes kept for each incomplete transmission."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            sessions = [sid for sid, peer in conn.execute(
                select(schema.raw_sessions.c.id, schema.raw_sessions.c.peer))
                if peer and peer.startswith("incomplete:")]
            return [b"".join(data for (data,) in conn.execute(
                select(schema.raw_chunks.c.data).where(schema.raw_chunks.c.session_id == sid)
                .order_by(schema.raw_chunks.c.id))) for sid in sessions]
    finally:
        engine.dispose()


@pytest.mark.integration
def test_oversized_astm_message_is_refused_and_the_next_one_acknowledged(
        gateway: tuple[Gateway, Path, str]) -> None:
    """ASTM text over 16 MiB since the last message: the frame that crosses the limit is
    NAKed until the analyzer gives up; what came before is kept with the reason; the
    next message on the same connection is acknowledged and stored."""
    gw, _log, url = gateway
    port = gw.port("chem1")
    body = b"".join(b"R|%d|^^^GLU|%s\r" % (i, b"7" * 1000) for i in range(1, 1001))
    huge = b"H|\\^&|||BIG\r" + body * 17 + b"L|1|N\r"  # 17 MB in frames of 1 MB
    ok = chemistry_message(1, WHEN)
    instrument = LinkConfig(role=Role.INSTRUMENT, max_text=1_000_000, per_record_frames=False)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        line = SocketLine(sock)
        first = send_messages(line, [huge, ok], timeout=120, config=instrument)
        assert (first.acked, first.failed) == ([], [huge, ok])  # six NAKs: handed back
        second = send_messages(line, [ok], timeout=30, config=instrument)
        assert second.acked == [ok]  # the same connection goes on
    assert first.received.count(C.NAK) == 6
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not _incomplete_reasons(url):
        time.sleep(0.1)  # polling the database, not asserting on speed
    assert _incomplete_reasons(url) == [f"incomplete: {too_long(MAX_MESSAGE)}: refused"]
