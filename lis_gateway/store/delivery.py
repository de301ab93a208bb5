"""The delivery page's reading of the outbox: per destination, what waits and what failed.

Counts per destination and state, the age of the oldest undelivered entry,
and the newest entries not delivered (pending, with their next attempt, and
dead letters, with the destination's answer). Retrying a dead letter is
:func:`lis_gateway.store.outbox.retry`; the reconciliation report is
:func:`lis_gateway.store.reconcile.reconcile`. Read-only; SQL only here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, select

from lis_gateway.outbound.delivery import EntryState
from lis_gateway.store import schema as s
from lis_gateway.store._common import as_utc, require_aware

#: The most entries of one state listed per destination.
MAX_LISTED = 200


@dataclass(frozen=True, slots=True)
class DestinationSummary:
    """One destination's outbox.

    Attributes:
        name: the destination.
        configured: it is in the configuration (else only old entries name it).
        pending, dead, delivered: entries in each state.
        oldest_waiting: when the oldest undelivered entry was made (None: none).
    """

    name: str
    configured: bool
    pending: int
    dead: int
    delivered: int
    oldest_waiting: datetime | None


@dataclass(frozen=True, slots=True)
class WaitingEntry:
    """An entry not delivered, as the page lists it (barcode and test, no patient)."""

    id: int
    destination: str
    accession: str
    test_code: str
    kind: str
    control_id: str
    state: EntryState
    attempts: int
    next_attempt_at: datetime | None
    last_status: str
    last_error: str
    created_at: datetime
    updated_at: datetime


def summaries(conn: Connection, configured: Sequence[str]) -> tuple[DestinationSummary, ...]:
    """Every configured destination (even with no entry), then any other the outbox names."""
    o = s.outbox
    counts: dict[str, dict[str, int]] = {}
    for name, state, count in conn.execute(select(o.c.destination, o.c.state, func.count())
                                           .group_by(o.c.destination, o.c.state)).all():
        counts.setdefault(name, {})[state] = int(count)
    oldest = dict(conn.execute(select(o.c.destination, func.min(o.c.created_at)).where(
        o.c.state != EntryState.DELIVERED.value).group_by(o.c.destination)).all())
    names = list(dict.fromkeys([*configured, *sorted(counts)]))
    out = []
    for name in names:
        c = counts.get(name, {})
        when = oldest.get(name)
        out.append(DestinationSummary(
            name, name in configured, c.get(EntryState.PENDING.value, 0),
            c.get(EntryState.DEAD.value, 0), c.get(EntryState.DELIVERED.value, 0),
            None if when is None else as_utc(when)))
    return tuple(out)


def waiting(conn: Connection, destination: str, state: EntryState,
            limit: int = MAX_LISTED) -> tuple[WaitingEntry, ...]:
    """The oldest ``limit`` entries of a destination in a state (pending or dead)."""
    o, v, r, smp = s.outbox, s.result_versions, s.results, s.samples
    rows = conn.execute(
        select(o, smp.c.accession, r.c.test_code)
        .join(v, v.c.id == o.c.result_version_id).join(r, r.c.id == v.c.result_id)
        .join(smp, smp.c.id == o.c.sample_id)
        .where(o.c.destination == destination, o.c.state == state.value)
        .order_by(o.c.id).limit(limit)).all()
    return tuple(WaitingEntry(
        row.id, row.destination, row.accession, row.test_code, row.kind, row.control_id,
        EntryState(row.state), int(row.attempts),
        None if row.next_attempt_at is None else as_utc(row.next_attempt_at),
        row.last_status, row.last_error, as_utc(row.created_at), as_utc(row.updated_at))
        for row in rows)


def age_seconds(summary: DestinationSummary, now: datetime) -> float:
    """How long the oldest undelivered entry has waited (0 when none)."""
    if summary.oldest_waiting is None:
        return 0.0
    return max(0.0, (require_aware(now, "now") - summary.oldest_waiting).total_seconds())
