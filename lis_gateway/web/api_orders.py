"""``POST /api/orders``: orders from an HIS without HL7 (the thin twisted.web part).

The body is read by :func:`lis_gateway.orders_json.parse_json_orders` and
kept with :func:`lis_gateway.store.orders.store_order_message`, like an
ORM^O01 from the MLLP order link, so the guarantees are the same: the
answer comes after the commit; a body with problems is kept, refused with
every problem (422) and can be sent again once fixed; a database failure is
503 and the HIS sends again.

Answers are JSON::

    201 {"accepted": true, "order_message_id": 12, "samples": ["C240001"]}
    422 {"accepted": false, "order_message_id": 13, "problems": ["orders[0].tests: ..."]}
    401 {"error": "..."}   (no or wrong bearer token; nothing is kept)
    413 {"error": "..."}   (body over the limit; nothing is kept)
    503 {"error": "..."}   (the store failed; send again)

The token is compared in constant time. Logs carry ids and counts only.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any

import structlog
from structlog.typing import FilteringBoundLogger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from lis_gateway.ingest import RunsWork
from lis_gateway.orders_json import parse_json_orders
from lis_gateway.store.orders import StoredOrders, store_order_message

#: Largest order body accepted (an order for one sample is a few hundred bytes).
MAX_BODY = 1024 * 1024
#: The ``source`` of REST orders in the store and audit log.
SOURCE = "his-api"


def answer(request: Request, status: int, document: dict[str, Any]) -> bytes:
    """Set the status and JSON headers; the body to return."""
    body = json.dumps(document, ensure_ascii=False).encode("utf-8")
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    request.setHeader(b"Cache-Control", b"no-store")
    return body


def finish(request: Request, body: bytes) -> None:
    """Write a deferred answer and finish, unless the client hung up meanwhile."""
    if request.channel is None:  # gone; what was stored stays stored
        return
    request.write(body)
    request.finish()


def bearer_ok(request: Request, token: str) -> bool:
    """The request carries ``Authorization: Bearer <token>`` (constant-time compare)."""
    got: bytes = request.getHeader(b"authorization") or b""
    scheme, _, value = got.partition(b" ")
    return bool(token) and scheme.lower() == b"bearer" and hmac.compare_digest(
        value.strip(), token.encode())


class OrdersResource(Resource):
    """Takes order bodies from the HIS.

    Args:
        pool: runs store work in transactions off the reactor thread.
        token: the HIS's bearer token.
        zone: the time zone of times sent without an offset.
        utcnow: the wall clock for ``received_at``.
        log: a logger.
        download_to: analyzers that take pushed work -> the local codes they do.
    """

    isLeaf = True

    def __init__(self, pool: RunsWork, token: str, *, zone: str = "Asia/Ho_Chi_Minh",
                 utcnow: Callable[[], datetime] = lambda: datetime.now(UTC),
                 log: FilteringBoundLogger | None = None,
                 download_to: Mapping[str, Collection[str]] | None = None) -> None:
        super().__init__()
        self._pool, self._token, self._zone, self._utcnow = pool, token, zone, utcnow
        self._download_to = download_to
        self._log: FilteringBoundLogger = (
            log if log is not None else structlog.get_logger("lis_gateway.api.orders"))

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Allow", b"POST")
        return answer(request, 405, {"error": "use POST with a JSON order body"})

    def render_POST(self, request: Request) -> bytes | int:
        if not bearer_ok(request, self._token):
            request.setHeader(b"WWW-Authenticate", b'Bearer realm="lis-gateway"')
            self._log.warning("orders-unauthorized")
            return answer(request, 401, {"error": "missing or wrong bearer token"})
        assert request.content is not None
        body = request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return answer(request, 413, {"error": f"the body is over {MAX_BODY} bytes"})
        message_id, parsed = parse_json_orders(body, self._zone)
        d = self._pool.run(store_order_message, raw=body, control_id=message_id,
                           parsed=parsed, source=SOURCE, at=self._utcnow(),
                           download_to=self._download_to)

        def stored(result: StoredOrders) -> None:
            if result.accepted:
                self._log.info("orders-stored", order_message_id=result.message_id,
                               samples=len(result.samples))
                body = answer(request, 201, {"accepted": True,
                                             "order_message_id": result.message_id,
                                             "samples": list(result.samples)})
            else:
                self._log.warning("orders-refused", order_message_id=result.message_id,
                                  problems=len(result.problems))
                body = answer(request, 422, {"accepted": False,
                                             "order_message_id": result.message_id,
                                             "problems": list(result.problems)})
            finish(request, body)

        def failed(failure: Failure) -> None:
            self._log.error("orders-not-stored", kind=failure.type.__name__
                            if failure.type else "")
            finish(request, answer(request, 503, {
                "error": "the order could not be stored; send it again"}))

        d.addCallbacks(stored, failed)
        return NOT_DONE_YET
