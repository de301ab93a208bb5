"""Sending HL7 messages to the HIS over MLLP, one at a time, each waiting for its ACK.

Sending: :meth:`HisSenderProtocol.send` frames one message, starts its ACK
timer, and fires its Deferred with a :class:`DeliveryReport` when an ACK whose
MSA-2 equals the message's MSH-10 arrives, when the timer runs out, or when
the connection is lost. Peer trouble is a report, never an exception; a
timed-out message is reported, not sent again (that policy belongs to the
outbox).

:class:`HisClient` keeps the connection up with ``ClientService`` (back-off
on an injected clock) and queues messages for :class:`HisSenderProtocol`.
A message next in line has ``ack_timeout`` seconds for its answer, the wait
for a connection included: one that finds no connection in that time is
reported NOT_SENT, one written and not answered TIMEOUT, so a sender never
waits without a deadline while the HIS is unreachable.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog
from structlog.typing import FilteringBoundLogger
from twisted.application.internet import backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.python.failure import Failure

from lis_gateway.adapters.mllp_common import (
    ACK_TIMEOUT,
    MllpConnection,
    message_shape,
)
from lis_gateway.adapters.tcp import RetryPolicy, make_client_service
from lis_gateway.hl7.ack import AckResult, interpret_ack
from lis_gateway.hl7.errors import AckError, BuildError, Hl7Error
from lis_gateway.hl7.message import parse_message
from lis_gateway.hl7.mllp import (
    MISSING_FS_TIMEOUT,
    BlockReceived,
    MllpEvent,
    MllpFramer,
    frame,
)
from lis_gateway.outbound.delivery import DeliveryStatus
from lis_gateway.wire import Recorder


class SenderBusyError(Hl7Error):
    """:meth:`HisSenderProtocol.send` was called while a message awaits its ACK."""


# ------------------------------------------------------------------ HIS side


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """The outcome of one message sent to the HIS.

    Attributes:
        control_id: MSH-10 of the message sent.
        status: what became of it.
        ack: the HIS's acknowledgement (DELIVERED, RETRY, REJECTED only).
        detail: what a destination without HL7 ACKs answered (an HTTP status and
            its error text), or why nothing was sent.
    """

    control_id: str
    status: DeliveryStatus
    ack: AckResult | None = None
    detail: str = ""

    @property
    def text(self) -> str:
        """The HIS's MSA-3 and ERR text, else the detail ("" when there is neither)."""
        return self.ack.text if self.ack is not None else self.detail

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dictionary."""
        ack = self.ack
        return {"control_id": self.control_id, "status": self.status.value,
                "code": ack.code if ack else "", "acknowledges": ack.acknowledges if ack else "",
                "text": self.text, "error_code": ack.error_code if ack else ""}


def _status(ack: AckResult) -> DeliveryStatus:
    if ack.accepted:
        return DeliveryStatus.DELIVERED
    return DeliveryStatus.RETRY if ack.retry else DeliveryStatus.REJECTED


def control_id_of(message: bytes, encoding: str = "utf-8") -> str:
    """MSH-10 of a message the gateway is about to send.

    Raises:
        BuildError: the message has no MSH-10 (it could never be matched to its ACK).
    """
    control_id = parse_message(message, default_encoding=encoding).control_id
    if not control_id:
        raise BuildError("message has no MSH-10 control ID")
    return control_id


@dataclass(slots=True)
class _Outstanding:
    control_id: str
    deadline: float
    result: Deferred[DeliveryReport]


class HisSenderProtocol(MllpConnection):
    """Sends one message at a time to the HIS and waits for its ACK.

    Args:
        clock: time source and timer scheduler.
        ack_timeout: seconds the HIS has to acknowledge each message.
        default_encoding: for reading ACKs without MSH-18 (and our own MSH-10).
        missing_fs_timeout: silence that ends an ACK sent without FS.
        recorder: the wire recorder of this connection (closed on disconnect).
        log: a logger bound to the HIS link.
    """

    def __init__(self, clock: IReactorTime, *, ack_timeout: float = ACK_TIMEOUT,
                 default_encoding: str = "utf-8",
                 missing_fs_timeout: float = MISSING_FS_TIMEOUT,
                 recorder: Recorder | None = None,
                 log: FilteringBoundLogger | None = None) -> None:
        super().__init__(clock, MllpFramer(missing_fs_timeout=missing_fs_timeout), recorder, log)
        self.ack_timeout = ack_timeout
        self.default_encoding = default_encoding
        self._pending: _Outstanding | None = None

    @property
    def busy(self) -> bool:
        """``True`` while a message waits for its ACK."""
        return self._pending is not None

    def send(self, message: bytes) -> Deferred[DeliveryReport]:
        """Send one message (segments ending in CR, not framed).

        Returns:
            A Deferred firing with the :class:`DeliveryReport`; it never fails
            for what the peer does. Cancelling it stops waiting for the ACK.

        Raises:
            SenderBusyError: a message is still waiting for its ACK.
            BuildError: the message has no MSH-10.
            MllpFramingError: the message contains VT or FS.
        """
        if self._pending is not None:
            raise SenderBusyError("a message is still waiting for its ACK")
        control_id = control_id_of(message, self.default_encoding)
        data = frame(message)
        d: Deferred[DeliveryReport] = Deferred(self._cancel)
        if not self.is_connected:
            self._log.warning("message-not-sent", reason="not connected")
            d.callback(DeliveryReport(control_id, DeliveryStatus.NOT_SENT))
            return d
        self._pending = _Outstanding(control_id, self._clock.seconds() + self.ack_timeout, d)
        self._write(data)
        self._log.info("message-sent", length=len(message), control_id_length=len(control_id))
        self._rearm()
        return d

    def _cancel(self, d: Deferred[DeliveryReport]) -> None:
        if self._pending is not None and self._pending.result is d:
            self._log.info("send-cancelled", control_id_length=len(self._pending.control_id))
            self._pending = None
            self._rearm()

    def _finish(self, status: DeliveryStatus, ack: AckResult | None = None) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result.callback(DeliveryReport(pending.control_id, status, ack))

    def _route(self, events: Iterable[MllpEvent]) -> None:
        for event in events:
            if isinstance(event, BlockReceived):
                self._ack_received(event)
            else:
                self._log_block_trouble(event)

    def _ack_received(self, block: BlockReceived) -> None:
        msg = parse_message(block.data, default_encoding=self.default_encoding)
        pending = self._pending
        if pending is None:
            self._log.warning("unexpected-message", offset=block.offset, **message_shape(msg))
            return
        try:
            ack = interpret_ack(msg)
        except AckError:
            self._log.warning("not-an-ack", offset=block.offset, **message_shape(msg))
            return
        if ack.acknowledges != pending.control_id:
            self._log.warning("ack-for-another-message", offset=block.offset, code=ack.code,
                              acknowledges_length=len(ack.acknowledges))
            return
        status = _status(ack)
        self._log.info("ack-received", offset=block.offset, code=ack.code,
                       status=status.value, error_code=ack.error_code)
        self._finish(status, ack)

    def _deadline(self) -> float | None:
        deadlines = [t for t in (self._framer.get_timer(),
                                 self._pending.deadline if self._pending else None)
                     if t is not None]
        return min(deadlines, default=None)

    def _fire_timers(self, now: float) -> None:
        super()._fire_timers(now)
        if self._pending is not None and now >= self._pending.deadline:
            self._log.warning("ack-timeout", timeout=self.ack_timeout,
                              control_id_length=len(self._pending.control_id))
            self._finish(DeliveryStatus.TIMEOUT)

    def _lost(self) -> None:
        if self._pending is not None:
            self._log.warning("ack-lost", reason="connection lost before the ACK")
            self._finish(DeliveryStatus.CONNECTION_LOST)


@dataclass(slots=True)
class _Queued:
    message: bytes
    control_id: str
    result: Deferred[DeliveryReport]
    sending: Deferred[DeliveryReport] | None = None
    deadline: IDelayedCall | None = None  #: armed once the message is next in line

    def disarm(self) -> None:
        if self.deadline is not None and self.deadline.active():
            self.deadline.cancel()
        self.deadline = None


#: Most seconds between attempts to reconnect to the HIS. A connection attempt costs
#: the HIS next to nothing, and the outbox resumes when one succeeds
#: (``Channel.reachable``), so this bounds how long results wait once it is back.
HIS_RECONNECT_MAX = 10.0


def his_retry_policy() -> RetryPolicy:
    """Reconnecting to the HIS: 1 s growing by half to at most :data:`HIS_RECONNECT_MAX`."""
    return backoffPolicy(initialDelay=1.0, maxDelay=HIS_RECONNECT_MAX, factor=1.5)


class HisClient(Service):
    """Keeps one MLLP connection to the HIS open and sends queued messages in order.

    A ``ClientService`` (with ``backoffPolicy``, via
    :func:`~lis_gateway.adapters.tcp.make_client_service`) reconnects; each
    message goes out once a connection is up and the previous one is answered.

    Args:
        endpoint: where the HIS listens.
        clock: schedules reconnections and ACK timeouts.
        ack_timeout: seconds each message has, from when it is next in line, to be
            acknowledged (the wait for a connection included).
        default_encoding: for ACKs without MSH-18.
        retry_policy: reconnect delays; :func:`his_retry_policy` when None.
        recorders: gives each connection (by session id) its wire recorder.
        log: a logger bound to the HIS link.
    """

    def __init__(self, endpoint: IStreamClientEndpoint, clock: IReactorTime, *,
                 ack_timeout: float = ACK_TIMEOUT, default_encoding: str = "utf-8",
                 retry_policy: RetryPolicy | None = None,
                 recorders: Callable[[str], Recorder | None] | None = None,
                 log: FilteringBoundLogger | None = None) -> None:
        self._clock = clock
        self.ack_timeout = ack_timeout
        self.default_encoding = default_encoding
        self._recorders = recorders
        self._log: FilteringBoundLogger = (
            log if log is not None else structlog.get_logger("lis_gateway.his"))
        self.client = make_client_service(endpoint, self._build, clock,
                                          retry_policy=retry_policy or his_retry_policy(),
                                          log=self._log)
        self._queue: deque[_Queued] = deque()
        self._current: _Queued | None = None
        self._waiting = False  # a whenConnected() Deferred is outstanding
        self._stopped = False

    def _build(self, session: str) -> HisSenderProtocol:
        recorder = self._recorders(session) if self._recorders is not None else None
        return HisSenderProtocol(self._clock, ack_timeout=self.ack_timeout,
                                 default_encoding=self.default_encoding, recorder=recorder,
                                 log=self._log.bind(session=session))

    def send(self, message: bytes) -> Deferred[DeliveryReport]:
        """Queue one message (segments ending in CR, not framed).

        Messages queued before :meth:`startService` wait for it.

        Returns:
            A Deferred firing with its :class:`DeliveryReport` (NOT_SENT if the
            client is or gets stopped first); cancelling it drops the message
            or stops waiting for its ACK.

        Raises:
            BuildError: the message has no MSH-10.
        """
        item = _Queued(message, control_id_of(message, self.default_encoding),
                       Deferred(self._cancel))
        if self._stopped:
            item.result.callback(DeliveryReport(item.control_id, DeliveryStatus.NOT_SENT))
            return item.result
        self._queue.append(item)
        self._pump()
        return item.result

    def startService(self) -> None:
        """Start connecting, then sending."""
        super().startService()
        self._stopped = False
        self.client.startService()
        self._pump()

    def connected(self) -> Deferred[None]:
        """Fires once a connection to the HIS is up (at once when one is); fails on stop."""
        return self.client.whenConnected().addCallback(lambda _proto: None)

    def stopService(self) -> Deferred[None]:
        """Close the connection; queued messages are reported NOT_SENT."""
        super().stopService()
        self._stopped = True
        stopped = self.client.stopService()
        if self._current is not None:  # its connection closes: it is reported lost
            self._current.disarm()
        queued, self._queue = self._queue, deque()
        for item in queued:
            item.disarm()
            item.result.callback(DeliveryReport(item.control_id, DeliveryStatus.NOT_SENT))
        return stopped

    def _cancel(self, d: Deferred[DeliveryReport]) -> None:
        current = self._current
        if current is not None and current.result is d and current.sending is not None:
            current.disarm()
            current.sending.cancel()
            return
        for item in self._queue:
            if item.result is d:
                item.disarm()
        self._queue = deque(item for item in self._queue if item.result is not d)

    def _arm(self, item: _Queued) -> None:
        if item.deadline is None:
            item.deadline = self._clock.callLater(self.ack_timeout, self._expired, item)

    def _expired(self, item: _Queued) -> None:
        item.deadline = None
        if item is self._current:
            self._log.warning("ack-timeout", timeout=self.ack_timeout,
                              control_id_length=len(item.control_id))
            if item.sending is not None:
                item.sending.cancel()  # the protocol stops waiting; _abandoned pumps
            if not item.result.called:
                item.result.callback(DeliveryReport(item.control_id, DeliveryStatus.TIMEOUT))
            return
        if item not in self._queue:
            return
        self._queue.remove(item)
        self._log.warning("message-not-sent", reason="not connected in time",
                          timeout=self.ack_timeout)
        item.result.callback(DeliveryReport(
            item.control_id, DeliveryStatus.NOT_SENT,
            detail=f"no connection to the HIS within {self.ack_timeout:g} s"))
        self._pump()

    def _pump(self) -> None:
        if self._current is not None or not self._queue or not self.running:
            return
        self._arm(self._queue[0])
        if self._waiting:
            return
        self._waiting = True
        self.client.whenConnected().addCallbacks(self._connected, self._not_connected)

    def _connected(self, proto: object) -> None:
        self._waiting = False
        if not self._queue or not self.running:
            return
        if not isinstance(proto, HisSenderProtocol) or not proto.is_connected:
            # The ClientService learns of a loss just after the protocol does; ask again
            # on the next turn, when it knows.
            self._clock.callLater(0, self._pump)
            return
        item = self._current = self._queue.popleft()
        self._arm(item)
        try:
            item.sending = proto.send(item.message)
        except Hl7Error:  # cannot be framed: report it, never hang the queue
            self._current = None
            item.disarm()
            self._log.error("message-not-sendable")
            item.result.callback(DeliveryReport(item.control_id, DeliveryStatus.NOT_SENT))
            self._pump()
            return
        item.sending.addCallbacks(self._report, self._abandoned, callbackArgs=(item,),
                                  errbackArgs=(item,))

    def _not_connected(self, failure: Failure) -> None:
        self._waiting = False
        failure.trap(CancelledError)  # stopped: stopService reports the queue

    def _report(self, report: DeliveryReport, item: _Queued) -> None:
        self._current = None
        item.disarm()
        if not item.result.called:
            item.result.callback(report)
        self._pump()

    def _abandoned(self, failure: Failure, item: _Queued) -> None:
        failure.trap(CancelledError)  # cancelled (or out of time) while waiting for the ACK
        if self._current is item:
            self._current = None
        item.disarm()
        self._pump()

