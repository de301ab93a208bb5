"""TCP keepalive on accepted and outgoing link sockets, read back with getsockopt.

The sockets are real (loopback), driven by a private ``SelectReactor`` the
test iterates itself: the global reactor is never used.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Protocol
from twisted.internet.selectreactor import SelectReactor
from twisted.internet.testing import StringTransport

from lis_gateway.adapters.keepalive import (
    KEEPALIVE_COUNT,
    KEEPALIVE_IDLE,
    KEEPALIVE_INTERVAL,
    enable_keepalive,
)
from lis_gateway.adapters.tcp import LinkFactory, make_client_service


class Kept(Protocol):
    """Notes its connection; closes when told."""

    def __init__(self) -> None:
        self.lost = False

    def connectionLost(self, reason: object = None) -> None:
        self.lost = True


@pytest.fixture
def reactor() -> Iterator[SelectReactor]:
    """A reactor of this test's own, iterated by hand (never run, never global)."""
    r = SelectReactor()
    yield r
    r.disconnectAll()
    for reader in list(r._internalReaders):
        r.removeReader(reader)
        reader.connectionLost(None)


def turn_until(reactor: SelectReactor, done: Callable[[], bool], what: str) -> None:
    """Iterate the reactor until ``done()`` holds (bounded; polling, not timing)."""
    deadline = time.monotonic() + 10
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen")
        reactor.iterate(0.01)


def keepalive_options(sock: socket.socket) -> dict[str, int]:
    """The keepalive switch and the timers this platform has, read back from the socket."""
    options = {"SO_KEEPALIVE": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)}
    for name in ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT"):
        if hasattr(socket, name):
            options[name] = sock.getsockopt(socket.IPPROTO_TCP, getattr(socket, name))
    return options


def expected_options() -> dict[str, int]:
    wanted = {"SO_KEEPALIVE": 1, "TCP_KEEPIDLE": KEEPALIVE_IDLE,
              "TCP_KEEPINTVL": KEEPALIVE_INTERVAL, "TCP_KEEPCNT": KEEPALIVE_COUNT}
    return {k: v for k, v in wanted.items() if k == "SO_KEEPALIVE" or hasattr(socket, k)}


def test_accepted_connection_has_keepalive(reactor: SelectReactor) -> None:
    """A connection accepted by a listening link's factory has SO_KEEPALIVE and the timers."""
    built: list[Kept] = []

    def build(_session: str) -> Protocol:
        built.append(Kept())
        return built[-1]

    ports: list[IListeningPort] = []
    TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        LinkFactory(build)).addCallback(ports.append)
    turn_until(reactor, lambda: bool(ports), "listening")
    port = ports[0].getHost().port
    with socket.create_connection(("127.0.0.1", port), timeout=10):
        turn_until(reactor, lambda: bool(built) and built[0].transport is not None,
                   "the accepted connection")
        server_side = built[0].transport.getHandle()
        assert keepalive_options(server_side) == expected_options()
        built[0].transport.loseConnection()
        turn_until(reactor, lambda: built[0].lost, "the close")
    ports[0].stopListening()


def test_outgoing_connection_has_keepalive(reactor: SelectReactor) -> None:
    """A connection made by an outgoing link's ClientService has SO_KEEPALIVE and the timers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        built: list[Kept] = []

        def build(_session: str) -> Protocol:
            built.append(Kept())
            return built[-1]

        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", listener.getsockname()[1])
        service = make_client_service(endpoint, build, reactor)
        service.startService()
        connected: list[object] = []
        service.whenConnected().addCallback(connected.append)
        turn_until(reactor, lambda: bool(connected), "the outgoing connection")
        accepted, _ = listener.accept()
        with accepted:
            assert connected[0] is built[0]  # the link protocol itself, not a wrapper
            assert keepalive_options(built[0].transport.getHandle()) == expected_options()
            stopped: list[object] = []
            service.stopService().addCallback(stopped.append)
            turn_until(reactor, lambda: bool(stopped), "the service stop")


def test_transports_without_tcp_are_left_alone() -> None:
    """A transport with no setTcpKeepAlive (serial port, test double) is not touched."""
    assert enable_keepalive(StringTransport()) is False
    assert enable_keepalive(None) is False
