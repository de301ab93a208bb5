"""A simulated HL7 analyzer: Mindray BC-style blood counts as ORU^R01 v2.3.1 over MLLP.

It connects to the gateway over TCP (reconnecting with back-off), sends one
message every ``interval`` seconds, waits for its ACK and logs AA/AE/AR. It
is an MLLP *sender*, so it reuses the gateway's own
:class:`~lis_gateway.adapters.mllp_protocol.HisClient`. All patients are made
up (the names of :mod:`lis_gateway.simulator`).

Run it against ``lis-gateway receive --driver generic-hl7``::

    python -m lis_gateway.hl7_sim --connect 127.0.0.1:2575 --interval 3

With ``--json`` every delivery report is printed on standard output as one
JSON object; ``--count N`` stops after N reports (exit status 0 when every
message was accepted). ``lis-gateway simulate --driver mindray-bc`` does the
same with any HL7 family's messages, host queries and faults (:mod:`lis_gateway.sim`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import structlog
from structlog.typing import FilteringBoundLogger
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from lis_gateway.hl7.message import write_message
from lis_gateway.outbound.sender import DeliveryReport, DeliveryStatus, HisClient
from lis_gateway.receive import host_port
from lis_gateway.simulator import PATIENTS

#: Blood count: (LOINC, name, base value, unit, low, high, decimals). Units as
#: Mindray writes them (UCUM-style ``10*3/uL``).
BLOOD_COUNT = (
    ("6690-2", "WBC", 11.2, "10*3/uL", 4.0, 10.0, 2),
    ("751-8", "NEU#", 7.6, "10*3/uL", 2.0, 7.0, 2),
    ("731-0", "LYM#", 2.0, "10*3/uL", 0.8, 4.0, 2),
    ("742-7", "MON#", 0.55, "10*3/uL", 0.12, 1.2, 2),
    ("711-2", "EOS#", 0.21, "10*3/uL", 0.02, 0.5, 2),
    ("704-7", "BAS#", 0.03, "10*3/uL", 0.0, 0.1, 2),
    ("789-8", "RBC", 4.61, "10*6/uL", 4.2, 5.4, 2),
    ("718-7", "HGB", 11.8, "g/dL", 12.0, 16.0, 1),
    ("4544-3", "HCT", 36.1, "%", 37.0, 47.0, 1),
    ("787-2", "MCV", 78.1, "fL", 80.0, 100.0, 1),
    ("785-6", "MCH", 25.6, "pg", 27.0, 34.0, 1),
    ("786-4", "MCHC", 32.8, "g/dL", 32.0, 36.0, 1),
    ("788-0", "RDW-CV", 15.9, "%", 11.0, 16.0, 1),
    ("777-3", "PLT", 254.0, "10*3/uL", 150.0, 400.0, 0),
    ("32623-1", "MPV", 9.4, "fL", 6.5, 12.0, 1),
)

#: Run-mode rows Mindray sends as OBX-2 ``IS`` (not results).
RUN_MODES = (("08001", "Take Mode", "O"), ("08002", "Blood Mode", "W"),
             ("08003", "Test Mode", "CBC+DIFF"))


def _stamp(when: datetime) -> str:
    return when.strftime("%Y%m%d%H%M%S")


def _value(base: float, seq: int, decimals: int) -> float:
    """A value that wanders with the sequence number (deterministic, up to +-12 %)."""
    return round(base * (1 + ((seq * 7) % 25 - 12) / 100), decimals)


def _flag(value: float, low: float, high: float) -> str:
    return "L" if value < low else "H" if value > high else "N"


def blood_count_message(seq: int, when: datetime) -> bytes:
    """A Mindray BC-style ORU^R01 v2.3.1 for made-up patient ``seq``.

    MSH, PID, PV1, OBR (sample ID in OBR-3, as Mindray sends it), three run
    mode OBX rows (``IS``) and fifteen numeric results with ``N``/``H``/``L``
    flags.

    Args:
        seq: message number: MSH-10, the patient, and nudges the values.
        when: MSH-7, OBR-7 and OBX-14.

    Returns:
        The message, segments ending in CR; sample ID ``B<260000 + seq>``.
    """
    last, first, dob, sex = PATIENTS[seq % len(PATIENTS)]
    stamp = _stamp(when)
    segments = [
        f"MSH|^~\\&|Mindray|BC-5380|||{stamp}||ORU^R01|{seq}|P|2.3.1||||||UNICODE",
        f"PID|1||P{100200 + seq}^^^^MR||{last}^{first}||{dob}000000|"
        f"{'Female' if sex == 'F' else 'Male'}",
        "PV1|1||Outpatient",
        f"OBR|1||B{260000 + seq}|00001^Automated Count^99MRC||{stamp}|{stamp}"
        "|||||||||||||||||HM||||||||admin",
    ]
    for i, (code, name, mode) in enumerate(RUN_MODES, start=1):
        segments.append(f"OBX|{i}|IS|{code}^{name}^99MRC||{mode}||||||F")
    for i, (loinc, name, base, unit, low, high, decimals) in enumerate(
            BLOOD_COUNT, start=len(RUN_MODES) + 1):
        value = _value(base, seq, decimals)
        text = f"{value:.{decimals}f}"
        reference = f"{low:.{decimals}f}-{high:.{decimals}f}"
        segments.append(f"OBX|{i}|NM|{loinc}^{name}^LN||{text}|{unit}|{reference}|"
                        f"{_flag(value, low, high)}|||F|||{stamp}")
    return write_message(segments)


class SimulatedHl7Analyzer:
    """A fake HL7 analyzer sending a blood count every ``interval`` seconds.

    A tick is skipped while the previous message still waits for its ACK,
    as a real analyzer does.

    Args:
        name: used in logs.
        endpoint: where the gateway listens.
        clock: reconnections, ACK timeouts and the send loop.
        utcnow: wall-clock time written into the messages.
        interval: seconds between messages.
        ack_timeout: seconds the gateway has to answer.
        on_report: called with every delivery report.
        log: a logger; one bound to ``simulator=name`` when None.
    """

    def __init__(self, name: str, endpoint: IStreamClientEndpoint, clock: IReactorTime,
                 utcnow: Callable[[], datetime], *, interval: float = 5.0,
                 ack_timeout: float = 10.0,
                 on_report: Callable[[DeliveryReport], object] | None = None,
                 log: FilteringBoundLogger | None = None) -> None:
        self.name = name
        self._clock = clock
        self._utcnow = utcnow
        self.interval = interval
        self._on_report = on_report
        self._log: FilteringBoundLogger = (
            log if log is not None
            else structlog.get_logger("lis_gateway.hl7_sim").bind(simulator=name))
        self.client = HisClient(endpoint, clock, ack_timeout=ack_timeout, log=self._log)
        self._seq = itertools.count(1)
        self._loop: LoopingCall | None = None
        self._outstanding = False
        self.reports: list[DeliveryReport] = []

    def send_next(self) -> Deferred[DeliveryReport] | None:
        """Send the next message unless one is still unanswered."""
        if self._outstanding:
            self._log.info("simulator-busy")
            return None
        seq = next(self._seq)
        self._outstanding = True
        d = self.client.send(blood_count_message(seq, self._utcnow()))
        return d.addCallback(self._answered, seq)

    def _answered(self, report: DeliveryReport, seq: int) -> DeliveryReport:
        self._outstanding = False
        self.reports.append(report)
        code = report.ack.code if report.ack else ""
        level = "info" if report.status is DeliveryStatus.DELIVERED else "warning"
        getattr(self._log, level)("simulator-answered", seq=seq, code=code,
                                  status=report.status.value)
        if self._on_report is not None:
            self._on_report(report)
        return report

    def start(self) -> None:
        """Connect, then send a message every ``interval`` seconds, the first at once."""
        self.client.startService()
        loop = LoopingCall(self.send_next)
        loop.clock = self._clock
        loop.start(self.interval, now=True).addErrback(self._loop_failed)
        self._loop = loop

    def stop(self) -> Deferred[None]:
        """Stop sending and disconnect (a message awaiting its ACK is reported lost)."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        return self.client.stopService()

    def _loop_failed(self, failure: Failure) -> None:
        self._log.error("simulator-failed", error=failure.getErrorMessage())


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run the simulator on the global reactor until Ctrl-C, ``--count`` or ``--duration``.

    Configure logging first (:func:`lis_gateway.logconfig.configure`).

    Args:
        args: the options of :func:`add_arguments`.
        out: where ``--json`` reports go.

    Returns:
        0 when every message was delivered (AA/CA), else 1.
    """
    from twisted.internet import reactor as global_reactor  # the entry point owns it

    reactor: Any = global_reactor
    host, port = args.connect
    stopping: list[bool] = []

    def stop() -> None:
        if not stopping:
            stopping.append(True)
            sim.stop().addBoth(lambda _: reactor.stop())

    def on_report(report: DeliveryReport) -> None:
        if args.json:
            out.write(json.dumps(report.to_dict()) + "\n")
            out.flush()
        if args.count is not None and len(sim.reports) >= args.count:
            stop()

    endpoint = HostnameEndpoint(reactor, host, port, timeout=5)
    sim = SimulatedHl7Analyzer("hl7-sim", endpoint, reactor, lambda: datetime.now(UTC),
                               interval=args.interval, ack_timeout=args.ack_timeout,
                               on_report=on_report)
    reactor.callWhenRunning(sim.start)
    if args.duration is not None:
        reactor.callLater(args.duration, stop)
    # Stop from the reactor thread, never log inside a signal handler (see service.py).
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda _n, _f: reactor.callFromThread(stop))
    reactor.run(installSignalHandlers=False)
    delivered = [r.status is DeliveryStatus.DELIVERED for r in sim.reports]
    return 0 if delivered and all(delivered) else 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's options to ``parser`` (for a CLI subcommand)."""
    parser.add_argument("--connect", type=host_port, required=True, metavar="HOST:PORT",
                        help="where the gateway listens for this analyzer")
    parser.add_argument("--interval", type=float, default=3.0, metavar="SECONDS",
                        help="seconds between messages (default 3)")
    parser.add_argument("--ack-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="seconds the gateway has to answer (default 10)")
    parser.add_argument("--count", type=int, default=None, help="stop after N answers")
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="stop after this many seconds")
    parser.add_argument("--json", action="store_true",
                        help="print each delivery report as a JSON line")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lis_gateway.hl7_sim``: logs on standard error, reports on standard output."""
    from lis_gateway import logconfig

    parser = argparse.ArgumentParser(prog="lis_gateway.hl7_sim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-json", action="store_true")
    args = parser.parse_args(argv)
    logconfig.configure(json=args.log_json, level=args.log_level)
    logconfig.forward_twisted_logs()
    return run(args, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
