"""Comments on results and acknowledgements of critical values, kept in the audit log.

Neither needs a table of its own: both are statements by a person at a
time about one result version, which is what an audit row is (hash-chained,
append-only). They are not lifecycle events, so they stay out of
``validation_events`` (whose rows make a version's replayable history).

Actions: ``result.comment`` (detail ``{"text"}``) and ``critical.acknowledge``
(detail ``{"informed", "informed_at", "how"}``: who was told, when, and how),
target ``result_version:<id>``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from ._common import require_aware
from .audit import append_audit, find_audit

COMMENT, ACKNOWLEDGE = "result.comment", "critical.acknowledge"
#: The longest comment or name kept (the audit detail is text; this is a sanity limit).
TEXT_MAX = 2000


@dataclass(frozen=True, slots=True)
class Note:
    """A comment or a critical-value acknowledgement on one result version.

    Attributes:
        version_id: the result version it is about.
        kind: :data:`COMMENT` or :data:`ACKNOWLEDGE`.
        by: the user who wrote it.
        at: when it was written (UTC ISO 8601, as in the audit log).
        text: the comment ("" for an acknowledgement).
        informed: who was told of the critical value ("" for a comment).
        informed_at: when they were told (UTC ISO 8601; "" for a comment).
        how: by which means (telephone, in person, ...).
    """

    version_id: int
    kind: str
    by: str
    at: str
    text: str = ""
    informed: str = ""
    informed_at: str = ""
    how: str = ""


def _clean(text: str, what: str) -> str:
    value = text.strip()
    if not value:
        raise ValueError(f"{what} is required")
    if len(value) > TEXT_MAX:
        raise ValueError(f"{what} has more than {TEXT_MAX} characters")
    return value


def add_comment(conn: Connection, version_id: int, username: str, text: str, *,
                at: datetime, source: str) -> None:
    """Keep a person's comment on a result version.

    Raises:
        ValueError: an empty or overlong comment.
    """
    append_audit(conn, actor=username, action=COMMENT, target=f"result_version:{version_id}",
                 detail={"text": _clean(text, "a comment")}, source=source,
                 at=require_aware(at, "at"))


def acknowledge_critical(conn: Connection, version_id: int, username: str, *, informed: str,
                         informed_at: datetime, how: str, at: datetime, source: str) -> None:
    """Record that a critical value was told to a person (who, when, how), by ``username``.

    Raises:
        ValueError: no name of the person informed, or a naive time.
    """
    append_audit(conn, actor=username, action=ACKNOWLEDGE,
                 target=f"result_version:{version_id}",
                 detail={"informed": _clean(informed, "the person informed"),
                         "informed_at": require_aware(informed_at, "informed_at").isoformat(),
                         "how": how.strip()[:200]},
                 source=source, at=require_aware(at, "at"))


def notes_for(conn: Connection, version_ids: Iterable[int]) -> tuple[Note, ...]:
    """Every comment and acknowledgement on the given versions, oldest first."""
    targets = [f"result_version:{v}" for v in version_ids]
    if not targets:
        return ()
    out = []
    for row in find_audit(conn, actions=(COMMENT, ACKNOWLEDGE), targets=targets, limit=10_000):
        detail = json.loads(row.detail)
        out.append(Note(int(row.target.rsplit(":", 1)[1]), row.action, row.actor, row.at,
                        text=detail.get("text", ""), informed=detail.get("informed", ""),
                        informed_at=detail.get("informed_at", ""), how=detail.get("how", "")))
    return tuple(out)


def acknowledged(conn: Connection, version_ids: Iterable[int]) -> frozenset[int]:
    """Which of the given versions have a critical-value acknowledgement."""
    targets = [f"result_version:{v}" for v in version_ids]
    if not targets:
        return frozenset()
    rows = find_audit(conn, actions=(ACKNOWLEDGE,), targets=targets, limit=100_000)
    return frozenset(int(r.target.rsplit(":", 1)[1]) for r in rows)
