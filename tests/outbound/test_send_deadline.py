"""HisClient's deadline: a message next in line is answered, timed out or reported not sent
within ``ack_timeout``, whether or not a connection ever comes up (task.Clock)."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.internet.task import Clock
from zope.interface import implementer

from lis_gateway.outbound.delivery import DeliveryStatus
from lis_gateway.outbound.sender import DeliveryReport, HisClient

from ..adapters.test_mllp_protocol import ORU_1, ORU_2, LoopbackEndpoint, his_ack, outcome


@implementer(IStreamClientEndpoint)
class HangingEndpoint:
    """A connection attempt that never ends (a firewall dropping SYNs), until ``come_up``."""

    def __init__(self) -> None:
        self.attempts: list[tuple[IProtocolFactory, Deferred[IProtocol]]] = []

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        d: Deferred[IProtocol] = Deferred()
        self.attempts.append((factory, d))
        return d


def test_no_connection_within_the_timeout_is_reported_not_sent() -> None:
    """A connection attempt that hangs: NOT_SENT with the reason at ack_timeout, not before."""
    clock, endpoint = Clock(), HangingEndpoint()
    client = HisClient(endpoint, clock, ack_timeout=30.0)
    client.startService()
    sent = client.send(ORU_1)
    clock.advance(29.9)
    assert outcome(sent) is None
    clock.advance(0.1)
    report = outcome(sent)
    assert report is not None and report.status is DeliveryStatus.NOT_SENT
    assert report.control_id == "MSG-0001"
    assert report.detail == "no connection to the HIS within 30 s"
    assert len(endpoint.attempts) == 1  # still the same attempt: ClientService's own pace
    client.stopService()


def test_silence_after_writing_is_a_timeout_and_the_next_message_goes() -> None:
    """Written, never answered: TIMEOUT at ack_timeout; the next message is sent at once
    on the same connection and its ACK is matched."""
    clock, endpoint = Clock(), LoopbackEndpoint()
    client = HisClient(endpoint, clock, ack_timeout=30.0)
    client.startService()
    first, second = client.send(ORU_1), client.send(ORU_2)
    clock.advance(30.0)
    report = outcome(first)
    assert report is not None and report.status is DeliveryStatus.TIMEOUT
    assert endpoint.transports[0].value().count(b"\x1c\r") == 2  # the second was written
    endpoint.protocols[0].dataReceived(his_ack(b"MSG-0002", b"AA"))
    answered = outcome(second)
    assert answered is not None and answered.status is DeliveryStatus.DELIVERED
    client.stopService()


def test_the_deadline_starts_when_the_message_is_next_in_line() -> None:
    """A message queued behind one that waits 20 s for its ACK still has its full time."""
    clock, endpoint = Clock(), LoopbackEndpoint()
    client = HisClient(endpoint, clock, ack_timeout=30.0)
    client.startService()
    first, second = client.send(ORU_1), client.send(ORU_2)
    clock.advance(20.0)
    endpoint.protocols[0].dataReceived(his_ack(b"MSG-0001", b"AA"))
    clock.advance(29.0)
    assert outcome(second) is None
    clock.advance(1.0)
    late = outcome(second)
    assert late is not None and late.status is DeliveryStatus.TIMEOUT
    delivered = outcome(first)
    assert delivered is not None and delivered.status is DeliveryStatus.DELIVERED
    client.stopService()


def test_a_connection_that_comes_up_after_a_missed_deadline_carries_the_next_message() -> None:
    """The expired message is not written later; the next one goes once connected."""
    clock, endpoint = Clock(), HangingEndpoint()
    client = HisClient(endpoint, clock, ack_timeout=10.0)
    client.startService()
    expired = client.send(ORU_1)
    clock.advance(10.0)
    gone = outcome(expired)
    assert gone is not None and gone.status is DeliveryStatus.NOT_SENT
    later = client.send(ORU_2)
    loopback = LoopbackEndpoint()
    factory, attempt = endpoint.attempts[0]
    proto = loopback.connect(factory)
    proto.addCallback(attempt.callback)
    assert loopback.transports[0].value().count(b"MSG-0002") == 1
    assert b"MSG-0001" not in loopback.transports[0].value()
    loopback.protocols[0].dataReceived(his_ack(b"MSG-0002", b"AA"))
    report: DeliveryReport | None = outcome(later)
    assert report is not None and report.status is DeliveryStatus.DELIVERED
    client.stopService()


def test_a_cancelled_message_leaves_no_timer_behind() -> None:
    """Cancelling the Deferred (the worker stopping) disarms the deadline."""
    clock, endpoint = Clock(), HangingEndpoint()
    client = HisClient(endpoint, clock, ack_timeout=10.0)
    client.startService()
    sent = client.send(ORU_1)
    sent.addErrback(lambda failure: None)
    sent.cancel()
    assert [call for call in clock.getDelayedCalls() if call.active()
            and call.getTime() == clock.seconds() + 10.0] == []
    client.stopService()
