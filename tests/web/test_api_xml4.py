"""GET /api/xml4 through twisted.web in memory (treq.testing), on SQLite.

The rows themselves are tested in tests/export and tests/store; here: the
token, the period arguments, XML when every row is valid, JSON with every
problem (422) when not.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import Engine
from treq.testing import StubTreq

from lis_gateway.export.xml4_build import indicators
from lis_gateway.store.engine import make_engine
from lis_gateway.store.migrations import migrate
from lis_gateway.store.pool import NonThreadPool
from lis_gateway.store.users import set_certificate
from lis_gateway.web.api_xml4 import Xml4Resource
from lis_gateway.web.site import build_site

from ..export.test_xml4_build import CHEM
from ..store.test_lifecycle_store import ingest, users
from ..store.test_outbox import ONE_STEP
from ..store.test_repository import T0, result
from ..store.test_xml4_rows import release, visit

TOKEN = "0123456789abcdef-his"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'lis.db'}"
    eng = make_engine(url)
    migrate(url, engine=eng)
    yield eng
    eng.dispose()


def get(engine: Engine, query: str, token: str = TOKEN) -> tuple[int, bytes, str]:
    resource = Xml4Resource(NonThreadPool(engine), TOKEN, indicators([CHEM]),
                            utcnow=lambda: T0 + timedelta(days=1))
    http = StubTreq(build_site(None, resource).resource)
    got: list[tuple[int, bytes, str]] = []

    def read(response: Any) -> Any:
        kind = (response.headers.getRawHeaders(b"content-type") or [b""])[0].decode()
        return http.content(response).addCallback(
            lambda data: got.append((response.code, data, kind)))

    http.get(f"http://g/api/xml4?{query}", headers={"Authorization": f"Bearer {token}"}
             ).addCallback(read)
    http.flush()
    assert got, "no answer"
    return got[0]


def released_glucose(engine: Engine, certificate: str = "0012345/HNO-CCHN") -> None:
    users(engine)
    with engine.begin() as conn:
        set_certificate(conn, "lan", certificate, T0)
    ingest(engine, [result(sample="S1", value="5.40")], policy=ONE_STEP)
    visit(engine, "S1", "V2026-0001")
    release(engine, "S1", T0 + timedelta(minutes=5))


def test_valid_rows_come_as_the_xml4_body(engine: Engine) -> None:
    """200 application/xml: one CHI_TIET_CLS with the service code, value and approver."""
    released_glucose(engine)
    status, body, kind = get(engine, "since=" + quote(T0.isoformat()))
    assert (status, kind) == (200, "application/xml; charset=utf-8")
    [row] = ET.fromstring(body).iter("CHI_TIET_CLS")
    assert {c.tag: c.text or "" for c in row}["MA_DICH_VU"] == "12.3456.0002"
    assert {c.tag: c.text or "" for c in row}["GIA_TRI"] == "5.40"
    assert {c.tag: c.text or "" for c in row}["MA_BS_DOC_KQ"] == "0012345/HNO-CCHN"


def test_rows_with_problems_come_as_json_with_every_problem(engine: Engine) -> None:
    """The releasing user has no certificate number: 422 JSON naming the row and field."""
    import json

    released_glucose(engine, certificate="")
    status, body, kind = get(engine, "since=2026-11-01")
    document = json.loads(body)
    assert (status, kind) == (422, "application/json; charset=utf-8")
    assert [(p["sample"], p["field"]) for p in document["problems"]] == [
        ("S1", "MA_BS_DOC_KQ")]
    assert len(document["rows"]) == 1


@pytest.mark.parametrize(("query", "token", "status"), [
    ("since=2026-11-01", "wrong-token-wrong", 401),
    ("", TOKEN, 400),
    ("since=yesterday", TOKEN, 400),
    ("since=2026-11-02&until=2026-11-01", TOKEN, 400),
])
def test_bad_requests(engine: Engine, query: str, token: str, status: int) -> None:
    """No token, no or unreadable period, until before since."""
    assert get(engine, query, token)[0] == status


def test_an_empty_period_is_an_empty_body(engine: Engine) -> None:
    """Nothing released: 200 with no rows, JSON on request."""
    import json

    status, body, _ = get(engine, "since=2026-11-01&format=json")
    assert status == 200 and json.loads(body)["rows"] == []
    assert datetime.fromisoformat(json.loads(body)["until"]) == T0 + timedelta(days=1)
    assert json.loads(body)["since"] == datetime(2026, 10, 31, 17, tzinfo=UTC).isoformat()
