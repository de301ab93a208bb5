"""The released results a social-insurance XML4 export is made of (SQL only here).

:func:`released_rows` answers "which results became final between two times,
with what value, and who answered for them". A result version is final when
its lifecycle has a transition to ``released`` (the event the outbox queues
from, see :mod:`.outbox`); its release time is that event's time. Per result
only the latest released version counts: a correction released later
replaces the row with the corrected value, and since it is the latest release
that is matched against the period, re-exporting an earlier period never
brings the superseded value back (the result moves to the period of its
correction). A correction not yet released leaves the earlier version in
place. A version whose latest lifecycle event has left the final states
(released, delivered), e.g. a result retracted after release, is no longer
reported, and the versions before it do not come back. QC results are never
patient results and never appear.

The approver is the user on the release event, with the practising-certificate
number the user has now (``users.certificate_number``). A release the
gateway made without a person (no user on the event, ``actor_kind``
``system``) comes back with an empty username: the caller decides whose
certificate stands for it.

Patient names and identifiers are not read: XML4 carries none, only the
visit number (``samples.visit_number``, from the HIS order).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Row, and_, exists, func, select
from sqlalchemy.orm import aliased

from lis_gateway.lifecycle import FINAL_STATES, ResultState
from lis_gateway.store import schema as s
from lis_gateway.store._common import as_utc, require_aware


@dataclass(frozen=True, slots=True)
class ReleasedRow:
    """One result's latest released version, with what an XML4 row needs of the store.

    Attributes:
        result_id, version_id, version: which result version this is.
        accession: the sample's barcode.
        visit_number: the HIS visit number (XML4 ``MA_LK``); "" without an order.
        analyzer: the analyzer's configured name.
        test_code: the analyzer's test code.
        local_code: the lab's code the version was mapped to (the mapping key).
        number: the exact number as stored (converted to ``unit_ucum``), or None.
        value_raw: the value exactly as the analyzer (or a correction) wrote it.
        unit_ucum: the unit of ``number``.
        unit_raw: the unit of ``value_raw``.
        released_at: the release event's time (UTC).
        released_by: the releasing user's name; "" when the gateway released it.
        actor: the release event's actor (username, or the component's name).
        certificate_number: the releasing user's practising-certificate number.
    """

    result_id: int
    version_id: int
    version: int
    accession: str
    visit_number: str
    analyzer: str
    test_code: str
    local_code: str
    number: Decimal | None
    value_raw: str
    unit_ucum: str
    unit_raw: str
    released_at: datetime
    released_by: str
    actor: str
    certificate_number: str


def released_rows(conn: Connection, since: datetime, until: datetime) -> list[ReleasedRow]:
    """The latest released version of each patient result, released in [since, until).

    Ordered by release time, then result id (the caller sorts for its format).

    Raises:
        ValueError: a naive time.
    """
    start, end = require_aware(since, "since"), require_aware(until, "until")
    ev, v, r, sm, u, a = (s.validation_events, s.result_versions, s.results, s.samples,
                          s.users, s.analyzers)
    released = ResultState.RELEASED.value
    first_release = (select(ev.c.result_version_id, func.min(ev.c.id).label("event_id"))
                     .where(ev.c.to_state == released)
                     .group_by(ev.c.result_version_id).subquery())
    last_event = (select(ev.c.result_version_id, func.max(ev.c.id).label("event_id"))
                  .group_by(ev.c.result_version_id).subquery())
    latest_ev = aliased(ev)
    later_v, later_ev = aliased(v), aliased(ev)
    released_later = exists().where(and_(
        later_v.c.result_id == v.c.result_id, later_v.c.version > v.c.version,
        later_ev.c.result_version_id == later_v.c.id, later_ev.c.to_state == released))
    rows = conn.execute(
        select(v.c.result_id, v.c.id.label("version_id"), v.c.version, v.c.code, v.c.number,
               v.c.value_raw, v.c.unit_ucum, v.c.unit_raw, sm.c.accession, sm.c.visit_number,
               r.c.test_code, a.c.name.label("analyzer"), ev.c.at, ev.c.actor,
               u.c.username, u.c.certificate_number)
        .join(first_release, first_release.c.result_version_id == v.c.id)
        .join(ev, ev.c.id == first_release.c.event_id)
        .join(last_event, last_event.c.result_version_id == v.c.id)
        .join(latest_ev, latest_ev.c.id == last_event.c.event_id)
        .join(r, r.c.id == v.c.result_id)
        .join(sm, sm.c.id == r.c.sample_id)
        .join(a, a.c.id == r.c.analyzer_id)
        .outerjoin(u, u.c.id == ev.c.user_id)
        .where(r.c.qc.is_(False), ev.c.at >= start, ev.c.at < end, ~released_later,
               latest_ev.c.to_state.in_([state.value for state in FINAL_STATES]))
        .order_by(ev.c.at, v.c.result_id)).all()
    return [_row(row) for row in rows]


def _row(row: Row[*tuple[Any, ...]]) -> ReleasedRow:
    return ReleasedRow(
        result_id=row.result_id, version_id=row.version_id, version=row.version,
        accession=row.accession, visit_number=row.visit_number, analyzer=row.analyzer,
        test_code=row.test_code, local_code=row.code,
        number=None if row.number is None else Decimal(row.number), value_raw=row.value_raw,
        unit_ucum=row.unit_ucum, unit_raw=row.unit_raw, released_at=as_utc(row.at),
        released_by=row.username or "", actor=row.actor,
        certificate_number=row.certificate_number or "")
