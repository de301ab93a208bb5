"""TCP transports for analyzer links.

* :class:`LinkServerService`: the analyzer connects in. Each accepted
  connection gets a fresh protocol (and with it a fresh wire recorder) from
  the link's :data:`ProtocolBuilder`.
* :func:`make_client_service`: the gateway connects out and reconnects with
  ``backoffPolicy`` on Twisted's :class:`ClientService`, clock injected.

A listening link accepts at most :data:`MAX_CONNECTIONS` connections at once
(an analyzer normally holds one; a few more cover one that reconnects before
its old connection is seen to be gone), so a misbehaving or hostile peer
cannot exhaust the process's file descriptors or memory. Idle connections
must not lock the analyzer out, yet an analyzer may rightly keep its one
connection silent for hours, so nothing is timed out for silence alone:

* TCP keepalive is on for every accepted and outgoing connection
  (:mod:`lis_gateway.adapters.keepalive`): the kernel reports a half-open
  peer (cable pulled, no FIN) lost within about two minutes.
* When a new connection arrives at the limit, the connection idle longest
  *at rest* (its protocol says so through :class:`Evictable`: no message in
  the middle of its transfer, nothing waiting for the sink) is closed and
  logged (``tcp-connection-evicted``), and the new one is served. Only when
  every connection is busy is the new one closed at once
  (``tcp-connection-refused``). Nothing is lost by an eviction: a connection
  at rest holds no unacknowledged text.

Neither knows about drivers or ASTM: the composition root (``service.py``)
decides which protocol a link speaks.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, runtime_checkable
from typing import Protocol as TypingProtocol

import structlog
from structlog.typing import FilteringBoundLogger
from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IReactorTime,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
    ITransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure

from .keepalive import KeepAliveEndpoint, enable_keepalive

#: Builds the protocol of one connection, given a session id for the logs.
ProtocolBuilder = Callable[[str], Protocol]

#: Reconnect delays (seconds) for a given number of failed attempts in a row.
RetryPolicy = Callable[[int], float]

#: Most connections one listening link keeps open at once.
MAX_CONNECTIONS = 16


def default_retry_policy() -> RetryPolicy:
    """The reconnect policy for analyzer links: 1 s growing to at most 60 s."""
    return backoffPolicy(initialDelay=1.0, maxDelay=60.0, factor=1.5)


@runtime_checkable
class Evictable(TypingProtocol):
    """A link protocol that can say whether closing it now would cut anything short."""

    def idle_since(self) -> float | None:
        """When the connection last carried a byte, if it is at rest now; else ``None``.

        At rest: no message in the middle of its transfer and nothing waiting for
        the sink or for the peer, so closing the connection loses nothing.
        """


class _Counted(Protocol):
    """Hands the real transport to the link protocol and tells the factory when it closes.

    The link protocol sees the real transport (producers, peer address), so
    nothing changes for it; only ``dataReceived`` and ``connectionLost`` pass
    through here. Keepalive is switched on when the connection is made.
    """

    def __init__(self, inner: Protocol, on_lost: Callable[[_Counted], None],
                 session: str, peer: str) -> None:
        self.inner = inner
        self._on_lost = on_lost
        self.session = session
        self.peer = peer

    def makeConnection(self, transport: ITransport) -> None:
        """Switch keepalive on, connect the link protocol to the transport."""
        enable_keepalive(transport)
        super().makeConnection(transport)
        self.inner.makeConnection(transport)

    def idle_since(self) -> float | None:
        """The link protocol's answer (``None``, busy, if it cannot tell)."""
        if self.transport is None or not isinstance(self.inner, Evictable):
            return None
        return self.inner.idle_since()

    def evict(self) -> None:
        """Close the connection now (its place is already given to another)."""
        transport = self.transport
        abort = getattr(transport, "abortConnection", None)
        if abort is not None:
            abort()  # no graceful close: a half-open peer would never finish one
        elif transport is not None:
            transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        """Hand received bytes to the link protocol."""
        self.inner.dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Tell the link protocol, then free the connection's place."""
        try:
            self.inner.connectionLost(reason)
        finally:
            self._on_lost(self)


class LinkFactory(Factory[Protocol]):
    """Gives every connection a fresh protocol with its own session id.

    Args:
        build: the link's protocol builder.
        log: logger bound to the link.
        max_connections: connections open at once beyond which new ones are
            closed at once (None: no limit, for outgoing connections).
    """

    def __init__(self, build: ProtocolBuilder, log: FilteringBoundLogger | None = None,
                 max_connections: int | None = MAX_CONNECTIONS) -> None:
        self._build = build
        self._sessions = itertools.count(1)
        self._log: FilteringBoundLogger = (
            log if log is not None else structlog.get_logger("lis_gateway.tcp"))
        self.max_connections = max_connections
        self._open: dict[_Counted, None] = {}  # open connections, oldest first

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        """Build the protocol for a new connection from or to ``addr``.

        Returns ``None`` (Twisted then closes the connection) when
        ``max_connections`` are already open.
        """
        peer = f"{getattr(addr, 'host', '?')}:{getattr(addr, 'port', '?')}"
        if self.max_connections is None:
            session = str(next(self._sessions))
            self._log.info("tcp-connection", session=session, peer=peer)
            return self._build(session)
        if len(self._open) >= self.max_connections and not self._evict_one(peer):
            self._log.warning("tcp-connection-refused", peer=peer,
                              reason="too many connections, none at rest",
                              limit=self.max_connections)
            return None
        session = str(next(self._sessions))
        self._log.info("tcp-connection", session=session, peer=peer)
        counted = _Counted(self._build(session), self._closed, session, peer)
        self._open[counted] = None
        return counted

    @property
    def open_connections(self) -> int:
        """Connections open now (counted only with a limit; an evicted one no longer counts)."""
        return len(self._open)

    def _evict_one(self, newcomer: str) -> bool:
        """Close the connection at rest that has been idle longest; ``False`` if none is."""
        idle = [(since, i, c) for i, c in enumerate(self._open)
                if (since := c.idle_since()) is not None]
        if not idle:
            return False
        since, _, victim = min(idle)
        del self._open[victim]
        self._log.warning("tcp-connection-evicted", session=victim.session, peer=victim.peer,
                          last_activity=round(since, 3), newcomer=newcomer,
                          reason="connection limit reached; this one was idle longest",
                          limit=self.max_connections)
        victim.evict()
        return True

    def _closed(self, counted: _Counted) -> None:
        self._open.pop(counted, None)


class LinkServerService(Service):
    """Listens for analyzer connections while running.

    Args:
        endpoint: where to listen (``TCP4ServerEndpoint(reactor, port, interface=host)``).
        factory: a :class:`LinkFactory`, or the web ``Site``.
        log: logger bound to the link.
    """

    def __init__(self, endpoint: IStreamServerEndpoint, factory: Factory[Any],
                 log: FilteringBoundLogger | None = None) -> None:
        self._endpoint = endpoint
        self._factory = factory
        self._log: FilteringBoundLogger = (
            log if log is not None else structlog.get_logger("lis_gateway.tcp"))
        self._port: IListeningPort | None = None
        self._waiting: list[Deferred[IListeningPort]] = []
        self._failure: Failure | None = None

    def startService(self) -> None:
        """Start listening."""
        super().startService()
        d = self._endpoint.listen(self._factory)
        d.addCallbacks(self._listening, self._failed)

    def stopService(self) -> Deferred[None] | None:
        """Stop listening; connections already accepted stay open."""
        super().stopService()
        port, self._port = self._port, None
        if port is None:
            return None
        return port.stopListening()

    @property
    def listening(self) -> bool:
        """The port is open (for readiness checks)."""
        return self._port is not None

    def when_listening(self) -> Deferred[IListeningPort]:
        """A Deferred that fires with the listening port (or the failure to listen)."""
        d: Deferred[IListeningPort] = Deferred()
        if self._port is not None:
            d.callback(self._port)
        elif self._failure is not None:
            d.errback(self._failure)
        else:
            self._waiting.append(d)
        return d

    def _listening(self, port: IListeningPort) -> None:
        self._port = port
        address = port.getHost()
        self._log.info("tcp-listening", host=getattr(address, "host", "?"),
                       port=getattr(address, "port", "?"))
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(port)

    def _failed(self, failure: Failure) -> None:
        self._failure = failure
        self._log.error("tcp-listen-failed", error=failure.getErrorMessage())
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(failure)


def make_client_service(endpoint: IStreamClientEndpoint, build: ProtocolBuilder,
                        clock: IReactorTime, *, retry_policy: RetryPolicy | None = None,
                        log: FilteringBoundLogger | None = None) -> ClientService:
    """A service that keeps one outgoing connection to an analyzer open.

    Args:
        endpoint: where the analyzer listens.
        build: the link's protocol builder (a fresh protocol per connection).
        clock: schedules reconnection attempts.
        retry_policy: attempt -> delay; :func:`default_retry_policy` when None.
        log: logger bound to the link.

    Returns:
        A ``ClientService`` that reconnects with back-off whenever the
        connection fails or is lost; each connection has TCP keepalive on.
    """
    return ClientService(KeepAliveEndpoint(endpoint),
                         LinkFactory(build, log, max_connections=None),
                         retryPolicy=retry_policy or default_retry_policy(), clock=clock)
