"""The audit page: who viewed or changed what, searched by patient, sample, user and time.

``GET /audit?patient=&sample=&user=&since=&until=`` (administrators and
doctors): the audit rows matching every field given, newest first
(:func:`lis_gateway.store.audit_search.search_audit`); a patient is an
identifier or part of a name, and the samples it matched are listed.
Days are read dd/mm/yyyy in the lab's zone, ``until`` included. Every
search, the empty form too, is itself written to the audit log
(``view.audit``, with the criteria and how many rows were shown) in the
transaction that reads.
"""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection
from twisted.web.server import Request

from lis_gateway.store.audit import append_audit
from lis_gateway.store.audit_search import AuditFound, AuditQuery, search_audit

from .admin import RolePage
from .delivery_page import parse_day
from .sessions import Session
from .web import client, field_text

#: Who may search the audit log.
AUDIT_READERS = frozenset({"admin", "doctor"})
_FIELDS = ("patient", "sample", "user", "since", "until")


def load_audit(conn: Connection, query: AuditQuery, criteria: dict[str, str],
               username: str, *, at: datetime, source: str) -> AuditFound:
    """Search, then audit the search (criteria and rows shown; nothing when empty)."""
    found = search_audit(conn, query) if not query.empty else AuditFound((), (), False)
    append_audit(conn, actor=username, action="view.audit", target="audit",
                 detail={"criteria": {k: v for k, v in criteria.items() if v},
                         "rows": len(found.entries),
                         "samples": [p.accession for p in found.samples]},
                 source=source, at=at)
    return found


def detail_text(detail: str) -> str:
    """An audit row's detail for people: ``key: value`` pairs, or the text as kept."""
    try:
        value = json.loads(detail)
    except ValueError:
        return detail
    if not isinstance(value, dict):
        return detail
    return "; ".join(f"{k}: {v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}"
                     for k, v in value.items())


class AuditPage(RolePage):
    """``/audit``: the search form and what it found."""

    readers = AUDIT_READERS

    def read(self, request: Request, session: Session) -> bytes | int:
        given = {k: field_text(request, k).strip() for k in _FIELDS}
        zone = ZoneInfo(self.ctx.zone)
        errors: list[str] = []
        bounds: dict[str, datetime | None] = {"since": None, "until": None}
        for key in ("since", "until"):
            if not given[key]:
                continue
            try:
                start = datetime.combine(parse_day(given[key]), time(), zone)
            except ValueError:
                errors.append(self._text(session, request, "Not a date (dd/mm/yyyy): {value}"
                                         ).format(value=given[key]))
                given[key] = ""
                continue
            bounds[key] = start if key == "since" else start + timedelta(days=1)
        query = AuditQuery(patient=given["patient"], sample=given["sample"],
                           user=given["user"], since=bounds["since"], until=bounds["until"])
        d = self.ctx.pool.run(load_audit, query, given, session.username, at=self.ctx.now(),
                              source=client(request))
        return self.ctx.respond(request, session, d, lambda found: self.ctx.render(
            request, session, "audit.html", found=found, given=given, errors=errors,
            searched=not query.empty, detail_text=detail_text))
