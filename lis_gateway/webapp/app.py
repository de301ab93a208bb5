"""The validation web app's resource tree, mounted at ``/`` of the gateway's site.

``/`` sends to ``/worklist``; ``/login``, ``/logout``, ``/lang``,
``/worklist``, ``/sample`` and ``/static/<file>``; the administration pages
``/mapping`` (``/fix``, ``/reprocess``), ``/analyzers`` (``/wire``),
``/delivery`` (``/retry``, ``/reconcile``) and ``/audit``; anything else is 404.
:func:`lis_gateway.web.site.build_site` adds ``/healthz`` and ``/api`` as
children of this resource, so they keep working (without a session).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import structlog
from structlog.typing import FilteringBoundLogger
from twisted.internet.interfaces import IReactorTime
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

from lis_gateway.ingest import RunsWork
from lis_gateway.lifecycle import Policies, Policy

from .accounts import LanguagePage, LoginPage, LogoutPage, Page
from .admin import AdminSetup
from .analyzers_page import AnalyzersPage, WirePage
from .audit_page import AuditPage
from .delivery_page import DeliveryPage, ReconcilePage, RetryPage
from .mapping_page import MappingFixPage, MappingProblemsPage, MappingReprocessPage
from .pages import SamplePage, WorklistPage
from .sessions import ABSOLUTE_TIMEOUT, IDLE_TIMEOUT, Session, Sessions
from .web import WebContext

STATIC = Path(__file__).resolve().parent / "static"
_TYPES = {".css": b"text/css; charset=utf-8", ".js": b"text/javascript; charset=utf-8"}


class Static(Resource):
    """``/static/<name>``: the app's own stylesheet and script, read once at start."""

    isLeaf = True

    def __init__(self, ctx: WebContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.files = {p.name.encode(): (p.read_bytes(), _TYPES[p.suffix])
                      for p in STATIC.iterdir() if p.suffix in _TYPES}

    def render_GET(self, request: Request) -> bytes:
        rest = request.postpath or []
        found = self.files.get(rest[0]) if len(rest) == 1 else None
        if found is None:
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"not found\n"
        self.ctx.headers(request, found[1])
        request.setHeader(b"Cache-Control", b"max-age=3600")
        return found[0]


class Home(Page):
    """``/``: the worklist."""

    def get(self, request: Request, session: Session | None) -> bytes | int:
        return self.ctx.redirect(request, "/worklist")


class Folder(Resource):
    """A page with pages under it: ``/<name>`` is ``index``, ``/<name>/<child>`` a child."""

    def __init__(self, index: Resource, children: dict[bytes, Resource]) -> None:
        super().__init__()
        self.index = index
        self.pages = {b"": index, **children}

    def render(self, request: Request) -> bytes | int:
        return self.index.render(request)

    def getChild(self, path: bytes, request: Request) -> IResource:
        page = self.pages.get(path)
        return page if page is not None else notFound()


class WebApp(Resource):
    """The root of the app: named pages, 404 for anything else."""

    def __init__(self, ctx: WebContext, admin: AdminSetup | None = None) -> None:
        super().__init__()
        self.ctx = ctx
        setup = admin if admin is not None else AdminSetup()
        self.pages: dict[bytes, Resource] = {
            b"login": LoginPage(ctx), b"logout": LogoutPage(ctx), b"lang": LanguagePage(ctx),
            b"worklist": WorklistPage(ctx), b"sample": SamplePage(ctx),
            b"mapping": Folder(MappingProblemsPage(ctx, setup), {
                b"fix": MappingFixPage(ctx, setup),
                b"reprocess": MappingReprocessPage(ctx, setup)}),
            b"analyzers": Folder(AnalyzersPage(ctx, setup), {b"wire": WirePage(ctx, setup)}),
            b"delivery": Folder(DeliveryPage(ctx, setup), {
                b"retry": RetryPage(ctx, setup), b"reconcile": ReconcilePage(ctx, setup)}),
            b"audit": AuditPage(ctx, setup),
            b"static": Static(ctx), b"": Home(ctx)}

    def getChild(self, path: bytes, request: Request) -> IResource:
        page = self.pages.get(path)
        return page if page is not None else notFound()


def webapp_resource(pool: RunsWork, clock: IReactorTime, policy: Policy | Policies, *,
                    secure_cookies: bool, zone: str = "Asia/Ho_Chi_Minh",
                    idle_timeout: float = IDLE_TIMEOUT,
                    absolute_timeout: float = ABSOLUTE_TIMEOUT,
                    log: FilteringBoundLogger | None = None,
                    admin: AdminSetup | None = None,
                    on_release: Callable[[], None] | None = None) -> Resource:
    """The validation web app, to mount at ``/`` (``build_site(..., app=...)``).

    Args:
        pool: the store's pool (``DbPool``); every page's store work runs through it.
        clock: the reactor (``seconds()``): session timeouts and the time of actions.
        policy: the lab's validation policies (``GatewayConfig.policy``).
        secure_cookies: mark cookies ``Secure`` (set it when HTTPS is in front).
        zone: the lab's time zone for showing and reading times.
        idle_timeout, absolute_timeout: session lifetimes in seconds.
        log: a logger (never given patient data).
        admin: what the administration pages need (the links' status board, the
            recordings, the live mapping tables, the destinations); without it they
            say what they lack.
        on_release: called after an action committed what may go to the destinations
            (the outbox workers' wake-up).
    """
    ctx = WebContext(pool, clock, policy, secure_cookies, zone,
                     Sessions(idle=idle_timeout, absolute=absolute_timeout),
                     log if log is not None else structlog.get_logger("lis_gateway.webapp"),
                     on_release=on_release)
    return WebApp(ctx, admin)
