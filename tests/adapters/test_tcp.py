"""The outgoing TCP link: ClientService with back-off on an injected clock."""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from lis_gateway.adapters.tcp import make_client_service


class FlakyEndpoint:
    """Refuses the first ``failures`` connects, then connects to a StringTransport."""

    def __init__(self, clock: Clock, failures: int) -> None:
        self.clock = clock
        self.failures = failures
        self.attempts: list[float] = []
        self.protocols: list[Protocol] = []

    def connect(self, factory: Factory[Protocol]) -> Deferred[Protocol]:
        self.attempts.append(self.clock.seconds())
        if len(self.attempts) <= self.failures:
            return fail(ConnectionRefusedError())
        proto = factory.buildProtocol(None)
        assert proto is not None
        proto.makeConnection(StringTransport())
        self.protocols.append(proto)
        return succeed(proto)


def test_refused_connects_are_retried_with_growing_delays() -> None:
    """Two refusals, then a connection: attempts at 0, then after back-off delays."""
    clock = Clock()
    endpoint = FlakyEndpoint(clock, failures=2)
    built: list[tuple[str, Protocol]] = []

    def build(session: str) -> Protocol:
        built.append((session, Protocol()))
        return built[-1][1]

    service = make_client_service(endpoint, build, clock,
                                  retry_policy=lambda failed: 2.0 * failed)
    service.startService()
    assert endpoint.attempts == [0.0]
    clock.advance(2.0)
    assert endpoint.attempts == [0.0, 2.0]
    clock.advance(4.0)
    assert endpoint.attempts == [0.0, 2.0, 6.0]
    assert len(built) == 1 and built[0][1].transport is not None
    service.stopService()


def test_lost_connection_is_reestablished_with_a_fresh_protocol() -> None:
    """When the analyzer drops the link, a new connection and protocol follow after the delay."""
    clock = Clock()
    endpoint = FlakyEndpoint(clock, failures=0)
    service = make_client_service(endpoint, lambda session: Protocol(), clock,
                                  retry_policy=lambda failed: 5.0)
    service.startService()
    first = endpoint.protocols[0]
    first.connectionLost(ConnectionRefusedError())  # the peer went away
    clock.advance(4.9)
    assert len(endpoint.protocols) == 1
    clock.advance(0.2)
    assert len(endpoint.protocols) == 2 and endpoint.protocols[1] is not first
    service.stopService()
