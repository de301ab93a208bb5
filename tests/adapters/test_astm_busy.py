"""AstmLinkProtocol answers ENQ with NAK while its sink says it cannot keep a message."""

from __future__ import annotations

from datetime import datetime

from structlog.testing import capture_logs
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

import drivers
from lis_gateway import metrics
from lis_gateway.adapters.astm_protocol import AstmLinkProtocol
from lis_gateway.astm import constants as C
from lis_gateway.astm.assembler import AstmMessage
from lis_gateway.simulator import chemistry_message

from .test_astm_protocol import FakeSink, frames_of

WHEN = datetime(2024, 5, 6, 7, 8, 9)
GENERIC = drivers.get("generic-astm")


class GatedSink(FakeSink):
    """A sink that fails to store while ``down`` and says so through ``accepting()``."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.asked = 0

    def message_received(self, msg: AstmMessage) -> Deferred[object] | None:
        if self.down:
            return fail(OSError("database is locked"))
        return super().message_received(msg)

    def accepting(self) -> bool:
        self.asked += 1
        return not self.down


def _refusals(analyzer: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "lis_gateway_frame_rejections_total", {"analyzer": analyzer, "reason": "enq-busy"})
    return value or 0.0


def _link(sink: FakeSink, analyzer: str) -> tuple[AstmLinkProtocol, StringTransport]:
    proto = AstmLinkProtocol(GENERIC.link_config(), Clock(), "latin-1", sink,
                             analyzer=analyzer)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def test_enq_is_naked_while_the_sink_is_not_accepting_then_acked() -> None:
    """The sink is asked at each ENQ: no means NAK (logged, counted), yes means ACK."""
    sink = GatedSink()
    sink.down = True
    proto, transport = _link(sink, "busy-1")
    before = _refusals("busy-1")
    with capture_logs() as logs:
        proto.dataReceived(C.ENQ)
    assert transport.value() == C.NAK
    assert sink.asked == 1
    assert _refusals("busy-1") == before + 1
    [refused] = [e for e in logs if e["event"] == "enq-refused"]
    assert refused == {"event": "enq-refused", "log_level": "warning", "offset": 0,
                       "cause": "busy", "answer": "nak"}
    transport.clear()
    sink.down = False
    message = chemistry_message(1, WHEN)
    frames = frames_of(message)
    proto.dataReceived(C.ENQ + b"".join(frames) + C.EOT)
    assert transport.value() == C.ACK * (1 + len(frames))
    assert [m.raw for m in sink.messages] == [message]
    assert _refusals("busy-1") == before + 1


def test_failed_store_naks_the_frame_and_then_the_next_enq() -> None:
    """The completing frame is NAKed when the store fails; the analyzer's next ENQ (after
    it gives up) is NAKed too; once the sink recovers the resend is ACKed and kept once."""
    sink = GatedSink()
    proto, transport = _link(sink, "busy-2")
    message = chemistry_message(2, WHEN)
    frames = frames_of(message)
    proto.dataReceived(C.ENQ + b"".join(frames[:-1]))
    sink.down = True
    transport.clear()
    for _attempt in range(6):
        proto.dataReceived(frames[-1])
    assert transport.value() == C.NAK * 6
    proto.dataReceived(C.EOT)
    transport.clear()
    proto.dataReceived(C.ENQ)
    assert transport.value() == C.NAK
    transport.clear()
    sink.down = False
    proto.dataReceived(C.ENQ + b"".join(frames) + C.EOT)
    assert transport.value() == C.ACK * (1 + len(frames))
    assert [m.raw for m in sink.messages] == [message]


def test_a_sink_without_accepting_is_always_ready() -> None:
    """A sink with no accepting() method (an optional part of the protocol) gets ACK."""
    sink = FakeSink()
    proto, transport = _link(sink, "busy-3")
    proto.dataReceived(C.ENQ)
    assert transport.value() == C.ACK
    assert not hasattr(sink, "accepting")
