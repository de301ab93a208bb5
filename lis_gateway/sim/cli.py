"""``lis-gateway simulate``: a simulated analyzer of a driver's family, on TCP or serial.

It behaves like the family on the wire (:mod:`lis_gateway.sim.astm_styles`,
:mod:`lis_gateway.sim.hl7_styles`): its records or segments, its framing,
its host queries when the driver asks them. It sends one sample every
``--interval`` seconds (or ``--rate`` per minute) with made-up patients and
values that wander, and prints one line per message with its outcome on
standard output (``--json``: one JSON object per line). Status lines go to
standard error. Faults (``--fault KIND[:PROB]``, see
:mod:`lis_gateway.sim.faults`) are decided by a seeded random source;
``--seed`` repeats a run. With ``--count N`` it stops once N samples'
result messages have their outcome; the exit status is 0 only when every
message was delivered (after retries, whatever faults were injected), 1
otherwise, 2 for options it cannot use.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import signal
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from twisted.internet.defer import gatherResults, maybeDeferred
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

import drivers
from drivers import DriverSpec, Protocol, QueryStyle, TcpRole
from lis_gateway.receive import host_port
from lis_gateway.wire import Recorder, open_recorder

from . import transports
from .adapters import AstmSide, Hl7Side, SimAnalyzer
from .astm_styles import AstmStyle
from .content import Sample, default_first_sample, make_sample
from .families import Style, UnsupportedDriverError, style_for, supported
from .faults import Decider, FaultKind, parse_fault
from .hl7_styles import Hl7Style
from .session import Item, ItemKind, Report, Session

#: The command's help text.
DESCRIPTION = """\
Play an analyzer of the driver's family against a gateway link: its records
or segments, its framing, its host queries when the driver asks them (ASTM Q
record, Mindray QRY^Q02, LAW QBP^Q11), on TCP (--connect to a tcp-server
link, --listen for a tcp-client link) or on a serial line (--pty opens a
pseudo-terminal and prints the path to give the gateway; --device opens a
real port). One sample every --interval seconds (or --rate per minute), with
made-up patients and values that wander; one line per message and its
outcome on standard output (--json: JSON objects), status on standard error.

Faults (--fault KIND[:PROB], probability per opportunity, default 0.1):
bad-checksum (ASTM frames), lost-ack (the gateway's ACK never arrives: the
analyzer times out and sends again), drop (the connection is dropped in
mid-message; on a serial line the frame is cut short), garbage (line noise
between frames or messages). --seed repeats a run's values and faults.

With --count N it stops once N samples' results have their outcome. Exit
status 0 only when every message was delivered (retries after injected
faults allowed), 1 otherwise, 2 for options it cannot use. beckman-au cannot
be simulated yet: the simulator has no style for the AU online protocol.
"""

#: Seconds between samples when neither --interval nor --rate is given.
DEFAULT_INTERVAL = 5.0


class UsageError(Exception):
    """The options cannot be used together; the message says why."""


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not more than 0")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``simulate`` options."""
    parser.add_argument("--driver", required=True, metavar="NAME",
                        help=f"the analyzer family to play: {', '.join(supported())}")
    parser.add_argument("--transport", choices=("tcp", "serial"), default=None,
                        help="tcp (default) or serial; implied by the options below")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--connect", type=host_port, metavar="HOST:PORT",
                       help="connect to the gateway (its link is tcp-server, the usual role)")
    where.add_argument("--listen", type=host_port, metavar="HOST:PORT",
                       help="listen for the gateway (its link is tcp-client); port 0: any")
    where.add_argument("--device", metavar="PATH", help="a real serial port")
    where.add_argument("--pty", action="store_true",
                       help="a pseudo-terminal; its path is printed for the gateway (serial "
                            "default)")
    rate = parser.add_mutually_exclusive_group()
    rate.add_argument("--interval", type=_positive, metavar="SECONDS",
                      help=f"seconds between samples (default {DEFAULT_INTERVAL:g})")
    rate.add_argument("--rate", type=_positive, metavar="PER_MINUTE",
                      help="samples per minute")
    parser.add_argument("--count", type=int, default=None, metavar="N",
                        help="stop after N samples (exit 0 only if every message was delivered)")
    parser.add_argument("--duration", type=_positive, default=None, metavar="SECONDS",
                        help="stop after this many seconds")
    parser.add_argument("--fault", type=parse_fault, action="append", default=[],
                        metavar="KIND[:PROB]",
                        help="inject a fault with a probability per opportunity (default "
                             "0.1): bad-checksum (ASTM), lost-ack, drop, garbage; repeatable")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of values and faults (default: random, printed)")
    parser.add_argument("--first-sample", default=None, metavar="ID",
                        help="barcode of the first sample; its trailing number counts up "
                             "(default YYMMDD0001 of today)")
    parser.add_argument("--no-queries", action="store_true",
                        help="do not ask host queries even when the family does")
    parser.add_argument("--answer-timeout", type=_positive, default=15.0, metavar="SECONDS",
                        help="how long to wait for a query's answer (default 15, cobas' limit)")
    parser.add_argument("--reply-timeout", type=_positive, default=15.0, metavar="SECONDS",
                        help="ASTM: the E1381 sender timer, waiting for each ACK (default 15)")
    parser.add_argument("--ack-timeout", type=_positive, default=10.0, metavar="SECONDS",
                        help="HL7: seconds the gateway has to acknowledge (default 10)")
    parser.add_argument("--retries", type=int, default=3, metavar="N",
                        help="send a message that was not delivered again up to N times "
                             "(default 3)")
    parser.add_argument("--baud", type=int, default=None,
                        help="baud rate of --device (default: the driver's)")
    parser.add_argument("--record-dir", type=Path, default=None, metavar="DIR",
                        help="write a wire recording of every connection here (tx is the "
                             "analyzer's side)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def check(args: argparse.Namespace) -> tuple[DriverSpec, Style, str]:
    """The driver, its style and the transport (``tcp-client``, ``tcp-server``, ``pty``,
    ``device``) the options ask for.

    Raises:
        UsageError: an unknown or unsupported driver, or options that do not fit it.
    """
    try:
        driver = drivers.get(args.driver)
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None
    try:
        style = style_for(driver)
    except UnsupportedDriverError as exc:
        raise UsageError(f"cannot simulate {driver.name}: {exc}") from None
    hl7 = driver.protocol is Protocol.HL7
    kinds = {kind for kind, _p in args.fault}
    if hl7 and FaultKind.BAD_CHECKSUM in kinds:
        raise UsageError("bad-checksum applies to ASTM E1381 frames; MLLP carries no checksum")
    serial = args.device is not None or args.pty
    tcp = args.connect is not None or args.listen is not None
    transport = args.transport or ("serial" if serial else "tcp")
    if (transport == "tcp" and serial) or (transport == "serial" and tcp):
        raise UsageError(f"--transport {transport} does not go with the address given")
    if transport == "serial":
        if hl7:
            raise UsageError(f"{driver.name} speaks HL7 over MLLP, which runs on TCP only")
        return driver, style, "device" if args.device is not None else "pty"
    if args.connect is not None:
        return driver, style, "tcp-client"
    if args.listen is not None:
        return driver, style, "tcp-server"
    if driver.tcp_role is TcpRole.SERVER:
        raise UsageError(f"--connect HOST:PORT is needed: {driver.name}'s gateway link listens "
                         "(tcp-server), so the analyzer connects to it")
    raise UsageError(f"--listen HOST:PORT is needed: {driver.name}'s gateway link connects "
                     "(tcp-client), so the analyzer listens")


class Producer:
    """Makes each sample's items: the query (when asked), the results, a cancel.

    Args:
        driver: the driver (its time zone, whether it asks queries).
        style: how the family writes.
        rng: the seeded source of values and control IDs.
        first: the first barcode.
        queries: ask host queries when the family does.
    """

    def __init__(self, driver: DriverSpec, style: Style, rng: random.Random, first: str, *,
                 queries: bool) -> None:
        self.driver = driver
        self.style = style
        self.rng = rng
        self.first = first
        self.queries = queries and driver.query_style is not QueryStyle.NONE \
            and style.query is not None
        self._numbers = itertools.count(1)
        self._ids = itertools.count(1)

    def control_id(self) -> str:
        """The next MSH-10 (HL7)."""
        if isinstance(self.style, Hl7Style):
            return self.style.control_id(next(self._ids), self.rng)
        return ""

    def sample(self, now: float) -> Sample:
        """The next sample, measured now (in the analyzer's time zone)."""
        seq = next(self._numbers)
        when = datetime.fromtimestamp(now, ZoneInfo(self.driver.timezone)).replace(tzinfo=None)
        return make_sample(seq, self.first, self.style.panel(seq), when, self.rng)

    def items(self, sample: Sample) -> tuple[Item, Item | None]:
        """The first item to queue for ``sample`` and, for a query, its cancel."""
        style = self.style
        if isinstance(style, AstmStyle):
            results = Item(sample.seq, ItemKind.RESULTS, style.message(sample),
                           sample.sample_id, sample.codes)
        else:
            cid = self.control_id()
            results = Item(sample.seq, ItemKind.RESULTS, style.build(sample, cid),
                           sample.sample_id, sample.codes, control_id=cid)
        if not self.queries:
            return results, None
        cancel = None
        if isinstance(style, AstmStyle):
            query = Item(sample.seq, ItemKind.QUERY,
                         style.query_message(sample.sample_id, sample.when), sample.sample_id)
            if style.cancels_queries:
                cancel = Item(sample.seq, ItemKind.CANCEL,
                              style.query_message(sample.sample_id, sample.when, cancel=True),
                              sample.sample_id)
        else:
            assert style.query is not None  # checked in __init__
            cid = self.control_id()
            query = Item(sample.seq, ItemKind.QUERY,
                         style.query(sample.sample_id, sample.when, cid), sample.sample_id,
                         control_id=cid)
        query.follow.append(results)
        return query, cancel


class ReportWriter:
    """Prints each report as a line (or a JSON object) and keeps the totals."""

    def __init__(self, out: TextIO, *, as_json: bool) -> None:
        self._out = out
        self._json = as_json
        self.results_settled = 0
        self.failed = 0
        self.delivered = 0

    def __call__(self, report: Report) -> None:
        """Print one report."""
        line = json.dumps(report.to_dict(), ensure_ascii=False) if self._json else report.text()
        self._out.write(line + "\n")
        self._out.flush()
        if report.item.kind is ItemKind.RESULTS:
            self.results_settled += 1
        if report.outcome == "failed":
            self.failed += 1
        elif report.outcome in ("acknowledged", "answered", "unanswered"):
            self.delivered += 1


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run the simulator on the global reactor until done, Ctrl-C or ``--duration``.

    Configure logging first (:func:`lis_gateway.logconfig.configure`).

    Returns:
        0 when every message was delivered (and, with ``--count``, every sample's
        results), 1 otherwise or when the transport could not start, 2 for unusable
        options.
    """
    def say(text: str) -> None:
        err.write(f"lis-gateway simulate: {text}\n")  # one write: log lines never split it
        err.flush()

    try:
        driver, style, transport = check(args)
    except UsageError as exc:
        say(str(exc))
        return 2
    from twisted.internet import reactor as global_reactor  # the entry point owns it

    reactor: Any = global_reactor
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    content_rng = random.Random(seed)
    decider = Decider(dict(args.fault), random.Random(seed ^ 0x5EED))
    interval = args.interval or (60.0 / args.rate if args.rate else DEFAULT_INTERVAL)
    first = args.first_sample or default_first_sample(
        datetime.fromtimestamp(reactor.seconds(), ZoneInfo(driver.timezone)))
    producer = Producer(driver, style, content_rng, first, queries=not args.no_queries)
    writer = ReportWriter(out, as_json=args.json)
    session = Session(retries=args.retries, answer_timeout=args.answer_timeout)
    record_dir: Path | None = args.record_dir

    def recorder() -> Recorder | None:
        if record_dir is None:
            return None
        return open_recorder(record_dir, f"sim-{driver.name}", reactor.seconds())

    stopping: list[bool] = []
    status = [0]
    running: list[transports.Running] = []

    def on_report(report: Report) -> None:
        writer(report)
        if args.count is not None and writer.results_settled >= args.count:
            reactor.callLater(0, stop)

    sim = SimAnalyzer(session, reactor, decider, serial=transport in ("pty", "device"),
                      on_report=on_report, recorders=recorder)
    side: AstmSide | Hl7Side
    if isinstance(style, AstmStyle):
        side = AstmSide(sim, style, reply_timeout=args.reply_timeout)
    else:
        ids = itertools.count(1)
        side = Hl7Side(sim, style.frame, ack_timeout=args.ack_timeout,
                       reply_ids=lambda: f"SIMR{next(ids)}")
    sim.side = side

    def produce() -> None:
        sample = producer.sample(reactor.seconds())
        item, cancel = producer.items(sample)
        sim.add(item, cancel=cancel)
        if args.count is not None and sample.seq >= args.count and loop.running:
            loop.stop()

    loop = LoopingCall(produce)
    loop.clock = reactor

    def stop() -> None:
        if stopping:
            return
        stopping.append(True)
        if loop.running:
            loop.stop()
        sim.stop()
        stopped = gatherResults([maybeDeferred(r.stop) for r in running], consumeErrors=True)
        stopped.addBoth(lambda _r: reactor.stop())

    def start() -> None:
        build: Callable[[str], Any] = side.build_protocol
        if transport == "tcp-client":
            host, port = args.connect
            r = transports.start_tcp_client(host, port, build, reactor, say)
        elif transport == "tcp-server":
            host, port = args.listen
            r = transports.start_tcp_server(host, port, build, reactor, say)
        elif transport == "pty":
            r = transports.start_pty(build, reactor, say)
        else:
            r = transports.start_device(args.device, args.baud or driver.serial.baudrate, build,
                                        reactor, say)
        running.append(r)
        if r.started is not None:
            r.started.addErrback(cannot_start)
        loop.start(interval, now=True).addErrback(loop_failed)
        if args.duration is not None:
            reactor.callLater(args.duration, stop)

    def cannot_start(failure: Failure) -> None:
        say(f"cannot start: {failure.getErrorMessage()}")
        status[0] = 1
        stop()

    def loop_failed(failure: Failure) -> None:
        say(f"stopped: {failure.getErrorMessage()}")
        status[0] = 1
        stop()

    model = style.model
    say(f"{driver.name} ({model}), {transport}, a sample every {interval:g} s"
        f"{', with host queries' if producer.queries else ''}, seed {seed}")
    reactor.callWhenRunning(start)
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda _n, _f: reactor.callFromThread(stop))
    reactor.run(installSignalHandlers=False)
    counts = Counter({k.value: n for k, n in decider.counts.items()})
    faults = ", ".join(f"{k} x{n}" for k, n in sorted(counts.items())) or "none"
    say(f"{writer.delivered} delivered, {writer.failed} failed; faults injected: {faults}")
    if status[0]:
        return status[0]
    complete = args.count is None or writer.results_settled >= args.count
    return 0 if writer.failed == 0 and complete and writer.delivered > 0 else 1

