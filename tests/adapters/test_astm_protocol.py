"""AstmLinkProtocol and BareRecordProtocol on a StringTransport and a task.Clock."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import structlog
from structlog.testing import capture_logs
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, connect

import drivers
from drivers.extract import extract_results
from lis_gateway.adapters.astm_protocol import AstmLinkProtocol, BareRecordProtocol
from lis_gateway.astm import constants as C
from lis_gateway.astm.assembler import AstmMessage, IncompleteTransmission
from lis_gateway.astm.events import AbortReason
from lis_gateway.astm.frames import encode_frame, split_text
from lis_gateway.astm.link import LinkConfig, Role
from lis_gateway.simulator import SimulatedAnalyzer, chemistry_message, haematology_message
from lis_gateway.wire import WireRecorder, read_recording

WHEN = datetime(2024, 5, 6, 7, 8, 9)
GENERIC = drivers.get("generic-astm")


class FakeSink:
    """Records everything a link hands over; ``results`` feeds message_received."""

    def __init__(self) -> None:
        self.messages: list[AstmMessage] = []
        self.incompletes: list[IncompleteTransmission] = []
        self.sent: list[bytes] = []
        self.failed: list[tuple[tuple[bytes, ...], AbortReason]] = []
        self.results: list[Deferred[object] | None] = []

    def message_received(self, msg: AstmMessage) -> Deferred[object] | None:
        self.messages.append(msg)
        return self.results.pop(0) if self.results else None

    def incomplete(self, item: IncompleteTransmission) -> None:
        self.incompletes.append(item)

    def message_sent(self, message: bytes) -> None:
        self.sent.append(message)

    def send_failed(self, messages: tuple[bytes, ...], reason: AbortReason) -> None:
        self.failed.append((messages, reason))


class KeptBytesIO(io.BytesIO):
    """A BytesIO whose content survives the recorder closing it."""

    def close(self) -> None:
        self.closed_by_owner = True


def frames_of(message: bytes) -> list[bytes]:
    """The E1381 frames an instrument sends for ``message`` (FN from 1)."""
    return [encode_frame((i + 1) % 8, text, final=final)
            for i, (text, final) in enumerate(split_text(message))]


def gateway(sink: FakeSink, clock: Clock, recorder: WireRecorder | None = None
            ) -> tuple[AstmLinkProtocol, StringTransport]:
    """A computer-role protocol connected to a StringTransport."""
    proto = AstmLinkProtocol(GENERIC.link_config(), clock, "latin-1", sink, recorder)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def test_multi_frame_message_reaches_sink_once_and_every_frame_is_acked() -> None:
    """A message sent as ETB and ETX frames is delivered once and every frame ACKed."""
    sink, clock = FakeSink(), Clock()
    proto, transport = gateway(sink, clock)
    message = haematology_message(1, WHEN)
    frames = frames_of(message)
    assert any(f[-5:-4] == C.ETB for f in frames)
    proto.dataReceived(C.ENQ + b"".join(frames) + C.EOT)
    assert len(sink.messages) == 1
    assert sink.messages[0].raw == message
    assert transport.value() == C.ACK * (1 + len(frames))
    rows = extract_results(sink.messages[0], GENERIC)
    assert [r.test for r in rows][:2] == ["WBC", "RBC"]
    assert {r.sample_id for r in rows} == {"H250001"}


def test_frames_fed_one_byte_at_a_time_give_the_same_message() -> None:
    """Serial lines deliver arbitrary chunks: byte-by-byte input gives the same result."""
    sink, clock = FakeSink(), Clock()
    proto, transport = gateway(sink, clock)
    message = chemistry_message(2, WHEN)
    data = C.ENQ + b"".join(frames_of(message)) + C.EOT
    for i in range(len(data)):
        proto.dataReceived(data[i:i + 1])
    assert [m.raw for m in sink.messages] == [message]
    assert transport.value() == C.ACK * (1 + len(frames_of(message)))


def test_completing_frame_is_acked_only_after_the_sink_deferred_fires() -> None:
    """The frame carrying the L record waits for the sink's Deferred before its ACK."""
    sink, clock = FakeSink(), Clock()
    d: Deferred[object] = Deferred()
    sink.results.append(d)
    proto, transport = gateway(sink, clock)
    frames = frames_of(chemistry_message(1, WHEN))
    proto.dataReceived(C.ENQ + b"".join(frames))
    assert len(sink.messages) == 1
    assert transport.value() == C.ACK * len(frames)  # ENQ + all but the last frame
    d.callback(None)
    assert transport.value() == C.ACK * (1 + len(frames))


def test_completing_frame_is_naked_when_the_sink_fails_and_the_resend_is_delivered() -> None:
    """A failed sink gets NAK; the resent frame yields the same whole message again."""
    sink, clock = FakeSink(), Clock()
    d: Deferred[object] = Deferred()
    sink.results.append(d)
    proto, transport = gateway(sink, clock)
    message = chemistry_message(1, WHEN)
    frames = frames_of(message)
    proto.dataReceived(C.ENQ + b"".join(frames))
    transport.clear()
    d.errback(Failure(OSError("database is locked")))
    assert transport.value() == C.NAK
    transport.clear()
    proto.dataReceived(frames[-1] + C.EOT)
    assert transport.value() == C.ACK
    assert [m.raw for m in sink.messages] == [message, message]
    assert sink.incompletes == []


def test_nak_then_sender_gives_up_leaves_an_incomplete_transmission() -> None:
    """If the sender ends with EOT after our NAK, the message is incomplete, not partial."""
    sink, clock = FakeSink(), Clock()
    d: Deferred[object] = Deferred()
    sink.results.append(d)
    proto, _ = gateway(sink, clock)
    proto.dataReceived(C.ENQ + b"".join(frames_of(chemistry_message(1, WHEN))))
    d.errback(Failure(OSError("disk full")))
    proto.dataReceived(C.EOT)
    assert len(sink.messages) == 1
    assert len(sink.incompletes) == 1
    assert sink.incompletes[0].reason == "sender ended after a refused frame"


def test_receiver_timeout_aborts_and_reports_incomplete() -> None:
    """No frame for 30 s while receiving aborts the transfer; its text is incomplete."""
    sink, clock = FakeSink(), Clock()
    proto, _ = gateway(sink, clock)
    frames = frames_of(chemistry_message(1, WHEN))
    proto.dataReceived(C.ENQ + frames[0] + frames[1])
    clock.advance(29.9)
    assert sink.incompletes == []
    clock.advance(0.1)
    assert sink.messages == []
    assert [i.reason for i in sink.incompletes] == [AbortReason.RECEIVE_TIMEOUT.value]
    assert clock.getDelayedCalls() == []


def test_sink_answer_after_the_transfer_timed_out_sends_nothing() -> None:
    """A Deferred firing after the link gave up must not write a stray ACK."""
    sink, clock = FakeSink(), Clock()
    d: Deferred[object] = Deferred()
    sink.results.append(d)
    proto, transport = gateway(sink, clock)
    frames = frames_of(chemistry_message(1, WHEN))
    proto.dataReceived(C.ENQ + b"".join(frames))
    clock.advance(30)
    transport.clear()
    d.callback(None)
    assert transport.value() == b""


def test_one_timer_is_armed_at_the_link_deadline() -> None:
    """After each turn exactly one delayed call exists, at the link's deadline."""
    sink, clock = FakeSink(), Clock()
    proto, _ = gateway(sink, clock)
    assert clock.getDelayedCalls() == []
    proto.dataReceived(C.ENQ)
    clock.advance(10)
    proto.dataReceived(frames_of(chemistry_message(1, WHEN))[0])
    calls = clock.getDelayedCalls()
    assert len(calls) == 1
    assert calls[0].getTime() == proto.link.get_timer() == 40.0


def test_sending_a_message_bids_with_enq_and_ends_with_eot_without_reply() -> None:
    """send_message writes ENQ; 15 s without a reply writes EOT (E1381 sender timer)."""
    sink, clock = FakeSink(), Clock()
    proto, transport = gateway(sink, clock)
    proto.send_message(b"H|\\^&\rL|1|N\r")
    assert transport.value() == C.ENQ
    clock.advance(14.9)
    assert transport.value() == C.ENQ
    clock.advance(0.1)
    assert transport.value() == C.ENQ + C.EOT
    clock.advance(10)  # busy-retry delay: the link bids again
    assert transport.value() == C.ENQ + C.EOT + C.ENQ


def test_sent_message_is_reported_when_acknowledged() -> None:
    """ACKs to the ENQ and to each frame end with EOT and sink.message_sent."""
    sink, clock = FakeSink(), Clock()
    proto, transport = gateway(sink, clock)
    message = b"H|\\^&\rL|1|N\r"
    proto.send_message(message)
    for _ in range(3):
        proto.dataReceived(C.ACK)
    assert transport.value().endswith(C.EOT)
    assert sink.sent == [message]


def test_connection_lost_mid_transfer_reports_incomplete_and_hands_back_unsent() -> None:
    """Losing the connection voids the transfer and stops the timer."""
    sink, clock = FakeSink(), Clock()
    proto, _ = gateway(sink, clock)
    frames = frames_of(chemistry_message(1, WHEN))
    proto.dataReceived(C.ENQ + frames[0] + frames[1])
    proto.connectionLost(Failure(ConnectionError("cable pulled")))
    assert [i.reason for i in sink.incompletes] == [AbortReason.CONNECTION_LOST.value]
    assert sink.messages == []
    assert clock.getDelayedCalls() == []
    proto.send_message(b"H|\\^&\rL|1|N\r")
    assert sink.failed == [((b"H|\\^&\rL|1|N\r",), AbortReason.CONNECTION_LOST)]


def test_recorder_gets_received_and_sent_bytes_in_order() -> None:
    """The wire recording holds rx and tx chunks interleaved as they happened."""
    sink, clock = FakeSink(), Clock()
    stream = KeptBytesIO()
    proto, _ = gateway(sink, clock, WireRecorder(stream, "chem1", clock.seconds()))
    frames = frames_of(chemistry_message(1, WHEN))
    clock.advance(1)
    proto.dataReceived(C.ENQ)
    clock.advance(1)
    proto.dataReceived(frames[0])
    proto.connectionLost(Failure(ConnectionError("bye")))
    chunks = list(read_recording(stream.getvalue()))
    assert [(c.direction, c.data) for c in chunks] == [
        ("note", b""), ("rx", C.ENQ), ("tx", C.ACK), ("rx", frames[0]), ("tx", C.ACK),
        ("note", b"")]
    assert [c.t for c in chunks] == [0.0, 1.0, 1.0, 2.0, 2.0, 2.0]
    assert chunks[-1].text.startswith("connection lost")
    assert stream.closed_by_owner


def test_logs_carry_no_record_text() -> None:
    """No log event of a whole exchange contains patient names or result values."""
    sink, clock = FakeSink(), Clock()
    structlog.reset_defaults()
    with capture_logs() as logs:
        proto, _ = gateway(sink, clock)
        proto.dataReceived(C.ENQ + b"".join(frames_of(chemistry_message(1, WHEN))) + C.EOT)
    assert any(e["event"] == "message-received" for e in logs)
    assert "ROE" not in repr(logs) and "5.29" not in repr(logs)


def test_bare_records_split_on_any_newline_end_at_l_and_at_close() -> None:
    """Bare records (CR, LF, CRLF, arbitrary chunks) make a message at L; the rest at close."""
    sink, clock = FakeSink(), Clock()
    proto = BareRecordProtocol(clock, "latin-1", sink)
    proto.makeConnection(StringTransport())
    first = b"H|\\^&\r\nP|1\nO|1|S1||^^^GLU\rR|1|^^^GLU|5.5|mmol/L\r\nL|1|N\r\n"
    second = b"H|\\^&\nP|1\nO|1|S2||^^^NA\nR|1|^^^NA|140|mmol/L"
    data = first + second
    for i in range(0, len(data), 7):
        proto.dataReceived(data[i:i + 7])
    assert len(sink.messages) == 1
    assert [(r.sample_id, r.value) for r in extract_results(sink.messages[0], GENERIC)] == [
        ("S1", "5.5")]
    proto.connectionLost(Failure(ConnectionError("done")))
    assert len(sink.messages) == 2
    assert not sink.messages[1].terminated
    assert [(r.sample_id, r.value) for r in extract_results(sink.messages[1], GENERIC)] == [
        ("S2", "140")]


def test_simulator_and_gateway_protocols_talk_over_iosim() -> None:
    """The simulated analyzer delivers a multi-frame message to the gateway protocol."""
    clock = Clock()
    sink = FakeSink()
    gw = AstmLinkProtocol(GENERIC.link_config(), clock, "latin-1", sink)
    sim = SimulatedAnalyzer("sim", clock, lambda: WHEN, interval=5)
    analyzer = sim.build_protocol()
    pump = connect(gw, FakeTransport(gw, isServer=True), analyzer,
                   FakeTransport(analyzer, isServer=False))
    sim.send_next()  # chemistry
    pump.flush()
    sim.send_next()  # haematology, with ETB frames
    pump.flush()
    assert [m.raw for m in sink.messages] == sim.sent
    assert len(sim.sent) == 2 and sim.failed == []
    rows = [r for m in sink.messages for r in extract_results(m, GENERIC)]
    assert {r.sample_id for r in rows} == {"C240001", "H250002"}
    assert len(rows) == 6 + 8


def test_simulator_sends_on_its_interval() -> None:
    """The simulator's loop queues a message every interval once started."""
    clock = Clock()
    sim = SimulatedAnalyzer("sim", clock, lambda: WHEN, interval=3)
    transport = StringTransport()
    sim.build_protocol().makeConnection(transport)
    sim.start()
    clock.advance(2.9)
    assert transport.value() == b""
    clock.advance(0.1)
    assert transport.value() == C.ENQ
    sim.stop()
    assert sim.protocol is not None and sim.protocol.link.config.role is Role.INSTRUMENT
    assert isinstance(sim.protocol.link.config, LinkConfig)


class OneOrder:
    """An order source that knows one tube, answering at once."""

    def find(self, sample_ids: tuple[str, ...]) -> list[object]:
        from lis_gateway.hl7.datatypes import HierarchicDesignator
        from lis_gateway.hl7.patient import PatientIdentity
        from lis_gateway.hl7.queries import OrderedSample

        patient = PatientIdentity(hospital_id="BN1", hospital=HierarchicDesignator("BV1"))
        return [OrderedSample(s, (("G1", "Glucose"),), patient) for s in sample_ids
                if s == "CD0001"]


def answered(proto: AstmLinkProtocol, transport: StringTransport, clock: Clock,
             query: bytes) -> list[str]:
    """Send ``query`` as an instrument over ``proto``; return the answer's record lines."""
    from lis_gateway.astm.events import FrameAccepted, MessageSent, TransferEnded
    from lis_gateway.astm.link import LinkConnection

    link = LinkConnection(LinkConfig(role=Role.INSTRUMENT))
    link.send(query, clock.seconds())
    sent, text = False, b""
    for _ in range(200):
        for event in link.events():
            sent = sent or isinstance(event, MessageSent)
            if isinstance(event, FrameAccepted):
                text += event.text
            if isinstance(event, TransferEnded) and sent and text:
                return text.decode("latin-1").strip("\r").split("\r")
        out = link.data_to_send()
        if out:
            proto.dataReceived(out)
        reply = transport.value()
        transport.clear()
        if reply:
            link.receive_data(reply, clock.seconds())
        clock.advance(0.05)
        link.handle_timer(clock.seconds())
    raise AssertionError("no answer")


def test_host_query_answers_carry_the_analyzers_wall_time_and_the_drivers_form() -> None:
    """H-14/O-7 in the analyzer's zone (ASTM times carry no offset); roche answers TSDWN."""
    clock = Clock()
    clock.advance(datetime(2026, 11, 22, 2, 30, tzinfo=UTC).timestamp())
    query = b"H|\\^&|||SIM^1|||||||P|LIS2-A2\rQ|1|^CD0001||ALL||||||||O\rL|1|N\r"
    proto = AstmLinkProtocol(GENERIC.link_config(), clock, "latin-1", FakeSink(),
                             orders=OneOrder(),  # type: ignore[arg-type]
                             timezone="Asia/Ho_Chi_Minh")
    transport = StringTransport()
    proto.makeConnection(transport)
    lines = answered(proto, transport, clock, query)
    assert lines[0] == "H|\\^&|||LIS-GATEWAY|||||||P|LIS2-A2|20261122093000"
    assert lines[2] == "O|1|CD0001||^^^G1|R|20261122093000|||||N||||||||||||||Q"

    roche = drivers.get("roche-cobas")
    proto = AstmLinkProtocol(roche.link_config(), clock, "latin-1", FakeSink(),
                             orders=OneOrder(),  # type: ignore[arg-type]
                             reply_style=roche.astm_reply, timezone=roche.timezone)
    transport = StringTransport()
    proto.makeConnection(transport)
    cobas = (b"H|\\^&|||cobas-e411^1|||||host|TSREQ^REAL|P|1\r"
             b"Q|1|^^CD0001^40^0^5^^S1^SC||ALL||||||||O\rL|1|N\r")
    assert answered(proto, transport, clock, cobas) == [
        "H|\\^&|||host^1|||||cobas-e411|TSDWN^REPLY|P|1", "P|1",
        "O|1|CD0001|40^0^5^^S1^SC|^^^G1^|R||||||A||||1||||||||||O", "L|1|N"]
