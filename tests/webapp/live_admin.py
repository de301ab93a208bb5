"""A live web app with its administration pages wired, and a real analyzer link beside it.

Like :func:`tests.webapp.live.start_live` (loopback TCP, a real SQLite store,
the app's own ``task.Clock``), plus what ``run_gateway`` gives the
administration pages: a links' status board, a wire-recording directory,
live mapping tables with a site mapping directory, the drivers, the rules
and the destinations. An ASTM analyzer link ``chem1`` (Roche cobas, TCP
server on 127.0.0.1, an ephemeral port) runs on the same reactor with the
gateway's own pieces: the store sink asks the live tables at every message
and tells the board, and every connection is recorded to files and to the
board. :func:`send_astm` plays the analyzer over a real socket.

The site's roche-cobas table is the shipped one (``mappings/``) without the
row of ALT (code 685) and its reference ranges, so the ALT result of :data:`ALT_MESSAGE` is held as
not mapped until someone adds the row.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.task import Clock

import drivers
from lis_gateway.autoverify import Autoverification
from lis_gateway.ingest import StoreSink
from lis_gateway.lifecycle import Policy
from lis_gateway.link_status import LinkStatusBoard, declare_links, status_recorder
from lis_gateway.linkspec import LinkSpec
from lis_gateway.mapping import load_table
from lis_gateway.mapping_files import LiveTables
from lis_gateway.rules_file import load_rules
from lis_gateway.service import make_service
from lis_gateway.store.engine import make_engine
from lis_gateway.store.migrations import migrate
from lis_gateway.store.pool import DbPool
from lis_gateway.web.site import build_site
from lis_gateway.webapp import webapp_resource
from lis_gateway.webapp.admin import AdminSetup, MappingSetup

from ..integration._harness import send_as_instrument, socket_reader
from .live import START, Live, on_reactor, reactor

SHIPPED = Path(__file__).resolve().parents[2] / "mappings"
SPEC = drivers.get("roche-cobas")
#: Mapping problems always hold; ALT must lie in 5..40 U/L to be autoverified.
RULES_TEXT = """
version = "admin-test-1"
[[rules]]
id = "always"
kind = "always-hold"
[[rules]]
id = "crit"
kind = "critical"
[[rules]]
id = "alt-limits"
kind = "limits"
tests = ["ALT"]
low = 5
high = 40
"""
RULES = load_rules(RULES_TEXT)
#: One result of ALT (analyzer code 685) = 35 U/L for sample ``sample``.
ALT_MESSAGE = (b"H|\\^&|||c311^1\rP|1\rO|1|{sample}||^^^685\r"
               b"R|1|^^^685/|35|U/L||N||F||||20261122075900|P1\rL|1|N\r")


def alt_message(sample: str) -> bytes:
    """The ALT message for one barcode."""
    return ALT_MESSAGE.replace(b"{sample}", sample.encode())


@dataclass
class AdminLive:
    """The web app with its administration pages, and the analyzer link ``chem1``."""

    live: Live
    board: LinkStatusBoard
    tables: LiveTables
    site: Path
    record_dir: Path
    link_port: int
    links: MultiService

    @property
    def url(self) -> str:
        """The web app's base URL."""
        return self.live.url


def site_table_without_alt(site: Path) -> None:
    """The shipped roche-cobas table and ranges in ``site``, ALT (code 685) left out."""
    site.mkdir(parents=True, exist_ok=True)
    lines = (SHIPPED / "roche-cobas.csv").read_bytes().splitlines(keepends=True)
    (site / "roche-cobas.csv").write_bytes(b"".join(
        line for line in lines if not line.startswith(b"685,")))
    ranges = (SHIPPED / "roche-cobas.ranges.csv").read_bytes().splitlines(keepends=True)
    (site / "roche-cobas.ranges.csv").write_bytes(b"".join(
        line for line in ranges if not line.startswith(b"ALT,")))


@contextmanager
def start_app(tmp: Path, admin: Callable[[DbPool], AdminSetup], *,
              policy: Policy | None = None) -> Iterator[Live]:
    """Like :func:`tests.webapp.live.start_live`, with the administration pages given
    ``admin(pool)``; stopped when the ``with`` block ends."""
    url = f"sqlite:///{tmp / 'lis.db'}"
    engine = make_engine(url)
    migrate(url, engine=engine)
    clock = Clock()
    clock.advance(START.timestamp())
    the_reactor = reactor()
    pool = DbPool(make_engine(url), the_reactor)
    pool.start()
    app = webapp_resource(pool, clock, policy or Policy(), secure_cookies=False,
                          admin=admin(pool))
    port = on_reactor(the_reactor.listenTCP, 0, build_site(app=app), interface="127.0.0.1")
    try:
        yield Live(f"http://127.0.0.1:{port.getHost().port}", engine, clock, pool, port)
    finally:
        on_reactor(port.stopListening)
        pool.stop()
        engine.dispose()


@contextmanager
def start_admin_live(tmp: Path, *, destinations: tuple[str, ...] = ("his",),
                     site_table: bool = True) -> Iterator[AdminLive]:
    """Start the app and the link on a fresh store; stop both when the ``with`` block ends.

    Args:
        destinations: the configured destination names.
        site_table: put the table without ALT in the site directory (else the site
            directory starts empty and the shipped table, with ALT, is in use).
    """
    site, record_dir = tmp / "site-mappings", tmp / "wire"
    if site_table:
        site_table_without_alt(site)
    else:
        site.mkdir()
    directories = [site, SHIPPED]
    tables = LiveTables({SPEC.table_name: load_table(directories, SPEC.table_name)},
                        directories, [site])
    link = LinkSpec("chem1", SPEC, "tcp-server", host="127.0.0.1", port=0,
                    record_dir=record_dir)
    board = declare_links(LinkStatusBoard(), [link])
    pools: list[DbPool] = []

    def admin(pool: DbPool) -> AdminSetup:
        pools.append(pool)
        return AdminSetup(status=board, record_dir=record_dir,
                          encodings={link.name: SPEC.encoding},
                          mapping=MappingSetup(tables, {link.name: SPEC}, RULES,
                                               {link.name: False}),
                          destinations=destinations)

    def sink(spec: LinkSpec) -> StoreSink:
        return StoreSink(spec.name, spec.driver, spec.transport, None, pools[0],
                         autoverification=Autoverification(RULES, Policy()),
                         current_table=lambda: tables.get(SPEC.table_name), status=board)

    with start_app(tmp, admin) as live:
        the_reactor = reactor()
        links = make_service([link], the_reactor, sink,
                             recorders=lambda spec, _session: status_recorder(board, spec))
        on_reactor(links.startService)
        try:
            server: Any = links.getServiceNamed("chem1")
            link_port = on_reactor(server.when_listening).getHost().port
            yield AdminLive(live, board, tables, site, record_dir, link_port, links)
        finally:
            on_reactor(links.stopService)


def send_astm(port: int, *messages: bytes) -> bytes:
    """Play the analyzer: connect, send the messages (E1381, waiting for each ACK), close.

    Returns:
        Every byte sent.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        return send_as_instrument(list(messages), sock.sendall, socket_reader(sock))


def send_raw(port: int, data: bytes, *, expect: int) -> bytes:
    """Connect, send ``data`` and read until ``expect`` bytes came back (or 10 s passed)."""
    got = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        while len(got) < expect:
            chunk = sock.recv(4096)
            if not chunk:
                break
            got += chunk
    return got
