"""Link protocols say when they are at rest (and since when), so a full listener may
close the connection idle longest without cutting a message short."""

from __future__ import annotations

from datetime import datetime

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from lis_gateway.adapters.astm_protocol import BareRecordProtocol
from lis_gateway.adapters.tcp import Evictable
from lis_gateway.astm import constants as C
from lis_gateway.simulator import chemistry_message

from . import test_astm_protocol as astm
from . import test_mllp_protocol as mllp

WHEN = datetime(2024, 5, 6, 7, 8, 9)


def test_astm_link_is_at_rest_only_between_transfers() -> None:
    """Idle since the connection came; busy from ENQ to EOT and while an ACK waits for the
    sink; at rest again after EOT, since the last byte."""
    sink, clock = astm.FakeSink(), Clock()
    clock.advance(100)
    proto, _transport = astm.gateway(sink, clock)
    assert isinstance(proto, Evictable)
    assert proto.idle_since() == 100
    frames = astm.frames_of(chemistry_message(1, WHEN))
    clock.advance(5)
    proto.dataReceived(C.ENQ + b"".join(frames[:-1]))
    assert proto.idle_since() is None  # in the middle of a transfer
    stored: Deferred[object] = Deferred()
    sink.results.append(stored)
    proto.dataReceived(frames[-1] + C.EOT)
    assert proto.idle_since() is None  # the ACK of the last frame waits for the sink
    clock.advance(1)
    stored.callback(None)
    assert proto.idle_since() == 106  # the ACK went out: that was the last byte
    proto.connectionLost()
    assert proto.idle_since() is None


def test_astm_link_with_a_message_to_send_is_not_at_rest() -> None:
    """A queued outgoing message (a host-query reply, a download) keeps the link busy."""
    proto, _transport = astm.gateway(astm.FakeSink(), Clock())
    proto.send_message(b"H|\\^&\rL|1|N\r")
    assert proto.idle_since() is None


def test_bare_record_link_is_at_rest_between_messages() -> None:
    """Records of an unfinished message make a bare-record link busy; its L record ends that."""
    proto = BareRecordProtocol(Clock(), "latin-1", astm.FakeSink())
    proto.makeConnection(StringTransport())
    proto.dataReceived(b"H|\\^&\rP|1\r")
    assert proto.idle_since() is None
    proto.dataReceived(b"L|1|N\r")
    assert proto.idle_since() == 0


def test_mllp_link_is_busy_inside_a_block_and_until_answered() -> None:
    """Part of a block, or a message with the sink, makes an HL7 link busy; after the ACK
    it is at rest since that ACK."""
    sink, clock = mllp.FakeSink(), Clock()
    proto, transport = mllp.gateway(sink, clock)
    assert proto.idle_since() == 0
    clock.advance(3)
    proto.dataReceived(mllp.VT + mllp.ORU_1[:20])
    assert proto.idle_since() is None
    stored: Deferred[object] = Deferred()
    sink.results.append(stored)
    proto.dataReceived(mllp.ORU_1[20:] + mllp.FS + mllp.CR)
    assert proto.idle_since() is None
    clock.advance(2)
    stored.callback(None)
    assert mllp.acks(transport.value())[0][0] == "AA"
    assert proto.idle_since() == 5
