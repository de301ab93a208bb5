"""Work pushed to analyzers: the downloads queue (SQL only here).

A row is one test to send to one analyzer (``order_download = true``):

* ``new``: an order for the test arrived (``test_code`` is the local code);
* ``cancel``: the HIS cancelled it (local code);
* ``rerun``: a person or a rule asked for a rerun (``test_code`` is the
  analyzer's own code: it goes back to the analyzer that ran it).

Rows are added in the same transaction as the order or the lifecycle
transition, so a committed order is never forgotten; they move pending ->
sent once the analyzer has acknowledged the whole message, or pending ->
not-sent with the reason when they cannot be sent (the analyzer takes no
downloads, the test is not in its mapping table any more). Attempts and the
last error stay on the row for the lab to see.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, insert, select, update

from lis_gateway.store import schema as s
from lis_gateway.store._common import NotFoundError, StoreError, primary_key, require_aware
from lis_gateway.store.audit import append_audit

NEW, CANCEL, RERUN = "new", "cancel", "rerun"
PENDING, SENT, NOT_SENT = "pending", "sent", "not-sent"


@dataclass(frozen=True, slots=True)
class Download:
    """One queued test for one analyzer."""

    id: int
    analyzer: str
    accession: str
    action: str
    test_code: str
    state: str
    attempts: int
    last_error: str

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dictionary (no patient data: barcode and codes only)."""
        return {"id": self.id, "analyzer": self.analyzer, "sample": self.accession,
                "action": self.action, "test": self.test_code, "state": self.state,
                "attempts": self.attempts, "last_error": self.last_error}


def enqueue(conn: Connection, analyzer: str, accession: str, action: str, test_code: str,
            at: datetime) -> int:
    """Queue one test for ``analyzer``; returns the row id."""
    if action not in (NEW, CANCEL, RERUN):
        raise ValueError(f"unknown download action {action!r}")
    when = require_aware(at, "at")
    return int(primary_key(conn.execute(insert(s.downloads).values(
        analyzer=analyzer, accession=accession, action=action, test_code=test_code,
        state=PENDING, created_at=when, updated_at=when)))[0])


def enqueue_order_changes(conn: Connection, download_to: Mapping[str, Collection[str]],
                          accession: str, added: Sequence[str], cancelled: Sequence[str],
                          at: datetime) -> None:
    """Queue an order message's added and cancelled tests for each analyzer that does them."""
    for analyzer, codes in download_to.items():
        for test in added:
            if test in codes:
                enqueue(conn, analyzer, accession, NEW, test, at)
        for test in cancelled:
            if test in codes:
                enqueue(conn, analyzer, accession, CANCEL, test, at)


def _download(row: Row[Any]) -> Download:
    return Download(row.id, row.analyzer, row.accession, row.action, row.test_code, row.state,
                    row.attempts, row.last_error)


def pending(conn: Connection, analyzer: str, limit: int = 100) -> list[Download]:
    """The analyzer's pending rows, oldest first."""
    d = s.downloads
    rows = conn.execute(select(d).where(and_(d.c.analyzer == analyzer, d.c.state == PENDING))
                        .order_by(d.c.id).limit(limit)).all()
    return [_download(r) for r in rows]


def listing(conn: Connection, state: str | None = None) -> list[Download]:
    """Every row (of one state), oldest first."""
    d = s.downloads
    query = select(d).order_by(d.c.id)
    if state is not None:
        query = query.where(d.c.state == state)
    return [_download(r) for r in conn.execute(query).all()]


def was_sent(conn: Connection, analyzer: str, accession: str) -> bool:
    """The analyzer has already been sent a new order for this sample."""
    d = s.downloads
    return conn.execute(select(d.c.id).where(and_(
        d.c.analyzer == analyzer, d.c.accession == accession, d.c.action == NEW,
        d.c.state == SENT)).limit(1)).first() is not None


def record(conn: Connection, ids: Sequence[int], state: str, at: datetime, *,
           error: str = "", payload: bytes | None = None) -> None:
    """One attempt at rows ``ids``: their new state, the error, the text sent."""
    if state not in (PENDING, SENT, NOT_SENT):
        raise ValueError(f"unknown download state {state!r}")
    d = s.downloads
    values: dict[str, object] = {"state": state, "attempts": d.c.attempts + 1,
                                 "last_error": error, "updated_at": require_aware(at, "at")}
    if payload is not None:
        values["payload"] = payload
    conn.execute(update(d).where(d.c.id.in_(list(ids))).values(**values))


def settle_unsupported(conn: Connection, push: Collection[str], at: datetime) -> int:
    """Pending rows of analyzers that take no downloads become not-sent, saying why."""
    d = s.downloads
    rows = conn.execute(select(d.c.id, d.c.analyzer).where(and_(
        d.c.state == PENDING, d.c.analyzer.not_in(list(push))))).all()
    for row in rows:
        conn.execute(update(d).where(d.c.id == row.id).values(
            state=NOT_SENT, updated_at=require_aware(at, "at"),
            last_error=(f"analyzer {row.analyzer!r} takes no downloads (order_download is "
                        "not set): run it at the analyzer")))
    return len(rows)


def retry(conn: Connection, download_id: int, *, actor: str, at: datetime,
          source: str = "") -> Download:
    """Put a not-sent row back in line once its cause is fixed (audited).

    Raises:
        NotFoundError: no such row.
        StoreError: the row is not ``not-sent``.
    """
    d = s.downloads
    row = conn.execute(select(d).where(d.c.id == download_id)).first()
    if row is None:
        raise NotFoundError(f"download {download_id}")
    if row.state != NOT_SENT:
        raise StoreError(f"download {download_id} is {row.state}; only a not-sent one can be "
                         "retried")
    when = require_aware(at, "at")
    conn.execute(update(d).where(d.c.id == download_id).values(state=PENDING,
                                                               updated_at=when))
    append_audit(conn, actor=actor, action="download.retry", target=f"download:{download_id}",
                 detail={"analyzer": row.analyzer, "action": row.action,
                         "last_error": row.last_error}, source=source, at=when)
    return _download(conn.execute(select(d).where(d.c.id == download_id)).one())
