"""What the validation web app reads: the worklist, one sample in full, open critical values.

A result's state is derived, as in :mod:`.judgements`, from the last
lifecycle event of its latest version; here it is done in one query for a
whole page instead of one per result. Patient names are returned for the
screen only (never logged).

Delivery comes from the outbox (:mod:`.outbox`), never from a lifecycle
event: a released version whose entries (one per destination) were all
acknowledged is shown DELIVERED; one with an entry dead-lettered or failed
at least once (pending with attempts) is *not delivered*, with each
destination's last answer; otherwise it is RELEASED (on its way, or no
destination is configured).

Every read takes the person's :class:`~lis_gateway.sections.Scope`: results
of analyzers outside their sections are left out (a sample whose results
are all outside is not shown at all).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Row, Select, and_, case, func, or_, select

from lis_gateway.lifecycle import ResultState
from lis_gateway.outbound.delivery import EntryState
from lis_gateway.sections import EVERYTHING, Scope

from . import schema as s
from ._common import NotFoundError, as_utc, require_aware
from .judgements import previous_for_delta, rule_outcomes
from .notes import Note, acknowledged, notes_for
from .orders import CANCELLED, OrderedTest, ordered_tests
from .outbox import RESULT
from .repository import ResultInfo, list_results

S = ResultState
#: Most urgent first: a sample shows the state of its most urgent result.
URGENCY: tuple[ResultState, ...] = (
    S.HELD, S.CORRECTED, S.RECEIVED, S.AUTOVERIFIED, S.TECH_VALIDATED, S.APPROVED,
    S.RELEASED, S.DELIVERED, S.RERUN_REQUESTED, S.REJECTED, S.RETRACTED)
#: States in which a critical value no longer waits for an acknowledgement.
_CLOSED = frozenset({S.REJECTED, S.RERUN_REQUESTED, S.RETRACTED})


@dataclass(frozen=True, slots=True)
class WorkResult:
    """One result as the worklist shows it (its latest version)."""

    result_id: int
    version_id: int
    test_code: str  #: the analyzer's code
    code: str  #: the local code ("" when not mapped)
    analyzer: str
    value: str  #: the exact number when there is one, else the raw text
    unit: str
    flags: tuple[str, ...]
    critical: str  #: "" or the critical mark (HH, LL, ...)
    acknowledged: bool  #: a critical value was told to someone
    state: ResultState
    reasons: tuple[str, ...]  #: why held, rejected, ...
    received_at: datetime
    section: str = ""  #: its analyzer's lab section ("" none)
    #: released but not delivered: each failing destination and its last answer
    undelivered: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WorkSample:
    """One sample of the worklist with its current results."""

    accession: str
    patient_name: str
    hospital_id: str
    stat: bool  #: a test of it was ordered STAT
    received_at: datetime  #: its first result's arrival
    results: tuple[WorkResult, ...]

    @property
    def state(self) -> ResultState:
        """The state of its most urgent result."""
        return min((r.state for r in self.results), key=URGENCY.index)

    @property
    def open_critical(self) -> bool:
        """A critical value of it waits for an acknowledgement."""
        return any(r.critical and not r.acknowledged and r.state not in _CLOSED
                   for r in self.results)

    @property
    def held(self) -> bool:
        """Some result is held (it needs an individual look)."""
        return any(r.state is S.HELD for r in self.results)

    @property
    def not_delivered(self) -> bool:
        """Some released result failed to reach a destination (dead or retrying)."""
        return any(r.undelivered for r in self.results)

    @property
    def rank(self) -> float:
        """Its place by state: :data:`URGENCY`, a not-delivered one just before released."""
        if self.not_delivered and self.state in (S.RELEASED, S.DELIVERED):
            return URGENCY.index(S.RELEASED) - 0.5
        return float(URGENCY.index(self.state))


@dataclass(frozen=True, slots=True)
class Filters:
    """Worklist filters; empty values do not filter.

    Attributes:
        analyzer: the analyzer's configured name.
        state: samples with at least one result in this state (RELEASED: released and
            neither delivered nor failing; DELIVERED: acknowledged by every destination).
        not_delivered: samples with a released result that failed to reach a destination.
        since, until: results that arrived in [since, until) (aware datetimes).
        priority: "S" (STAT) or "R" (routine).
        section: one lab section.
        scope: whose results the person may see (their sections).
        limit: the most recent samples shown.
    """

    analyzer: str = ""
    state: ResultState | None = None
    since: datetime | None = None
    until: datetime | None = None
    priority: str = ""
    limit: int = 200
    not_delivered: bool = False
    section: str = ""
    scope: Scope = field(default=EVERYTHING)


_FAILED = or_(s.outbox.c.state == EntryState.DEAD.value,
               and_(s.outbox.c.state == EntryState.PENDING.value, s.outbox.c.attempts > 0))


def _sent() -> Any:
    """Per result version: its result entries, how many were delivered, how many failed."""
    o = s.outbox
    return (select(o.c.result_version_id, func.count().label("total"),
                   func.sum(case((o.c.state == EntryState.DELIVERED.value, 1), else_=0))
                   .label("delivered"),
                   func.sum(case((_FAILED, 1), else_=0)).label("failed"))
            .where(o.c.kind == RESULT).group_by(o.c.result_version_id).subquery())


def _latest_with_state() -> Select[Any]:
    """Results joined with their latest version, its last lifecycle event and its delivery."""
    r, v, e = s.results, s.result_versions, s.validation_events
    latest = (select(v.c.result_id, func.max(v.c.version).label("version"))
              .group_by(v.c.result_id).subquery())
    last_event = (select(e.c.result_version_id, func.max(e.c.id).label("event_id"))
                  .where(e.c.to_state != "").group_by(e.c.result_version_id).subquery())
    sent = _sent()
    return (select(r.c.id, r.c.sample_id, r.c.test_code, r.c.created_at,
                   s.analyzers.c.name.label("analyzer"), s.analyzers.c.section,
                   v.c.id.label("version_id"),
                   v.c.value_raw, v.c.number, v.c.unit_raw, v.c.unit_ucum, v.c.code,
                   v.c.flags, v.c.critical, e.c.to_state, e.c.reasons,
                   func.coalesce(sent.c.total, 0).label("sent_total"),
                   func.coalesce(sent.c.delivered, 0).label("sent_delivered"),
                   func.coalesce(sent.c.failed, 0).label("sent_failed"))
            .join(s.analyzers, s.analyzers.c.id == r.c.analyzer_id)
            .join(latest, latest.c.result_id == r.c.id)
            .join(v, and_(v.c.result_id == r.c.id, v.c.version == latest.c.version))
            .outerjoin(last_event, last_event.c.result_version_id == v.c.id)
            .outerjoin(e, e.c.id == last_event.c.event_id)
            .outerjoin(sent, sent.c.result_version_id == v.c.id)
            .where(r.c.qc.is_(False)))


def _delivered(row: Any) -> Any:
    """Released and acknowledged by every destination (``row``: the subquery's columns)."""
    return and_(row.to_state == S.RELEASED.value, row.sent_total > 0,
                row.sent_delivered == row.sent_total)


def _failing(row: Any) -> Any:
    """Released, and some destination dead-lettered it or failed at least once."""
    return and_(row.to_state == S.RELEASED.value, row.sent_failed > 0)


def _undelivered(conn: Connection, version_ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
    """Per version, each failing destination with its last answer."""
    if not version_ids:
        return {}
    o = s.outbox
    out: dict[int, list[str]] = {}
    for row in conn.execute(select(o.c.result_version_id, o.c.destination, o.c.state,
                                   o.c.attempts, o.c.last_status, o.c.last_error)
                            .where(o.c.result_version_id.in_(version_ids), o.c.kind == RESULT,
                                   _FAILED).order_by(o.c.id)):
        answer = "; ".join(x for x in (row.last_status, row.last_error) if x)
        out.setdefault(row.result_version_id, []).append(
            f"{row.destination}: {answer or row.state} ({row.state}, {row.attempts})")
    return {k: tuple(v) for k, v in out.items()}


def _stat_samples() -> Select[Any]:
    o = s.orders
    return select(o.c.sample_id).where(o.c.priority == "S", o.c.status != CANCELLED)


def _work_result(row: Row[Any], acked: frozenset[int],
                 undelivered: dict[int, tuple[str, ...]] | None = None) -> WorkResult:
    state = ResultState(row.to_state) if row.to_state else S.RECEIVED
    reasons = tuple(json.loads(row.reasons)) if row.to_state and row.reasons else ()
    failing: tuple[str, ...] = ()
    if state is S.RELEASED:
        failing = (undelivered or {}).get(row.version_id, ())
        if not failing and row.sent_total and row.sent_delivered == row.sent_total:
            state = S.DELIVERED
    number = row.number
    return WorkResult(
        row.id, row.version_id, row.test_code, row.code, row.analyzer,
        str(Decimal(number)) if number is not None else row.value_raw,
        row.unit_ucum or row.unit_raw, tuple(json.loads(row.flags)), row.critical,
        row.version_id in acked, state,
        reasons if state in (S.HELD, S.REJECTED, S.RERUN_REQUESTED, S.RETRACTED) else (),
        as_utc(row.created_at), row.section, failing)


def _patient_name(row: Row[Any]) -> str:
    return " ".join(p for p in (row.family_name, row.middle_name, row.given_name) if p)


def worklist(conn: Connection, filters: Filters = Filters()) -> tuple[WorkSample, ...]:
    """The samples matching ``filters``: open critical values first, then STAT, then by state
    (held first) and arrival (oldest first).

    The ``limit`` most recent matching samples are read, each with all its
    current (non-QC) results.
    """
    rows = _latest_with_state().subquery()
    pick = select(rows.c.sample_id, func.max(rows.c.id).label("newest")).group_by(
        rows.c.sample_id)
    if not filters.scope.everything:
        pick = pick.where(rows.c.section.in_(sorted(filters.scope.sections)))
    if filters.section:
        pick = pick.where(rows.c.section == filters.section)
    if filters.analyzer:
        pick = pick.where(rows.c.analyzer == filters.analyzer)
    if filters.since is not None:
        pick = pick.where(rows.c.created_at >= require_aware(filters.since, "since"))
    if filters.until is not None:
        pick = pick.where(rows.c.created_at < require_aware(filters.until, "until"))
    if filters.state is S.RECEIVED:
        pick = pick.where(rows.c.to_state.is_(None))
    elif filters.state is S.DELIVERED:
        pick = pick.where(_delivered(rows.c))
    elif filters.state is S.RELEASED:
        pick = pick.where(rows.c.to_state == S.RELEASED.value, ~_delivered(rows.c),
                          ~_failing(rows.c))
    elif filters.state is not None:
        pick = pick.where(rows.c.to_state == filters.state.value)
    if filters.not_delivered:
        pick = pick.where(_failing(rows.c))
    if filters.priority == "S":
        pick = pick.where(rows.c.sample_id.in_(_stat_samples()))
    elif filters.priority == "R":
        pick = pick.where(rows.c.sample_id.not_in(_stat_samples()))
    ids = [r.sample_id for r in conn.execute(pick.order_by(
        func.max(rows.c.id).desc()).limit(filters.limit))]
    return _samples(conn, ids, filters.scope)


def _samples(conn: Connection, sample_ids: Sequence[int],
             scope: Scope = EVERYTHING) -> tuple[WorkSample, ...]:
    if not sample_ids:
        return ()
    r = s.results
    rows = [row for row in conn.execute(_latest_with_state().where(
        r.c.sample_id.in_(sample_ids)).order_by(r.c.id)).all() if scope.allows(row.section)]
    acked = acknowledged(conn, [row.version_id for row in rows if row.critical])
    failing = _undelivered(conn, [row.version_id for row in rows if row.sent_failed])
    stat = set(conn.execute(_stat_samples().where(
        s.orders.c.sample_id.in_(sample_ids))).scalars())
    people = {p.id: p for p in conn.execute(select(s.samples).where(
        s.samples.c.id.in_(sample_ids)))}
    grouped: dict[int, list[WorkResult]] = {}
    for row in rows:
        grouped.setdefault(row.sample_id, []).append(_work_result(row, acked, failing))
    out = [WorkSample(people[sid].accession, _patient_name(people[sid]),
                      people[sid].hospital_id or "", sid in stat,
                      min(x.received_at for x in results), tuple(results))
           for sid, results in grouped.items()]
    out.sort(key=lambda w: (not w.open_critical, not w.stat, w.rank, w.received_at,
                            w.accession))
    return tuple(out)


def open_criticals(conn: Connection, scope: Scope = EVERYTHING, limit: int = 50
                   ) -> tuple[tuple[str, WorkResult], ...]:
    """Critical values (of the person's sections) not yet told to anyone: (accession,
    result), oldest first."""
    rows = [row for row in conn.execute(_latest_with_state().add_columns(
        s.samples.c.accession).join(s.samples, s.samples.c.id == s.results.c.sample_id).where(
        s.result_versions.c.critical != "").order_by(s.results.c.id)).all()
        if scope.allows(row.section)]
    acked = acknowledged(conn, [row.version_id for row in rows])
    found = [(row.accession, _work_result(row, acked)) for row in rows]
    return tuple((a, w) for a, w in found
                 if not w.acknowledged and w.state not in _CLOSED)[:limit]


def analyzer_names(conn: Connection, scope: Scope = EVERYTHING) -> tuple[str, ...]:
    """Every analyzer known to the store (of the person's sections), by name."""
    a = s.analyzers
    return tuple(name for name, section in conn.execute(
        select(a.c.name, a.c.section).order_by(a.c.name)) if scope.allows(section))


# --------------------------------------------------------------------- one sample


@dataclass(frozen=True, slots=True)
class Patient:
    """The patient of a sample, as the HIS ordered it (all may be empty)."""

    name: str
    birth_date: date | None
    sex: str
    hospital_id: str
    national_id: str
    visit_number: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """One destination's entry for a result version (the outbox's view of it).

    Attributes:
        destination: the destination's configured name.
        kind: ``result`` or ``retraction``.
        state: pending, delivered or dead.
        attempts: how many times it was sent.
        answer: the destination's last status and text ("" before the first attempt).
        delivered_at: when it was acknowledged (None before).
    """

    destination: str
    kind: str
    state: EntryState
    attempts: int
    answer: str
    delivered_at: datetime | None


def deliveries(conn: Connection, version_id: int) -> tuple[Delivery, ...]:
    """What the outbox holds for one version, in the order the entries were made."""
    o = s.outbox
    return tuple(
        Delivery(row.destination, row.kind, EntryState(row.state), row.attempts,
                 "; ".join(x for x in (row.last_status, row.last_error) if x),
                 as_utc(row.delivered_at) if row.delivered_at is not None else None)
        for row in conn.execute(select(o).where(o.c.result_version_id == version_id)
                                .order_by(o.c.id)))


class NotInScopeError(Exception):
    """The sample has results, none in the person's sections.

    Attributes:
        sections: the sections its results belong to ("" for an analyzer without one).
    """

    def __init__(self, accession: str, sections: Sequence[str]) -> None:
        super().__init__(f"sample {accession!r} is in sections {', '.join(sections)}")
        self.sections = tuple(sections)


@dataclass(frozen=True, slots=True)
class ResultDetail:
    """One result of the sample page.

    Attributes:
        info: the result with its latest version.
        work: the worklist view of it (state, reasons, critical acknowledgement).
        outcomes: each rule's (rule, outcome, detail, rule-set version) on the latest version.
        previous: the patient's previous number of the same test and its time, or None.
        delta: this number minus the previous one (None when either is missing).
        notes: comments and acknowledgements on its versions.
        versions: how many versions it has (more than one after a correction).
        deliveries: the outbox entries of its latest version.
    """

    info: ResultInfo
    work: WorkResult
    outcomes: tuple[tuple[str, str, str, str], ...]
    previous: tuple[Decimal, datetime] | None
    delta: Decimal | None
    notes: tuple[Note, ...]
    versions: int
    deliveries: tuple[Delivery, ...] = ()


@dataclass(frozen=True, slots=True)
class SampleDetail:
    """Everything the sample page shows."""

    accession: str
    patient: Patient
    stat: bool
    orders: tuple[OrderedTest, ...]
    results: tuple[ResultDetail, ...]


def sample_detail(conn: Connection, accession: str, scope: Scope = EVERYTHING
                  ) -> SampleDetail:
    """One sample with its patient, orders and every current result in full (of the
    person's sections).

    Raises:
        NotFoundError: no such sample, or it has no (non-QC) result.
        NotInScopeError: it has results, none in the person's sections.
    """
    row = conn.execute(select(s.samples).where(s.samples.c.accession == accession)).first()
    if row is None:
        raise NotFoundError(f"sample {accession!r}")
    [work] = _samples(conn, [row.id], scope) or (None,)
    if work is None:
        [everything] = _samples(conn, [row.id]) or (None,)
        if everything is None:
            raise NotFoundError(f"sample {accession!r} has no result")
        raise NotInScopeError(accession, sorted({r.section for r in everything.results}))
    infos = {i.id: i for i in list_results(conn, accession)}
    version_counts = {int(r[0]): int(r[1]) for r in conn.execute(select(
        s.result_versions.c.result_id, func.count()).where(
        s.result_versions.c.result_id.in_(list(infos))).group_by(
        s.result_versions.c.result_id))}
    all_versions = conn.execute(select(s.result_versions.c.id, s.result_versions.c.result_id)
                                .where(s.result_versions.c.result_id.in_(list(infos)))).all()
    notes = notes_for(conn, [v.id for v in all_versions])
    version_of = {v.id: v.result_id for v in all_versions}
    details = []
    for w in work.results:
        info = infos[w.result_id]
        prev = previous_for_delta(conn, w.result_id)
        number = info.latest.content.number
        details.append(ResultDetail(
            info, w, rule_outcomes(conn, w.version_id),
            None if prev is None else (prev.number, prev.time),
            None if prev is None or number is None else number - prev.number,
            tuple(n for n in notes if version_of.get(n.version_id) == w.result_id),
            int(version_counts.get(w.result_id, 1)), deliveries(conn, w.version_id)))
    patient = Patient(_patient_name(row), row.birth_date, row.sex, row.hospital_id or "",
                      row.national_id or "", row.visit_number)
    return SampleDetail(accession, patient, work.stat, ordered_tests(conn, accession),
                        tuple(details))


def result_of_version(conn: Connection, version_id: int) -> int:
    """The result a version belongs to.

    Raises:
        NotFoundError: no such version.
    """
    found = conn.execute(select(s.result_versions.c.result_id).where(
        s.result_versions.c.id == version_id)).scalar_one_or_none()
    if found is None:
        raise NotFoundError(f"result version {version_id}")
    return int(found)
