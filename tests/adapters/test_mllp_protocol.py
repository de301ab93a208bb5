"""MllpAnalyzerProtocol, HisSenderProtocol and HisClient on a StringTransport and a task.Clock."""

from __future__ import annotations

import io
from datetime import datetime

import pytest
import structlog
from structlog.testing import capture_logs
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, IOPump, connect
from zope.interface import implementer

import drivers
from drivers.extract import extract_hl7_results
from lis_gateway.adapters.mllp_common import ControlIds, MllpConfig, mllp_config
from lis_gateway.adapters.mllp_protocol import (
    MessageRejectedError,
    MllpAnalyzerProtocol,
    RejectedMessage,
)
from lis_gateway.astm.assembler import IncompleteTransmission
from lis_gateway.hl7.errors import BuildError
from lis_gateway.hl7.message import Hl7Message, parse_message
from lis_gateway.hl7.mllp import frame
from lis_gateway.hl7_sim import SimulatedHl7Analyzer, blood_count_message
from lis_gateway.outbound.sender import (
    DeliveryReport,
    DeliveryStatus,
    HisClient,
    HisSenderProtocol,
    SenderBusyError,
)
from lis_gateway.wire import WireRecorder, read_recording

WHEN = datetime(2024, 5, 6, 7, 8, 9)
VT, FS, CR, LF = b"\x0b", b"\x1c", b"\r", b"\n"
GENERIC = drivers.get("generic-hl7")
PEER = IPv4Address("TCP", "127.0.0.1", 2575)

ORU_1 = (b"MSH|^~\\&|Mindray|BC-5380|||20240506070809||ORU^R01|MSG-0001|P|2.3.1||||||UNICODE\r"
         b"PID|1||P100201^^^^MR||ROE^RICHARD||19571103|M\r"
         b"OBR|1||S1|00001^Automated Count^99MRC\r"
         b"OBX|1|NM|6690-2^WBC^LN||7.52|10*3/uL|4.00-10.00|N|||F\r"
         b"OBX|2|NM|718-7^HGB^LN||11.2|g/dL|12.0-16.0|L|||F\r")
ORU_2 = ORU_1.replace(b"MSG-0001", b"MSG-0002").replace(b"|S1|", b"|S2|")
SNIBE = (b"MSH|^~\\&|Maglumi User||Lis||20240829150108||OUL^R22|990|P|2.5|||NE|NE||UTF-8\r"
         b"PID|1\rSPM|1|h1^^||Serum\rOBR|1|||TSH^1\r"
         b"OBX|1||TSH||4.53^|uIU/mL|0.3 to 4.5|H|||F\r\r\n")


class FakeSink:
    """Records what the link hands over; ``results`` feeds message_received in order."""

    def __init__(self) -> None:
        self.messages: list[Hl7Message] = []
        self.incompletes: list[IncompleteTransmission] = []
        self.results: list[Deferred[object] | None] = []

    def message_received(self, msg: Hl7Message) -> Deferred[object] | None:
        self.messages.append(msg)
        return self.results.pop(0) if self.results else None

    def incomplete(self, item: IncompleteTransmission) -> None:
        self.incompletes.append(item)


class RejectingSink(FakeSink):
    """A sink that also keeps rejected blocks (the optional method)."""

    def __init__(self) -> None:
        super().__init__()
        self.rejected: list[RejectedMessage] = []

    def message_rejected(self, item: RejectedMessage) -> Deferred[object] | None:
        self.rejected.append(item)
        return None


class KeptBytesIO(io.BytesIO):
    """A BytesIO whose content survives the recorder closing it."""

    def close(self) -> None:
        self.closed_by_owner = True


def gateway(sink: FakeSink, clock: Clock, config: MllpConfig | None = None,
            recorder: WireRecorder | None = None
            ) -> tuple[MllpAnalyzerProtocol, StringTransport]:
    """An analyzer-link protocol (generic-hl7 settings) connected to a StringTransport."""
    proto = MllpAnalyzerProtocol(config or mllp_config(GENERIC), clock, sink,
                                 control_ids=ControlIds("GW"), utcnow=lambda: WHEN,
                                 recorder=recorder)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def acks(data: bytes) -> list[tuple[str, str, str]]:
    """(MSA-1, MSA-2, error code) of every MLLP-framed ACK in ``data``."""
    out = []
    for block in data.split(FS + CR):
        if block:
            assert block.startswith(VT)
            msg = parse_message(block[1:])
            msa, err = msg.first("MSA"), msg.first("ERR")
            assert msa is not None
            code = "" if err is None else (msg.delimiters.component_at(err[3], 1)
                                           or msg.delimiters.component_at(err[1], 4))
            out.append((msa[1], msa[2], code))
    return out


# ------------------------------------------------------------------ analyzer side


def test_message_split_over_many_reads_is_delivered_once_and_acked_aa() -> None:
    """A message fed one byte at a time reaches the sink once and is answered AA with its ID."""
    sink, clock = FakeSink(), Clock()
    proto, transport = gateway(sink, clock)
    data = frame(ORU_1)
    for i in range(len(data)):
        proto.dataReceived(data[i:i + 1])
    assert [m.raw for m in sink.messages] == [ORU_1]
    assert acks(transport.value()) == [("AA", "MSG-0001", "")]
    ack = parse_message(transport.value()[1:-2])
    assert (ack.control_id, ack.msh[7], ack.message_type) == ("GW1", "20240506070809", "ACK^R01")
    rows = extract_hl7_results(sink.messages[0], GENERIC)
    assert [(r.sample_id, r.test, r.flags) for r in rows] == [
        ("S1", "6690-2", ("N",)), ("S1", "718-7", ("L",))]


def test_ack_waits_for_the_sink_deferred() -> None:
    """Nothing is written until the sink's Deferred fires; then AA goes out."""
    sink, clock = FakeSink(), Clock()
    d: Deferred[object] = Deferred()
    sink.results.append(d)
    proto, transport = gateway(sink, clock)
    proto.dataReceived(frame(ORU_1))
    assert len(sink.messages) == 1
    assert transport.value() == b""
    d.callback(None)
    assert acks(transport.value()) == [("AA", "MSG-0001", "")]


def test_sink_failure_is_answered_ae_207_so_the_analyzer_resends() -> None:
    """A failed sink Deferred gives AE with error 207 in the v2.3.1 ERR form."""
    sink, clock = FakeSink(), Clock()
    d: Deferred[object] = Deferred()
    sink.results.append(d)
    proto, transport = gateway(sink, clock)
    proto.dataReceived(frame(ORU_1))
    d.errback(Failure(OSError("database is locked")))
    assert acks(transport.value()) == [("AE", "MSG-0001", "207")]


def test_sink_raising_synchronously_is_answered_ae() -> None:
    """A sink that raises at once is treated like a failed Deferred: AE 207."""
    sink, clock = FakeSink(), Clock()
    def explode(msg: Hl7Message) -> Deferred[object] | None:
        raise ZeroDivisionError("bug")

    sink.message_received = explode  # type: ignore[method-assign]
    proto, transport = gateway(sink, clock)
    proto.dataReceived(frame(ORU_1))
    assert acks(transport.value()) == [("AE", "MSG-0001", "207")]


def test_sink_refusing_a_message_is_answered_ar_with_its_code() -> None:
    """MessageRejectedError from the sink gives AR with the sink's 0357 code."""
    sink, clock = FakeSink(), Clock()
    d: Deferred[object] = Deferred()
    sink.results.append(d)
    proto, transport = gateway(sink, clock)
    proto.dataReceived(frame(ORU_1))
    d.errback(MessageRejectedError("unsupported message type", "200"))
    assert acks(transport.value()) == [("AR", "MSG-0001", "200")]


def test_pipelined_messages_are_handed_over_and_answered_in_order() -> None:
    """With a slow sink, the second message waits for the first's ACK; answers keep order."""
    sink, clock = FakeSink(), Clock()
    first: Deferred[object] = Deferred()
    second: Deferred[object] = Deferred()
    sink.results += [first, second]
    proto, transport = gateway(sink, clock)
    proto.dataReceived(frame(ORU_1) + frame(ORU_2))
    assert [m.control_id for m in sink.messages] == ["MSG-0001"]
    assert transport.value() == b""
    first.callback(None)
    assert [m.control_id for m in sink.messages] == ["MSG-0001", "MSG-0002"]
    assert acks(transport.value()) == [("AA", "MSG-0001", "")]
    second.callback(None)
    assert acks(transport.value()) == [("AA", "MSG-0001", ""), ("AA", "MSG-0002", "")]


def test_second_message_is_answered_after_the_first_even_if_its_sink_is_faster() -> None:
    """A failed first message is answered AE before the second's AA: strict arrival order."""
    sink, clock = FakeSink(), Clock()
    first: Deferred[object] = Deferred()
    sink.results += [first, None]
    proto, transport = gateway(sink, clock)
    proto.dataReceived(frame(ORU_1))
    proto.dataReceived(frame(ORU_2))
    first.errback(Failure(OSError("disk full")))
    assert acks(transport.value()) == [("AE", "MSG-0001", "207"), ("AA", "MSG-0002", "")]


def test_snibe_message_without_fs_is_delivered_after_silence_and_acked_despite_ne() -> None:
    """No FS, CR LF at the end, MSH-15/16 = NE: delivered after the quiet time and ACKed AA."""
    sink, clock = FakeSink(), Clock()
    proto, transport = gateway(sink, clock)
    proto.dataReceived(VT + SNIBE)
    assert sink.messages == []
    clock.advance(0.9)
    assert sink.messages == []
    clock.advance(0.1)
    assert [m.control_id for m in sink.messages] == ["990"]
    assert acks(transport.value()) == [("AA", "990", "")]
    assert clock.getDelayedCalls() == []


def test_ne_is_honoured_when_the_driver_does_not_ask_for_always_ack() -> None:
    """With always_ack off, a message saying NE|NE is stored and gets no ACK."""
    sink, clock = FakeSink(), Clock()
    proto, transport = gateway(sink, clock, MllpConfig(always_ack=False))
    proto.dataReceived(frame(SNIBE))
    assert len(sink.messages) == 1
    assert transport.value() == b""


def test_enhanced_mode_gets_commit_and_application_acks_after_the_sink() -> None:
    """MSH-15 AL / MSH-16 AL: CA then AA, both only once the sink is done."""
    sink, clock = FakeSink(), Clock()
    d: Deferred[object] = Deferred()
    sink.results.append(d)
    proto, transport = gateway(sink, clock)
    enhanced = ORU_1.replace(b"|2.3.1||||||UNICODE", b"|2.5.1|||AL|AL||UNICODE UTF-8")
    proto.dataReceived(frame(enhanced))
    assert transport.value() == b""
    d.callback(None)
    assert acks(transport.value()) == [("CA", "MSG-0001", ""), ("AA", "MSG-0001", "")]


def test_garbage_block_gets_ar_200_and_its_bytes_go_to_incomplete() -> None:
    """A block that is no HL7 at all is answered AR 200; the raw bytes are kept."""
    sink, clock = FakeSink(), Clock()
    proto, transport = gateway(sink, clock)
    garbage = b"H|\\^&|||host\rL|1|N\r"
    proto.dataReceived(frame(garbage) + frame(ORU_1))
    assert acks(transport.value()) == [("AR", "", "200"), ("AA", "MSG-0001", "")]
    assert [(i.raw, i.reason) for i in sink.incompletes] == [
        (garbage, "rejected: not an HL7 v2 message")]
    assert [m.control_id for m in sink.messages] == ["MSG-0001"]


def test_segments_without_msh_get_ar_100_and_go_to_message_rejected() -> None:
    """Segments with no MSH: AR 100 (segment sequence error), bytes to message_rejected."""
    sink, clock = RejectingSink(), Clock()
    proto, transport = gateway(sink, clock)
    no_msh = ORU_1.split(CR, 1)[1]
    proto.dataReceived(frame(no_msh))
    assert acks(transport.value()) == [("AR", "", "100")]
    assert [(r.raw, r.error_code, r.offset) for r in sink.rejected] == [(no_msh, "100", 0)]
    assert sink.incompletes == [] and sink.messages == []


def test_ar_waits_for_the_rejected_path_and_becomes_ae_if_it_fails() -> None:
    """A rejected block not kept safely is answered AE 207, so the analyzer sends it again."""
    sink, clock = RejectingSink(), Clock()
    d: Deferred[object] = Deferred()
    sink.message_rejected = lambda item: d  # type: ignore[method-assign]
    proto, transport = gateway(sink, clock)
    proto.dataReceived(frame(b"\x00\x01\x02 binary"))
    assert transport.value() == b""
    d.errback(Failure(OSError("disk full")))
    assert acks(transport.value()) == [("AE", "", "207")]


def test_empty_block_is_ignored() -> None:
    """VT FS CR with nothing inside is neither a message nor answered."""
    sink, clock = FakeSink(), Clock()
    proto, transport = gateway(sink, clock)
    proto.dataReceived(VT + FS + CR)
    assert transport.value() == b"" and sink.messages == [] and sink.incompletes == []


def test_connection_loss_mid_message_reports_incomplete_and_stops_the_timer() -> None:
    """Half a block (cut inside a segment) at disconnect goes to sink.incomplete; no timer left."""
    sink, clock = FakeSink(), Clock()
    proto, transport = gateway(sink, clock)
    proto.dataReceived(VT + SNIBE[:40] + b"\n")  # arms the missing-FS timer
    assert len(clock.getDelayedCalls()) == 1
    proto.dataReceived(SNIBE[40:60])  # inside a segment again
    proto.connectionLost(Failure(ConnectionError("cable pulled")))
    assert [(i.raw, i.reason) for i in sink.incompletes] == [
        (SNIBE[:40] + b"\n" + SNIBE[40:60], "connection closed before FS")]
    assert sink.messages == [] and transport.value() == b""
    assert clock.getDelayedCalls() == []


def test_queued_message_still_reaches_the_sink_after_disconnect_but_is_not_acked() -> None:
    """A message received whole before the loss is stored; its ACK cannot be sent."""
    sink, clock = FakeSink(), Clock()
    first: Deferred[object] = Deferred()
    sink.results.append(first)
    proto, transport = gateway(sink, clock)
    proto.dataReceived(frame(ORU_1) + frame(ORU_2))
    proto.connectionLost(Failure(ConnectionError("gone")))
    transport.clear()
    first.callback(None)
    assert [m.control_id for m in sink.messages] == ["MSG-0001", "MSG-0002"]
    assert transport.value() == b""


def test_reading_pauses_when_too_many_messages_wait_and_resumes_when_drained() -> None:
    """More than MAX_QUEUED waiting messages pause the transport until the sink catches up."""
    sink, clock = FakeSink(), Clock()
    first: Deferred[object] = Deferred()
    sink.results.append(first)
    proto, transport = gateway(sink, clock)
    proto.dataReceived(frame(ORU_1) * 66)
    assert transport.producerState == "paused"
    first.callback(None)
    assert transport.producerState == "producing"
    assert len(sink.messages) == 66
    assert len(acks(transport.value())) == 66


def test_one_timer_is_armed_at_the_framer_deadline() -> None:
    """After each read exactly one delayed call exists, at the framer's deadline."""
    sink, clock = FakeSink(), Clock()
    proto, _ = gateway(sink, clock)
    clock.advance(5)
    proto.dataReceived(VT + b"MSH|^~\\&|A\r\n")
    clock.advance(0.5)
    proto.dataReceived(b"PID|1\r\n")
    calls = clock.getDelayedCalls()
    assert len(calls) == 1
    assert calls[0].getTime() == 6.5


def test_recorder_gets_received_and_sent_bytes_in_order() -> None:
    """The wire recording holds rx and tx chunks interleaved as they happened."""
    sink, clock = FakeSink(), Clock()
    stream = KeptBytesIO()
    d: Deferred[object] = Deferred()
    sink.results.append(d)
    proto, transport = gateway(sink, clock, recorder=WireRecorder(stream, "hl7", 0.0))
    data = frame(ORU_1)
    clock.advance(1)
    proto.dataReceived(data[:10])
    clock.advance(1)
    proto.dataReceived(data[10:])
    clock.advance(1)
    d.callback(None)
    proto.connectionLost(Failure(ConnectionError("bye")))
    chunks = list(read_recording(stream.getvalue()))
    assert [(c.direction, c.data, c.t) for c in chunks] == [
        ("note", b"", 0.0), ("rx", data[:10], 1.0), ("rx", data[10:], 2.0),
        ("tx", transport.value(), 3.0), ("note", b"", 3.0)]
    assert stream.closed_by_owner


def test_logs_carry_no_field_contents() -> None:
    """Log events name message types and lengths, never names, IDs or values."""
    sink, clock = FakeSink(), Clock()
    structlog.reset_defaults()
    with capture_logs() as logs:
        proto, _ = gateway(sink, clock)
        proto.dataReceived(frame(ORU_1) + frame(b"PID|1||ROE\r"))
    events = [e["event"] for e in logs]
    assert "message-received" in events and "ack-sent" in events
    assert "message-not-hl7" in events
    text = repr(logs)
    for secret in ("ROE", "RICHARD", "P100201", "7.52", "MSG-0001", "S1"):
        assert secret not in text
    received = next(e for e in logs if e["event"] == "message-received")
    assert (received["message_type"], received["control_id_length"], received["segments"]) == (
        "ORU^R01", 8, 5)


def test_config_with_an_unknown_encoding_fails_at_construction() -> None:
    """A misspelt driver encoding is a LookupError at start, not on the first message."""
    with pytest.raises(LookupError):
        MllpConfig(encoding_override="utf-99")


def test_control_ids_count_up_under_a_time_prefix() -> None:
    """ControlIds.starting_at gives short, distinct MSH-10 values."""
    ids = ControlIds.starting_at(1_700_000_000.0)
    first, second = ids(), ids()
    assert first != second and first.startswith("G") and len(second) <= 20


# ------------------------------------------------------------------ HIS side


def his_ack(control_id: bytes, code: bytes, text: bytes = b"") -> bytes:
    """An HIS's ACK, framed."""
    return frame(b"MSH|^~\\&|HIS|HOSP|LIS-GATEWAY||20240506070810||ACK^R01^ACK|H1|P|2.5.1\r"
                 b"MSA|" + code + b"|" + control_id + b"|" + text + b"\r")


def sender(clock: Clock, timeout: float = 30.0) -> tuple[HisSenderProtocol, StringTransport]:
    """A HIS sender connected to a StringTransport."""
    proto = HisSenderProtocol(clock, ack_timeout=timeout)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def outcome(d: Deferred[DeliveryReport]) -> DeliveryReport | None:
    """The report a Deferred fired with, or None if it has not fired."""
    got: list[DeliveryReport] = []

    def keep(report: DeliveryReport) -> DeliveryReport:
        got.append(report)
        return report

    d.addCallback(keep)
    return got[0] if got else None


def test_his_aa_is_delivered_and_the_message_was_framed() -> None:
    """The message goes out MLLP-framed; AA for its control ID reports DELIVERED."""
    clock = Clock()
    proto, transport = sender(clock)
    d = proto.send(ORU_1)
    assert transport.value() == frame(ORU_1)
    assert outcome(d) is None
    proto.dataReceived(his_ack(b"MSG-0001", b"AA"))
    report = outcome(d)
    assert report is not None
    assert (report.status, report.control_id) == (DeliveryStatus.DELIVERED, "MSG-0001")
    assert report.ack is not None and report.ack.acknowledges == "MSG-0001"
    assert not proto.busy and clock.getDelayedCalls() == []


def test_his_ae_is_a_retry_result() -> None:
    """AE reports RETRY (the outbox may send it again later)."""
    clock = Clock()
    proto, _ = sender(clock)
    d = proto.send(ORU_1)
    proto.dataReceived(his_ack(b"MSG-0001", b"AE", b"database busy"))
    report = outcome(d)
    assert report is not None and report.status is DeliveryStatus.RETRY
    assert report.text == "database busy"


def test_his_ar_is_rejected_with_its_text() -> None:
    """AR reports REJECTED with the HIS's reason for the dead-letter list."""
    clock = Clock()
    proto, _ = sender(clock)
    d = proto.send(ORU_1)
    proto.dataReceived(his_ack(b"MSG-0001", b"AR", b"unknown patient"))
    report = outcome(d)
    assert report is not None and report.status is DeliveryStatus.REJECTED
    assert report.text == "unknown patient"
    assert report.to_dict()["code"] == "AR"


def test_no_answer_within_the_timeout_is_a_timeout_result() -> None:
    """No ACK within ack_timeout reports TIMEOUT at exactly that time, and nothing is resent."""
    clock = Clock()
    proto, transport = sender(clock, timeout=30.0)
    d = proto.send(ORU_1)
    clock.advance(29.9)
    assert outcome(d) is None
    clock.advance(0.1)
    report = outcome(d)
    assert report is not None and report.status is DeliveryStatus.TIMEOUT
    assert transport.value() == frame(ORU_1)
    assert clock.getDelayedCalls() == []
    proto.dataReceived(his_ack(b"MSG-0001", b"AA"))  # too late: ignored
    assert not proto.busy


def test_ack_for_another_control_id_is_not_taken_as_ours() -> None:
    """An ACK whose MSA-2 names another message leaves ours waiting until its own ACK."""
    clock = Clock()
    proto, _ = sender(clock)
    d = proto.send(ORU_1)
    proto.dataReceived(his_ack(b"MSG-0000", b"AA"))
    assert outcome(d) is None
    proto.dataReceived(frame(b"MSH|^~\\&|HIS||||x||ADT^A01|9|P|2.5\rPID|1\r"))  # no MSA
    assert outcome(d) is None
    proto.dataReceived(his_ack(b"MSG-0001", b"AE"))
    report = outcome(d)
    assert report is not None and report.status is DeliveryStatus.RETRY


def test_connection_loss_while_waiting_is_reported() -> None:
    """Losing the connection before the ACK reports CONNECTION_LOST and stops the timer."""
    clock = Clock()
    proto, _ = sender(clock)
    d = proto.send(ORU_1)
    proto.connectionLost(Failure(ConnectionError("reset")))
    report = outcome(d)
    assert report is not None and report.status is DeliveryStatus.CONNECTION_LOST
    assert clock.getDelayedCalls() == []
    report = outcome(proto.send(ORU_2))
    assert report is not None and report.status is DeliveryStatus.NOT_SENT


def test_sender_misuse_raises() -> None:
    """A second send before the ACK, or a message without MSH-10, raises at once."""
    clock = Clock()
    proto, _ = sender(clock)
    with pytest.raises(BuildError):
        proto.send(b"MSH|^~\\&|A|B|||x||ORU^R01||P|2.5.1\r")
    proto.send(ORU_1)
    with pytest.raises(SenderBusyError):
        proto.send(ORU_2)


def test_cancelling_a_send_stops_waiting() -> None:
    """Cancelling the per-message Deferred frees the sender and its timer."""
    clock = Clock()
    proto, _ = sender(clock)
    d = proto.send(ORU_1)
    d.addErrback(lambda f: None)
    d.cancel()
    assert not proto.busy and clock.getDelayedCalls() == []


@implementer(IStreamClientEndpoint)
class LoopbackEndpoint:
    """A client endpoint connecting each new protocol to a fresh StringTransport."""

    def __init__(self) -> None:
        self.protocols: list[IProtocol] = []
        self.transports: list[StringTransport] = []

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        proto = factory.buildProtocol(PEER)
        assert proto is not None
        transport = StringTransport()
        proto.makeConnection(transport)
        self.protocols.append(proto)
        self.transports.append(transport)
        return succeed(proto)


def test_his_client_sends_queued_messages_one_at_a_time_and_reconnects() -> None:
    """HisClient waits for each ACK before the next message and carries on after a reconnect."""
    clock, endpoint = Clock(), LoopbackEndpoint()
    client = HisClient(endpoint, clock, retry_policy=lambda attempt: 1.0)
    first, second = client.send(ORU_1), client.send(ORU_2)
    client.startService()
    (transport,) = endpoint.transports
    assert transport.value() == frame(ORU_1)
    endpoint.protocols[0].dataReceived(his_ack(b"MSG-0001", b"AA"))
    assert transport.value() == frame(ORU_1) + frame(ORU_2)
    endpoint.protocols[0].connectionLost(Failure(ConnectionError("reset")))
    lost = outcome(second)
    assert lost is not None and lost.status is DeliveryStatus.CONNECTION_LOST
    delivered = outcome(first)
    assert delivered is not None and delivered.status is DeliveryStatus.DELIVERED
    third = client.send(ORU_1.replace(b"MSG-0001", b"MSG-0003"))
    clock.advance(0)
    clock.advance(1.0)  # the back-off delay, then a new connection
    assert len(endpoint.transports) == 2
    assert endpoint.transports[1].value() == frame(ORU_1.replace(b"MSG-0001", b"MSG-0003"))
    fourth = client.send(ORU_2)
    client.stopService()  # StringTransport only notes loseConnection(); finish the close
    endpoint.protocols[1].connectionLost(Failure(ConnectionError("closed")))
    stopped = outcome(third)
    assert stopped is not None and stopped.status is DeliveryStatus.CONNECTION_LOST
    queued = outcome(fourth)
    assert queued is not None and queued.status is DeliveryStatus.NOT_SENT
    late = outcome(client.send(ORU_2))
    assert late is not None and late.status is DeliveryStatus.NOT_SENT


def test_his_client_cancel_drops_a_queued_message() -> None:
    """Cancelling a queued message's Deferred removes it before it is sent."""
    clock, endpoint = Clock(), LoopbackEndpoint()
    client = HisClient(endpoint, clock)
    first, second = client.send(ORU_1), client.send(ORU_2)
    second.addErrback(lambda f: None)
    second.cancel()
    client.startService()
    endpoint.protocols[0].dataReceived(his_ack(b"MSG-0001", b"AA"))
    assert endpoint.transports[0].value() == frame(ORU_1)
    assert outcome(first) is not None
    client.stopService()


# ------------------------------------------------------------------ simulator


@implementer(IStreamClientEndpoint)
class IOSimEndpoint:
    """A client endpoint joining each new protocol to ``server`` with twisted.test.iosim."""

    def __init__(self, server: IProtocol) -> None:
        self.server = server
        self.pump: IOPump | None = None

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        client = factory.buildProtocol(PEER)
        assert client is not None
        self.pump = connect(self.server, FakeTransport(self.server, isServer=True), client,
                            FakeTransport(client, isServer=False))
        return succeed(client)


def test_simulator_and_gateway_protocols_talk_over_iosim() -> None:
    """The simulated HL7 analyzer's blood counts reach the gateway and are answered AA."""
    clock, sink = Clock(), FakeSink()
    gw = MllpAnalyzerProtocol(mllp_config(GENERIC), clock, sink, control_ids=ControlIds("GW"),
                              utcnow=lambda: WHEN)
    endpoint = IOSimEndpoint(gw)
    sim = SimulatedHl7Analyzer("sim", endpoint, clock, lambda: WHEN, interval=3)
    sim.start()  # connects and sends the first message at once
    assert endpoint.pump is not None
    endpoint.pump.flush()
    clock.advance(3)
    endpoint.pump.flush()
    sim.stop()
    assert [r.status for r in sim.reports] == [DeliveryStatus.DELIVERED] * 2
    assert [r.ack.code for r in sim.reports if r.ack] == ["AA", "AA"]
    assert [m.raw for m in sink.messages] == [blood_count_message(1, WHEN),
                                              blood_count_message(2, WHEN)]
    rows = extract_hl7_results(sink.messages[0], GENERIC)
    assert len(rows) == 15 and rows[0].unit == "10*3/uL"
    assert {f for r in rows for f in r.flags} == {"N", "H", "L"}
    assert rows[0].sample_id == "B260001"


def test_simulator_skips_a_tick_while_a_message_is_unanswered() -> None:
    """The simulator sends at once, then waits for the ACK before the next message."""
    clock, endpoint = Clock(), LoopbackEndpoint()
    sim = SimulatedHl7Analyzer("sim", endpoint, clock, lambda: WHEN, interval=3)
    sim.start()
    (transport,) = endpoint.transports
    assert transport.value() == frame(blood_count_message(1, WHEN))
    clock.advance(3)
    assert transport.value() == frame(blood_count_message(1, WHEN))
    endpoint.protocols[0].dataReceived(his_ack(b"1", b"AE"))
    clock.advance(3)
    assert transport.value() == frame(blood_count_message(1, WHEN)) + frame(
        blood_count_message(2, WHEN))
    assert [r.status for r in sim.reports] == [DeliveryStatus.RETRY]
    sim.stop()
