"""``/metrics`` (Prometheus) and ``/readyz`` (ready to take work), next to ``/healthz``.

``/readyz`` answers 200 ``ready`` when the database answers a query and
every configured listening link is listening, else 503 with one line per
problem (names of links and the database error's kind, never data). A
tcp-client or serial link whose analyzer is off does not make the gateway
unready: it keeps trying, as configured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import Connection, text
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from lis_gateway import metrics
from lis_gateway.ingest import RunsWork
from lis_gateway.web.api_orders import finish


class Metrics(Resource):
    """``/metrics``: the registry in the Prometheus text format."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", b"text/plain; version=0.0.4; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        return metrics.exposition()


def _ping(conn: Connection) -> None:
    conn.execute(text("SELECT 1"))


class Ready(Resource):
    """``/readyz``: the database answers and the listening links listen.

    Args:
        pool: runs the database check off the reactor thread.
        links: (name, is it listening) for each link that should be listening.
    """

    isLeaf = True

    def __init__(self, pool: RunsWork,
                 links: Sequence[tuple[str, Callable[[], bool]]] = ()) -> None:
        super().__init__()
        self._pool, self._links = pool, links

    def render_GET(self, request: Request) -> int:
        problems = [f"link {name}: not listening" for name, up in self._links if not up()]
        database: Deferred[None] = self._pool.run(_ping)

        def answered(outcome: Failure | None) -> None:
            found = list(problems)
            if isinstance(outcome, Failure):
                found.insert(0, f"database: unreachable ({outcome.type.__name__})")
            request.setResponseCode(503 if found else 200)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            request.setHeader(b"Cache-Control", b"no-store")
            finish(request, ("\n".join(found) if found else "ready").encode() + b"\n")

        database.addCallbacks(lambda _: answered(None), answered)
        return NOT_DONE_YET
