"""AuLinkProtocol on a StringTransport and a task.Clock."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

from structlog.testing import capture_logs
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

import drivers
from lis_gateway.adapters.au_protocol import AuLinkProtocol, au_config, au_protocol_factory
from lis_gateway.astm.assembler import IncompleteTransmission
from lis_gateway.astm.frames import ChecksumMode
from lis_gateway.au_online import AuConfig, AuMessage, encode_block, encode_text
from lis_gateway.wire import WireRecorder, read_recording

ACK, NAK, STX = b"\x06", b"\x15", b"\x02"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "astm" / "beckman-au"
TEXT = (FIXTURES / "beckman_3.bin").read_bytes()[1:-1]  # sample ID "ROEMARY 7"
SPEC = drivers.get("beckman-au")


class FakeSink:
    """Records what the link hands over; ``results`` answers message_received in turn."""

    def __init__(self) -> None:
        self.messages: list[AuMessage] = []
        self.incompletes: list[IncompleteTransmission] = []
        self.results: list[Deferred[object] | None] = []

    def message_received(self, msg: AuMessage) -> Deferred[object] | None:
        self.messages.append(msg)
        return self.results.pop(0) if self.results else None

    def incomplete(self, item: IncompleteTransmission) -> None:
        self.incompletes.append(item)


class KeptBytesIO(io.BytesIO):
    """A BytesIO whose content survives the recorder closing it."""

    def close(self) -> None:
        self.closed_by_owner = True


def gateway(sink: FakeSink, clock: Clock, recorder: WireRecorder | None = None,
            config: AuConfig | None = None) -> tuple[AuLinkProtocol, StringTransport]:
    """A host-end protocol connected to a StringTransport."""
    proto = AuLinkProtocol(config or au_config(SPEC), clock, sink, recorder, analyzer="au1")
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def test_config_follows_the_driver() -> None:
    """beckman-au expects a BCC; a driver with no checksum runs the link without one."""
    assert au_config(SPEC) == AuConfig(with_bcc=True, manual_ack=True, receive_timeout=30.0)
    assert not au_config(replace(SPEC, checksum_mode=ChecksumMode.NONE)).with_bcc
    assert au_config(replace(SPEC, checksum_mode=ChecksumMode.LOG_ONLY)).with_bcc


def test_result_text_ack_waits_for_the_sink() -> None:
    """The ACK goes out only when the sink's Deferred fires."""
    sink, clock = FakeSink(), Clock()
    stored: Deferred[object] = Deferred()
    sink.results.append(stored)
    proto, transport = gateway(sink, clock)
    proto.dataReceived(encode_block(TEXT))
    assert transport.value() == b"" and [m.text for m in sink.messages] == [TEXT]
    clock.advance(0.25)
    stored.callback(None)
    assert transport.value() == ACK


def test_sink_failure_naks_and_the_retransmission_is_stored() -> None:
    """A failed store answers NAK; the same text again goes to the sink again."""
    sink, clock = FakeSink(), Clock()
    failed: Deferred[object] = Deferred()
    sink.results.append(failed)
    proto, transport = gateway(sink, clock)
    with capture_logs() as logs:
        proto.dataReceived(encode_block(TEXT))
        failed.errback(Failure(RuntimeError("database locked")))
    assert transport.value() == NAK
    assert any(e["event"] == "message-not-stored" and e["answer"] == "nak" for e in logs)
    transport.clear()
    proto.dataReceived(encode_block(TEXT))
    assert transport.value() == ACK and len(sink.messages) == 2


def test_markers_are_acked_at_once_and_not_handed_over() -> None:
    """DB and DE get ACK without the sink; the result text between them goes to it."""
    sink, clock = FakeSink(), Clock()
    proto, transport = gateway(sink, clock)
    proto.dataReceived(encode_block(b"DB") + encode_block(TEXT) + encode_block(b"DE"))
    assert transport.value() == ACK * 3
    assert [m.kind for m in sink.messages] == ["D "]


def test_etb_blocks_are_acked_and_the_text_handed_over_once() -> None:
    """Blocks of one text: ACK each, one message with every block's bytes."""
    sink, clock = FakeSink(), Clock()
    proto, transport = gateway(sink, clock)
    blocks = encode_text(TEXT, max_block=30)
    for block in blocks:
        proto.dataReceived(block)
    assert transport.value() == ACK * len(blocks)
    assert [(m.raw, m.blocks) for m in sink.messages] == [(b"".join(blocks), 3)]


def test_bad_bcc_is_naked_then_the_retransmission_accepted() -> None:
    """A corrupted block gets NAK (logged with the reason); the good copy gets ACK."""
    sink, clock = FakeSink(), Clock()
    proto, transport = gateway(sink, clock)
    good = encode_block(TEXT)
    with capture_logs() as logs:
        proto.dataReceived(good[:-1] + bytes([good[-1] ^ 0x10]))
        proto.dataReceived(good)
    assert transport.value() == NAK + ACK and len(sink.messages) == 1
    (rejected,) = [e for e in logs if e["event"] == "block-rejected"]
    assert rejected["problem"] == "bcc" and rejected["answer"] == "nak"


def test_every_byte_is_recorded_in_order() -> None:
    """The wire recording holds what came in and what went out, with the connection notes."""
    sink, clock = FakeSink(), Clock()
    stream = KeptBytesIO()
    proto, _ = gateway(sink, clock, WireRecorder(stream, "au1", clock.seconds()))
    data = b"\x05" + encode_block(TEXT) + b"\x04"
    proto.dataReceived(data[:10])
    proto.dataReceived(data[10:])
    proto.connectionLost()
    chunks = list(read_recording(stream.getvalue()))
    assert b"".join(c.data for c in chunks if c.direction == "rx") == data
    assert b"".join(c.data for c in chunks if c.direction == "tx") == ACK
    assert next(c.text for c in chunks if c.direction == "note") == "connected"


def test_a_text_that_never_ends_is_kept_as_incomplete_after_the_timeout() -> None:
    """An ETB block and then silence: after 30 s the block goes to the sink as incomplete."""
    sink, clock = FakeSink(), Clock()
    proto, transport = gateway(sink, clock)
    first = encode_text(TEXT, max_block=30)[0]
    proto.dataReceived(first)
    clock.advance(29.9)
    assert sink.incompletes == []
    clock.advance(0.1)
    assert [(i.raw, i.reason) for i in sink.incompletes] == [(first, "receive-timeout")]
    assert transport.value() == ACK and proto.idle_since() is not None


def test_host_query_is_kept_and_logged_as_not_supported() -> None:
    """An R text goes to the sink (stored) and is ACKed; nothing answers it."""
    sink, clock = FakeSink(), Clock()
    proto, transport = gateway(sink, clock)
    with capture_logs() as logs:
        proto.dataReceived(encode_block(b"R 000601 0010"))
    assert transport.value() == ACK and [m.kind for m in sink.messages] == ["R "]
    assert any(e["event"] == "host-query-not-supported" for e in logs)


def test_connection_lost_while_the_sink_works_drops_the_ack() -> None:
    """No byte is written after the connection went; the late commit is logged."""
    sink, clock = FakeSink(), Clock()
    stored: Deferred[object] = Deferred()
    sink.results.append(stored)
    proto, transport = gateway(sink, clock)
    proto.dataReceived(encode_block(TEXT))
    proto.connectionLost()
    with capture_logs() as logs:
        stored.callback(None)
    assert transport.value() == b""
    assert [e["event"] for e in logs] == ["ack-dropped"]


def test_logs_carry_no_text() -> None:
    """Neither the sample ID nor a value reaches the log, whatever happens on the line."""
    sink, clock = FakeSink(), Clock()
    proto, _ = gateway(sink, clock)
    good = encode_block(TEXT)
    with capture_logs() as logs:
        proto.dataReceived(b"junk" + STX + TEXT[:20] + STX)
        proto.dataReceived(good[:-1] + b"\x00" + good)
        proto.dataReceived(encode_text(TEXT, max_block=40)[0])
        clock.advance(60)
        proto.connectionLost()
    text = repr(logs)
    assert "ROEMARY" not in text and "3.68" not in text and "junk" not in text
    assert {"deviation", "block-rejected", "text-received", "text-aborted"} <= {
        e["event"] for e in logs}


def test_factory_builds_one_protocol_per_connection() -> None:
    """The service's builder gives a fresh protocol with the driver's configuration."""
    build = au_protocol_factory(SPEC, Clock(), FakeSink(), analyzer="au1")
    first, second = build(None, None), build(None, None)
    assert first is not second and first.link.config.with_bcc and first.link.config.manual_ack
