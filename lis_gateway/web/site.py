"""The HTTP site on the gateway's reactor: which path goes where.

``/healthz`` answers 200 while the process runs (no login; it says nothing
else); ``/metrics`` gives the Prometheus metrics (no patient data, see
:mod:`lis_gateway.metrics`); ``/readyz`` (when the service gives it)
answers whether the database and the listening links are up.
``/api/orders`` and ``/api/xml4`` exist when ``[orders] api_token_file`` is
set (the HIS's token). Other paths are 404. Twisted's access log is off:
request lines are not written anywhere (a query string could carry a
barcode), and errors never show a traceback to the client.
"""

from __future__ import annotations

from typing import Any

from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from lis_gateway.web.health import Metrics


class Health(Resource):
    """``/healthz``: the process is alive."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        return b"ok\n"


class Folder(Resource):
    """A path segment with named children; anything else is a plain 404."""

    def getChild(self, path: bytes, request: Request) -> IResource:
        return notFound()


class QuietSite(Site):
    """A Site that writes no access log and shows no tracebacks."""

    displayTracebacks = False

    def log(self, request: Any) -> None:
        """No access log (see the module docstring)."""


def build_site(orders: Resource | None = None, xml4: Resource | None = None,
               app: Resource | None = None, ready: Resource | None = None) -> Site:
    """The resource tree: health always, the HIS's API (orders, XML4) when configured.

    With ``app`` (the validation web app, :func:`lis_gateway.webapp.webapp_resource`)
    it is the root: ``/healthz`` and ``/api`` become its children, and it answers
    every other path (404 for those it does not know).
    """
    root = Folder() if app is None else app
    root.putChild(b"healthz", Health())
    root.putChild(b"metrics", Metrics())
    if ready is not None:
        root.putChild(b"readyz", ready)
    api = Folder()
    root.putChild(b"api", api)
    if orders is not None:
        api.putChild(b"orders", orders)
    if xml4 is not None:
        api.putChild(b"xml4", xml4)
    return QuietSite(root)
