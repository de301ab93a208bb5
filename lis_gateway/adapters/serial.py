"""Serial port supervision: open the device, reopen it with back-off when it goes.

Twisted's ``SerialPort`` has no reconnect: a USB adapter that is unplugged,
a terminal server that drops, or a device that is not there yet at start
simply ends or fails. :class:`SerialSupervisor` reopens it with the same
``attempt -> delay`` policy and injected clock as ``ClientService`` (the
attempt count is the number of failures in a row; a successful open resets
it). The ``SerialPort`` constructor is injectable, as ``_serialFactory`` is
inside it, so tests need no device.

Each open builds a fresh link protocol (and with it a fresh wire recorder),
but only once the device is really open, so failed attempts leave no files.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, Protocol

import structlog
from structlog.typing import FilteringBoundLogger
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime, ITransport
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.internet.protocol import connectionDone
from twisted.internet.serialport import SerialPort
from twisted.python.failure import Failure

from .tcp import ProtocolBuilder, RetryPolicy, default_retry_policy


class _Port(Protocol):
    """What the supervisor needs from an open port."""

    def loseConnection(self) -> None:
        """Close the device."""


#: ``SerialPort``'s signature: (protocol, device, reactor, *, baudrate, bytesize,
#: parity, stopbits) -> port. Raises OSError (pyserial's SerialException) when
#: the device cannot be opened.
SerialPortFactory = Callable[..., _Port]


class _SupervisedProtocol(TwistedProtocol):
    """Builds the link protocol when the port opens; reports the loss upward."""

    def __init__(self, build: Callable[[], TwistedProtocol],
                 on_open: Callable[[TwistedProtocol], None],
                 on_lost: Callable[[Failure], None]) -> None:
        self._build = build
        self._on_open = on_open
        self._on_lost = on_lost
        self.inner: TwistedProtocol | None = None

    def makeConnection(self, transport: ITransport) -> None:
        """Build the link protocol and connect it to the open port."""
        self.inner = self._build()
        super().makeConnection(transport)
        self.inner.makeConnection(transport)
        self._on_open(self.inner)

    def dataReceived(self, data: bytes) -> None:
        """Hand received bytes to the link protocol."""
        if self.inner is not None:
            self.inner.dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Tell the link protocol, then the supervisor."""
        if self.inner is not None:
            self.inner.connectionLost(reason)
        self._on_lost(reason)


class SerialSupervisor(Service):
    """Keeps one serial device open while the service runs.

    Args:
        build: the link's protocol builder (called with a session id per open).
        device: the device path (``/dev/ttyUSB0``, a pty slave path).
        reactor: the reactor the port registers its file descriptor with.
        clock: schedules reopening.
        baudrate, bytesize, parity, stopbits: line settings (pyserial values).
        retry_policy: attempt -> delay; ``ClientService``'s back-off when None.
        port_factory: the ``SerialPort`` constructor (a fake in tests).
        log: logger bound to the link.
    """

    def __init__(self, build: ProtocolBuilder, device: str, reactor: Any, clock: IReactorTime,
                 *, baudrate: int = 9600, bytesize: int = 8, parity: str = "N",
                 stopbits: float = 1, retry_policy: RetryPolicy | None = None,
                 port_factory: SerialPortFactory = SerialPort,
                 log: FilteringBoundLogger | None = None) -> None:
        self._build = build
        self.device = device
        self._reactor = reactor
        self._clock = clock
        self._settings = {"baudrate": baudrate, "bytesize": bytesize, "parity": parity,
                          "stopbits": stopbits}
        self._policy = retry_policy or default_retry_policy()
        self._port_factory = port_factory
        self._log: FilteringBoundLogger = (
            log if log is not None else structlog.get_logger("lis_gateway.serial"))
        self._sessions = itertools.count(1)
        self.failed_attempts = 0
        self._port: _Port | None = None
        self._protocol: TwistedProtocol | None = None
        self._retry: IDelayedCall | None = None
        self._closing: Deferred[None] | None = None
        self._waiting: list[Deferred[TwistedProtocol]] = []

    # --------------------------------------------------------------- Service

    def startService(self) -> None:
        """Open the device now (or schedule the next attempt)."""
        super().startService()
        self._open()

    def stopService(self) -> Deferred[None] | None:
        """Stop reopening and close the device; the Deferred fires once it is closed."""
        super().stopService()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(CancelledError("serial supervisor stopped"))
        if self._port is None:
            return None
        self._closing = Deferred()
        closing = self._closing
        self._port.loseConnection()
        return closing

    def when_opened(self) -> Deferred[TwistedProtocol]:
        """A Deferred firing with the link protocol once the device is open."""
        d: Deferred[TwistedProtocol] = Deferred()
        if self._protocol is not None:
            d.callback(self._protocol)
        else:
            self._waiting.append(d)
        return d

    # -------------------------------------------------------------- internal

    def _open(self) -> None:
        self._retry = None
        if not self.running:
            return
        session = str(next(self._sessions))
        wrapper = _SupervisedProtocol(lambda: self._build(session), self._opened, self._lost)
        try:
            self._port = self._port_factory(wrapper, self.device, self._reactor,
                                            **self._settings)
        except OSError as exc:  # pyserial's SerialException is an OSError
            self._port = None
            self.failed_attempts += 1
            self._schedule("open-failed", type(exc).__name__)

    def _opened(self, protocol: TwistedProtocol) -> None:
        self.failed_attempts = 0
        self._protocol = protocol
        self._log.info("serial-opened", device=self.device)
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(protocol)

    def _lost(self, reason: Failure) -> None:
        self._port = None
        self._protocol = None
        if self._closing is not None:
            closing, self._closing = self._closing, None
            self._log.info("serial-closed", device=self.device)
            closing.callback(None)
            return
        self.failed_attempts += 1
        self._schedule("serial-lost", reason.getErrorMessage())

    def _schedule(self, what: str, why: str) -> None:
        if not self.running:
            return
        delay = self._policy(self.failed_attempts)
        self._log.warning(what, device=self.device, error=why,
                          attempt=self.failed_attempts, retry_in=round(delay, 3))
        self._retry = self._clock.callLater(delay, self._open)
