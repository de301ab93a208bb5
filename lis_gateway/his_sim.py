"""A simulated HIS: receives results (ORU^R01 over MLLP), answers as told, sends orders.

The receiving side is an MLLP server. Each message it receives gets the
next answer of an :class:`AnswerPlan`: ``AA`` (accepted), ``AE`` (error:
the gateway retries), ``AR`` (rejected: the gateway keeps it as a dead
letter), ``none`` (silence: the gateway's ACK timeout runs out) or ``drop``
(the connection is closed without an answer). A plan is one answer, a
sequence that repeats (``aa,aa,ae``) or weights drawn with a seeded random
generator (``aa=90,ae=5,drop=5``).

The sending side builds ORM^O01 v2.5.1 orders for made-up Vietnamese patients
(:func:`order_message`) and sends them with the gateway's own MLLP client
(:class:`~lis_gateway.outbound.sender.HisClient`) to the gateway's order
listener (``[orders] mllp_listen``).

``lis-gateway his-sim`` runs both from the command line; the demo uses the
classes. What is printed names samples, control IDs and counts, never
patients (even made-up ones: the habit matters).
"""

from __future__ import annotations

import argparse
import enum
import itertools
import json
import random
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import structlog
from structlog.typing import FilteringBoundLogger
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime, ITransport
from twisted.internet.protocol import Protocol, ServerFactory

from lis_gateway.hl7.ack import build_ack, hl7_timestamp
from lis_gateway.hl7.message import Hl7Message, parse_message, write_message, write_segment
from lis_gateway.hl7.mllp import BlockReceived, MllpFramer, frame
from lis_gateway.outbound.sender import DeliveryReport, HisClient
from lis_gateway.receive import host_port


class Answer(enum.Enum):
    """What the simulated HIS does with a message it received."""

    AA = "aa"
    AE = "ae"
    AR = "ar"
    NONE = "none"
    DROP = "drop"


class AnswerPlan:
    """The answers to give, in turn (sans-IO; the random draws are seeded).

    Args:
        answers: answered in turn, repeating (a single answer: always that one).
        weights: instead of a sequence, draw each answer with these weights.
        seed: the random generator's seed (weights only).
    """

    def __init__(self, answers: Sequence[Answer] = (Answer.AA,), *,
                 weights: Sequence[tuple[Answer, float]] = (), seed: int = 0) -> None:
        if not answers and not weights:
            raise ValueError("an answer plan needs at least one answer")
        self._cycle = itertools.cycle(tuple(answers) or (Answer.AA,))
        self._weights = tuple(weights)
        self._random = random.Random(seed)

    @classmethod
    def parse(cls, text: str, *, seed: int = 0) -> AnswerPlan:
        """``aa``, ``aa,ae,none`` (in turn) or ``aa=90,drop=10`` (weighted).

        Raises:
            ValueError: an unknown answer, a bad weight, or a mix of both forms.
        """
        names = {a.value: a for a in Answer}
        parts = [p.strip().lower() for p in text.split(",") if p.strip()]
        if not parts:
            raise ValueError("no answer given (expected e.g. aa, aa,ae,none or aa=90,drop=10)")
        weighted = ["=" in p for p in parts]
        if any(weighted) and not all(weighted):
            raise ValueError(f"{text!r}: give every answer a weight or none")
        answers: list[Answer] = []
        weights: list[tuple[Answer, float]] = []
        for part in parts:
            name, _, weight = part.partition("=")
            if name not in names:
                raise ValueError(f"{name!r} is not an answer (expected one of "
                                 f"{', '.join(names)})")
            if weight:
                try:
                    value = float(weight)
                except ValueError:
                    raise ValueError(f"{part!r}: the weight is not a number") from None
                if value < 0:
                    raise ValueError(f"{part!r}: a weight cannot be negative")
                weights.append((names[name], value))
            else:
                answers.append(names[name])
        if weights and not sum(w for _a, w in weights):
            raise ValueError(f"{text!r}: the weights add up to nothing")
        return cls(answers, weights=weights, seed=seed)

    def next(self) -> Answer:
        """The answer for the next message."""
        if self._weights:
            choices, weights = zip(*self._weights, strict=True)
            return self._random.choices(choices, weights)[0]
        return next(self._cycle)


@dataclass(frozen=True, slots=True)
class Received:
    """What the simulated HIS received (no patient data).

    Attributes:
        control_id: MSH-10.
        message_type: MSH-9 type and trigger (``ORU^R01``).
        samples: the filler order numbers (OBR-3), else placer numbers (OBR-2).
        observations: OBX segments.
        statuses: the distinct OBX-11 result statuses (``F`` final, ``C``
            corrected, ``D`` deleted / retracted, ...).
        answer: what was answered.
    """

    control_id: str
    message_type: str
    samples: tuple[str, ...]
    observations: int
    statuses: tuple[str, ...]
    answer: Answer

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dictionary."""
        return {"control_id": self.control_id, "message_type": self.message_type,
                "samples": list(self.samples), "observations": self.observations,
                "statuses": list(self.statuses), "answer": self.answer.value}


def summarize(msg: Hl7Message, answer: Answer) -> Received:
    """The :class:`Received` record of one message."""
    d = msg.delimiters
    samples: list[str] = []
    for obr in msg.named("OBR"):
        sample = d.component_at(obr[3], 1) or d.component_at(obr[2], 1)
        if sample and sample not in samples:
            samples.append(sample)
    statuses = sorted({obx[11] for obx in msg.named("OBX") if obx[11]})
    return Received(msg.control_id, msg.message_type, tuple(samples),
                    sum(1 for _ in msg.named("OBX")), tuple(statuses), answer)


_ANSWER_TEXT = {Answer.AA: "", Answer.AE: "simulated application error: send it again",
                Answer.AR: "simulated rejection"}


class HisReceiverProtocol(Protocol):
    """One connection from the gateway: MLLP blocks in, answers out, as the plan says."""

    def __init__(self, plan: AnswerPlan, clock: IReactorTime, utcnow: Callable[[], datetime],
                 on_message: Callable[[Received], None], counter: Callable[[], int],
                 log: FilteringBoundLogger) -> None:
        self._plan = plan
        self._clock = clock
        self._utcnow = utcnow
        self._on_message = on_message
        self._counter = counter
        self._log = log
        self._framer = MllpFramer()
        self._dropped = False

    def dataReceived(self, data: bytes) -> None:
        """Frame, answer each message as planned."""
        for event in self._framer.receive_data(data, self._clock.seconds()):
            if self._dropped:
                return
            if isinstance(event, BlockReceived):
                self._answer(parse_message(event.data))
            else:
                self._log.warning("his-sim-framing", kind=type(event).__name__)

    def _answer(self, msg: Hl7Message) -> None:
        answer = self._plan.next()
        transport: ITransport | None = self.transport
        if answer is Answer.DROP:
            self._dropped = True
            if transport is not None:
                transport.loseConnection()
        elif answer is not Answer.NONE and transport is not None:
            ack = build_ack(msg, answer.value.upper(), control_id=f"HIS{self._counter()}",
                            now=self._utcnow(), text=_ANSWER_TEXT[answer],
                            application="HIS-SIM")
            transport.write(frame(ack))
        self._on_message(summarize(msg, answer))


class HisReceiverFactory(ServerFactory):
    """Builds :class:`HisReceiverProtocol` connections sharing one plan and one counter.

    Args:
        plan: the answers to give.
        clock: the framer's time.
        utcnow: MSH-7 of the answers.
        on_message: called with every message received.
        log: a logger.
    """

    def __init__(self, plan: AnswerPlan, clock: IReactorTime, utcnow: Callable[[], datetime],
                 on_message: Callable[[Received], None],
                 log: FilteringBoundLogger | None = None) -> None:
        self.plan = plan
        self.clock = clock
        self.utcnow = utcnow
        self.on_message = on_message
        self.log: FilteringBoundLogger = (
            log if log is not None else structlog.get_logger("lis_gateway.his_sim"))
        self._ids = itertools.count(1)

    def buildProtocol(self, addr: object) -> HisReceiverProtocol:
        """A protocol for one connection."""
        return HisReceiverProtocol(self.plan, self.clock, self.utcnow, self.on_message,
                                   lambda: next(self._ids), self.log)


# ---------------------------------------------------------------------- orders

#: Made-up patients: (hospital code, family name, middle name, given name, birth date, sex).
PATIENTS = (
    ("BN240001", "Nguyễn", "Thị", "Lan", "19800214", "F"),
    ("BN240002", "Trần", "Văn", "Bình", "19571103", "M"),
    ("BN240003", "Lê", "Thị", "Hồng", "19640812", "F"),
    ("BN240004", "Phạm", "Đức", "Anh", "19911230", "M"),
    ("BN240005", "Hoàng", "Minh", "Tuấn", "20150607", "M"),
    ("BN240006", "Vũ", "Ngọc", "Ánh", "19780925", "F"),
)


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """One sample the simulated HIS orders.

    Attributes:
        barcode: the tube's barcode (OBR-2 and OBR-3).
        tests: local test codes (OBR-4), one OBR each.
        patient: an index into :data:`PATIENTS`.
        stat: priority STAT (OBR-5 ``S``) instead of routine.
    """

    barcode: str
    tests: tuple[str, ...]
    patient: int = 0
    stat: bool = False


def order_message(order: OrderRequest, *, control_id: str, now: datetime,
                  hospital: str = "BV_DEMO", cancel: bool = False) -> bytes:
    """An ORM^O01 v2.5.1 (UTF-8) for one sample: MSH, PID, PV1, then ORC + OBR per test.

    Args:
        order: what to order.
        control_id: MSH-10.
        now: MSH-7, ORC-9 and the collection time OBR-7.
        hospital: MSH-4 and the assigning authority of PID-3.
        cancel: ORC-1 ``CA`` instead of ``NW``.
    """
    code, family, middle, given, born, sex = PATIENTS[order.patient % len(PATIENTS)]
    stamp = hl7_timestamp(now)
    segments = [
        write_segment(["MSH", "|", "^~\\&", "HIS-SIM", hospital, "LIS-GATEWAY", "LAB", stamp,
                       "", "ORM^O01^ORM_O01", control_id, "P", "2.5.1", "", "", "", "", "",
                       "UNICODE UTF-8"]),
        write_segment(["PID", "1", "", f"{code}^^^{hospital}^PI", "",
                       f"{family}^{given}^{middle}", "", born, sex]),
        write_segment(["PV1", "1", "O"]),
    ]
    for i, test in enumerate(order.tests, start=1):
        segments.append(write_segment(["ORC", "CA" if cancel else "NW", order.barcode,
                                       order.barcode, "", "", "", "", "", stamp]))
        segments.append(write_segment(["OBR", str(i), order.barcode, order.barcode, test,
                                       "S" if order.stat else "R", "", stamp]))
    return write_message(segments)


class OrderSender:
    """Sends orders to the gateway's order listener, one at a time, in order.

    Args:
        client: the MLLP client (started and stopped by its owner).
        utcnow: wall-clock time for the messages.
        hospital: MSH-4 and PID-3's assigning authority.
    """

    def __init__(self, client: HisClient, utcnow: Callable[[], datetime], *,
                 hospital: str = "BV_DEMO") -> None:
        self.client = client
        self._utcnow = utcnow
        self._hospital = hospital
        self._ids = itertools.count(1)

    def send(self, order: OrderRequest, *, cancel: bool = False) -> Deferred[DeliveryReport]:
        """Queue one order; the Deferred fires with the gateway's answer."""
        control_id = f"ORM{next(self._ids):06d}"
        return self.client.send(order_message(order, control_id=control_id,
                                              now=self._utcnow(), hospital=self._hospital,
                                              cancel=cancel))


# ---------------------------------------------------------------------- the command

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``his-sim`` options."""
    parser.add_argument("--listen", type=host_port, default=("127.0.0.1", 2575),
                        metavar="HOST:PORT",
                        help="where to receive results (default 127.0.0.1:2575; port 0: any)")
    parser.add_argument("--answer", default="aa", metavar="PLAN",
                        help="aa | ae | ar | none | drop; a sequence in turn (aa,aa,ae) or "
                             "weights (aa=90,none=5,drop=5); default aa")
    parser.add_argument("--seed", type=int, default=0, help="random seed for weighted answers")
    parser.add_argument("--send-orders", type=host_port, default=None, metavar="HOST:PORT",
                        help="also send ORM^O01 orders to the gateway's order listener")
    parser.add_argument("--order-interval", type=float, default=5.0, metavar="SECONDS",
                        help="seconds between orders (default 5)")
    parser.add_argument("--tests", default="GLU,CREA,UREA", metavar="CODES",
                        help="local test codes each order asks for (default GLU,CREA,UREA)")
    parser.add_argument("--barcode-prefix", default="S", metavar="TEXT",
                        help="orders get barcodes PREFIX000001, PREFIX000002, ...")
    parser.add_argument("--hospital", default="BV_DEMO",
                        help="assigning authority of patient codes (default BV_DEMO)")
    parser.add_argument("--count", type=int, default=None, metavar="N",
                        help="stop after receiving N messages")
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="stop after this many seconds")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per event instead of text lines")


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``his-sim`` until Ctrl-C, ``--count`` messages or ``--duration``.

    Returns:
        0 after a clean stop, 1 when the port could not be opened, 2 for a bad plan.
    """
    from twisted.internet import reactor as global_reactor
    from twisted.internet.endpoints import HostnameEndpoint
    from twisted.internet.error import CannotListenError
    from twisted.internet.task import LoopingCall

    reactor: Any = global_reactor
    try:
        plan = AnswerPlan.parse(args.answer, seed=args.seed)
    except ValueError as exc:
        print(f"his-sim: --answer: {exc}", file=sys.stderr)
        return 2
    received = 0

    def emit(event: dict[str, object], text: str) -> None:
        print(json.dumps(event, ensure_ascii=False) if args.json else text, file=out,
              flush=True)

    def on_message(item: Received) -> None:
        nonlocal received
        received += 1
        emit({"event": "received", **item.to_dict()},
             f"received {item.message_type} {item.control_id}: samples "
             f"{' '.join(item.samples) or '-'}, {item.observations} OBX "
             f"({'/'.join(item.statuses) or '-'}); answered {item.answer.value}")
        if args.count is not None and received >= args.count:
            reactor.callLater(0, reactor.stop)

    def utcnow() -> datetime:
        return datetime.fromtimestamp(reactor.seconds(), UTC)

    factory = HisReceiverFactory(plan, reactor, utcnow, on_message)
    host, port = args.listen
    try:
        listening = reactor.listenTCP(port, factory, interface=host)
    except CannotListenError as exc:
        print(f"his-sim: cannot listen on {host}:{port}: {exc.socketError}", file=sys.stderr)
        return 1
    emit({"event": "listening", "host": host, "port": listening.getHost().port},
         f"his-sim: receiving results on {host}:{listening.getHost().port}, answering "
         f"{args.answer}")
    sender_loop: LoopingCall | None = None
    if args.send_orders is not None:
        to_host, to_port = args.send_orders
        client = HisClient(HostnameEndpoint(reactor, to_host, to_port, timeout=5), reactor)
        client.startService()
        reactor.addSystemEventTrigger("before", "shutdown", client.stopService)
        sender = OrderSender(client, utcnow, hospital=args.hospital)
        tests = tuple(t.strip() for t in args.tests.split(",") if t.strip())
        numbers = itertools.count(1)

        def send_one() -> None:
            n = next(numbers)
            order = OrderRequest(f"{args.barcode_prefix}{n:06d}", tests, patient=n)

            def answered(report: DeliveryReport) -> None:
                emit({"event": "order", "barcode": order.barcode, **report.to_dict()},
                     f"order {order.barcode} ({' '.join(tests)}): {report.status.value}"
                     f"{' ' + report.ack.code if report.ack else ''}")

            sender.send(order).addCallback(answered)

        sender_loop = LoopingCall(send_one)
        sender_loop.clock = reactor
        sender_loop.start(args.order_interval, now=True).addErrback(
            lambda f: print(f"his-sim: order loop failed: {f.getErrorMessage()}",
                            file=sys.stderr))
    if args.duration is not None:
        reactor.callLater(args.duration, reactor.stop)
    signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(reactor.stop))
    reactor.run()
    if sender_loop is not None and sender_loop.running:
        sender_loop.stop()
    return 0

