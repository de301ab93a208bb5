"""``lis-gateway receive``: run analyzer links and print every result as JSON.

One JSON object per result on the output stream::

    {"link": "tcp", "sample_id": "C240001", "test": "GLU", "value": "5.4", ...}

Status lines (``lis-gateway: tcp listening on 127.0.0.1:4001``) go to
standard error, next to the logs, so standard output stays machine-readable.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import structlog
from structlog.typing import FilteringBoundLogger
from twisted.application.internet import ClientService
from twisted.application.service import MultiService
from twisted.internet.defer import CancelledError, Deferred, gatherResults
from twisted.internet.interfaces import IListeningPort
from twisted.python.failure import Failure

import drivers
from drivers import DriverSpec
from drivers.extract import ResultRow, extract_hl7_results, extract_results
from lis_gateway import service
from lis_gateway.adapters.serial import SerialSupervisor
from lis_gateway.adapters.tcp import LinkServerService
from lis_gateway.astm.assembler import AstmMessage, IncompleteTransmission
from lis_gateway.astm.events import AbortReason
from lis_gateway.au_online import AuMessage
from lis_gateway.hl7.message import Hl7Message
from lis_gateway.service import LinkSpec


class ResultPrinter:
    """A sink printing one JSON line per result, and optionally a summary per message.

    Args:
        link: the link name written into every row.
        driver: extracts sample ids and test codes.
        out: the text stream rows go to (flushed after each message).
        summary: also print one ``# ...`` line per message for humans.
    """

    def __init__(self, link: str, driver: DriverSpec, out: TextIO, *, summary: bool = False,
                 log: FilteringBoundLogger | None = None) -> None:
        self.link = link
        self._driver = driver
        self._out = out
        self._summary = summary
        self._log: FilteringBoundLogger = (
            log if log is not None
            else structlog.get_logger("lis_gateway.receive").bind(analyzer=link))

    def message_received(self, msg: AstmMessage | Hl7Message | AuMessage
                         ) -> Deferred[object] | None:
        """Print the message's results (the frame or message is ACKed right after)."""
        problems: Sequence[object] = () if isinstance(msg, AuMessage) else msg.problems
        if isinstance(msg, AuMessage):  # a Beckman AU text: the driver's own decoder reads it
            decoded = (self._driver.custom_decoder(msg.raw)
                       if self._driver.custom_decoder is not None else None)
            rows = list(decoded.rows) if decoded is not None else []
            problems = decoded.problems if decoded is not None else ("no decoder",)
        elif isinstance(msg, Hl7Message):
            rows = extract_hl7_results(msg, self._driver)
        else:
            rows = extract_results(msg, self._driver)
        for row in rows:
            self._out.write(json.dumps({"link": self.link, **row.to_dict()},
                                       ensure_ascii=False) + "\n")
        if self._summary:
            self._out.write(summary_line(self.link, msg, rows, len(problems)) + "\n")
        self._out.flush()
        return None

    def incomplete(self, item: IncompleteTransmission) -> None:
        """Incomplete text has no results; the wire recording keeps it."""
        self._log.warning("incomplete-not-printed", offset=item.offset, length=len(item.raw))

    def message_sent(self, message: bytes) -> None:
        """Nothing is sent by ``receive``."""
        self._log.info("message-sent", length=len(message))

    def send_failed(self, messages: tuple[bytes, ...], reason: AbortReason) -> None:
        """Nothing is sent by ``receive``."""
        self._log.warning("send-failed", messages=len(messages), reason=reason.value)


def summary_line(link: str, msg: AstmMessage | Hl7Message | AuMessage,
                 rows: Sequence[ResultRow], problems: int) -> str:
    """One human line per message: link, samples, result count, tests, problems."""
    samples = ", ".join(dict.fromkeys(r.sample_id for r in rows)) or "no sample id"
    tests = " ".join(r.test for r in rows)
    ended = ", no L record" if isinstance(msg, AstmMessage) and not msg.terminated else ""
    return (f"# {link}: {len(rows)} results for {samples} [{tests}] "
            f"({problems} problems{ended})")


def host_port(text: str) -> tuple[str, int]:
    """Parse ``HOST:PORT`` (``[::1]:4001`` for IPv6) for argparse.

    Raises:
        argparse.ArgumentTypeError: not HOST:PORT with a port from 0 to 65535.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # ":4001" listens on all interfaces


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``receive`` options to ``parser`` (for the CLI's subcommand)."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp-listen", type=host_port, metavar="HOST:PORT",
                       help="listen for the analyzer (port 0: any free port)")
    where.add_argument("--tcp-connect", type=host_port, metavar="HOST:PORT",
                       help="connect to the analyzer, reconnecting with back-off")
    where.add_argument("--serial", metavar="DEVICE", help="serial device of the analyzer")
    parser.add_argument("--baud", type=int, default=None,
                        help="serial baud rate (default: the driver's)")
    parser.add_argument("--driver", default="generic-astm", help="analyzer driver name")
    parser.add_argument("--record-dir", type=Path, default=None,
                        help="write wire recordings of every connection here")
    parser.add_argument("--name", default=None, help="link name in rows and logs")


def links_from_args(args: argparse.Namespace) -> list[LinkSpec]:
    """The one link described by the ``receive`` options.

    ``args.driver`` may be a driver name or a :class:`DriverSpec`.

    Raises:
        KeyError: unknown driver name (the message lists the known ones).
    """
    driver = args.driver if isinstance(args.driver, DriverSpec) else drivers.get(args.driver)
    record_dir = args.record_dir
    if args.tcp_listen is not None:
        host, port = args.tcp_listen
        return [LinkSpec(args.name or "tcp", driver, "tcp-server", host=host, port=port,
                         record_dir=record_dir)]
    if args.tcp_connect is not None:
        host, port = args.tcp_connect
        return [LinkSpec(args.name or "tcp", driver, "tcp-client", host=host, port=port,
                         record_dir=record_dir)]
    return [LinkSpec(args.name or "serial", driver, "serial", device=args.serial,
                     baudrate=args.baud, record_dir=record_dir)]


def run_receive(links: list[LinkSpec], json_out: TextIO, *, duration: float | None = None,
                status_out: TextIO | None = None) -> int:
    """Run ``links`` on the reactor until Ctrl-C / SIGTERM, printing result rows.

    Configure logging first (:func:`lis_gateway.logconfig.configure`).

    Args:
        links: the links to receive from.
        json_out: where result rows go (one JSON object per line).
        duration: stop by itself after this many seconds.
        status_out: where status lines go (standard error when None).

    Returns:
        0 after a clean stop, 1 if a link could not start (e.g. port in use).
    """
    status = status_out or sys.stderr

    def sink_for(link: LinkSpec) -> ResultPrinter:
        return ResultPrinter(link.name, link.driver, json_out)

    def on_running(root: MultiService, _reactor: Any) -> Deferred[Any] | None:
        return announce(root, links, status)

    return service.run(links, sink_for, duration=duration, on_running=on_running)


def announce(root: MultiService, links: Sequence[LinkSpec], status: TextIO
              ) -> Deferred[Any] | None:
    """Print a status line when each link is ready; fail if a server cannot listen."""
    def say(text: str) -> None:
        print(f"lis-gateway: {text}", file=status, flush=True)

    def stopped(failure: Failure) -> None:
        failure.trap(CancelledError)  # the service stopped before the link came up

    listening: list[Deferred[Any]] = []
    for link in links:
        child = root.getServiceNamed(link.name)
        if isinstance(child, LinkServerService):
            def listen(port: IListeningPort, name: str = link.name) -> None:
                address = port.getHost()
                say(f"{name} listening on {getattr(address, 'host', '?')}:"
                    f"{getattr(address, 'port', '?')}")
            listening.append(child.when_listening().addCallback(listen))
        elif isinstance(child, SerialSupervisor):
            child.when_opened().addCallbacks(
                lambda _p, n=link.name, dev=child.device: say(f"{n} opened {dev}"), stopped)
        elif isinstance(child, ClientService):
            child.whenConnected().addCallbacks(
                lambda _p, n=link.name, lk=link: say(f"{n} connected to {lk.host}:{lk.port}"),
                stopped)
    try:
        web = root.getServiceNamed("web")  # service.WEB_SERVICE
    except KeyError:
        web = None
    if isinstance(web, LinkServerService):
        def web_up(port: IListeningPort) -> None:
            address = port.getHost()
            say(f"web listening on {getattr(address, 'host', '?')}:"
                f"{getattr(address, 'port', '?')}")
        listening.append(web.when_listening().addCallback(web_up))
    return gatherResults(listening, consumeErrors=True) if listening else None
