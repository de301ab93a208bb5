"""The analyzers page: each link's state, and its newest wire recording for diagnosis.

* ``GET /analyzers`` (administrators and technicians): from the status board
  (:mod:`lis_gateway.link_status`), for each link: connected or not and
  since when, idle since (the last byte either way), the last message,
  messages stored, repeated, refused and incomplete, NAKs sent and received,
  the latest errors. Nothing here is patient data; it is not audited.
* ``GET /analyzers/wire?link=&kb=`` (administrators only): the last ``kb``
  KiB of the link's newest recording with control characters named
  (:mod:`lis_gateway.wire_view`). Recordings hold patient data: each view is
  audited (``view.wire``: the link and the file) in the transaction that
  reads the file, off the reactor thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection
from twisted.web.server import Request

from lis_gateway.link_status import LinkStatus
from lis_gateway.store.audit import append_audit
from lis_gateway.wire_view import DEFAULT_KB, MAX_KB, WireTail, newest_recording, read_tail

from .admin import ADMIN, RolePage
from .sessions import Session
from .web import FormError, client, field_text

#: Who may see the links' state (read-only; nothing on the page changes anything).
STATUS_READERS = frozenset({"admin", "technician"})


def when(t: float | None) -> datetime | None:
    """Clock seconds as a time for the page (None stays None)."""
    return None if t is None else datetime.fromtimestamp(t, UTC)


@dataclass(frozen=True, slots=True)
class WireView:
    """What the wire page shows: the link, the tail (None: no recording yet)."""

    link: str
    tail: WireTail | None


def load_wire(conn: Connection, record_dir: Path, link: str, kb: int, encoding: str,
              username: str, *, at: datetime, source: str) -> WireView:
    """Read the tail of the link's newest recording and audit the view.

    Raises:
        OSError: the file could not be read (nothing audited).
    """
    path = newest_recording(record_dir, link)
    if path is None:
        return WireView(link, None)
    tail = read_tail(path, kb, encoding)
    append_audit(conn, actor=username, action="view.wire", target=f"link:{link}",
                 detail={"file": path.name, "from": tail.start, "to": tail.size},
                 source=source, at=at)
    return WireView(link, tail)


class AnalyzersPage(RolePage):
    """``/analyzers``: every link's state from the status board."""

    readers = STATUS_READERS

    def read(self, request: Request, session: Session) -> bytes | int:
        board = self.setup.status
        links: tuple[LinkStatus, ...] = board.snapshot() if board is not None else ()
        return self.ctx.render(request, session, "analyzers.html", links=links, when=when,
                               board=board is not None, admin=bool(session.roles & ADMIN),
                               recorded=self.setup.record_dir is not None)


class WirePage(RolePage):
    """``/analyzers/wire?link=&kb=``: the newest recording's tail, control characters named."""

    def read(self, request: Request, session: Session) -> bytes | int:
        link = field_text(request, "link")
        known = ({s.name for s in self.setup.status.snapshot()} if self.setup.status
                 else set()) | set(self.setup.encodings)
        if link not in known:
            raise FormError(self._text(session, request, "No such analyzer link: {link}"
                                       ).format(link=link))
        if self.setup.record_dir is None:
            raise FormError(self._text(session, request, "Wire recordings are not kept "
                                       "([wire] record_dir is not set)."))
        try:
            kb = min(MAX_KB, max(1, int(field_text(request, "kb", str(DEFAULT_KB)))))
        except ValueError:
            raise FormError(self._text(session, request, "Not a number: {value}").format(
                value=field_text(request, "kb"))) from None
        d = self.ctx.pool.run(load_wire, self.setup.record_dir, link, kb,
                              self.setup.encodings.get(link, "latin-1"), session.username,
                              at=self.ctx.now(), source=client(request))
        return self.ctx.respond(request, session, d, lambda view: self.ctx.render(
            request, session, "wire.html", view=view, kb=kb, when=when,
            sizes=(4, 16, 64, 256)))
