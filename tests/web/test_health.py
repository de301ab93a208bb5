"""/metrics and /readyz through twisted.web in memory (treq.testing), on SQLite.

The metrics a real link records are exercised over loopback TCP by
tests/integration/test_metrics.py; here the exposition format and readiness.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from treq.testing import StubTreq
from twisted.internet.defer import Deferred

from lis_gateway import metrics
from lis_gateway.store.pool import NonThreadPool
from lis_gateway.web.health import Ready
from lis_gateway.web.site import build_site

from .test_api_orders import BrokenPool, engine  # noqa: F401  (the fixture)


def get(http: StubTreq, path: str) -> tuple[int, str, bytes]:
    got: list[tuple[int, str, bytes]] = []
    d: Deferred[Any] = http.get(f"http://gateway.test{path}")
    d.addCallback(lambda r: http.content(r).addCallback(lambda body: got.append(
        (r.code, (r.headers.getRawHeaders(b"content-type") or [b""])[0].decode(), body))))
    http.flush()
    assert got, "no answer"
    return got[0]


def test_metrics_are_served_in_the_prometheus_text_format() -> None:
    """The registry's families with HELP and TYPE; label values are link names only."""
    metrics.MESSAGES.labels("chem-test", "stored").inc()
    status, kind, body = get(StubTreq(build_site().resource), "/metrics")
    assert status == 200 and kind.startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert "# TYPE lis_gateway_messages_total counter" in text
    assert 'lis_gateway_messages_total{analyzer="chem-test",outcome="stored"}' in text
    for family in ("lis_gateway_frames_total", "lis_gateway_commit_ack_seconds",
                   "lis_gateway_outbox_pending", "lis_gateway_his_ack_seconds",
                   "lis_gateway_end_to_end_seconds", "lis_gateway_rule_decisions_total"):
        assert f"# HELP {family.removesuffix('_total')}" in text, family


def test_ready_when_the_database_answers_and_links_listen(engine: Engine) -> None:  # noqa: F811
    up = {"chem1": True}
    ready = Ready(NonThreadPool(engine), [("chem1", lambda: up["chem1"])])
    http = StubTreq(build_site(ready=ready).resource)
    assert get(http, "/readyz")[::2] == (200, b"ready\n")
    up["chem1"] = False
    assert get(http, "/readyz")[::2] == (503, b"link chem1: not listening\n")


def test_not_ready_when_the_database_is_down() -> None:
    """503 naming the database and the error's kind (never its text: it may quote data)."""
    http = StubTreq(build_site(ready=Ready(BrokenPool())).resource)
    status, _kind, body = get(http, "/readyz")
    assert status == 503 and body.startswith(b"database: unreachable (")
