"""The reconciliation report: for every result received, where it is for each destination.

This is the lab's proof that nothing was lost: each patient result received
(QC runs excluded) since a date is, for each configured destination, either
delivered (acknowledged) or listed with where it waits and why:

* ``waiting-validation``: not released yet (its lifecycle state and reasons);
* ``not-reportable``: rejected, or a rerun was requested (the rerun is its
  own result and appears on its own line);
* ``not-queued``: released, but the destination's worker has not queued it
  yet (the gateway is stopped, or it was released a moment ago);
* ``pending``: queued, with attempts, the last answer and the next attempt;
* ``dead``: rejected by the destination, with its text, until a person
  retries it.

The latest version of each result is the one reported (a correction not yet
delivered shows as such). No SQL outside the store; read-only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select

from lis_gateway.lifecycle import ResultState
from lis_gateway.outbound.delivery import EntryState
from lis_gateway.store import judgements
from lis_gateway.store import schema as s
from lis_gateway.store._common import as_utc, require_aware
from lis_gateway.store.outbox import RESULT, RETRACTION

_NOT_REPORTABLE = frozenset({ResultState.REJECTED, ResultState.RERUN_REQUESTED})
_RELEASED = frozenset({ResultState.RELEASED, ResultState.DELIVERED})


@dataclass(frozen=True, slots=True)
class Whereabouts:
    """Where one result is for one destination.

    Attributes:
        destination: the destination's name.
        where: delivered, retracted (the destination acknowledged the deletion),
            waiting-validation, not-reportable, not-queued, pending, dead (of the
            retraction, for a retracted result).
        detail: why, in words (state and reasons, the destination's answer, ...).
        control_id: the outbox entry's MSH-10 ("" before it is queued).
        at: when it was delivered (delivered), or the next attempt (pending).
    """

    destination: str
    where: str
    detail: str = ""
    control_id: str = ""
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Reconciled:
    """One received result and its whereabouts for every destination."""

    result_id: int
    accession: str
    test_code: str
    analyzer: str
    received_at: datetime
    version: int
    state: ResultState
    destinations: tuple[Whereabouts, ...]

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dictionary (no patient identifiers)."""
        return {"result_id": self.result_id, "sample": self.accession, "test": self.test_code,
                "analyzer": self.analyzer, "received_at": self.received_at.isoformat(),
                "version": self.version, "state": self.state.value,
                "destinations": [{"destination": w.destination, "where": w.where,
                                  "detail": w.detail, "control_id": w.control_id,
                                  "at": None if w.at is None else w.at.isoformat()}
                                 for w in self.destinations]}


def reconcile(conn: Connection, destinations: Sequence[str],
              since: datetime | None = None) -> list[Reconciled]:
    """The whereabouts of every patient result received since ``since`` (all when None)."""
    r, a, smp, v, o = s.results, s.analyzers, s.samples, s.result_versions, s.outbox
    query = (select(r.c.id, r.c.test_code, r.c.created_at, a.c.name, smp.c.accession)
             .join(a, a.c.id == r.c.analyzer_id).join(smp, smp.c.id == r.c.sample_id)
             .where(r.c.qc.is_(False)).order_by(r.c.id))
    if since is not None:
        query = query.where(r.c.created_at >= require_aware(since, "since"))
    out: list[Reconciled] = []
    for row in conn.execute(query).all():
        status = judgements.result_status(conn, row.id)
        version = conn.execute(select(v.c.version).where(
            v.c.id == status.version_id)).scalar_one()
        kind = RETRACTION if status.state is ResultState.RETRACTED else RESULT
        entries = {e.destination: e for e in conn.execute(
            select(o).where(o.c.result_version_id == status.version_id,
                            o.c.kind == kind)).all()}
        places = []
        for name in destinations:
            places.append(_whereabouts(name, status, entries.get(name)))
        out.append(Reconciled(row.id, row.accession, row.test_code, row.name,
                              as_utc(row.created_at), version, status.state, tuple(places)))
    return out


def _whereabouts(name: str, status: judgements.ResultStatus, entry: Row[Any] | None
                 ) -> Whereabouts:
    reasons = "; ".join(status.reasons)
    described = status.state.value + (f" ({reasons})" if reasons else "")
    if status.state in _NOT_REPORTABLE:
        return Whereabouts(name, "not-reportable", described)
    retraction = status.state is ResultState.RETRACTED
    if not retraction and status.state not in _RELEASED:
        return Whereabouts(name, "waiting-validation", described)
    if entry is None:
        return Whereabouts(name, "not-queued", f"{status.state.value}; the destination's "
                           "worker has not queued it yet (is the gateway running?)")
    state = EntryState(entry.state)
    control = str(entry.control_id)
    answer = str(entry.last_status)
    error = str(entry.last_error)
    said = f"{answer}: {error}" if error else answer
    if state is EntryState.DELIVERED:
        delivered = entry.delivered_at
        return Whereabouts(name, "retracted" if retraction else "delivered",
                           described if retraction else "", control,
                           None if delivered is None else as_utc(delivered))
    if state is EntryState.DEAD:
        return Whereabouts(name, "dead", said, control)
    attempts = int(entry.attempts)
    nxt = entry.next_attempt_at
    detail = f"{attempts} attempt(s)" + (f", last {said}" if said else "")
    return Whereabouts(name, "pending", detail, control, None if nxt is None else as_utc(nxt))
