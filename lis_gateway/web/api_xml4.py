"""``GET /api/xml4?since=...&until=...``: the insurance table 4 rows for the HIS to fetch.

The same rows as ``lis-gateway export xml4`` (:mod:`lis_gateway.export.xml4_build`)
for the HIS that assembles and signs the claim: ``200`` with the XML body
when every row is valid; ``422`` with the rows and every problem as JSON
otherwise (the lab fixes the mapping or the user and the HIS asks again);
``format=json`` gives the JSON in both cases. ``since`` is required;
``until`` defaults to now; times without an offset are in the hospital's
zone (``[orders] time_zone``). The HIS's bearer token is the order API's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from lis_gateway.export.xml4 import render
from lis_gateway.export.xml4_build import Indicators, Xml4Export, build
from lis_gateway.ingest import RunsWork
from lis_gateway.store.xml4_rows import released_rows
from lis_gateway.web.api_orders import answer, bearer_ok, finish


def _arg(request: Request, name: str) -> str:
    args: dict[bytes, list[bytes]] = request.args or {}
    values = args.get(name.encode(), [])
    return values[0].decode("utf-8", "replace").strip() if values else ""


class Xml4Resource(Resource):
    """Serves XML4 rows to the HIS.

    Args:
        pool: runs the store query off the reactor thread.
        token: the HIS's bearer token.
        index: the mapping tables' service and indicator codes by local code.
        zone: the hospital's time zone.
        utcnow: the wall clock (the default ``until``).
    """

    isLeaf = True

    def __init__(self, pool: RunsWork, token: str, index: Indicators, *,
                 zone: str = "Asia/Ho_Chi_Minh",
                 utcnow: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__()
        self._pool, self._token, self._index = pool, token, index
        self._zone, self._utcnow = ZoneInfo(zone), utcnow
        self._log = structlog.get_logger("lis_gateway.api.xml4")

    def _moment(self, text: str) -> datetime:
        moment = datetime.fromisoformat(text)
        return moment.replace(tzinfo=self._zone) if moment.tzinfo is None else moment

    def render_GET(self, request: Request) -> bytes | int:
        if not bearer_ok(request, self._token):
            request.setHeader(b"WWW-Authenticate", b'Bearer realm="lis-gateway"')
            return answer(request, 401, {"error": "missing or wrong bearer token"})
        try:
            since = self._moment(_arg(request, "since"))
            until = self._moment(_arg(request, "until")) if _arg(request, "until") \
                else self._utcnow()
        except ValueError:
            return answer(request, 400, {"error": "since (required) and until must be ISO "
                                                  "dates or times, e.g. 2026-11-01"})
        if until <= since:
            return answer(request, 400, {"error": "until must come after since"})
        as_json = _arg(request, "format") == "json"
        d = self._pool.run(released_rows, since, until)

        def built(rows: Any) -> None:
            export = build(rows, self._index, self._zone)
            self._log.info("xml4-served", rows=len(export.rows), problems=len(export.problems))
            if as_json or export.problems:
                body = answer(request, 422 if export.problems else 200,
                              _document(export, since, until, self._zone.key))
            else:
                body = render(b.row for b in export.rows)
                request.setResponseCode(200)
                request.setHeader(b"Content-Type", b"application/xml; charset=utf-8")
            finish(request, body)

        def failed(failure: Failure) -> None:
            self._log.error("xml4-failed", kind=failure.type.__name__ if failure.type else "")
            finish(request, answer(request, 503, {"error": "the store could not be read"}))

        d.addCallbacks(built, failed)
        return NOT_DONE_YET


def _document(export: Xml4Export, since: datetime, until: datetime, zone: str
              ) -> dict[str, Any]:
    return {"since": since.astimezone(UTC).isoformat(),
            "until": until.astimezone(UTC).isoformat(), "time_zone": zone,
            "rows": [b.to_dict() for b in export.rows],
            "problems": [p.to_dict() for p in export.problems]}

