"""What the store keeps about decisions on results: rule outcomes and lifecycle transitions.

A result's state is never a column: it is derived from the transitions of
its latest version (:func:`result_status`), so the history is the truth and
cannot disagree with it. Every function takes a ``Connection`` and returns
frozen dataclasses, like :mod:`.repository`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Row, and_, func, insert, or_, select

from lis_gateway.lifecycle import Action, Actor, ActorKind, ResultState, Role, Transition
from lis_gateway.rules import Decision, Previous, RuleOutcome

from . import downloads
from . import schema as s
from ._common import NotFoundError, as_utc, canonical_json, primary_key, require_aware
from .audit import AuditItem, append_audit, append_audit_many
from .repository import ResultInfo, get_result, list_results


def add_validation_event(conn: Connection, version_id: int, action: str, user_id: int | None,
                         at: datetime, comment: str = "", source: str = "") -> int:
    """Record a validation step (validated, rejected, rerun, released) and audit it."""
    when = require_aware(at, "at")
    pk = primary_key(conn.execute(insert(s.validation_events).values(
        result_version_id=version_id, action=action, user_id=user_id, comment=comment,
        at=when)))
    actor = "system" if user_id is None else conn.execute(select(s.users.c.username).where(
        s.users.c.id == user_id)).scalar_one()
    append_audit(conn, actor=actor, action=f"validation.{action}",
                 target=f"result_version:{version_id}", detail={"comment": comment},
                 source=source, at=when)
    return int(pk[0])


# --------------------------------------------------------------------- lifecycle


@dataclass(frozen=True, slots=True)
class ResultStatus:
    """A result's current lifecycle state, derived from its latest version's events.

    Attributes:
        state: the ``to_state`` of the latest transition (RECEIVED when there is none).
        reasons: why it is held, rejected or sent for a rerun (empty otherwise).
        version_id: the latest version, the one the state belongs to.
    """

    state: ResultState
    reasons: tuple[str, ...]
    version_id: int


#: States whose reasons :func:`result_status` reports.
_REASON_STATES = frozenset({ResultState.HELD, ResultState.REJECTED,
                            ResultState.RERUN_REQUESTED, ResultState.RETRACTED})


def _actor_name(actor: Actor) -> str:
    if actor.kind is ActorKind.RULE:
        return f"rule:{actor.id}@{actor.rule_set_version}"
    if actor.kind is ActorKind.SYSTEM:
        return f"system:{actor.id}"
    return actor.id


def record_rule_outcomes(conn: Connection, version_id: int, outcomes: Sequence[RuleOutcome],
                         rule_set_version: str, at: datetime) -> None:
    """Record every rule's outcome on a result version (one row per rule, in rule order)."""
    when = require_aware(at, "at")
    if outcomes:
        conn.execute(insert(s.rule_outcomes), [
            {"result_version_id": version_id, "rule": o.rule_id, "kind": o.kind,
             "outcome": o.verdict.value, "detail": o.detail,
             "rule_set_version": rule_set_version, "at": when} for o in outcomes])


def record_rule_outcomes_many(conn: Connection, decisions: Sequence[tuple[int, Decision]],
                              at: datetime) -> None:
    """:func:`record_rule_outcomes` for several versions' decisions, in one insert."""
    when = require_aware(at, "at")
    rows = [{"result_version_id": version_id, "rule": o.rule_id, "kind": o.kind,
             "outcome": o.verdict.value, "detail": o.detail,
             "rule_set_version": decision.rule_set_version, "at": when}
            for version_id, decision in decisions for o in decision.outcomes]
    if rows:
        conn.execute(insert(s.rule_outcomes), rows)


def rule_outcomes(conn: Connection, version_id: int) -> tuple[tuple[str, str, str, str], ...]:
    """The recorded rule outcomes of a version: (rule, outcome, detail, rule-set version)."""
    rows = conn.execute(select(s.rule_outcomes).where(
        s.rule_outcomes.c.result_version_id == version_id).order_by(s.rule_outcomes.c.id))
    return tuple((r.rule, r.outcome, r.detail, r.rule_set_version) for r in rows)


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    """One transition to persist (:func:`record_transitions`).

    Attributes:
        version_id: the result version it applies to.
        transition: from :func:`lis_gateway.lifecycle.apply`.
        at: timezone-aware time.
        reasons: the hold reasons, one per holding rule (default: the transition's reason).
        result_id: the version's result, when the caller knows it (saves a read).
    """

    version_id: int
    transition: Transition
    at: datetime
    reasons: Sequence[str] = ()
    result_id: int | None = None


def record_transition(conn: Connection, version_id: int, transition: Transition,
                      at: datetime, *, reasons: Sequence[str] = (), source: str = "") -> None:
    """Persist one lifecycle transition of a version and audit it (the caller's transaction).

    Args:
        version_id: the result version the transition applies to.
        transition: from :func:`lis_gateway.lifecycle.apply`.
        at: timezone-aware time.
        reasons: the hold reasons, one per holding rule (default: the transition's reason).
        source: where it came from, for the audit log.

    Raises:
        NotFoundError: a user actor unknown to the store.
    """
    record_transitions(conn, [TransitionRecord(version_id, transition, at, reasons)],
                       source=source)


def record_transitions(conn: Connection, records: Sequence[TransitionRecord], *,
                       source: str = "") -> None:
    """Persist transitions in order and audit each: one insert per table, not per record.

    Raises:
        NotFoundError: a user actor unknown to the store.
    """
    if not records:
        return
    users = _user_ids(conn, {r.transition.actor.id for r in records
                             if r.transition.actor.kind is ActorKind.USER})
    missing = [r.version_id for r in records if r.result_id is None]
    owners = dict(conn.execute(select(s.result_versions.c.id, s.result_versions.c.result_id)
                               .where(s.result_versions.c.id.in_(missing))).all()
                  ) if missing else {}
    rows: list[dict[str, Any]] = []
    audits: list[AuditItem] = []
    reruns: list[tuple[int, datetime]] = []
    for r in records:
        when, transition = require_aware(r.at, "at"), r.transition
        actor = transition.actor
        listed = (list(r.reasons) if r.reasons
                  else ([transition.reason] if transition.reason else []))
        rows.append({"result_version_id": r.version_id, "action": transition.action.value,
                     "user_id": users.get(actor.id) if actor.kind is ActorKind.USER else None,
                     "comment": transition.reason, "at": when,
                     "from_state": transition.from_state.value,
                     "to_state": transition.to_state.value, "actor_kind": actor.kind.value,
                     "actor": actor.id,
                     "actor_roles": ",".join(sorted(x.value for x in actor.roles)),
                     "rule_set_version": actor.rule_set_version,
                     "reasons": canonical_json(listed)})
        result_id = r.result_id if r.result_id is not None else int(owners[r.version_id])
        audits.append(AuditItem(_actor_name(actor), f"lifecycle.{transition.action.value}",
                                f"result:{result_id}",
                                {"version_id": r.version_id,
                                 "from": transition.from_state.value,
                                 "to": transition.to_state.value,
                                 "reason": transition.reason}, source, when))
        if transition.to_state is ResultState.RERUN_REQUESTED:
            reruns.append((result_id, when))
    conn.execute(insert(s.validation_events), rows)
    append_audit_many(conn, audits)
    for result_id, when in reruns:
        _queue_rerun(conn, result_id, when)


def _user_ids(conn: Connection, names: set[str]) -> dict[str, int]:
    """The ids of the named users; every one must exist."""
    if not names:
        return {}
    found = {row.username: int(row.id) for row in conn.execute(
        select(s.users.c.id, s.users.c.username).where(s.users.c.username.in_(sorted(names))))}
    for name in sorted(names - found.keys()):
        raise NotFoundError(f"user {name!r}")
    return found


def _queue_rerun(conn: Connection, result_id: int, at: datetime) -> None:
    """A rerun goes back to the analyzer that ran the test, in its own test code."""
    r, a = s.results, s.analyzers
    row = conn.execute(select(a.c.name, s.samples.c.accession, r.c.test_code)
                       .join(a, a.c.id == r.c.analyzer_id)
                       .join(s.samples, s.samples.c.id == r.c.sample_id)
                       .where(r.c.id == result_id)).one()
    downloads.enqueue(conn, row.name, row.accession, downloads.RERUN, row.test_code, at)


def _transition(row: Row[Any]) -> Transition:
    kind = ActorKind(row.actor_kind)
    if kind is ActorKind.USER:
        actor = Actor.user(row.actor, *(Role(r) for r in row.actor_roles.split(",") if r))
    elif kind is ActorKind.RULE:
        actor = Actor.rule(row.actor, row.rule_set_version)
    else:
        actor = Actor.system(row.actor)
    action = Action(row.action)
    return Transition(ResultState(row.from_state), ResultState(row.to_state), action, actor,
                      row.comment, action is Action.CORRECT)


def _events(conn: Connection, version_id: int) -> list[Row[Any]]:
    return list(conn.execute(select(s.validation_events).where(
        s.validation_events.c.result_version_id == version_id,
        s.validation_events.c.to_state != "").order_by(s.validation_events.c.id)))


def version_history(conn: Connection, version_id: int) -> tuple[Transition, ...]:
    """The lifecycle transitions of one version, oldest first (for ``may_send_final``)."""
    return tuple(_transition(row) for row in _events(conn, version_id))


def result_status(conn: Connection, result_id: int) -> ResultStatus:
    """A result's current state and reasons, derived from its latest version's events.

    Raises:
        NotFoundError: no such result.
    """
    version_id = conn.execute(select(s.result_versions.c.id).where(
        s.result_versions.c.result_id == result_id).order_by(
        s.result_versions.c.version.desc()).limit(1)).scalar_one_or_none()
    if version_id is None:
        raise NotFoundError(f"result {result_id}")
    events = _events(conn, version_id)
    if not events:
        return ResultStatus(ResultState.RECEIVED, (), version_id)
    last = events[-1]
    state = ResultState(last.to_state)
    reasons = tuple(json.loads(last.reasons)) if state in _REASON_STATES else ()
    return ResultStatus(state, reasons, version_id)


_OTHER_VERSION = s.result_versions.alias("newest")


def _newest_version(result_id: Any) -> Any:
    """A correlated subquery: the highest version number of the result ``result_id`` names."""
    other = _OTHER_VERSION
    return (select(func.max(other.c.version)).where(other.c.result_id == result_id)
            .correlate_except(other).scalar_subquery())


@dataclass(frozen=True, slots=True)
class DeltaQuery:
    """A just-stored result whose previous result the delta check needs."""

    result_id: int
    accession: str
    test_code: str  #: the analyzer's test code, as stored
    unit_ucum: str


def previous_for_delta(conn: Connection, result_id: int) -> Previous | None:
    """The previous numeric result of the same test for the delta check, or None.

    "Previous" is the latest earlier result with the same test code in the
    same unit, of the same patient when the sample has a hospital or
    national id, else of the same sample. Its latest version gives the
    number and time (result time, else the time it was stored).
    """
    this = get_result(conn, result_id)
    query = DeltaQuery(result_id, this.accession, this.test_code,
                       this.latest.content.unit_ucum)
    return previous_for_delta_many(conn, [query])[result_id]


def previous_for_delta_many(conn: Connection, queries: Sequence[DeltaQuery]
                            ) -> dict[int, Previous | None]:
    """:func:`previous_for_delta` for several results: two reads per sample, not per result."""
    out: dict[int, Previous | None] = {}
    by_sample: dict[str, list[DeltaQuery]] = {}
    for q in queries:
        by_sample.setdefault(q.accession, []).append(q)
    if not by_sample:
        return out
    samples = {row.accession: row for row in conn.execute(
        select(s.samples).where(s.samples.c.accession.in_(sorted(by_sample))))}
    r, v = s.results, s.result_versions
    newest = _newest_version(r.c.id)
    for accession, group in by_sample.items():
        sample = samples[accession]
        same_patient = [s.samples.c.id == sample.id]
        if sample.hospital_id:
            same_patient.append(s.samples.c.hospital_id == sample.hospital_id)
        if sample.national_id:
            same_patient.append(s.samples.c.national_id == sample.national_id)
        rows = conn.execute(
            select(r.c.id, r.c.test_code, v.c.number, v.c.unit_ucum, v.c.result_time,
                   v.c.created_at).select_from(r)
            .join(s.samples, r.c.sample_id == s.samples.c.id)
            .join(v, and_(v.c.result_id == r.c.id, v.c.version == newest))
            .where(or_(*same_patient), r.c.id < max(q.result_id for q in group),
                   r.c.test_code.in_(sorted({q.test_code for q in group})))
            .order_by(r.c.id.desc())).all()
        for q in group:
            out[q.result_id] = next(
                (Previous(Decimal(row.number),
                          as_utc(row.result_time if row.result_time is not None
                                 else row.created_at))
                 for row in rows if row.id < q.result_id and row.test_code == q.test_code
                 and row.number is not None and row.unit_ucum == q.unit_ucum), None)
    return out


def held_results(conn: Connection) -> tuple[ResultInfo, ...]:
    """Every result whose current state is HELD, oldest first."""
    return tuple(info for info in list_results(conn)
                 if result_status(conn, info.id).state is ResultState.HELD)


def result_origin(conn: Connection, result_id: int) -> tuple[int, str, bytes]:
    """Where a result came from: (analyzer id, fingerprint, raw bytes of its first message)."""
    row = conn.execute(select(s.results.c.analyzer_id, s.results.c.fingerprint,
                              s.messages.c.raw).join(
        s.messages, s.results.c.message_id == s.messages.c.id).where(
        s.results.c.id == result_id)).first()
    if row is None:
        raise NotFoundError(f"result {result_id}")
    return int(row.analyzer_id), str(row.fingerprint), bytes(row.raw)


#: HL7 0078 flags that fail a control (outside its target range), plus critical marks.
QC_FAIL_FLAGS = frozenset({"L", "H", "LL", "HH", "<", ">", "A", "AA"})


def qc_failure(conn: Connection, analyzer_id: int) -> str:
    """Why the analyzer's latest QC run failed, or "" when it passed (or none was seen).

    The latest QC run is the newest message with QC results from this analyzer; it
    fails when any of its controls carries an out-of-range flag or a critical mark.
    """
    r, v = s.results, s.result_versions
    latest = conn.execute(select(r.c.message_id).where(
        r.c.analyzer_id == analyzer_id, r.c.qc.is_(True)).order_by(
        r.c.message_id.desc()).limit(1)).scalar_one_or_none()
    if latest is None:
        return ""
    newest = _newest_version(r.c.id)
    rows = conn.execute(select(r.c.test_code, v.c.flags, v.c.critical).select_from(r)
                        .join(v, and_(v.c.result_id == r.c.id, v.c.version == newest))
                        .where(r.c.message_id == latest, r.c.qc.is_(True))
                        .order_by(r.c.id)).all()
    for row in rows:
        bad = [f for f in json.loads(row.flags) if f in QC_FAIL_FLAGS] + (
            [row.critical] if row.critical else [])
        if bad:
            return (f"the last QC run (message {latest}) failed: {row.test_code} flagged "
                    f"{','.join(bad)}")
    return ""


def state_counts(conn: Connection) -> dict[ResultState, int]:
    """How many patient results are in each state now (QC runs left out).

    A result's state is its latest version's latest event (RECEIVED when it
    has none), as :func:`result_status` derives it; one query for all.
    """
    v, ev, r = s.result_versions, s.validation_events, s.results
    newest = (select(v.c.result_id, func.max(v.c.version).label("version"))
              .group_by(v.c.result_id).subquery())
    current = (select(v.c.id).join(newest, and_(v.c.result_id == newest.c.result_id,
                                                v.c.version == newest.c.version))
               .join(r, r.c.id == v.c.result_id).where(r.c.qc.is_(False)).subquery())
    last = (select(ev.c.result_version_id, func.max(ev.c.id).label("event_id"))
            .group_by(ev.c.result_version_id).subquery())
    rows = conn.execute(
        select(ev.c.to_state, func.count())
        .select_from(current.outerjoin(last, last.c.result_version_id == current.c.id)
                     .outerjoin(ev, ev.c.id == last.c.event_id))
        .group_by(ev.c.to_state)).all()
    counts = dict.fromkeys(ResultState, 0)
    for state, count in rows:
        key = ResultState(state) if state else ResultState.RECEIVED
        counts[key] += int(count)
    return counts
