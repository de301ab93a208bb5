"""The demo's simulated laboratory: the HIS orders a sample, an analyzer measures it.

Every ``interval`` seconds the next of the three simulated analyzers takes
a turn: its message is built first (so the order asks exactly for what it
will report), the simulated HIS sends the order (ORM^O01 over MLLP to the
gateway's order listener), and once the gateway has acknowledged the order
the analyzer sends its results a moment later (ASTM over the pseudo-terminal,
ASTM over TCP, or HL7 over TCP). What the gateway releases then reaches the
simulated HIS (:mod:`lis_gateway.his_sim`), which answers AA.

Each step prints one line on standard output (sample barcodes, codes and
counts; never patient data).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import structlog
from structlog.typing import FilteringBoundLogger
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

import drivers
from lis_gateway.adapters.astm_protocol import AstmLinkProtocol
from lis_gateway.astm.assembler import AstmMessage, IncompleteTransmission
from lis_gateway.astm.events import AbortReason
from lis_gateway.astm.link import LinkConfig, Role
from lis_gateway.capture import decode_capture, normalize_report
from lis_gateway.his_sim import OrderRequest, OrderSender, Received
from lis_gateway.hl7.message import Hl7Message
from lis_gateway.mapping import MappingTable
from lis_gateway.outbound.sender import DeliveryReport, DeliveryStatus, HisClient

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")


@dataclass(frozen=True, slots=True)
class Measured:
    """What one analyzer message reports: the sample and the local test codes."""

    barcode: str
    tests: tuple[str, ...]


def what_it_measures(message: bytes, spec: drivers.DriverSpec, table: MappingTable | None
                     ) -> Measured:
    """Decode a message the way the gateway will and name its sample and mapped tests.

    Raises:
        ValueError: the message has no sample or no mapped result (a broken demo).
    """
    report = decode_capture(message, spec)
    barcode, tests = "", []
    for _number, result in normalize_report(report, spec, table):
        barcode = barcode or result.row.sample_id
        if result.code and result.code not in tests:
            tests.append(result.code)
    if not barcode or not tests:
        raise ValueError(f"the demo message for {spec.name} reports no mapped result")
    return Measured(barcode, tuple(tests))


class InstrumentSide:
    """The analyzer end of one ASTM link (instrument role), sending whole messages.

    It is the sink of its own :class:`AstmLinkProtocol`: what the gateway
    might send is taken and ignored (host queries are not simulated here).

    Args:
        name: the simulated analyzer (for logs).
        clock: the link timers.
        log: a logger.
    """

    def __init__(self, name: str, clock: IReactorTime, log: FilteringBoundLogger) -> None:
        self.name = name
        self._clock = clock
        self._log = log.bind(simulator=name)
        self.protocol: AstmLinkProtocol | None = None

    def build_protocol(self, session: str = "1") -> AstmLinkProtocol:
        """A fresh instrument-role protocol (a ProtocolBuilder for the TCP client)."""
        self.protocol = AstmLinkProtocol(LinkConfig(role=Role.INSTRUMENT), self._clock,
                                         "latin-1", self, log=self._log.bind(session=session))
        return self.protocol

    def send(self, message: bytes) -> Deferred[None]:
        """Send one message; fires once the gateway acknowledged its last frame.

        Fails with ``ConnectionError`` when the link is down, or the link's
        ``SendError`` when the gateway did not take it.
        """
        protocol = self.protocol
        if protocol is None or not protocol.is_connected:
            d: Deferred[None] = Deferred()
            d.errback(ConnectionError("not connected to the gateway"))
            return d
        return protocol.send_tracked(message)

    def message_received(self, msg: AstmMessage | Hl7Message) -> Deferred[object] | None:
        """Nothing is expected from the gateway here; log the size only."""
        self._log.info("simulator-received", length=len(msg.raw))
        return None

    def incomplete(self, item: IncompleteTransmission) -> None:
        """Incomplete text from the gateway is ignored."""

    def message_sent(self, message: bytes) -> None:
        """Settled through :meth:`send`'s Deferred."""

    def send_failed(self, messages: tuple[bytes, ...], reason: AbortReason) -> None:
        """Settled through :meth:`send`'s Deferred."""


#: Seconds without another message of the same sample before its line is printed.
HIS_QUIET = 0.3


@dataclass(slots=True)
class _HisLine:
    messages: int = 0
    observations: int = 0
    answers: set[str] = field(default_factory=set)
    call: IDelayedCall | None = None


@dataclass(frozen=True, slots=True)
class Bench:
    """One simulated analyzer of the demo.

    Attributes:
        link: the gateway's link name for it.
        spec: its driver (to know what its message reports).
        table: its mapping table.
        build: its next message for a sequence number and a time.
        send: sends a message; fires True when the gateway acknowledged it.
    """

    link: str
    spec: drivers.DriverSpec
    table: MappingTable | None
    build: Callable[[int, datetime], bytes]
    send: Callable[[bytes], Deferred[bool]]


def astm_sender(side: InstrumentSide) -> Callable[[bytes], Deferred[bool]]:
    """A :attr:`Bench.send` over an ASTM instrument side."""
    def send(message: bytes) -> Deferred[bool]:
        d = side.send(message)
        d.addCallback(lambda _: True)
        d.addErrback(lambda _f: False)
        return d  # type: ignore[return-value]  # Deferred[None] became Deferred[bool]
    return send


def hl7_sender(client: HisClient) -> Callable[[bytes], Deferred[bool]]:
    """A :attr:`Bench.send` over an MLLP client (the HL7 analyzer's side)."""
    def send(message: bytes) -> Deferred[bool]:
        d = client.send(message)
        return d.addCallback(lambda report: report.status is DeliveryStatus.DELIVERED)
    return send


class DemoLab:
    """Takes the benches in turn: order, then results, printing each step.

    Args:
        clock: the tick loop and the delay between order and results.
        utcnow: the time written into messages.
        orders: the simulated HIS's order sender.
        benches: the analyzers, taken in turn.
        out: where the lines go.
        interval: seconds between turns.
        delay: seconds between the order's AA and the results.
        stat_every: every n-th order is STAT.
        first_seq: the first message number (barcodes follow it; the demo starts
            each run elsewhere so a restart does not reuse a barcode).
    """

    def __init__(self, clock: IReactorTime, utcnow: Callable[[], datetime], orders: OrderSender,
                 benches: Sequence[Bench], out: TextIO, *, interval: float = 4.0,
                 delay: float = 1.0, stat_every: int = 5, first_seq: int = 1) -> None:
        self._clock = clock
        self._utcnow = utcnow
        self._orders = orders
        self._benches = tuple(benches)
        self._turns = itertools.cycle(self._benches)
        self._seq = itertools.count(first_seq)
        self._out = out
        self.interval = interval
        self.delay = delay
        self.stat_every = stat_every
        self._loop: LoopingCall | None = None
        self._log: FilteringBoundLogger = structlog.get_logger("lis_gateway.demo")
        self.results_sent = 0
        self.results_received_by_his = 0
        self._his_lines: dict[tuple[str, str], _HisLine] = {}

    def say(self, who: str, text: str) -> None:
        """One line: local time, who, what."""
        stamp = self._utcnow().astimezone(ZONE).strftime("%H:%M:%S")
        print(f"{stamp}  {who:<12} {text}", file=self._out, flush=True)

    def start(self) -> None:
        """Take a turn now and every ``interval`` seconds."""
        loop = LoopingCall(self.turn)
        loop.clock = self._clock
        loop.start(self.interval, now=True).addErrback(self._failed)
        self._loop = loop

    def stop(self) -> None:
        """Stop taking turns (what is on its way finishes)."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def turn(self) -> Deferred[Any]:
        """One analyzer's turn: build, order, wait for the AA, send the results."""
        bench = next(self._turns)
        seq = next(self._seq)
        message = bench.build(seq, self._utcnow())
        measured = what_it_measures(message, bench.spec, bench.table)
        order = OrderRequest(measured.barcode, measured.tests, patient=seq,
                             stat=seq % self.stat_every == 0)

        def ordered(report: DeliveryReport) -> Deferred[bool] | None:
            code = report.ack.code if report.ack is not None else report.status.value
            self.say("HIS", f"-> order {measured.barcode}{' STAT' if order.stat else ''} "
                            f"({' '.join(measured.tests)}): {code}")
            if report.status is not DeliveryStatus.DELIVERED:
                return None
            d: Deferred[None] = Deferred()
            self._clock.callLater(self.delay, d.callback, None)
            return d.addCallback(lambda _: bench.send(message)).addCallback(sent)

        def sent(acknowledged: bool) -> bool:
            if acknowledged:
                self.results_sent += len(measured.tests)
            self.say(bench.link, f"-> sample {measured.barcode}: {len(measured.tests)} results "
                                 f"{'acknowledged' if acknowledged else 'NOT taken (see logs)'}")
            return acknowledged

        d = self._orders.send(order).addCallback(ordered)
        return d.addErrback(self._failed)

    def his_received(self, item: Received) -> None:
        """The simulated HIS got a message from the gateway (one per result): the
        messages of one sample arriving together are printed as one line."""
        self.results_received_by_his += item.observations
        kind = {"C": "corrected ", "D": "retracted "}.get(
            next((s for s in item.statuses if s in "CD"), ""), "")
        key = (kind, " ".join(item.samples) or "?")
        pending = self._his_lines.get(key)
        if pending is None:
            pending = self._his_lines[key] = _HisLine()
        pending.messages += 1
        pending.observations += item.observations
        pending.answers.add(item.answer.value.upper())
        if pending.call is not None and pending.call.active():
            pending.call.cancel()
        pending.call = self._clock.callLater(HIS_QUIET, self._his_line, key)

    def _his_line(self, key: tuple[str, str]) -> None:
        line = self._his_lines.pop(key)
        kind, samples = key
        self.say("HIS", f"<- {kind}results of {samples}: {line.messages} ORU^R01 "
                        f"({line.observations} OBX), answered {'/'.join(sorted(line.answers))}")

    def _failed(self, failure: Failure) -> Deferred[Any]:
        self._log.error("demo-turn-failed", error=failure.getErrorMessage(),
                        kind=failure.type.__name__ if failure.type else "")
        return succeed(None)
