"""``lis-gateway replay``: send a wire recording's messages to a gateway, or decode them.

With ``--to HOST:PORT`` the analyzer's messages in each RECORDING (the files
a gateway writes under its record directory; ``--direction tx`` for a
simulator's) are sent to a running gateway as the analyzer would: ASTM
messages through a fresh E1381 link in the instrument role (ENQ, frames with
checksums, EOT; every ACK waited for), HL7 messages in MLLP blocks, each
waiting for its ACK. Host queries wait for the gateway's answer. One line per
message on standard output, its outcome included; progress (N/M messages)
on standard error. The exit status is 0 only when every message was
delivered.

With ``--dry-run`` nothing is sent: each file is decoded with the driver, as
``lis-gateway parse`` does, and one JSON line per result is printed, with
the problems (bad checksums, transmissions that never ended) on standard
error.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import signal
from pathlib import Path
from typing import Any, TextIO

from twisted.internet.defer import gatherResults, maybeDeferred

import drivers
from drivers import DriverSpec, Framing, Protocol
from lis_gateway.capture import normalize_report
from lis_gateway.config import SHIPPED_MAPPINGS
from lis_gateway.hl7.mllp import frame

from . import transports
from .adapters import AstmSide, Hl7Side, SimAnalyzer
from .astm_styles import GENERIC, AstmStyle
from .cli import ReportWriter, host_port
from .faults import Decider
from .recording import Recorded, messages
from .session import Item, ItemKind, Report, Session

#: The command's help text.
DESCRIPTION = """\
Send the analyzer's messages found in wire recordings (the files a gateway
writes under its record directory; --direction tx for a simulator's) to a
running gateway (--to HOST:PORT), re-framed as the analyzer would: ASTM
through a fresh E1381 link (every frame ACKed), HL7 in MLLP blocks, each
waiting for its ACK; host queries wait for their answer. One line per message
with its outcome on standard output, progress (N/M messages) on standard
error; exit status 0 only when every message was delivered.

With --dry-run nothing is sent: each file is decoded with the driver, as
'lis-gateway parse' does, one JSON line per result, problems on standard
error. Transmissions that never ended are reported and never sent.
"""


def _driver(name: str) -> DriverSpec:
    try:
        return drivers.get(name)
    except KeyError as exc:
        raise argparse.ArgumentTypeError(str(exc.args[0])) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``replay`` options."""
    parser.add_argument("recordings", nargs="+", metavar="RECORDING", type=Path,
                        help="a wire recording (.wire.jsonl), or a raw capture")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--to", type=host_port, metavar="HOST:PORT",
                      help="the gateway's listening link for this analyzer")
    mode.add_argument("--dry-run", action="store_true",
                      help="decode offline and print results and problems; send nothing")
    parser.add_argument("--driver", type=_driver, default=drivers.get("generic-astm"),
                        help="the analyzer's driver (default: generic-astm)")
    parser.add_argument("--transport", choices=("tcp",), default="tcp",
                        help="tcp (the only one: replay connects to the gateway)")
    parser.add_argument("--direction", choices=("rx", "tx"), default="rx",
                        help="whose bytes are the analyzer's: rx in a gateway's recording "
                             "(default), tx in a simulator's")
    parser.add_argument("--mapping", action="append", type=Path, default=[], metavar="DIR",
                        help="--dry-run: mapping tables searched before the shipped ones")
    parser.add_argument("--reply-timeout", type=float, default=15.0, metavar="SECONDS",
                        help="ASTM: the E1381 sender timer (default 15)")
    parser.add_argument("--ack-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="HL7: seconds the gateway has to acknowledge (default 10)")
    parser.add_argument("--answer-timeout", type=float, default=5.0, metavar="SECONDS",
                        help="how long to wait for a replayed query's answer (default 5)")
    parser.add_argument("--retries", type=int, default=3, metavar="N",
                        help="tries after the first for a message not delivered (default 3)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def _read(args: argparse.Namespace, err: TextIO) -> list[tuple[Path, list[Recorded]]]:
    spec: DriverSpec = args.driver
    out: list[tuple[Path, list[Recorded]]] = []
    for path in args.recordings:
        try:
            data = path.read_bytes()
            found, report = messages(data, spec, args.direction)
        except OSError as exc:
            print(f"{path}: cannot read: {exc.strerror}", file=err)
            continue
        except ValueError as exc:
            print(f"{path}: {exc}", file=err)
            continue
        for problem in report.problems:
            print(f"{path}: {problem}", file=err)
        out.append((path, found))
    return out


def dry_run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Decode each recording and print its results; 0 when anything was read."""
    from lis_gateway.mapping import MappingTableError, load_table

    spec: DriverSpec = args.driver
    try:
        table = load_table([*args.mapping, SHIPPED_MAPPINGS], spec.table_name)
    except MappingTableError as exc:
        for table_problem in exc.problems:
            print(f"mapping table error: {table_problem}", file=err)
        return 2
    parsed = False
    for path in args.recordings:
        try:
            data = path.read_bytes()
            found, report = messages(data, spec, args.direction)
        except OSError as exc:
            print(f"{path}: cannot read: {exc.strerror}", file=err)
            continue
        except ValueError as exc:
            print(f"{path}: {exc}", file=err)
            continue
        parsed = parsed or report.parsed_anything
        for number, result in normalize_report(report, spec, table):
            row = result.row
            out.write(json.dumps({
                "file": str(path), "message": number, "sample_id": row.sample_id,
                "test": row.test, "value": row.value, "unit": row.unit, "flags": list(row.flags),
                "status": row.status, "code": result.code, "loinc": result.loinc,
                "unit_ucum": result.unit_ucum, "problems": list(result.problems)},
                ensure_ascii=False) + "\n")
        for problem in report.problems:
            print(f"{path}: {problem}", file=err)
        kinds = ", ".join(f"{m.kind}" for m in found) or "none"
        print(f"{path}: {len(found)} messages ({kinds}), {len(report.rows)} results, "
              f"{len(report.problems)} problems", file=err)
    out.flush()
    return 0 if parsed else 1


class Progress:
    """``replay: N/M messages`` on standard error, at most once a second and at the end."""

    def __init__(self, total: int, err: TextIO, clock: Any) -> None:
        self.total = total
        self.done = 0
        self._err = err
        self._clock = clock
        self._last: float | None = None

    def step(self) -> None:
        """One more message has its outcome."""
        self.done += 1
        now = self._clock.seconds()
        if self.done < self.total and self._last is not None and now - self._last < 1.0:
            return
        self._last = now
        self._err.write(f"replay: {self.done}/{self.total} messages\n")
        self._err.flush()


def _items(files: list[tuple[Path, list[Recorded]]], hl7: bool,
           err: TextIO) -> list[Item]:
    items: list[Item] = []
    number = itertools.count(1)
    for path, found in files:
        for rec in found:
            if hl7 and not rec.control_id:
                print(f"{path}: message {rec.number} has no MSH-10: its ACK could not be told "
                      "apart; not sent", file=err)
                continue
            items.append(Item(next(number), ItemKind.QUERY if rec.query else ItemKind.MESSAGE,
                              rec.data, rec.sample_id, control_id=rec.control_id,
                              label=f"{rec.kind} ({path.name} message {rec.number})"))
    return items


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``replay``: decode (``--dry-run``) or send to ``--to``.

    Returns:
        0 when every message was delivered (dry run: when anything was read), 1
        otherwise, 2 for a driver it cannot replay.
    """
    if args.dry_run:
        return dry_run(args, out, err)
    spec: DriverSpec = args.driver
    if spec.framing is Framing.CUSTOM or spec.framing is Framing.BARE:
        print(f"replay: {spec.name} does not use E1381 or MLLP framing; only --dry-run "
              "works for it", file=err)
        return 2
    hl7 = spec.protocol is Protocol.HL7
    items = _items(_read(args, err), hl7, err)
    if not items:
        print("replay: no message to send", file=err)
        return 1
    from twisted.internet import reactor as global_reactor  # the entry point owns it

    reactor: Any = global_reactor
    progress = Progress(len(items), err, reactor)
    writer = ReportWriter(out, as_json=args.json)
    session = Session(retries=args.retries, answer_timeout=args.answer_timeout)
    stopping: list[bool] = []
    running: list[transports.Running] = []
    settled = [0]

    def stop() -> None:
        if stopping:
            return
        stopping.append(True)
        sim.stop()
        stopped = gatherResults([maybeDeferred(r.stop) for r in running], consumeErrors=True)
        stopped.addBoth(lambda _r: reactor.stop())

    def on_report(report: Report) -> None:
        writer(report)
        if report.item.seq == 0:  # work the gateway pushed, not one of ours
            return
        settled[0] += 1
        progress.step()
        if settled[0] >= len(items):
            reactor.callLater(0, stop)

    sim = SimAnalyzer(session, reactor, Decider({}, random.Random(0)), serial=False,
                      on_report=on_report)
    style: AstmStyle = GENERIC  # only its framing defaults are used: standard frames
    side: AstmSide | Hl7Side
    if hl7:
        ids = itertools.count(1)
        side = Hl7Side(sim, frame, ack_timeout=args.ack_timeout,
                       reply_ids=lambda: f"REPLAY{next(ids)}")
    else:
        side = AstmSide(sim, style, reply_timeout=args.reply_timeout)
    sim.side = side

    def say(text: str) -> None:
        err.write(f"lis-gateway replay: {text}\n")
        err.flush()

    def start() -> None:
        host, port = args.to
        running.append(transports.start_tcp_client(host, port, side.build_protocol, reactor,
                                                   say))
        for item in items:
            sim.add(item)

    say(f"{len(items)} messages for {spec.name}")
    reactor.callWhenRunning(start)
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda _n, _f: reactor.callFromThread(stop))
    reactor.run(installSignalHandlers=False)
    say(f"{writer.delivered} delivered, {writer.failed} failed, "
        f"{len(items) - settled[0]} without an outcome")
    return 0 if writer.failed == 0 and settled[0] >= len(items) else 1

