"""TCP keepalive on analyzer sockets, so the kernel finds peers that vanished.

An analyzer may keep one TCP connection open and silent for hours, so a
plain idle timeout would cut healthy links. A peer that vanished without a
FIN (cable pulled, analyzer powered off, a NAT or firewall that forgot the
flow) is different: nothing ever arrives on its half-open connection. With
keepalive the kernel probes a connection after :data:`KEEPALIVE_IDLE` seconds
of silence, every :data:`KEEPALIVE_INTERVAL` seconds, and after
:data:`KEEPALIVE_COUNT` unanswered probes reports the connection lost (about
two minutes in all), which frees the link's place.

``SO_KEEPALIVE`` is portable; the three timers are set where the platform has
them (``TCP_KEEPIDLE``/``TCP_KEEPINTVL``/``TCP_KEEPCNT``: Linux, recent macOS
and BSDs, Windows 10 1709+); elsewhere the system defaults apply (often two
hours before the first probe).
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from zope.interface import implementer

#: Seconds of silence before the first probe.
KEEPALIVE_IDLE = 60
#: Seconds between unanswered probes.
KEEPALIVE_INTERVAL = 10
#: Unanswered probes after which the connection is reported lost.
KEEPALIVE_COUNT = 6


def enable_keepalive(transport: object, *, idle: int = KEEPALIVE_IDLE,
                     interval: int = KEEPALIVE_INTERVAL, count: int = KEEPALIVE_COUNT) -> bool:
    """Switch TCP keepalive on for ``transport`` (nothing for other transports).

    Args:
        transport: a connected transport; one without ``setTcpKeepAlive`` (a
            serial port, a test double) is left alone.
        idle, interval, count: the probe timers, set where the platform has them.

    Returns:
        ``True`` when ``SO_KEEPALIVE`` was set.
    """
    set_keepalive: Callable[[int], None] | None = getattr(transport, "setTcpKeepAlive", None)
    if set_keepalive is None:
        return False
    set_keepalive(1)
    get_handle: Callable[[], object] | None = getattr(transport, "getHandle", None)
    handle = get_handle() if get_handle is not None else None
    if isinstance(handle, socket.socket):
        for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval),
                            ("TCP_KEEPCNT", count)):
            option = getattr(socket, name, None)
            if option is None:
                continue
            try:
                handle.setsockopt(socket.IPPROTO_TCP, option, value)
            except OSError:  # refused by this platform: its defaults stay
                continue
    return True


@implementer(IStreamClientEndpoint)
class KeepAliveEndpoint:
    """A client endpoint whose connections have TCP keepalive on (see the module docstring).

    Args:
        endpoint: the endpoint that really connects.
    """

    def __init__(self, endpoint: IStreamClientEndpoint) -> None:
        self._endpoint = endpoint

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """Connect like the wrapped endpoint, then switch keepalive on."""
        d: Deferred[IProtocol] = self._endpoint.connect(protocolFactory)
        return d.addCallback(self._connected)

    @staticmethod
    def _connected(protocol: IProtocol) -> IProtocol:
        enable_keepalive(getattr(protocol, "transport", None))
        return protocol
