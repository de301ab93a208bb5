"""Results held because their code or unit is not in the mapping table, grouped (SQL only here).

The mapping-problems page lists, per analyzer and code as sent, the held
results whose current version says ``not-mapped`` (the code is not in the
analyzer's table, or there is no table) or ``unit-mismatch`` (the code is
mapped but the analyzer sent another unit): how many, which units were
sent, since when, and which samples. Fixing the table and reprocessing
them is done elsewhere (:mod:`lis_gateway.mapping_files`,
:mod:`lis_gateway.reprocess`); this module only reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select

from lis_gateway.lifecycle import ResultState
from lis_gateway.store import schema as s
from lis_gateway.store._common import as_utc

#: The problem kinds this page is about, as :mod:`lis_gateway.normalize` words them.
KINDS = ("not-mapped", "unit-mismatch")
#: How many barcodes of a group are named on the page.
SHOWN_SAMPLES = 10


@dataclass(frozen=True, slots=True)
class MappingProblem:
    """The held results of one analyzer and code with one kind of mapping problem.

    Attributes:
        analyzer: the analyzer's configured name.
        code: the test code as the analyzer sent it.
        kind: ``not-mapped`` or ``unit-mismatch``.
        detail: the problem's text on the newest of them.
        units: the units the analyzer sent, sorted.
        result_ids: every held result of the group, oldest first.
        samples: the first :data:`SHOWN_SAMPLES` barcodes, oldest first.
        first_at, last_at: when the oldest and newest arrived.
        mapping_version: the table version the newest was mapped with ("" none).
    """

    analyzer: str
    code: str
    kind: str
    detail: str
    units: tuple[str, ...]
    result_ids: tuple[int, ...]
    samples: tuple[str, ...]
    first_at: datetime
    last_at: datetime
    mapping_version: str

    @property
    def count(self) -> int:
        """How many results wait."""
        return len(self.result_ids)


def _held_with_problems() -> Any:
    r, v, e = s.results, s.result_versions, s.validation_events
    latest = (select(v.c.result_id, func.max(v.c.version).label("version"))
              .group_by(v.c.result_id).subquery())
    last_event = (select(e.c.result_version_id, func.max(e.c.id).label("event_id"))
                  .where(e.c.to_state != "").group_by(e.c.result_version_id).subquery())
    return (select(r.c.id, r.c.test_code, r.c.created_at, s.analyzers.c.name.label("analyzer"),
                   s.samples.c.accession, v.c.unit_raw, v.c.problems, v.c.mapping_version)
            .join(s.analyzers, s.analyzers.c.id == r.c.analyzer_id)
            .join(s.samples, s.samples.c.id == r.c.sample_id)
            .join(latest, latest.c.result_id == r.c.id)
            .join(v, and_(v.c.result_id == r.c.id, v.c.version == latest.c.version))
            .join(last_event, last_event.c.result_version_id == v.c.id)
            .join(e, e.c.id == last_event.c.event_id)
            .where(r.c.qc.is_(False), e.c.to_state == ResultState.HELD.value,
                   or_(*(v.c.problems.like(f'%"{kind}:%') for kind in KINDS)))
            .order_by(r.c.id))


def _kind(problems: list[str]) -> tuple[str, str] | None:
    for kind in KINDS:
        for text in problems:
            if text.startswith(f"{kind}:"):
                return kind, text[len(kind) + 1:].strip()
    return None


def mapping_problems(conn: Connection) -> tuple[MappingProblem, ...]:
    """Every group of held results with a mapping problem, the largest first."""
    groups: dict[tuple[str, str, str], list[Any]] = {}
    for row in conn.execute(_held_with_problems()).all():
        found = _kind(json.loads(row.problems))
        if found is not None:
            groups.setdefault((row.analyzer, row.test_code, found[0]), []).append(
                (row, found[1]))
    out = []
    for (analyzer, code, kind), rows in groups.items():
        newest, detail = rows[-1]
        samples = list(dict.fromkeys(r.accession for r, _ in rows))
        out.append(MappingProblem(
            analyzer, code, kind, detail, tuple(sorted({r.unit_raw for r, _ in rows})),
            tuple(r.id for r, _ in rows), tuple(samples[:SHOWN_SAMPLES]),
            as_utc(rows[0][0].created_at), as_utc(newest.created_at),
            newest.mapping_version))
    out.sort(key=lambda p: (-p.count, p.analyzer, p.code, p.kind))
    return tuple(out)


def problem_of(conn: Connection, analyzer: str, code: str) -> tuple[MappingProblem, ...]:
    """The groups of one analyzer and code (one per kind; empty when none is held)."""
    return tuple(p for p in mapping_problems(conn) if (p.analyzer, p.code) == (analyzer, code))
