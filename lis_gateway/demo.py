"""``lis-gateway demo``: the gateway and two simulated analyzers on one reactor.

* link ``demo-tcp``: the gateway listens on 127.0.0.1 (port 4001 by default);
  a simulated chemistry/haematology analyzer connects to it;
* link ``demo-serial``: the gateway opens the slave side of a pseudo-terminal
  as a serial device; a second simulated analyzer drives the master side;
* link ``demo-hl7``: the gateway listens for HL7 over MLLP (port 2575 by
  default); a simulated Mindray-style haematology analyzer connects and sends
  ORU^R01 blood counts, logging each AA/AE.

Every parsed message prints one JSON line per result plus a ``# ...`` summary
line on standard output; wire recordings go under ``./var/wire/``. Ctrl-C,
SIGTERM or ``--duration`` stop it cleanly (services stopped, pty closed).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IListeningPort

import drivers
from lis_gateway import logconfig, service
from lis_gateway.adapters.tcp import LinkServerService, make_client_service
from lis_gateway.hl7_sim import SimulatedHl7Analyzer
from lis_gateway.receive import ResultPrinter
from lis_gateway.service import LinkSpec
from lis_gateway.simulator import FdTransport, Pty, SimulatedAnalyzer, open_pty

DEFAULT_PORT = 4001
DEFAULT_HL7_PORT = 2575
DEFAULT_INTERVAL = 3.0
DEFAULT_RECORD_DIR = Path("var/wire")
HOST = "127.0.0.1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``demo`` options to ``parser`` (for the CLI's subcommand)."""
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"TCP port of the demo link (default {DEFAULT_PORT}; 0: any)")
    parser.add_argument("--hl7-port", type=int, default=DEFAULT_HL7_PORT,
                        help=f"TCP port of the HL7 demo link (default {DEFAULT_HL7_PORT}; "
                             "0: any)")
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="stop after this many seconds (default: run until Ctrl-C)")
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL, metavar="SECONDS",
                        help=f"seconds between simulated messages (default {DEFAULT_INTERVAL})")
    parser.add_argument("--record-dir", type=Path, default=DEFAULT_RECORD_DIR,
                        help=f"wire recordings directory (default {DEFAULT_RECORD_DIR})")


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo until Ctrl-C, SIGTERM or ``args.duration``.

    Configure logging first (:func:`lis_gateway.logconfig.configure`); logs
    go to standard error, results to standard output.

    Args:
        args: ``port``, ``duration``, ``interval`` and ``record_dir`` as added
            by :func:`add_arguments` (missing ones take their defaults).

    Returns:
        0 after a clean stop, 1 if the gateway could not start (port in use).
    """
    port = getattr(args, "port", DEFAULT_PORT)
    hl7_port = getattr(args, "hl7_port", DEFAULT_HL7_PORT)
    duration = getattr(args, "duration", None)
    interval = getattr(args, "interval", DEFAULT_INTERVAL)
    record_dir = Path(getattr(args, "record_dir", DEFAULT_RECORD_DIR))
    driver = drivers.get("generic-astm")
    pty = open_pty()
    try:
        links = [
            LinkSpec("demo-tcp", driver, "tcp-server", host=HOST, port=port,
                     record_dir=record_dir),
            LinkSpec("demo-serial", driver, "serial", device=pty.path, record_dir=record_dir),
            LinkSpec("demo-hl7", drivers.get("generic-hl7"), "tcp-server", host=HOST,
                     port=hl7_port, record_dir=record_dir),
        ]
        analyzers = _DemoAnalyzers(pty, interval)

        def sink_for(link: LinkSpec) -> ResultPrinter:
            return ResultPrinter(link.name, link.driver, sys.stdout, summary=True)

        return service.run(links, sink_for, duration=duration, on_running=analyzers.start)
    finally:
        pty.close()


class _DemoAnalyzers:
    """Starts one simulator per link once the gateway runs, stops them at shutdown."""

    def __init__(self, pty: Pty, interval: float) -> None:
        self._pty = pty
        self._interval = interval
        self._simulators: list[SimulatedAnalyzer] = []
        self._hl7_simulator: SimulatedHl7Analyzer | None = None
        self._fd_transport: FdTransport | None = None

    def start(self, root: MultiService, reactor: Any) -> Deferred[Any]:
        """Start the serial simulator now and the TCP one once the port listens."""
        def utcnow() -> datetime:
            return datetime.now(UTC)

        serial_sim = SimulatedAnalyzer("sim-serial", reactor, utcnow, interval=self._interval)
        self._fd_transport = FdTransport(self._pty.master, serial_sim.build_protocol(), reactor)
        tcp_sim = SimulatedAnalyzer("sim-tcp", reactor, utcnow, interval=self._interval)
        self._simulators = [serial_sim, tcp_sim]
        reactor.addSystemEventTrigger("before", "shutdown", self.stop)
        serial_sim.start()

        server = root.getServiceNamed("demo-tcp")
        if not isinstance(server, LinkServerService):
            raise TypeError("demo-tcp is not a TCP server link")

        def connect(listening: IListeningPort) -> None:
            bound = getattr(listening.getHost(), "port", DEFAULT_PORT)
            print(f"# demo: gateway listening on {HOST}:{bound}, serial link on "
                  f"{self._pty.path}", flush=True)
            endpoint = HostnameEndpoint(reactor, HOST, bound, timeout=5)
            client = make_client_service(endpoint, tcp_sim.build_protocol, reactor)
            client.setName("sim-tcp")
            client.setServiceParent(root)  # started now, stopped with the gateway
            tcp_sim.start()

        hl7_server = root.getServiceNamed("demo-hl7")
        if not isinstance(hl7_server, LinkServerService):
            raise TypeError("demo-hl7 is not a TCP server link")

        def connect_hl7(listening: IListeningPort) -> None:
            bound = getattr(listening.getHost(), "port", DEFAULT_HL7_PORT)
            print(f"# demo: gateway listening for HL7 on {HOST}:{bound}", flush=True)
            endpoint = HostnameEndpoint(reactor, HOST, bound, timeout=5)
            self._hl7_simulator = SimulatedHl7Analyzer("sim-hl7", endpoint, reactor, utcnow,
                                                       interval=self._interval)
            self._hl7_simulator.start()

        return gatherResults([server.when_listening().addCallback(connect),
                              hl7_server.when_listening().addCallback(connect_hl7)],
                             consumeErrors=True)

    def stop(self) -> Deferred[None] | None:
        """Stop sending, detach from the pty master, close the HL7 simulator's connection."""
        for sim in self._simulators:
            sim.stop()
        if self._fd_transport is not None:
            self._fd_transport.stop()
            self._fd_transport = None
        hl7_sim, self._hl7_simulator = self._hl7_simulator, None
        return hl7_sim.stop() if hl7_sim is not None else None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lis_gateway.demo``: console logs on standard error, then the demo."""
    parser = argparse.ArgumentParser(prog="lis_gateway.demo", description=__doc__)
    add_arguments(parser)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-json", action="store_true")
    args = parser.parse_args(argv)
    logconfig.configure(json=args.log_json, level=args.log_level)
    logconfig.forward_twisted_logs()
    return run_demo(args)


if __name__ == "__main__":
    sys.exit(main())
