"""The append-only audit log, chained by hashes: who, what, when, from where.

Each row stores ``sha256(prev_hash + canonical JSON of the row)``; the head
row is locked while appending so two writers cannot fork the chain.
:func:`verify_audit` finds rows altered, removed or reordered behind the
repository's back (``lis-gateway audit verify``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import Connection, func, insert, select, update

from . import schema as s
from ._common import canonical_json, require_aware, sha256_hex


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit row: who (actor), what (action, target, detail), when, from where."""

    id: int
    seq: int
    at: str
    actor: str
    action: str
    target: str
    detail: str
    source: str
    prev_hash: str
    hash: str


def _audit_hash(prev_hash: str, fields: Mapping[str, object]) -> str:
    return sha256_hex(prev_hash + canonical_json(dict(fields)))


@dataclass(frozen=True, slots=True)
class AuditItem:
    """One row to append: who (actor), what (action, target, detail), when, from where."""

    actor: str
    action: str
    target: str
    detail: Mapping[str, object]
    source: str
    at: datetime


def append_audit(conn: Connection, *, actor: str, action: str, target: str,
                 detail: Mapping[str, object], source: str, at: datetime) -> AuditEntry:
    """Append one hash-chained audit row.

    The chain head row is read ``FOR UPDATE`` (PostgreSQL) or under SQLite's
    ``BEGIN IMMEDIATE`` write lock, so concurrent appends cannot fork the chain.
    """
    (entry,) = append_audit_many(conn, [AuditItem(actor, action, target, detail, source, at)])
    return entry


def append_audit_many(conn: Connection, items: Sequence[AuditItem]) -> list[AuditEntry]:
    """Append rows in order to the chain: one head read, one insert, one head update."""
    if not items:
        return []
    head = conn.execute(select(s.audit_head).where(s.audit_head.c.id == 1)
                        .with_for_update()).first()
    if head is None:
        conn.execute(insert(s.audit_head).values(id=1, seq=0, hash=s.GENESIS_HASH))
        seq, prev = 0, s.GENESIS_HASH
    else:
        seq, prev = head.seq, head.hash
    rows: list[dict[str, object]] = []
    entries: list[AuditEntry] = []
    for item in items:
        seq += 1
        at, detail = require_aware(item.at, "at").isoformat(), canonical_json(dict(item.detail))
        fields = {"seq": seq, "at": at, "actor": item.actor, "action": item.action,
                  "target": item.target, "detail": detail, "source": item.source,
                  "prev_hash": prev}
        digest = _audit_hash(prev, fields)
        rows.append({**fields, "hash": digest})
        entries.append(AuditEntry(0, seq, at, item.actor, item.action, item.target, detail,
                                  item.source, prev, digest))
        prev = digest
    returning = insert(s.audit_log).returning(s.audit_log.c.seq, s.audit_log.c.id)
    ids = {int(seq): int(pk) for seq, pk in conn.execute(returning, rows)}  # seq is unique
    conn.execute(update(s.audit_head).where(s.audit_head.c.id == 1).values(seq=seq, hash=prev))
    return [replace(entry, id=ids[entry.seq]) for entry in entries]


def audit_entries(conn: Connection) -> tuple[AuditEntry, ...]:
    """The whole audit log in chain order."""
    rows = conn.execute(select(s.audit_log).order_by(s.audit_log.c.seq))
    return tuple(AuditEntry(r.id, r.seq, r.at, r.actor, r.action, r.target, r.detail,
                            r.source, r.prev_hash, r.hash) for r in rows)


def verify_audit(conn: Connection,
                 progress: Callable[[int, int], None] | None = None) -> list[int]:
    """Check the audit chain (``progress`` is told ``(rows checked, rows)`` as it goes).

    Returns:
        The ids of rows that do not verify: the row's hash does not match its
        content, or it does not follow the previous row (a row removed or
        reordered before it). If rows are missing at the end (the chain head
        says more were written), the last row's id is reported, or 0 when
        the log is empty. An empty list means the chain is intact.
    """
    broken: list[int] = []
    prev, expected_seq, last_id = s.GENESIS_HASH, 1, 0
    total = int(conn.execute(select(func.count()).select_from(s.audit_log)).scalar() or 0)
    for checked, entry in enumerate(audit_entries(conn)):
        if progress is not None and checked % 1000 == 0:
            progress(checked, total)
        fields = {"seq": entry.seq, "at": entry.at, "actor": entry.actor,
                  "action": entry.action, "target": entry.target, "detail": entry.detail,
                  "source": entry.source, "prev_hash": entry.prev_hash}
        if (entry.seq != expected_seq or entry.prev_hash != prev
                or _audit_hash(entry.prev_hash, fields) != entry.hash):
            broken.append(entry.id)
        prev, expected_seq, last_id = entry.hash, entry.seq + 1, entry.id
    head = conn.execute(select(s.audit_head).where(s.audit_head.c.id == 1)).first()
    head_seq, head_hash = (0, s.GENESIS_HASH) if head is None else (head.seq, head.hash)
    if (head_seq, head_hash) != (expected_seq - 1, prev) and last_id not in broken:
        broken.append(last_id)
    if progress is not None:
        progress(total, total)
    return broken


def find_audit(conn: Connection, *, actions: Sequence[str], targets: Sequence[str] = (),
               since: datetime | None = None, limit: int = 1000) -> tuple[AuditEntry, ...]:
    """Audit rows of the given actions (and targets, and from ``since`` on), oldest first.

    The ``at`` column holds UTC ISO 8601 text, which sorts like the times it
    names, so ``since`` is compared as text. With ``limit``, the newest rows
    are kept.
    """
    log = s.audit_log
    query = select(log).where(log.c.action.in_(list(actions)))
    if targets:
        query = query.where(log.c.target.in_(list(targets)))
    if since is not None:
        query = query.where(log.c.at >= require_aware(since, "since").isoformat())
    rows = list(conn.execute(query.order_by(log.c.seq.desc()).limit(limit)))
    return tuple(AuditEntry(r.id, r.seq, r.at, r.actor, r.action, r.target, r.detail,
                            r.source, r.prev_hash, r.hash) for r in reversed(rows))
