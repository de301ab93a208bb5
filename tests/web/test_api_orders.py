"""POST /api/orders and /healthz through twisted.web in memory (treq.testing), on SQLite.

The store work runs inline (NonThreadPool), so every answer is there after
``flush()``. Over a real socket, with the gateway in a subprocess, the
same endpoint is exercised by tests/integration/test_rest_orders.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail

from lis_gateway.store import orders
from lis_gateway.store import schema as s
from lis_gateway.store.engine import make_engine
from lis_gateway.store.migrations import migrate
from lis_gateway.store.pool import NonThreadPool
from lis_gateway.web.api_orders import MAX_BODY, OrdersResource
from lis_gateway.web.site import build_site

from ..test_orders_json import BODY

TOKEN = "0123456789abcdef-his"
URL = "http://gateway.test/api/orders"
NOW = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'lis.db'}"
    eng = make_engine(url)
    migrate(url, engine=eng)
    yield eng
    eng.dispose()


def client(pool: Any) -> StubTreq:
    return StubTreq(build_site(OrdersResource(pool, TOKEN, utcnow=lambda: NOW)).resource)


def post(http: StubTreq, body: bytes, token: str | None = TOKEN) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    got: list[tuple[int, Any]] = []
    d: Deferred[Any] = http.post(URL, data=body, headers=headers)
    d.addCallback(lambda r: http.content(r).addCallback(
        lambda data: got.append((r.code, json.loads(data) if data else None))))
    http.flush()
    assert got, "no answer"
    return got[0]


def kept(engine: Engine) -> list[tuple[bool, str, str]]:
    with engine.begin() as conn:
        rows = conn.execute(select(s.order_messages).order_by(s.order_messages.c.id)).all()
    return [(r.accepted, r.source, r.control_id) for r in rows]


def test_an_order_is_stored_and_answered_after_the_commit(engine: Engine) -> None:
    """201 with the sample; the tests and the patient are on the sample."""
    status, answer = post(client(NonThreadPool(engine)), json.dumps(BODY).encode())
    assert status == 201
    assert answer == {"accepted": True, "order_message_id": 1, "samples": ["C240001"]}
    with engine.begin() as conn:
        assert [(t.test_code, t.placer_order, t.priority)
                for t in orders.ordered_tests(conn, "C240001")] == [
            ("GLU", "CD1", "S"), ("K", "CD1", "S")]
        sample = conn.execute(select(s.samples)).one()
    assert (sample.hospital_id, sample.family_name, sample.visit_number,
            sample.patient_source) == ("BN0001", "Trần", "VV1", "his")
    assert kept(engine) == [(True, "his-api", "HIS-1")]


def test_a_body_with_problems_is_kept_and_refused_with_them(engine: Engine) -> None:
    """422 lists every problem; the raw body is in the store for a later look."""
    body = b'{"orders": [{"barcode": "C1"}]}'
    status, answer = post(client(NonThreadPool(engine)), body)
    assert status == 422
    assert answer == {"accepted": False, "order_message_id": 1, "problems": [
        "patient: missing", "orders[0].tests: no ordered test"]}
    with engine.begin() as conn:
        assert conn.execute(select(s.order_messages.c.raw)).scalar_one() == body
    assert kept(engine) == [(False, "his-api", "")]


@pytest.mark.parametrize("token", [None, "wrong-token-wrong-token", ""])
def test_without_the_token_nothing_is_kept(engine: Engine, token: str | None) -> None:
    """401 (with WWW-Authenticate) and no row: an unauthenticated body is not trusted."""
    status, answer = post(client(NonThreadPool(engine)), json.dumps(BODY).encode(), token)
    assert (status, answer) == (401, {"error": "missing or wrong bearer token"})
    assert kept(engine) == []


def test_an_oversize_body_is_refused(engine: Engine) -> None:
    """Over 1 MiB: 413, nothing kept."""
    status, _ = post(client(NonThreadPool(engine)), b" " * (MAX_BODY + 1))
    assert status == 413 and kept(engine) == []


class BrokenPool:
    """A store that is down."""

    def run(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
        return fail(OSError("database is down"))


def test_a_store_failure_asks_the_his_to_send_again() -> None:
    """503: the HIS keeps the order and sends it again."""
    status, answer = post(client(BrokenPool()), json.dumps(BODY).encode())
    assert (status, answer) == (503, {"error": "the order could not be stored; send it again"})


def test_health_needs_no_token_and_other_paths_do_not_exist() -> None:
    """/healthz is 200 'ok'; GET /api/orders is 405; an unknown path 404."""
    http = StubTreq(build_site(OrdersResource(BrokenPool(), TOKEN)).resource)
    answers: list[tuple[int, bytes]] = []
    for url in ("http://g/healthz", "http://g/api/orders", "http://g/api/nothing"):
        http.get(url).addCallback(lambda r: http.content(r).addCallback(
            lambda data, code=r.code: answers.append((code, data))))
    http.flush()
    assert answers[0] == (200, b"ok\n")
    assert answers[1][0] == 405 and answers[2][0] == 404


def test_without_a_token_the_order_api_is_absent() -> None:
    """No [orders] api_token_file: /api/orders is 404, health still answers."""
    http = StubTreq(build_site(None).resource)
    codes: list[int] = []
    http.post("http://g/api/orders", data=b"{}").addCallback(lambda r: codes.append(r.code))
    http.get("http://g/healthz").addCallback(lambda r: codes.append(r.code))
    http.flush()
    assert codes == [404, 200]
