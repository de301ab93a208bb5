"""The outbox: what must reach each destination, and how far it got (SQL only here).

Entries are made by :func:`enqueue_released` from the lifecycle's record (a
version with a RELEASED transition; a second entry, of kind ``retraction``,
when the version was RETRACTED afterwards), so an entry can never be missed: a
release committed before a crash is found again on the next call. Entries
are never deleted; their state moves pending -> delivered, or pending ->
dead -> pending when a person retries. The decisions (what an answer
means, when to try again) are made by :mod:`lis_gateway.outbound.delivery`
and only recorded here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, exists, func, insert, or_, select, update
from sqlalchemy.orm import aliased

from lis_gateway.lifecycle import Action, ResultState
from lis_gateway.outbound.delivery import Decision, DeliveryStatus, EntryState, control_id_for
from lis_gateway.store import schema as s
from lis_gateway.store._common import NotFoundError, StoreError, as_utc, require_aware
from lis_gateway.store.audit import append_audit
from lis_gateway.store.orders import ORDERED
from lis_gateway.store.patients import ANALYZER
from lis_gateway.store.repository import ResultContent, ResultVersion, version_from_row

#: Entry kinds: the version itself, or the order to delete it after a retraction.
RESULT = "result"
RETRACTION = "retraction"


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One result version on its way to one destination."""

    id: int
    result_version_id: int
    result_id: int
    destination: str
    accession: str
    test_code: str
    control_id: str
    state: EntryState
    attempts: int
    next_attempt_at: datetime | None
    last_status: str
    last_error: str
    created_at: datetime
    delivered_at: datetime | None
    kind: str = RESULT

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dictionary (no patient identifiers)."""
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None
        return {"id": self.id, "destination": self.destination, "sample": self.accession,
                "test": self.test_code, "result_id": self.result_id,
                "result_version_id": self.result_version_id, "control_id": self.control_id,
                "state": self.state.value, "attempts": self.attempts,
                "next_attempt_at": iso(self.next_attempt_at), "last_status": self.last_status,
                "last_error": self.last_error, "created_at": iso(self.created_at),
                "delivered_at": iso(self.delivered_at), "kind": self.kind}


@dataclass(frozen=True, slots=True)
class OutboundResult:
    """What the store knows of one outbox entry's result version.

    Attributes:
        control_id: the entry's MSH-10.
        accession: the sample's barcode (ORC-3/OBR-3).
        analyzer: the analyzer's configured name (OBX-18).
        test_code: the analyzer's test code (for messages about the result).
        content: the version's content.
        corrected: the version supersedes an earlier one.
        hospital_id, national_id, insurance_card: the sample's patient identifiers.
        family_name, middle_name, given_name, birth_date, sex: from the HIS order
            (or the analyzer's record: see ``patient_analyzer``).
        responsible: username of the person who released it ("" for a rule).
        responsible_name: that person's display name.
    """

    control_id: str
    accession: str
    analyzer: str
    test_code: str
    content: ResultContent
    corrected: bool
    hospital_id: str = ""
    national_id: str = ""
    insurance_card: str = ""
    responsible: str = ""
    responsible_name: str = ""
    family_name: str = ""
    middle_name: str = ""
    given_name: str = ""
    birth_date: date | None = None
    sex: str = ""  #: table 0001 as the HIS sent it
    placer_order: str = ""  #: the HIS's order number for this test (ORC-2/OBR-2)
    #: The control ID of the entry this one retracts ("" for a result entry).
    retracts: str = ""
    #: The analyzer whose own patient record gave the patient ("" when the HIS
    #: did): ``hospital_id`` is then that analyzer's patient ID, not the HIS's.
    patient_analyzer: str = ""

    @property
    def retracted(self) -> bool:
        """This entry tells the destination to delete the result sent as ``retracts``."""
        return bool(self.retracts)


def _entries_query() -> Any:
    o = s.outbox
    return (select(o, s.result_versions.c.result_id, s.samples.c.accession,
                   s.results.c.test_code)
            .join(s.result_versions, s.result_versions.c.id == o.c.result_version_id)
            .join(s.results, s.results.c.id == s.result_versions.c.result_id)
            .join(s.samples, s.samples.c.id == o.c.sample_id))


def _entry(row: Row[Any]) -> OutboxEntry:
    def opt(value: datetime | None) -> datetime | None:
        return as_utc(value) if value is not None else None
    return OutboxEntry(row.id, row.result_version_id, row.result_id, row.destination,
                       row.accession, row.test_code, row.control_id, EntryState(row.state),
                       row.attempts, opt(row.next_attempt_at), row.last_status, row.last_error,
                       as_utc(row.created_at), opt(row.delivered_at), row.kind)


def enqueue_released(conn: Connection, destination: str, at: datetime, *,
                     after_event_id: int = 0) -> int:
    """Add an entry for every released, non-QC version not yet queued for ``destination``.

    Entries are added in release order (the RELEASE event's id), which keeps
    a sample's versions in the order they were released. Returns how many
    were added.

    Args:
        after_event_id: only look at lifecycle events with a larger id (0: all).
            The worker passes its last high-water mark minus a margin, so a
            busy store is not scanned whole every poll, while a release that
            committed late with a smaller id (concurrent writers on
            PostgreSQL) is still inside the margin; every worker start scans
            everything.
    """
    when = require_aware(at, "at")
    ev, v, r, o = s.validation_events, s.result_versions, s.results, s.outbox
    found = []
    for kind, state in ((RESULT, ResultState.RELEASED), (RETRACTION, ResultState.RETRACTED)):
        queued = exists().where(and_(o.c.result_version_id == v.c.id,
                                     o.c.destination == destination, o.c.kind == kind))
        found += [(row.event_id, kind, row) for row in conn.execute(
            select(v.c.id, r.c.sample_id, ev.c.id.label("event_id"))
            .join(r, r.c.id == v.c.result_id)
            .join(ev, ev.c.result_version_id == v.c.id)
            .where(ev.c.to_state == state.value, r.c.qc.is_(False), ~queued,
                   ev.c.id > after_event_id)).all()]
    seen: set[tuple[int, str]] = set()
    rows: list[dict[str, object]] = []
    for _event, kind, row in sorted(found, key=lambda f: f[0]):  # release before retraction
        if (row.id, kind) in seen:
            continue
        seen.add((row.id, kind))
        rows.append({"result_version_id": row.id, "destination": destination,
                     "sample_id": row.sample_id, "kind": kind,
                     "control_id": control_id_for(row.id, retraction=kind == RETRACTION),
                     "state": EntryState.PENDING.value, "attempts": 0,
                     "next_attempt_at": when, "created_at": when, "updated_at": when})
    if rows:  # one statement; the list's order is the ids' order
        conn.execute(insert(o), rows)
    return len(rows)


def last_event_id(conn: Connection) -> int:
    """The largest lifecycle event id (0 when there is none): the worker's high-water mark."""
    return int(conn.execute(select(func.max(s.validation_events.c.id))).scalar() or 0)


@dataclass(frozen=True, slots=True)
class Depth:
    """What waits for one destination (for metrics): counts and the oldest wait."""

    pending: int
    dead: int
    oldest_seconds: float  #: age of the oldest undelivered entry (0 when none)


def depth(conn: Connection, destination: str, now: datetime) -> Depth:
    """Undelivered entries of ``destination``: pending, dead, and the oldest one's age."""
    o = s.outbox
    counts: dict[str, int] = {}
    oldest: datetime | None = None
    for state, count, first in conn.execute(
            select(o.c.state, func.count(), func.min(o.c.created_at)).where(
                o.c.destination == destination, o.c.state != EntryState.DELIVERED.value)
            .group_by(o.c.state)).all():
        counts[state] = int(count)
        if first is not None and (oldest is None or as_utc(first) < oldest):
            oldest = as_utc(first)
    age = 0.0 if oldest is None else max(
        0.0, (require_aware(now, "now") - oldest).total_seconds())
    return Depth(int(counts.get(EntryState.PENDING.value, 0)),
                 int(counts.get(EntryState.DEAD.value, 0)), age)


def received_at(conn: Connection, result_id: int) -> datetime:
    """When the message carrying a result was first stored (end-to-end latency)."""
    return received_at_many(conn, [result_id])[result_id]


def received_at_many(conn: Connection, result_ids: Sequence[int]) -> dict[int, datetime]:
    """:func:`received_at` of several results, in one statement (result id -> time)."""
    if not result_ids:
        return {}
    r = s.results
    return {row.id: as_utc(row.received_at) for row in conn.execute(
        select(r.c.id, s.messages.c.received_at).join(s.messages, r.c.message_id ==
                                                      s.messages.c.id)
        .where(r.c.id.in_(sorted(set(result_ids))))).all()}


def due(conn: Connection, destination: str, now: datetime, limit: int = 1) -> list[OutboxEntry]:
    """Pending entries of ``destination`` whose time has come, oldest first.

    An entry waits while an older entry of the same sample is still pending
    for that destination, so a sample's messages leave in order (a dead
    entry does not hold its sample back; it is listed for a person).
    """
    return _due(conn, destination, now, limit, batch=False)


def due_batch(conn: Connection, destination: str, now: datetime, limit: int
              ) -> list[OutboxEntry]:
    """Like :func:`due`, but a sample's due entries may follow one another in the list.

    An entry waits while an older entry of its sample waits for a later
    attempt (its back-off); otherwise the sample's entries are listed in
    order. Whoever sends them must not send a sample's later entries when
    an earlier one was not delivered (it is waiting again).
    """
    return _due(conn, destination, now, limit, batch=True)


def _due(conn: Connection, destination: str, now: datetime, limit: int, *, batch: bool
         ) -> list[OutboxEntry]:
    when = require_aware(now, "now")
    o = s.outbox
    older = aliased(o)
    waits = [older.c.destination == o.c.destination, older.c.sample_id == o.c.sample_id,
             older.c.id < o.c.id, older.c.state == EntryState.PENDING.value]
    if batch:
        waits.append(or_(older.c.next_attempt_at > when, older.c.next_attempt_at.is_(None)))
    rows = conn.execute(_entries_query().where(
        o.c.destination == destination, o.c.state == EntryState.PENDING.value,
        o.c.next_attempt_at <= when, ~exists().where(and_(*waits)))
        .order_by(o.c.id).limit(limit)).all()
    return [_entry(row) for row in rows]


def get(conn: Connection, entry_id: int) -> OutboxEntry:
    """One entry.

    Raises:
        NotFoundError: no such entry.
    """
    row = conn.execute(_entries_query().where(s.outbox.c.id == entry_id)).one_or_none()
    if row is None:
        raise NotFoundError(f"outbox entry {entry_id}")
    return _entry(row)


def record_attempt(conn: Connection, entry_id: int, status: DeliveryStatus, decision: Decision,
                   *, error: str, at: datetime, next_attempt_at: datetime | None) -> OutboxEntry:
    """Record one attempt's answer and the decision made from it.

    Args:
        status: what the destination answered.
        decision: from :func:`lis_gateway.outbound.delivery.decide`.
        error: the destination's text (MSA-3/ERR), kept for the dead-letter list.
        next_attempt_at: the decision's time as a datetime (PENDING only).

    Raises:
        NotFoundError: no such entry.
        StoreError: the entry is not pending (it was sent twice at once), or the
            decision and ``next_attempt_at`` disagree.
    """
    when = require_aware(at, "at")
    if (decision.state is EntryState.PENDING) != (next_attempt_at is not None):
        raise StoreError("a pending entry needs its next attempt time, and only it")
    entry = get(conn, entry_id)
    if entry.state is not EntryState.PENDING:
        raise StoreError(f"outbox entry {entry_id} is {entry.state.value}, not pending")
    values: dict[str, object] = {
        "state": decision.state.value, "attempts": entry.attempts + 1,
        "last_status": status.value, "last_error": error, "updated_at": when,
        "next_attempt_at": (require_aware(next_attempt_at, "next_attempt_at")
                            if next_attempt_at is not None else None)}
    if decision.state is EntryState.DELIVERED:
        values["delivered_at"] = when
    done = conn.execute(update(s.outbox).where(
        s.outbox.c.id == entry_id, s.outbox.c.state == EntryState.PENDING.value).values(**values))
    if done.rowcount != 1:  # another sender recorded it between our read and this write
        raise StoreError(f"outbox entry {entry_id} is no longer pending")
    if decision.state is EntryState.DEAD:
        append_audit(conn, actor="system", action="outbox.dead", target=f"outbox:{entry_id}",
                     detail={"destination": entry.destination, "control_id": entry.control_id,
                             "status": status.value, "error": error},
                     source="outbox", at=when)
    return get(conn, entry_id)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt's answer and decision, as :func:`record_attempt` takes them."""

    entry_id: int
    status: DeliveryStatus
    decision: Decision
    error: str
    at: datetime
    next_attempt_at: datetime | None


def record_attempts(conn: Connection, attempts: Sequence[Attempt]) -> int:
    """Record a batch of attempts: one statement for those delivered or retried.

    A dead-lettered entry goes through :func:`record_attempt` (with its
    audit record). An entry no longer pending (another sender recorded it)
    is left as it is rather than failing the batch.

    Returns:
        How many entries were recorded.
    """
    for attempt in attempts:
        require_aware(attempt.at, "at")
        if (attempt.decision.state is EntryState.PENDING) != (
                attempt.next_attempt_at is not None):
            raise StoreError("a pending entry needs its next attempt time, and only it")
    o = s.outbox
    rows = [{"b_id": a.entry_id, "b_state": a.decision.state.value,
             "b_status": a.status.value, "b_error": a.error, "b_at": a.at,
             "b_next": a.next_attempt_at,
             "b_delivered": a.at if a.decision.state is EntryState.DELIVERED else None}
            for a in attempts if a.decision.state is not EntryState.DEAD]
    recorded = 0
    if rows:
        done = conn.execute(update(o).where(
            o.c.id == bindparam("b_id"), o.c.state == EntryState.PENDING.value).values(
            state=bindparam("b_state"), attempts=o.c.attempts + 1,
            last_status=bindparam("b_status"), last_error=bindparam("b_error"),
            updated_at=bindparam("b_at"), next_attempt_at=bindparam("b_next"),
            delivered_at=bindparam("b_delivered")), rows)
        recorded = done.rowcount if done.rowcount >= 0 else len(rows)
    for a in attempts:
        if a.decision.state is EntryState.DEAD:
            try:
                record_attempt(conn, a.entry_id, a.status, a.decision, error=a.error,
                               at=a.at, next_attempt_at=None)
            except StoreError:  # no longer pending
                continue
            recorded += 1
    return recorded


def retry(conn: Connection, entry_id: int, *, actor: str, at: datetime,
          source: str = "") -> OutboxEntry:
    """Put a dead entry back in line, due now (audited).

    Raises:
        NotFoundError: no such entry.
        StoreError: the entry is not dead.
    """
    when = require_aware(at, "at")
    entry = get(conn, entry_id)
    if entry.state is not EntryState.DEAD:
        raise StoreError(f"outbox entry {entry_id} is {entry.state.value}; only a dead "
                         "entry can be retried")
    v, o = s.result_versions, s.outbox
    newer = conn.execute(select(o.c.id).join(v, v.c.id == o.c.result_version_id).where(
        v.c.result_id == entry.result_id, o.c.destination == entry.destination,
        o.c.id > entry.id, o.c.state == EntryState.DELIVERED.value).limit(1)).first()
    if newer is not None:  # sending it now would overwrite the newer value at the HIS
        raise StoreError(f"outbox entry {entry_id} is superseded: a later version of the "
                         f"result was delivered as entry {newer.id}")
    conn.execute(update(s.outbox).where(s.outbox.c.id == entry_id).values(
        state=EntryState.PENDING.value, next_attempt_at=when, updated_at=when))
    append_audit(conn, actor=actor, action="outbox.retry", target=f"outbox:{entry_id}",
                 detail={"destination": entry.destination, "control_id": entry.control_id,
                         "last_error": entry.last_error},
                 source=source, at=when)
    return get(conn, entry_id)


def entries(conn: Connection, *, destination: str | None = None,
            state: EntryState | None = None) -> list[OutboxEntry]:
    """Entries, oldest first, optionally of one destination and one state."""
    q = _entries_query()
    if destination is not None:
        q = q.where(s.outbox.c.destination == destination)
    if state is not None:
        q = q.where(s.outbox.c.state == state.value)
    return [_entry(row) for row in conn.execute(q.order_by(s.outbox.c.id))]


def released_before(conn: Connection, result_id: int, version: int) -> bool:
    """An earlier version of the result was released: this one goes out as a correction.

    A version made by re-mapping a held result (``reprocess``) supersedes one
    the HIS never received, so it is sent as final, not as a correction.
    """
    v, ev = s.result_versions, s.validation_events
    return conn.execute(select(v.c.id).join(ev, ev.c.result_version_id == v.c.id).where(
        v.c.result_id == result_id, v.c.version < version,
        ev.c.to_state == ResultState.RELEASED.value).limit(1)).first() is not None


def payload(conn: Connection, entry_id: int) -> OutboundResult:
    """Everything the message of one entry needs (see :func:`payloads`).

    Raises:
        NotFoundError: no such entry.
    """
    entry = get(conn, entry_id)
    return payloads(conn, [entry])[entry.id]


_PEOPLE = tuple(a.value for a in (Action.VALIDATE, Action.APPROVE, Action.RELEASE,
                                  Action.RETRACT))


def payloads(conn: Connection, batch: Sequence[OutboxEntry]) -> dict[int, OutboundResult]:
    """Everything the messages of several entries need (entry id -> it), in six statements.

    The responsible person is the user who released the version, else the
    last user who validated or approved it ("" when rules alone released it);
    for a retraction, the doctor who retracted it.
    """
    if not batch:
        return {}
    version_ids = sorted({e.result_version_id for e in batch})
    result_ids = sorted({e.result_id for e in batch})
    v, ev, u, r = s.result_versions, s.validation_events, s.users, s.results
    versions: dict[int, ResultVersion] = {row.id: version_from_row(row) for row in conn.execute(
        select(v).where(v.c.id.in_(version_ids))).all()}
    samples = {row.accession: row for row in conn.execute(select(s.samples).where(
        s.samples.c.accession.in_(sorted({e.accession for e in batch})))).all()}
    people: dict[int, list[Any]] = {}
    for row in conn.execute(
            select(ev.c.result_version_id, ev.c.action, u.c.username, u.c.display_name)
            .join(u, u.c.id == ev.c.user_id)
            .where(ev.c.result_version_id.in_(version_ids), ev.c.action.in_(_PEOPLE))
            .order_by(ev.c.id)).all():
        people.setdefault(row.result_version_id, []).append(row)
    analyzers = {row.id: row.name for row in conn.execute(
        select(r.c.id, s.analyzers.c.name).join(s.analyzers, r.c.analyzer_id ==
                                                 s.analyzers.c.id)
        .where(r.c.id.in_(result_ids))).all()}
    first_released = {row.result_id: row.version for row in conn.execute(
        select(v.c.result_id, func.min(v.c.version).label("version"))
        .join(ev, ev.c.result_version_id == v.c.id)
        .where(v.c.result_id.in_(result_ids), ev.c.to_state == ResultState.RELEASED.value)
        .group_by(v.c.result_id)).all()}
    o = s.orders
    placers: dict[tuple[int, str], str] = {}
    for order in conn.execute(select(o.c.sample_id, o.c.test_code, o.c.placer_order).where(
            o.c.sample_id.in_(sorted({who.id for who in samples.values()})),
            o.c.status == ORDERED).order_by(o.c.id.desc())).all():
        placers.setdefault((order.sample_id, order.test_code), order.placer_order or "")
    found = {}
    for entry in batch:
        version, who = versions[entry.result_version_id], samples[entry.accession]
        username = display = ""
        for person in people.get(entry.result_version_id, ()):
            if person.action != Action.RETRACT.value or entry.kind == RETRACTION:
                username, display = person.username, person.display_name
        found[entry.id] = OutboundResult(
            control_id=entry.control_id, accession=entry.accession,
            analyzer=analyzers[entry.result_id], test_code=entry.test_code,
            content=version.content,
            corrected=first_released.get(entry.result_id, version.version) < version.version,
            hospital_id=who.hospital_id or "", national_id=who.national_id or "",
            insurance_card=who.insurance_card or "", responsible=username,
            responsible_name=display, family_name=who.family_name,
            middle_name=who.middle_name, given_name=who.given_name,
            birth_date=who.birth_date, sex=who.sex,
            placer_order=placers.get((who.id, version.content.code), ""),
            retracts=(control_id_for(entry.result_version_id) if entry.kind == RETRACTION
                      else ""),
            patient_analyzer=who.patient_analyzer if who.patient_source == ANALYZER else "")
    return found
