"""Composition root: analyzer links -> Twisted services.

:func:`make_service` is shaped like ``twisted/web/tap.py``'s ``makeService``
so a ``twistd`` plugin can be added later without refactoring. This is the
only module that imports the global reactor (in :func:`run` and
:func:`run_gateway`, which also makes the database engine) and, with the
CLI, the configuration and the ingest sink, the only one that imports
:mod:`drivers`: each link is wired to its ``DriverSpec`` here.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import structlog
from structlog.typing import FilteringBoundLogger
from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred, FirstError, maybeDeferred
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
)
from twisted.internet.error import ReactorNotRunning
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from drivers import Framing
from drivers import Protocol as DriverProtocol
from lis_gateway.adapters.astm_protocol import (
    AstmLinkProtocol,
    BareRecordProtocol,
    LinkPresence,
)
from lis_gateway.adapters.au_protocol import AuSink, au_protocol_factory
from lis_gateway.adapters.mllp_protocol import analyzer_protocol_factory
from lis_gateway.adapters.serial import SerialSupervisor
from lis_gateway.adapters.sink import NO_ORDERS, OrderSource, Sink
from lis_gateway.adapters.tcp import (
    LinkFactory,
    LinkServerService,
    ProtocolBuilder,
    make_client_service,
)
from lis_gateway.linkspec import DestinationSpec, LinkSpec
from lis_gateway.wire import Recorder, TeeRecorder, open_recorder

if TYPE_CHECKING:
    from lis_gateway.config import GatewayConfig
    from lis_gateway.ingest import RunsWork
    from lis_gateway.link_status import LinkStatusBoard
    from lis_gateway.mapping import MappingTable
    from lis_gateway.mapping_files import LiveTables
    from lis_gateway.order_download import PushTarget
    from lis_gateway.outbound.wakeup import ReleaseSignal

#: Seconds to wait for an outgoing TCP connection before counting it failed.
CONNECT_TIMEOUT = 10.0

#: Gives a link's connection (link, session number) a recorder besides the files.
RecorderFactory = Callable[[LinkSpec, str], Recorder | None]


def make_service(links: Sequence[LinkSpec], reactor: Any,
                 sink_factory: Callable[[LinkSpec], Sink],
                 recorders: RecorderFactory | None = None,
                 order_sources: Callable[[LinkSpec], OrderSource] | None = None,
                 presences: Mapping[str, LinkPresence] | None = None
                 ) -> MultiService:
    """Build one child service per link, named after the link.

    Args:
        links: the configured links (names must be unique).
        reactor: provides IReactorTCP, IReactorTime and IReactorFDSet.
        sink_factory: gives each link the sink its messages go to.
        recorders: gives each connection a recorder (the store) besides the files.
        order_sources: gives each HL7 link where its host queries look up orders
            (None: every query is answered "not found").
        presences: per link name, told when an ASTM connection of it is up or gone
            (what pushes downloads to the analyzer).

    Returns:
        A ``MultiService``; ``getServiceNamed(link.name)`` returns a
        :class:`LinkServerService`, a ``ClientService`` or a
        :class:`SerialSupervisor`.
    """
    root = MultiService()
    for link in links:
        orders = order_sources(link) if order_sources is not None else NO_ORDERS
        child = _link_service(link, reactor, sink_factory(link), recorders, orders,
                              (presences or {}).get(link.name))
        child.setName(link.name)
        child.setServiceParent(root)
    return root


def _link_service(link: LinkSpec, reactor: Any, sink: Sink,
                  recorders: RecorderFactory | None = None,
                  orders: OrderSource = NO_ORDERS,
                  presence: LinkPresence | None = None) -> IService:
    log: FilteringBoundLogger = structlog.get_logger("lis_gateway.link").bind(
        analyzer=link.name, transport=link.transport)
    build = _protocol_builder(link, reactor, sink, log, recorders, orders, presence)
    if link.transport == "tcp-server":
        endpoint_type = TCP6ServerEndpoint if ":" in link.host else TCP4ServerEndpoint
        endpoint = endpoint_type(reactor, link.port, interface=link.host)
        return LinkServerService(endpoint, LinkFactory(build, log), log)
    if link.transport == "tcp-client":
        client = HostnameEndpoint(reactor, link.host, link.port, timeout=CONNECT_TIMEOUT)
        return make_client_service(client, build, reactor, log=log)
    s = link.serial_settings()
    return SerialSupervisor(build, link.device, reactor, reactor, baudrate=s.baudrate,
                            bytesize=s.bytesize, parity=s.parity, stopbits=s.stopbits, log=log)


def _protocol_builder(link: LinkSpec, reactor: Any, sink: Sink,
                      log: FilteringBoundLogger,
                      recorders: RecorderFactory | None = None,
                      orders: OrderSource = NO_ORDERS,
                      presence: LinkPresence | None = None) -> ProtocolBuilder:
    """A function building the protocol (and recorder) of one connection of ``link``."""
    driver = link.driver
    hl7 = (analyzer_protocol_factory(driver, reactor, sink, orders)
           if driver.protocol is DriverProtocol.HL7 else None)
    # Framing.CUSTOM is the Beckman AU online protocol. Its sinks (StoreSink, the
    # printer of ``receive``) take AuMessage too; the Sink protocol names the ASTM and
    # HL7 messages only, so that every ASTM-only sink need not widen for it.
    au = (au_protocol_factory(driver, reactor, cast("AuSink", sink), link.name)
          if driver.framing is Framing.CUSTOM else None)

    def build(session: str) -> Protocol:
        session_log = log.bind(session=session)
        recorder: Recorder | None = None
        if link.record_dir is not None:
            try:
                recorder = open_recorder(link.record_dir, link.name, reactor.seconds())
            except OSError as exc:
                # Results still flow (the store keeps each message's raw bytes);
                # refusing the analyzer would lose more than the recording.
                session_log.error("recording-unavailable", error=exc.strerror,
                                  directory=str(link.record_dir))
        extra = recorders(link, session) if recorders is not None else None
        if extra is not None:
            recorder = extra if recorder is None else TeeRecorder(recorder, extra)
        if hl7 is not None:
            return hl7(recorder, session_log)
        if au is not None:
            return au(recorder, session_log)
        if driver.framing is Framing.BARE:
            return BareRecordProtocol(reactor, driver.encoding, sink, recorder, session_log)
        return AstmLinkProtocol(driver.link_config(), reactor, driver.encoding, sink,
                                recorder, session_log,
                                orders=None if orders is NO_ORDERS else orders,
                                presence=presence, analyzer=link.name,
                                reply_style=driver.astm_reply, timezone=driver.timezone)

    return build


def run(links: Sequence[LinkSpec], sink_factory: Callable[[LinkSpec], Sink], *,
        duration: float | None = None,
        on_running: Callable[[MultiService, Any], Deferred[Any] | None] | None = None,
        after_stop: Callable[[], object] | None = None,
        recorders: RecorderFactory | None = None,
        extra_services: Callable[[Any], Sequence[IService]] | None = None,
        order_sources: Callable[[LinkSpec], OrderSource] | None = None,
        presences: Mapping[str, LinkPresence] | None = None,
        ) -> int:
    """Run the links on the global reactor until stopped (Ctrl-C, SIGTERM, ``duration``).

    Args:
        links: the links to run.
        sink_factory: gives each link its sink.
        duration: stop by itself after this many seconds (None: run until stopped).
        on_running: called with the started service and the reactor; a failure
            of what it returns stops the gateway with exit status 1.
        after_stop: called once the links have stopped and the reactor shuts
            down (e.g. to stop the database pool).
        recorders: gives each connection a recorder besides the files (the store).
        extra_services: given the reactor, services started and stopped with the
            links (the outbox workers).
        order_sources, presences: as for :func:`make_service`.

    Returns:
        The exit status: 0 after a clean stop, 1 if starting failed.
    """
    from twisted.internet import reactor as global_reactor  # the one place it is used

    reactor: Any = global_reactor  # PosixReactorBase; typed as IReactorCore only

    log: FilteringBoundLogger = structlog.get_logger("lis_gateway.service")
    root = make_service(links, reactor, sink_factory, recorders, order_sources, presences)
    for service in extra_services(reactor) if extra_services is not None else ():
        service.setServiceParent(root)
    status = [0]

    def stop_reactor() -> None:
        try:
            reactor.stop()
        except ReactorNotRunning:
            log.debug("already-stopping")

    def failed(failure: Failure) -> None:
        if isinstance(failure.value, FirstError):
            failure = failure.value.subFailure
        log.error("start-failed", error=failure.getErrorMessage())
        status[0] = 1
        stop_reactor()

    def start() -> Deferred[Any] | None:
        root.startService()
        if duration is not None:
            reactor.callLater(duration, stop_reactor)
        return on_running(root, reactor) if on_running is not None else None

    def stop() -> Deferred[Any] | None:
        log.info("stopping")
        return root.stopService() if root.running else None

    reactor.callWhenRunning(lambda: maybeDeferred(start).addErrback(failed))
    reactor.addSystemEventTrigger("before", "shutdown", stop)
    if after_stop is not None:
        reactor.addSystemEventTrigger("after", "shutdown", after_stop)
    _install_stop_signals(lambda: reactor.callFromThread(stop_reactor))
    reactor.run(installSignalHandlers=False)
    return status[0]


def _install_stop_signals(request_stop: Callable[[], None]) -> None:
    """Stop on SIGINT and SIGTERM without logging inside the signal handler.

    Twisted's own handlers log "Received SIGTERM" from the handler; with the
    log line writer holding its (non-reentrant) lock in the interrupted code,
    that deadlocks and the process never stops. These handlers only hand the
    stop to the reactor thread (``callFromThread`` is safe from a handler).
    """
    def handler(_number: int, _frame: object) -> None:
        request_stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


#: The name of the HTTP side's service (status lines say "web listening on ...").
WEB_SERVICE = "web"


def destination_service(destination: DestinationSpec, pool: RunsWork, reactor: Any,
                        released: ReleaseSignal | None = None) -> IService:
    """The outbox worker of one ``[[destinations]]`` entry (woken by ``released``)."""
    from lis_gateway.outbound.delivery import Backoff
    from lis_gateway.outbound.destinations import make_channel
    from lis_gateway.outbound.worker import OutboxWorker

    log = structlog.get_logger("lis_gateway.outbox").bind(destination=destination.name)
    backoff = Backoff(first=destination.retry_first, cap=destination.retry_cap)
    worker = OutboxWorker(destination.name, pool, make_channel(destination, reactor, log),
                          reactor, backoff=backoff, log=log)
    if released is not None:
        released.subscribe(worker.wake)
    worker.setName(f"outbox:{destination.name}")
    return worker


def push_targets(links: Sequence[LinkSpec], tables: Mapping[str, MappingTable | None]
                 ) -> list[PushTarget]:
    """The links with ``order_download = true``, with the codes their tables map."""
    from lis_gateway.order_download import PushTarget
    from lis_gateway.order_lookup import analyzer_codes

    return [PushTarget(link.name, {local: code for local, (code, _name) in analyzer_codes(
                tables.get(link.driver.table_name)).items()}, link.driver.encoding,
                       link.driver.timezone)
            for link in links if link.order_download]


def download_service(targets: Sequence[PushTarget], pool: RunsWork, reactor: Any) -> IService:
    """Pushes the downloads queue to the analyzers that take it (and settles the rest)."""
    from lis_gateway.order_download import DownloadService

    service = DownloadService(targets, pool, reactor)
    service.setName("downloads")
    return service


def web_service(config: GatewayConfig, pool: RunsWork, reactor: Any,
                tables: Iterable[MappingTable] = (),
                download_to: Mapping[str, frozenset[str]] | None = None,
                listening: Sequence[tuple[str, Callable[[], bool]]] = (), *,
                status: LinkStatusBoard | None = None,
                live_tables: LiveTables | None = None,
                on_release: Callable[[], None] | None = None) -> IService:
    """The HTTP side (``[web] listen``): the validation web app, health, metrics,
    readiness (``listening``: each server link's name and whether it listens) and,
    with a token, the HIS's API. ``status`` (the links' board) and ``live_tables``
    (the mapping tables in use) feed the administration pages; ``on_release`` is
    called after a person's action committed what may go to the destinations."""
    from twisted.internet.endpoints import TCP4ServerEndpoint

    from lis_gateway.adapters.tcp import LinkServerService
    from lis_gateway.export.xml4_build import indicators
    from lis_gateway.web.api_orders import OrdersResource
    from lis_gateway.web.api_xml4 import Xml4Resource
    from lis_gateway.web.health import Ready
    from lis_gateway.web.site import build_site
    from lis_gateway.webapp import webapp_resource
    from lis_gateway.webapp.admin import AdminSetup, MappingSetup

    assert config.web_listen is not None
    host, port = config.web_listen
    token, zone = config.orders_api_token, config.orders_time_zone
    orders = (OrdersResource(pool, token, zone=zone, download_to=download_to) if token
              else None)
    xml4 = Xml4Resource(pool, token, indicators(tables), zone=zone) if token else None
    has_orders = config.orders is not None or bool(config.orders_api_token)
    mapping = None if live_tables is None else MappingSetup(
        live_tables, {a.name: a.driver for a in config.analyzers}, config.rule_set,
        {a.name: has_orders and not a.unsolicited for a in config.analyzers})
    admin = AdminSetup(status=status, record_dir=config.record_dir,
                       encodings={a.name: a.driver.encoding for a in config.analyzers},
                       mapping=mapping, destinations=tuple(d.name for d in config.destinations))
    app = webapp_resource(pool, reactor, config.policy,
                          secure_cookies=config.web_secure_cookies, zone=zone, admin=admin,
                          on_release=on_release)
    log = structlog.get_logger("lis_gateway.web")
    service = LinkServerService(TCP4ServerEndpoint(reactor, port, interface=host),
                                build_site(orders, xml4, app=app,
                                           ready=Ready(pool, listening),
                                           trusted_proxies=config.web_trusted_proxies),
                                log=log)
    service.setName(WEB_SERVICE)
    return service


def run_gateway(config: GatewayConfig, *,
                on_running: Callable[[MultiService, Any], Deferred[Any] | None] | None = None,
                ) -> int:
    """``lis-gateway run``: every configured link stores what it receives.

    In order, and nothing starts if a step fails: load every mapping table the
    links need (a broken table is reported with its located problems),
    migrate the database, start the database pool, then run the links until
    SIGTERM or Ctrl-C; the pool finishes its queued work and stops last.

    Args:
        config: a checked configuration (:func:`lis_gateway.config.load_config`).
        on_running: as for :func:`run` (status lines, readiness).

    Returns:
        0 after a clean stop, 1 if the database or a link could not start, 2
        if a mapping table is broken.
    """
    from sqlalchemy.exc import SQLAlchemyError
    from twisted.internet import reactor as global_reactor

    from lis_gateway.autoverify import Autoverification
    from lis_gateway.config import SHIPPED_MAPPINGS
    from lis_gateway.hl7.datatypes import HierarchicDesignator
    from lis_gateway.ingest import StoreSink, load_tables
    from lis_gateway.link_status import LinkStatusBoard, declare_links, status_recorder
    from lis_gateway.mapping import MappingTableError
    from lis_gateway.mapping_files import LiveTables
    from lis_gateway.order_intake import OrderSink
    from lis_gateway.order_lookup import StoreOrderSource
    from lis_gateway.outbound.wakeup import ReleaseSignal
    from lis_gateway.state_gauge import StateGauge
    from lis_gateway.store.engine import make_engine
    from lis_gateway.store.migrations import migrate
    from lis_gateway.store.pool import DbPool, GroupCommit
    from lis_gateway.store.sections import sync_analyzer_sections
    from lis_gateway.wire_store import StoreRecorder

    log: FilteringBoundLogger = structlog.get_logger("lis_gateway.service")
    links = config.links()
    try:
        tables = load_tables((link.driver for link in links), config.mapping_directories)
    except MappingTableError as exc:
        for problem in exc.problems:
            log.error("mapping-table-error", problem=str(problem))
        return 2
    for link in links:
        if tables[link.driver.table_name] is None:
            log.warning("mapping-table-missing", analyzer=link.name,
                        table=link.driver.table_name,
                        directories=[str(d) for d in config.mapping_directories],
                        consequence="every result is stored as not mapped")
    engine = make_engine(config.database_url)
    try:
        migrate(config.database_url, engine=engine)
        with engine.begin() as conn:  # the analyzers' lab sections follow the configuration
            sync_analyzer_sections(conn, [(link.name, link.driver.name, link.section)
                                          for link in links],
                                   datetime.fromtimestamp(global_reactor.seconds(), UTC))
    except SQLAlchemyError as exc:
        engine.dispose()
        log.error("database-unavailable", error=str(exc.orig if hasattr(exc, "orig") else exc),
                  url=engine.url.render_as_string(hide_password=True))
        return 1
    reactor: Any = global_reactor  # PosixReactorBase; typed as IReactorCore only
    pool = DbPool(engine, reactor)
    messages = GroupCommit(pool, reactor)  # the links' messages: one fsync per group

    judging = Autoverification(config.rule_set, config.policy)
    released = ReleaseSignal()  # wakes the outbox workers after a release commits

    targets = push_targets(links, tables)
    download_to = {t.name: frozenset(t.codes) for t in targets}
    order_sink = OrderSink(pool, zone=config.orders_time_zone, download_to=download_to)
    has_orders = config.orders is not None or bool(config.orders_api_token)
    links_and_orders = [*links, *([config.orders] if config.orders is not None else [])]
    # the tables in use: a row fixed from the web app applies to the next message
    live = LiveTables(tables, config.mapping_directories,
                      [d for d in config.mapping_directories if d != SHIPPED_MAPPINGS])
    board = declare_links(LinkStatusBoard(), links_and_orders)

    def sink_for(link: LinkSpec) -> Sink:
        if link is config.orders:
            return order_sink
        needs_order = has_orders and not link.unsolicited
        name = link.driver.table_name
        return StoreSink(link.name, link.driver, link.transport, tables[name], pool,
                         autoverification=replace(judging, require_order=needs_order),
                         adopt_patients=link.unsolicited,
                         current_table=lambda: live.get(name), status=board,
                         on_release=released.notify, writer=messages)

    def recorder_for(link: LinkSpec, session: str) -> Recorder:
        return TeeRecorder(StoreRecorder(link.name, link.driver.name, link.transport, pool,
                                         reactor, peer=f"session {session}"),
                           status_recorder(board, link))

    hospital = (HierarchicDesignator(config.orders_hospital) if config.orders_hospital
                else None)

    def orders_for(link: LinkSpec) -> OrderSource:
        return StoreOrderSource(pool, tables.get(link.driver.table_name), hospital)

    started: list[MultiService] = []  # the root, once running (for readiness)

    def listens(name: str) -> Callable[[], bool]:
        def check() -> bool:
            service = started[0].getServiceNamed(name) if started else None
            return isinstance(service, LinkServerService) and service.listening
        return check

    listening = [(link.name, listens(link.name)) for link in links_and_orders
                 if link.transport == "tcp-server"]

    def outbox_workers(reactor: Any) -> list[IService]:
        services = [destination_service(d, pool, reactor, released)
                    for d in config.destinations]
        services.append(download_service(targets, pool, reactor))
        services.append(StateGauge(pool, reactor))
        if config.web_listen is not None:
            services.append(web_service(config, pool, reactor,
                                        [t for t in tables.values() if t is not None],
                                        download_to=download_to, listening=listening,
                                        status=board, live_tables=live,
                                        on_release=released.notify))
        return services

    def running(root: MultiService, reactor: Any) -> Deferred[Any] | None:
        started.append(root)
        return on_running(root, reactor) if on_running is not None else None

    pool.start()
    try:
        return run(links_and_orders, sink_for, on_running=running, after_stop=pool.stop,
                   recorders=recorder_for, extra_services=outbox_workers,
                   order_sources=orders_for, presences={t.name: t for t in targets})
    finally:
        if pool.threadpool.started:  # the reactor never ran the shutdown triggers
            pool.stop()
