"""The HTTP site on the gateway's reactor: which path goes where.

``/healthz`` answers 200 while the process runs (no login; it says nothing
else); ``/metrics`` gives the Prometheus metrics (no patient data, see
:mod:`lis_gateway.metrics`); ``/readyz`` (when the service gives it)
answers whether the database and the listening links are up.
``/api/orders`` and ``/api/xml4`` exist when ``[orders] api_token_file`` is
set (the HIS's token). Other paths are 404. Twisted's access log is off:
request lines are not written anywhere (a query string could carry a
barcode), and errors never show a traceback to the client. Request bodies
over :data:`MAX_BODY` are refused with 413 before they are read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
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


#: The largest request body taken, in bytes: far above any form or batch of orders.
MAX_BODY = 4 << 20


class LimitedRequest(Request):
    """A request whose body may not exceed :data:`MAX_BODY`.

    A larger ``Content-Length`` (or a chunked body growing past it) is answered
    413 at once and the connection closed; nothing of it is kept or parsed.
    """

    max_body = MAX_BODY
    _too_big = False
    _received = 0

    def gotLength(self, length: int | None) -> None:
        """Refuse a declared length over the limit before reading the body."""
        if length is not None and length > self.max_body:
            self._refuse()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        """Count the body as it comes; refuse when it grows past the limit."""
        if self._too_big:
            return
        self._received += len(data)
        if self._received > self.max_body:
            self._refuse()
            return
        super().handleContentChunk(data)

    def process(self) -> None:
        """Nothing to do for a refused request (the 413 is written already)."""
        if not self._too_big:
            super().process()

    def _refuse(self) -> None:
        self._too_big = True
        channel = self.channel
        if channel is None or channel.transport is None:
            return
        channel.transport.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n"
                                b"Connection: close\r\n\r\n")
        channel.pauseProducing()  # stop reading: the rest of the body is never taken
        channel.transport.loseConnection()


class QuietSite(Site):
    """A Site that writes no access log and shows no tracebacks.

    Behind a reverse proxy every request comes from the proxy; for the
    addresses in ``trusted_proxies`` only, the client is taken from the last
    address of ``X-Forwarded-For`` (the one the proxy itself appended), so the
    audit log names the workstation. From anyone else the header is ignored:
    a browser could write anything in it.
    """

    displayTracebacks = False

    def __init__(self, resource: IResource, trusted_proxies: Iterable[str] = ()) -> None:
        super().__init__(resource, requestFactory=LimitedRequest)
        self.trusted_proxies = frozenset(trusted_proxies)

    def log(self, request: Any) -> None:
        """No access log (see the module docstring)."""

    def getResourceFor(self, request: Request) -> IResource:
        """Take the client from a trusted proxy's header, then route as usual."""
        forwarded_for(request, self.trusted_proxies)
        return super().getResourceFor(request)


def forwarded_for(request: Request, trusted: frozenset[str]) -> None:
    """Replace the request's client address with the one a trusted proxy forwarded."""
    peer = getattr(request.getClientAddress(), "host", "")
    header = request.getHeader(b"x-forwarded-for")
    if peer not in trusted or not header:
        return
    last = header.decode("latin-1").split(",")[-1].strip()
    try:
        ip = ipaddress.ip_address(last)
    except ValueError:
        return  # a malformed header: keep the proxy's address rather than guess
    kind = IPv6Address if ip.version == 6 else IPv4Address
    request.client = kind("TCP", str(ip), 0)


def build_site(orders: Resource | None = None, xml4: Resource | None = None,
               app: Resource | None = None, ready: Resource | None = None,
               trusted_proxies: Iterable[str] = ()) -> Site:
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
    return QuietSite(root, trusted_proxies)
