"""Twisted adapters of the simulated analyzer: fault wrapper, link protocols, the driver.

* :class:`FaultWrapper` sits between the transport (TCP, pty, serial port)
  and the analyzer's link protocol: it records the wire (when asked) and
  passes every write and every read through a fault core
  (:mod:`lis_gateway.sim.faults`).
* ASTM: the analyzer's link is the gateway's own
  :class:`~lis_gateway.adapters.astm_protocol.AstmLinkProtocol` in the
  instrument role; :class:`AstmSide` is its sink and presence.
* HL7: :class:`MllpSideProtocol` drives :class:`~lis_gateway.sim.mllp_link.MllpAnalyzerLink`.
* :class:`SimAnalyzer` feeds items from :class:`~lis_gateway.sim.session.Session`
  to whichever link is up and hands every report to the caller.

Logs carry item kinds, numbers, tries and reasons, never record text, sample
IDs or patient data.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

import structlog
from structlog.typing import FilteringBoundLogger
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure

from lis_gateway.adapters.astm_protocol import AstmLinkProtocol
from lis_gateway.adapters.recorded import RecordedProtocol
from lis_gateway.astm.assembler import AstmMessage, IncompleteTransmission
from lis_gateway.astm.events import AbortReason
from lis_gateway.astm.link import LinkConfig, Role
from lis_gateway.hl7.message import Hl7Message
from lis_gateway.wire import Recorder

from .astm_styles import AstmStyle, read_reply
from .faults import AstmFaults, Decider, FaultKind, MllpFaults
from .mllp_link import (
    Acknowledged,
    Answered,
    Ignored,
    MllpAnalyzerLink,
    MllpLinkEvent,
    NotAcknowledged,
    OrdersReceived,
)
from .session import Item, Report, Session

#: The fault-wrapper's factory (ProtocolWrapper registers itself with one).
_WRAPPING: WrappingFactory[Any] = WrappingFactory(Factory())

FaultCore = AstmFaults | MllpFaults


class FaultWrapper(ProtocolWrapper):
    """The transport of the analyzer's link: recording and faults on every byte.

    Args:
        wrapped: the link protocol.
        faults: this connection's fault core.
        on_fault: told of every fault injected.
        recorder: the wire recording of this connection (closed with it), or None.
        clock: the time of recorded bytes.
    """

    def __init__(self, wrapped: Protocol, faults: FaultCore,
                 on_fault: Callable[[FaultKind], None], recorder: Recorder | None,
                 clock: IReactorTime) -> None:
        super().__init__(_WRAPPING, wrapped)
        self._faults = faults
        self._on_fault = on_fault
        self._recorder = recorder
        self._clock = clock

    def makeConnection(self, transport: Any) -> None:
        """Note the connection, then connect the link."""
        if self._recorder is not None:
            self._recorder.note("connected", self._clock.seconds())
        super().makeConnection(transport)

    def write(self, data: bytes) -> None:
        """Write what the fault core makes of ``data``; close if it says so."""
        out = self._faults.outgoing(data)
        self._report()
        transport = self.transport
        if transport is None:
            return
        if out.data:
            if self._recorder is not None:
                self._recorder.record("tx", out.data, self._clock.seconds())
            transport.write(out.data)
        if out.close:
            transport.loseConnection()

    def writeSequence(self, data: typing.Iterable[bytes]) -> None:
        """Write the pieces as one write."""
        self.write(b"".join(data))

    def dataReceived(self, data: bytes) -> None:
        """Record, then give the link what the fault core lets through."""
        if self._recorder is not None:
            self._recorder.record("rx", data, self._clock.seconds())
        passed = self._faults.incoming(data)
        self._report()
        if passed:
            self.wrappedProtocol.dataReceived(passed)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Tell the link, then close the recording."""
        super().connectionLost(reason)
        if self._recorder is not None:
            self._recorder.note(f"connection lost: {reason.getErrorMessage()}",
                                self._clock.seconds())
            self._recorder.close()
            self._recorder = None

    def _report(self) -> None:
        injected, self._faults.injected = self._faults.injected, []
        for kind in injected:
            self._on_fault(kind)


class Connection(typing.Protocol):
    """A link connection the simulator can put an item on."""

    @property
    def is_connected(self) -> bool: ...

    def put(self, item: Item) -> None: ...


class SimAnalyzer:
    """Feeds the session's items to the link that is up and reports their outcomes.

    Args:
        session: the sending state.
        clock: time source and timer scheduler.
        decider: the run's fault decisions.
        serial: the transport is a serial line (a drop cannot close it).
        on_report: given every report, in order.
        recorders: gives each connection its wire recorder (or None).
        log: a logger.
    """

    def __init__(self, session: Session, clock: IReactorTime, decider: Decider, *,
                 serial: bool, on_report: Callable[[Report], None],
                 recorders: Callable[[], Recorder | None] = lambda: None,
                 log: FilteringBoundLogger | None = None) -> None:
        self.session = session
        self.clock = clock
        self.decider = decider
        self.serial = serial
        self._on_report = on_report
        self._recorders = recorders
        self.log: FilteringBoundLogger = (
            log if log is not None else structlog.get_logger("lis_gateway.sim"))
        self._link: Connection | None = None
        self._timer: IDelayedCall | None = None
        self._pumping = False
        self.side: AstmSide | Hl7Side | None = None

    @property
    def link(self) -> Connection | None:
        """The connection items go to (None while there is none)."""
        return self._link

    def now(self) -> float:
        """The clock's time."""
        return self.clock.seconds()

    def wrap(self, protocol: Protocol, faults: FaultCore) -> FaultWrapper:
        """``protocol`` behind the fault wrapper and the recorder."""
        return FaultWrapper(protocol, faults, self.fault, self._recorders(), self.clock)

    # ----------------------------------------------------------------- link state

    def link_up(self, link: Connection) -> None:
        """A connection is ready: send what waits."""
        self._link = link
        self.session.link_up()
        self.log.info("sim-link-up")
        self.pump()

    def link_down(self, link: Connection) -> None:
        """That connection is gone."""
        if self._link is link:
            self._link = None
            self.session.link_down()
            self.log.info("sim-link-down")

    def fault(self, kind: FaultKind) -> None:
        """A fault was injected."""
        self.log.info("sim-fault-injected", kind=kind.value)
        self.session.fault(kind)

    # ------------------------------------------------------------------ sending

    def add(self, item: Item, *, cancel: Item | None = None) -> None:
        """Queue an item (and the cancel of a query) and send if the link is free."""
        self.session.add(item, cancel=cancel)
        self.pump()

    def pump(self) -> None:
        """Put the next item on the link if it is free; print what has settled."""
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._link is not None and self._link.is_connected:
                item = self.session.next_to_send(self.now())
                if item is None:
                    break
                self.log.info("sim-sending", kind=item.kind.value, seq=item.seq, tries=item.tries,
                              length=len(item.data))
                self._link.put(item)
        finally:
            self._pumping = False
        self._flush()

    def settled(self) -> None:
        """Something happened to the item on the link: send the next, re-arm the timer."""
        self.pump()

    def _flush(self) -> None:
        for report in self.session.reports():
            self._on_report(report)
        self._rearm()

    def _rearm(self) -> None:
        when = self.session.get_timer()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if when is not None:
            self._timer = self.clock.callLater(max(0.0, when - self.now()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.session.handle_timer(self.now())
        self.pump()

    def stop(self) -> None:
        """Cancel the session timer."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


# ------------------------------------------------------------------ ASTM


class AstmSide:
    """The ASTM analyzer: its link protocol's sink and presence.

    Args:
        sim: the simulator.
        style: the family (frame cutting).
        reply_timeout: the E1381 sender timer (15 s; shorter for tests).
    """

    def __init__(self, sim: SimAnalyzer, style: AstmStyle, *, reply_timeout: float) -> None:
        self.sim = sim
        self.config = LinkConfig(role=Role.INSTRUMENT, per_record_frames=style.per_record_frames,
                                 max_text=style.max_text, reply_timeout=reply_timeout)

    def build_protocol(self, session: str = "1") -> Protocol:
        """A fresh link for one connection, behind the fault wrapper."""
        link = AstmLinkProtocol(self.config, self.sim.clock, "latin-1", self,
                                log=self.sim.log.bind(session=session), presence=self)
        return self.sim.wrap(link, AstmFaults(self.sim.decider, can_close=not self.sim.serial))

    # presence
    def connected(self, protocol: AstmLinkProtocol) -> None:
        """The link is up."""
        self.sim.link_up(_AstmConnection(protocol))

    def disconnected(self, protocol: AstmLinkProtocol) -> None:
        """The link is gone."""
        link = self.sim._link
        if isinstance(link, _AstmConnection) and link.protocol is protocol:
            self.sim.link_down(link)

    # sink
    def message_received(self, msg: AstmMessage | Hl7Message) -> Deferred[object] | None:
        """The gateway sent a message: the answer to our query, or work pushed to us."""
        if isinstance(msg, AstmMessage):
            answer = read_reply(msg)
            if self.sim.session.awaiting_answer:
                self.sim.session.answered(self.sim.now(), answer)
            else:
                self.sim.session.orders(self.sim.now(), answer.tests)
            self.sim.settled()
        return None

    def incomplete(self, item: IncompleteTransmission) -> None:
        """Text from the gateway that never ended: logged."""
        self.sim.log.warning("sim-incomplete-from-gateway", length=len(item.raw),
                             reason=item.reason)

    def message_sent(self, message: bytes) -> None:
        """The gateway ACKed the last frame of the item."""
        self.sim.session.acknowledged(self.sim.now())
        self.sim.settled()

    def send_failed(self, messages: tuple[bytes, ...], reason: AbortReason) -> None:
        """The link gave the item up."""
        self.sim.log.warning("sim-send-failed", reason=reason.value)
        self.sim.session.refused(self.sim.now(), reason.value)
        self.sim.settled()


class _AstmConnection:
    def __init__(self, protocol: AstmLinkProtocol) -> None:
        self.protocol = protocol

    @property
    def is_connected(self) -> bool:
        return self.protocol.is_connected

    def put(self, item: Item) -> None:
        self.protocol.send_message(item.data)


# ------------------------------------------------------------------ HL7


class MllpSideProtocol(RecordedProtocol):
    """One MLLP connection of the analyzer around :class:`MllpAnalyzerLink`.

    Args:
        link: the sans-IO core.
        clock: time source and timer scheduler.
        side: told of the connection and of every event.
        log: a logger.
    """

    def __init__(self, link: MllpAnalyzerLink, clock: IReactorTime, side: Hl7Side,
                 log: FilteringBoundLogger) -> None:
        super().__init__(clock, None, log, "mllp")
        self.link = link
        self._side = side
        self._in_turn = False

    def connectionMade(self) -> None:
        """Tell the simulator the link is up."""
        super().connectionMade()
        self._side.sim.link_up(self)

    def dataReceived(self, data: bytes) -> None:
        """Feed the core, then act on its events."""
        self.link.receive_data(data, self._record_received(data))
        self._turn()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Whatever waited is not acknowledged; tell the simulator."""
        self._closed = True
        self._side.sim.link_down(self)
        self.link.connection_lost()
        self._turn()
        super().connectionLost(reason)

    def put(self, item: Item) -> None:
        """Send one item and wait for its answer."""
        self.link.send(item.data, item.control_id, self._clock.seconds())
        self._turn()

    def _turn(self) -> None:
        if self._in_turn:
            return
        self._in_turn = True
        try:
            while True:
                self._write(self.link.data_to_send())
                events = self.link.events()
                if not events:
                    break
                for event in events:
                    self._side.event(event)
        finally:
            self._in_turn = False
        self._rearm()
        self._side.sim.settled()

    def _deadline(self) -> float | None:
        return self.link.get_timer()

    def _fire_timers(self, now: float) -> None:
        self.link.handle_timer(now)
        self._turn()


class Hl7Side:
    """The HL7 analyzer: builds its MLLP connections and turns their events into outcomes.

    Args:
        sim: the simulator.
        frame: puts a message on the wire (the family's prefix and suffix).
        ack_timeout: seconds the gateway has to answer each message.
        reply_ids: MSH-10 of the analyzer's answers to downloads.
    """

    def __init__(self, sim: SimAnalyzer, frame: Callable[[bytes], bytes], *,
                 ack_timeout: float, reply_ids: Callable[[], str]) -> None:
        self.sim = sim
        self._frame = frame
        self._ack_timeout = ack_timeout
        self._reply_ids = reply_ids

    def build_protocol(self, session: str = "1") -> Protocol:
        """A fresh MLLP connection behind the fault wrapper."""
        link = MllpAnalyzerLink(ack_timeout=self._ack_timeout, frame=self._frame,
                                reply_ids=self._reply_ids)
        proto = MllpSideProtocol(link, self.sim.clock, self, self.sim.log.bind(session=session))
        return self.sim.wrap(proto, MllpFaults(self.sim.decider))

    def event(self, event: MllpLinkEvent) -> None:
        """An acknowledgement, an answer, a download, or silence."""
        now = self.sim.now()
        session = self.sim.session
        match event:
            case Acknowledged(ack=ack):
                if ack.accepted:
                    session.acknowledged(now)
                else:
                    self.sim.log.warning("sim-not-accepted", code=ack.code)
                    session.refused(now, f"{ack.code} {ack.text}".strip(), retry=ack.retry)
            case Answered(answer=answer):
                session.answered(now, answer)
            case OrdersReceived(tests=tests):
                session.orders(now, tests)
            case NotAcknowledged(reason=reason):
                self.sim.log.warning("sim-not-acknowledged", reason=reason)
                session.refused(now, reason)
            case Ignored(message_type=kind):
                self.sim.log.info("sim-message-ignored", message_type=kind[:20])
