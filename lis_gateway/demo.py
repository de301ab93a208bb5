"""``lis-gateway demo`` (``make demo``): the whole system on one machine, in one process.

* the gateway itself, as ``lis-gateway run`` would run it, on SQLite under
  ``./var/demo`` (:mod:`lis_gateway.demo_setup` writes its configuration);
* three simulated analyzers: chemistry over ASTM on a serial line (a
  pseudo-terminal), haematology over ASTM on TCP, blood counts over HL7 on
  TCP (Mindray BC style);
* a simulated HIS that orders each sample before it is measured and receives
  the released results as ORU^R01, answering AA (:mod:`lis_gateway.his_sim`);
* the web app on http://127.0.0.1:8080, with the demo accounts printed.

Blood counts the rules pass are released at once (the demo's haematology
policy) and reach the HIS within seconds; chemistry waits for a technician
and a doctor in the web app, as Vietnamese two-step validation wants; held
results show why. Ctrl-C (or SIGTERM, or ``--duration``) stops everything.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import structlog
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IListeningPort

import drivers
from lis_gateway import logconfig
from lis_gateway.adapters.tcp import LinkServerService, make_client_service
from lis_gateway.config import ConfigError, load_config
from lis_gateway.demo_lab import Bench, DemoLab, InstrumentSide, astm_sender, hl7_sender
from lis_gateway.demo_setup import (
    ACCOUNTS,
    BLOOD_COUNT,
    CHEMISTRY,
    DEMO_PASSWORD,
    HAEMATOLOGY,
    DemoPorts,
    config_text,
    ensure_accounts,
    prepare,
)
from lis_gateway.his_sim import AnswerPlan, HisReceiverFactory, OrderSender
from lis_gateway.hl7_sim import blood_count_message
from lis_gateway.ingest import load_tables
from lis_gateway.order_intake import ORDER_LINK_NAME
from lis_gateway.outbound.sender import HisClient
from lis_gateway.simulator import FdTransport, Pty, chemistry_message, haematology_message, open_pty

HOST = "127.0.0.1"
DEFAULT_STATE = Path("var/demo")
DEFAULT_INTERVAL = 4.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``demo`` options."""
    defaults = DemoPorts()
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE,
                        help=f"database, configuration and recordings (default {DEFAULT_STATE})")
    parser.add_argument("--web-port", type=int, default=defaults.web,
                        help=f"the web app's port (default {defaults.web}; 0: any)")
    parser.add_argument("--astm-port", type=int, default=defaults.astm_tcp,
                        help=f"the ASTM/TCP analyzer's port (default {defaults.astm_tcp})")
    parser.add_argument("--hl7-port", type=int, default=defaults.hl7_tcp,
                        help=f"the HL7/TCP analyzer's port (default {defaults.hl7_tcp})")
    parser.add_argument("--orders-port", type=int, default=defaults.orders,
                        help=f"the gateway's order listener (default {defaults.orders})")
    parser.add_argument("--his-port", type=int, default=defaults.his,
                        help=f"where the simulated HIS receives results (default {defaults.his})")
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL, metavar="SECONDS",
                        help=f"seconds between samples (default {DEFAULT_INTERVAL})")
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="stop after this many seconds (default: until Ctrl-C)")


def run_demo(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Set up under ``--state-dir`` and run until stopped; see the module docstring.

    Returns:
        0 after a clean stop; 1 when a port is taken or the database fails;
        2 when the written configuration is refused (a bug: it is printed).
    """
    from twisted.internet import reactor as global_reactor
    from twisted.internet.error import CannotListenError

    from lis_gateway.service import WEB_SERVICE, run_gateway
    from lis_gateway.store.engine import make_engine
    from lis_gateway.store.migrations import migrate

    reactor: Any = global_reactor
    fmt = getattr(args, "log_format", None) or "console"
    logconfig.configure(json=fmt == "json", level=getattr(args, "log_level", None) or "warning")
    logconfig.forward_twisted_logs()
    state = Path(args.state_dir)
    prepare(state)

    def utcnow() -> datetime:
        return datetime.fromtimestamp(reactor.seconds(), UTC)

    lab_box: list[DemoLab] = []
    his = HisReceiverFactory(AnswerPlan(), reactor, utcnow,
                             lambda item: lab_box[0].his_received(item) if lab_box else None)
    his.noisy = False
    try:
        his_port = reactor.listenTCP(args.his_port, his, interface=HOST)
    except CannotListenError as exc:
        print(f"demo: the simulated HIS cannot listen on {HOST}:{args.his_port}: "
              f"{exc.socketError} (try --his-port)", file=sys.stderr)
        return 1
    pty = open_pty()
    try:
        ports = DemoPorts(web=args.web_port, astm_tcp=args.astm_port, hl7_tcp=args.hl7_port,
                          orders=args.orders_port, his=his_port.getHost().port)
        path = state / "lis-gateway.toml"
        path.write_text(config_text(state, pty.path, ports, HOST), "utf-8")
        try:
            config = load_config(path)
        except ConfigError as exc:
            print(f"demo: the written configuration was refused (a bug):\n{exc}",
                  file=sys.stderr)
            return 2
        engine = make_engine(config.database_url)
        try:
            migrate(config.database_url, engine=engine)
            with engine.begin() as conn:
                created = ensure_accounts(conn, utcnow())
        finally:
            engine.dispose()
        tables = load_tables((link.driver for link in config.links()),
                             config.mapping_directories)
        starter = _Starter(state, pty, tables, utcnow, out, args.interval, lab_box,
                           first_run=bool(created))
        if args.duration is not None:
            reactor.callLater(args.duration, reactor.stop)

        def on_running(root: MultiService, reactor: Any) -> Deferred[Any]:
            return starter.start(root, reactor, WEB_SERVICE)

        return run_gateway(config, on_running=on_running)
    finally:
        his_port.stopListening()
        pty.close()


class _Starter:
    """Once the gateway runs: find its ports, print the banner, start the laboratory."""

    def __init__(self, state: Path, pty: Pty, tables: dict[str, Any], utcnow: Any,
                 out: TextIO, interval: float, lab_box: list[DemoLab], *,
                 first_run: bool) -> None:
        self.state, self.pty, self.tables, self.utcnow = state, pty, tables, utcnow
        self.out, self.interval, self.lab_box, self.first_run = out, interval, lab_box, first_run
        self.fd_transport: FdTransport | None = None

    def start(self, root: MultiService, reactor: Any, web_name: str) -> Deferred[Any]:
        names = (HAEMATOLOGY, BLOOD_COUNT, ORDER_LINK_NAME, web_name)
        services = [root.getServiceNamed(n) for n in names]
        if not all(isinstance(s, LinkServerService) for s in services):
            raise TypeError("a demo service is not a TCP server")
        listening = [s.when_listening() for s in services if isinstance(s, LinkServerService)]

        def ports_known(found: list[IListeningPort]) -> None:
            heme, hl7, orders, web = (getattr(p.getHost(), "port", 0) for p in found)
            self.banner(web, heme, hl7, orders)
            self.connect(root, reactor, heme, hl7, orders)

        return gatherResults(listening, consumeErrors=True).addCallback(ports_known)

    def banner(self, web: int, heme: int, hl7: int, orders: int) -> None:
        lines = [
            "",
            "lis-gateway demo: the gateway, three simulated analyzers and a simulated HIS",
            f"  web app:        http://{HOST}:{web}/   (Vietnamese; English in the header)",
            "  accounts:       " + ", ".join(f"{a.username} ({'/'.join(a.roles)})"
                                             for a in ACCOUNTS),
            f"  password:       {DEMO_PASSWORD}   (every demo account)",
            f"  analyzers:      {CHEMISTRY} on {self.pty.path} (ASTM, serial), "
            f"{HAEMATOLOGY} on {HOST}:{heme} (ASTM/TCP), {BLOOD_COUNT} on {HOST}:{hl7} "
            "(HL7/TCP)",
            f"  HIS:            orders to {HOST}:{orders}; results (ORU^R01) to the simulated HIS",
            f"  files:          {self.state}/ (lis.db, lis-gateway.toml, wire/)",
            f"  metrics:        http://{HOST}:{web}/metrics   health: /healthz /readyz",
            "  Blood counts the rules pass go to the HIS at once; chemistry waits for",
            "  a technician (ktv) and a doctor (bacsi) in the web app. Ctrl-C stops.",
            "",
        ]
        if not self.first_run:
            lines.insert(-1, "  (accounts and results kept from the last run; delete the "
                             "state directory to start afresh)")
        print("\n".join(lines), file=self.out, flush=True)

    def connect(self, root: MultiService, reactor: Any, heme: int, hl7: int, orders: int) -> None:
        log = structlog.get_logger("lis_gateway.demo")
        chem_side = InstrumentSide("sim-chemistry", reactor, log)
        self.fd_transport = FdTransport(self.pty.master, chem_side.build_protocol(), reactor)
        heme_side = InstrumentSide("sim-haematology", reactor, log)
        heme_client = make_client_service(HostnameEndpoint(reactor, HOST, heme, timeout=5),
                                          heme_side.build_protocol, reactor)
        heme_client.setName("sim-haematology")
        heme_client.setServiceParent(root)
        hl7_client = HisClient(HostnameEndpoint(reactor, HOST, hl7, timeout=5), reactor)
        hl7_client.setName("sim-blood-count")
        hl7_client.setServiceParent(root)
        order_client = HisClient(HostnameEndpoint(reactor, HOST, orders, timeout=5), reactor)
        order_client.setName("sim-his-orders")
        order_client.setServiceParent(root)
        generic, mindray = drivers.get("generic-astm"), drivers.get("mindray-bc")
        benches = [
            Bench(CHEMISTRY, generic, self.tables.get(generic.table_name), chemistry_message,
                  astm_sender(chem_side)),
            Bench(HAEMATOLOGY, generic, self.tables.get(generic.table_name),
                  haematology_message, astm_sender(heme_side)),
            Bench(BLOOD_COUNT, mindray, self.tables.get(mindray.table_name),
                  blood_count_message, hl7_sender(hl7_client)),
        ]
        lab = DemoLab(reactor, self.utcnow, OrderSender(order_client, self.utcnow), benches,
                      self.out, interval=self.interval,
                      first_seq=1 + int(reactor.seconds()) // 10 % 100_000 * 3)
        self.lab_box.append(lab)
        reactor.addSystemEventTrigger("before", "shutdown", self.stop)
        reactor.callLater(1.0, lab.start)  # the TCP simulators connect meanwhile

    def stop(self) -> None:
        for lab in self.lab_box:
            lab.stop()
        if self.fd_transport is not None:
            self.fd_transport.stop()
            self.fd_transport = None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lis_gateway.demo``."""
    parser = argparse.ArgumentParser(prog="lis_gateway.demo", description=__doc__)
    add_arguments(parser)
    return run_demo(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
