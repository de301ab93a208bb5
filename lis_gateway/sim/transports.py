"""Where the simulated analyzer's bytes go: TCP (client or server), a pty, a serial port.

Each ``start_*`` function starts one transport for a protocol builder
(``session id -> Protocol``) and returns a :class:`Running` whose ``stop``
ends it. Status lines ("listening on ...", the pty path) go through ``say``.

The pty runs its master in packet mode (``TIOCPKT``): when the gateway opens
the slave, pyserial flushes its input and the master reads a FLUSHREAD
packet (Twisted's ``SerialPort`` flushes once more right after). The
analyzer's "cable" is connected once the flushes have stopped for
:data:`SETTLE` seconds; bytes written before would be thrown away. A gateway
that does not flush connects it with its first byte instead.
"""

from __future__ import annotations

import fcntl
import os
import struct
import termios
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.application.internet import backoffPolicy
from twisted.internet import abstract, fdesc, main
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from lis_gateway.adapters.tcp import LinkFactory, LinkServerService, make_client_service
from lis_gateway.simulator import Pty, open_pty

Builder = Callable[[str], Protocol]
Say = Callable[[str], None]

#: TIOCPKT status bit: the slave flushed its input queue (pyserial does on open).
TIOCPKT_FLUSHREAD = 0x01
#: Seconds without a further flush after which the gateway's port counts as open.
SETTLE = 0.3


@dataclass
class Running:
    """A started transport; ``stop`` ends it (a Deferred when that takes time)."""

    stop: Callable[[], Deferred[Any] | None]
    #: fails when the transport cannot start (a port in use); None when it cannot fail later
    started: Deferred[Any] | None = None


def start_tcp_client(host: str, port: int, build: Builder, reactor: Any, say: Say) -> Running:
    """Connect to the gateway, reconnecting quickly (0.2 s growing to 5 s) when dropped."""
    service = make_client_service(HostnameEndpoint(reactor, host, port, timeout=5), build,
                                  reactor, retry_policy=backoffPolicy(0.2, 5.0, 1.5))
    service.startService()
    say(f"connecting to {host}:{port}")
    return Running(service.stopService)


def start_tcp_server(host: str, port: int, build: Builder, reactor: Any, say: Say) -> Running:
    """Listen for the gateway (a ``tcp-client`` link); port 0 takes any free port."""
    endpoint_type = TCP6ServerEndpoint if ":" in host else TCP4ServerEndpoint
    service = LinkServerService(endpoint_type(reactor, port, interface=host), LinkFactory(build))
    service.startService()

    def listening(listening_port: IListeningPort) -> None:
        address = listening_port.getHost()
        say(f"listening on {getattr(address, 'host', host)}:{getattr(address, 'port', port)}")

    started = service.when_listening().addCallback(listening)
    return Running(lambda: service.stopService(), started)


class PtyMasterTransport(abstract.FileDescriptor):
    """The master side of a pty in packet mode, connected when the slave is opened.

    The descriptor belongs to the :class:`~lis_gateway.simulator.Pty`, which
    closes it after :meth:`stop`.

    Args:
        pty: the pseudo-terminal.
        build: builds the protocol when the gateway opens the slave.
        reactor: provides IReactorFDSet.
        say: status lines.
    """

    connected = 0

    def __init__(self, pty: Pty, build: Builder, reactor: Any, say: Say) -> None:
        abstract.FileDescriptor.__init__(self, reactor)
        self._fd = pty.master
        self._build = build
        self._say = say
        self.protocol: Protocol | None = None
        self._settle: IDelayedCall | None = None
        self._clock: Any = reactor
        fcntl.ioctl(self._fd, termios.TIOCPKT, struct.pack("i", 1))
        fdesc.setNonBlocking(self._fd)
        self.startReading()

    def fileno(self) -> int:
        """The master descriptor."""
        return self._fd

    def _connect(self, why: str) -> Protocol:
        if self._settle is not None and self._settle.active():
            self._settle.cancel()
        self._settle = None
        if self.protocol is None:
            self.connected = 1
            self._say(f"the gateway {why}")
            self.protocol = self._build("1")
            self.protocol.makeConnection(self)
        return self.protocol

    def doRead(self) -> object:
        """One packet: a status byte (the slave flushed: it was opened) or data."""
        try:
            packet = os.read(self._fd, 8192)
        except BlockingIOError:
            return None
        except OSError:
            return main.CONNECTION_LOST
        if not packet:
            return main.CONNECTION_DONE
        if packet[0] == 0:
            if len(packet) > 1:
                self._connect("sent data on the port").dataReceived(packet[1:])
        elif packet[0] & TIOCPKT_FLUSHREAD and self.protocol is None:
            if self._settle is not None and self._settle.active():
                self._settle.reset(SETTLE)
            else:
                self._settle = self._clock.callLater(SETTLE, self._connect, "opened the port")
        return None

    def writeSomeData(self, data: bytes) -> int | BaseException:
        """Write what the descriptor takes now."""
        return fdesc.writeToFD(self._fd, data)

    def stop(self) -> None:
        """Stop reading and tell the protocol the line is gone."""
        if self._settle is not None and self._settle.active():
            self._settle.cancel()
        self.stopReading()
        self.stopWriting()
        if self.protocol is not None and self.connected:
            self.connectionLost(Failure(main.CONNECTION_DONE))

    def connectionLost(self, reason: Failure) -> None:
        """Unregister and tell the protocol."""
        abstract.FileDescriptor.connectionLost(self, reason)
        if self.protocol is not None:
            self.protocol.connectionLost(reason)
            self.protocol = None


def start_pty(build: Builder, reactor: Any, say: Say) -> Running:
    """Open a pseudo-terminal; print the slave path the gateway is to open."""
    pty = open_pty()
    transport = PtyMasterTransport(pty, build, reactor, say)
    say(f"serial line on {pty.path} (give this path to the gateway); waiting for it to open "
        "the port")

    def stop() -> None:
        transport.stop()
        pty.close()

    return Running(stop)


def start_device(device: str, baudrate: int, build: Builder, reactor: Any, say: Say) -> Running:
    """Open a real serial port (8 data bits, no parity, 1 stop bit at ``baudrate``)."""
    from twisted.internet.serialport import SerialPort

    port = SerialPort(build("1"), device, reactor, baudrate=baudrate)
    say(f"serial line on {device} at {baudrate} baud")
    return Running(lambda: port.loseConnection())
