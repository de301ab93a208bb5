"""The delivery page: the outbox per destination, dead letters and retry, the reconciliation.

* ``GET /delivery``: per destination the entries pending, dead and delivered
  and how long the oldest has waited; the dead letters with the
  destination's answer and a retry button; the entries still pending with
  their attempts and next try. Barcodes are shown: the view is audited
  (``view.delivery`` with them).
* ``POST /delivery/retry`` (``entry``): a dead letter back in line, due now
  (:func:`lis_gateway.store.outbox.retry`, audited ``outbox.retry``); one the
  store refuses (not dead, or superseded by a later version delivered) is
  said so on the page.
* ``GET /delivery/reconcile?since=&all=``: every result received since a day
  and, per destination, whether it was delivered or where it waits and why
  (:func:`lis_gateway.store.reconcile.reconcile`); by default only the results
  not delivered everywhere. Audited (``view.reconcile``).

Administrators only.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection
from twisted.python.failure import Failure
from twisted.web.server import Request

from lis_gateway.outbound.delivery import EntryState
from lis_gateway.store import outbox
from lis_gateway.store._common import NotFoundError, StoreError
from lis_gateway.store.audit import append_audit
from lis_gateway.store.delivery import DestinationSummary, WaitingEntry, summaries, waiting
from lis_gateway.store.reconcile import Reconciled, reconcile

from .admin import RolePage
from .sessions import Session
from .web import FormError, client, field_text

#: Where a result is, by the reconciliation, that counts as done for a destination.
DONE = frozenset({"delivered", "retracted"})
#: How far back the reconciliation looks by default (days).
DEFAULT_DAYS = 7


@dataclass(frozen=True, slots=True)
class DeliveryView:
    """What the delivery page shows."""

    destinations: tuple[DestinationSummary, ...]
    dead: dict[str, tuple[WaitingEntry, ...]]
    pending: dict[str, tuple[WaitingEntry, ...]]


def load_delivery(conn: Connection, configured: tuple[str, ...], username: str, *,
                  at: datetime, source: str) -> DeliveryView:
    """The outbox per destination, the view audited with the barcodes shown."""
    found = summaries(conn, configured)
    dead = {d.name: waiting(conn, d.name, EntryState.DEAD) for d in found}
    pending = {d.name: waiting(conn, d.name, EntryState.PENDING) for d in found}
    shown = sorted({e.accession for rows in (*dead.values(), *pending.values()) for e in rows})
    append_audit(conn, actor=username, action="view.delivery", target="delivery",
                 detail={"samples": shown}, source=source, at=at)
    return DeliveryView(found, dead, pending)


def load_reconcile(conn: Connection, destinations: tuple[str, ...], since: datetime,
                   everything: bool, username: str, *, at: datetime, source: str
                   ) -> tuple[list[Reconciled], Counter[str]]:
    """The reconciliation since ``since`` (only what is not done unless ``everything``)
    and how many results are where, the view audited with the barcodes shown."""
    rows = reconcile(conn, destinations, since)
    where = Counter(w.where for r in rows for w in r.destinations)
    if not everything:
        rows = [r for r in rows if any(w.where not in DONE for w in r.destinations)]
    append_audit(conn, actor=username, action="view.reconcile", target="reconcile",
                 detail={"since": since.isoformat(), "all": everything,
                         "samples": sorted({r.accession for r in rows})},
                 source=source, at=at)
    return rows, where


def parse_day(text: str) -> date:
    """A day written dd/mm/yyyy or yyyy-mm-dd.

    Raises:
        ValueError: neither.
    """
    for pattern in ("%d/%m/%Y", "%Y-%m-%d"):
        try:
            return datetime.strptime(text.strip(), pattern).date()
        except ValueError:
            continue
    raise ValueError(text)


class DeliveryPage(RolePage):
    """``/delivery``: the outbox per destination."""

    def read(self, request: Request, session: Session) -> bytes | int:
        d = self.ctx.pool.run(load_delivery, self.setup.destinations, session.username,
                              at=self.ctx.now(), source=client(request))
        now = self.ctx.now()
        return self.ctx.respond(request, session, d, lambda view: self.ctx.render(
            request, session, "delivery.html", view=view, now=now,
            waited=lambda t: _duration(now - t) if t is not None else ""))


def _duration(span: timedelta) -> str:
    seconds = max(0, int(span.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}"


class RetryPage(RolePage):
    """``POST /delivery/retry``: a dead letter sent again (audited)."""

    def act(self, request: Request, session: Session) -> bytes | int:
        try:
            entry = int(field_text(request, "entry"))
        except ValueError:
            raise FormError(self._text(session, request, "Which entry? (no number given)")
                            ) from None
        d = self.ctx.pool.run(outbox.retry, entry, actor=session.username, at=self.ctx.now(),
                              source=client(request)).addCallback(self.ctx.released)
        gettext = self.ctx.locales[session.lang].gettext

        def done(retried: outbox.OutboxEntry) -> bytes:
            self.ctx.log.info("webapp-outbox-retry", user=session.username, entry=retried.id,
                              destination=retried.destination)
            session.flash("ok", gettext("Entry {entry} for {destination} is back in line."
                                        ).format(entry=retried.id,
                                                 destination=retried.destination))
            return self.ctx.redirect(request, "/delivery")

        def refused(failure: Failure) -> bytes:
            failure.trap(StoreError, NotFoundError)
            session.flash("error", gettext("Not retried: {why}").format(
                why=failure.getErrorMessage()))
            return self.ctx.redirect(request, "/delivery")

        d.addCallbacks(done, refused)
        return self.ctx.respond(request, session, d, lambda body: body)


class ReconcilePage(RolePage):
    """``/delivery/reconcile``: every result since a day, per destination."""

    def read(self, request: Request, session: Session) -> bytes | int:
        zone = ZoneInfo(self.ctx.zone)
        today = self.ctx.now().astimezone(zone).date()
        given = field_text(request, "since").strip()
        errors: list[str] = []
        day = today - timedelta(days=DEFAULT_DAYS)
        if given:
            try:
                day = parse_day(given)
            except ValueError:
                errors.append(self._text(session, request, "Not a date (dd/mm/yyyy): {value}"
                                         ).format(value=given))
        everything = field_text(request, "all") == "1"
        since = datetime.combine(day, time(), zone)
        d = self.ctx.pool.run(load_reconcile, self.setup.destinations, since, everything,
                              session.username, at=self.ctx.now(), source=client(request))
        return self.ctx.respond(request, session, d, lambda found: self.ctx.render(
            request, session, "reconcile.html", rows=found[0], where=found[1],
            destinations=self.setup.destinations, since=day, everything=everything,
            errors=errors, done=DONE))
