"""Drains the outbox of one destination (the thin Twisted part).

One loop per destination, one message in flight at a time:

1. in one transaction: queue newly released versions
   (:func:`lis_gateway.store.outbox.enqueue_released`), pick the oldest due
   entry (a sample's entries in order) and read what its message needs;
2. build its payload with the destination's
   :class:`~lis_gateway.outbound.channel.Channel` (an ORU^R01, a JSON body,
   a FHIR bundle);
3. send it through the same channel (which reconnects by itself and waits
   for the answer under its timeout);
4. in one transaction: record the answer and the decision of
   :func:`lis_gateway.outbound.delivery.decide` (delivered, retried after a
   back-off, or dead-lettered).

Then straight to the next entry, or a poll interval later when nothing is
due. A crash between 3 and 4 leaves the entry pending, so it is sent again
with the same control ID (MSH-10, idempotency key, Observation
identifier): at least once, recognisably. Logs carry the entry id,
control ID and status, never patient data.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection
from structlog.typing import FilteringBoundLogger
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from lis_gateway import metrics
from lis_gateway.hl7.errors import BuildError
from lis_gateway.ingest import RunsWork
from lis_gateway.outbound.channel import Channel
from lis_gateway.outbound.delivery import (
    DEFAULT_BACKOFF,
    Backoff,
    Decision,
    DeliveryStatus,
    EntryState,
    decide,
)
from lis_gateway.outbound.sender import DeliveryReport
from lis_gateway.store import outbox

#: Seconds between looks at the outbox when nothing was due.
POLL_INTERVAL = 2.0


#: Lifecycle events re-examined behind the high-water mark on every poll, so a
#: release committed late with a smaller id (concurrent writers) is not missed.
LOOKBACK_EVENTS = 10_000

_Found = tuple[int, tuple[outbox.OutboxEntry, outbox.OutboundResult] | None, outbox.Depth]


def _next_entry(conn: Connection, destination: str, now: datetime, after_event_id: int
                ) -> _Found:
    mark = outbox.last_event_id(conn)
    outbox.enqueue_released(conn, destination, now, after_event_id=after_event_id)
    depth = outbox.depth(conn, destination, now)
    found = outbox.due(conn, destination, now, 1)
    if not found:
        return mark, None, depth
    return mark, (found[0], outbox.payload(conn, found[0].id)), depth


def _record_attempt(conn: Connection, entry: outbox.OutboxEntry, status: DeliveryStatus,
                    decision: Decision, *, error: str, at: datetime,
                    next_attempt_at: datetime | None) -> datetime | None:
    """Record the attempt; when it delivered a result, when that result was received."""
    outbox.record_attempt(conn, entry.id, status, decision, error=error, at=at,
                          next_attempt_at=next_attempt_at)
    if decision.state is not EntryState.DELIVERED or entry.kind != outbox.RESULT:
        return None
    return outbox.received_at(conn, entry.result_id)


class OutboxWorker(Service):
    """Sends one destination's outbox entries through its channel, one at a time.

    Args:
        destination: the destination's configured name (the outbox key).
        pool: runs store work in transactions off the reactor thread.
        channel: builds and sends the payloads (started and stopped with this service).
        clock: the only time source (``seconds()`` is Unix time under a reactor).
        poll_interval: seconds between looks when nothing is due.
        backoff: retry delays.
        rand: uniform numbers in [0, 1) for the jitter.
        log: a logger bound to the destination.
    """

    def __init__(self, destination: str, pool: RunsWork, channel: Channel,
                 clock: IReactorTime, *,
                 poll_interval: float = POLL_INTERVAL, backoff: Backoff = DEFAULT_BACKOFF,
                 rand: Callable[[], float] = random.random,
                 log: FilteringBoundLogger | None = None) -> None:
        self.destination = destination
        self._pool, self._channel, self._clock = pool, channel, clock
        self.poll_interval = poll_interval
        self._backoff, self._rand = backoff, rand
        self._log: FilteringBoundLogger = (
            log if log is not None
            else structlog.get_logger("lis_gateway.outbox").bind(destination=destination))
        self._call: IDelayedCall | None = None
        self._mark: int | None = None  # lifecycle high-water mark; None: scan everything
        self._busy = False
        self._sending: Deferred[DeliveryReport] | None = None
        #: Fires when the loop is idle after stopService.
        self._idle: Deferred[None] | None = None

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.seconds(), UTC)

    def startService(self) -> None:
        """Connect and start draining."""
        super().startService()
        self._channel.startService()
        self._schedule(0)

    def stopService(self) -> Deferred[None]:
        """Stop after the current database step; an unanswered message stays pending."""
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self._sending is not None:
            self._sending.cancel()
        stopped = self._channel.stopService()
        if not self._busy:
            return stopped
        self._idle = Deferred()
        return self._idle.addCallback(lambda _: stopped)

    def _schedule(self, delay: float) -> None:
        if self.running and self._call is None:
            self._call = self._clock.callLater(delay, self._tick)

    def _done(self, delay: float) -> None:
        self._busy = False
        if self._idle is not None:
            idle, self._idle = self._idle, None
            idle.callback(None)
        self._schedule(delay)  # only while running: a restart during the wait carries on

    def _tick(self) -> None:
        self._call = None
        if self._busy or not self.running:
            return
        self._busy = True
        after = 0 if self._mark is None else max(0, self._mark - LOOKBACK_EVENTS)
        d = self._pool.run(_next_entry, self.destination, self._now(), after)
        d.addCallback(self._got)
        d.addErrback(self._failed, "outbox-read-failed")

    def _got(self, looked: _Found) -> Deferred[Any] | None:
        self._mark, found, depth = looked
        metrics.OUTBOX_DEPTH.labels(self.destination, "pending").set(depth.pending)
        metrics.OUTBOX_DEPTH.labels(self.destination, "dead").set(depth.dead)
        metrics.OUTBOX_OLDEST.labels(self.destination).set(depth.oldest_seconds)
        if found is None:
            self._done(self.poll_interval)
            return None
        entry, item = found
        if not self.running:
            self._done(0)
            return None
        try:
            payload = self._channel.build(item, self._now())
        except BuildError as exc:
            # no patient identifier yet: an order may bring it, so it waits (retried);
            # anything else is in the released content and needs a person (dead)
            waits = not (item.hospital_id or item.national_id or item.insurance_card)
            status = DeliveryStatus.NOT_BUILT if waits else DeliveryStatus.UNBUILDABLE
            return self._record(entry, status, str(exc))
        except Exception as exc:  # a defect must not block the destination forever
            return self._record(entry, DeliveryStatus.UNBUILDABLE,
                                f"message could not be built ({type(exc).__name__})")
        self._sending = self._channel.send(payload, entry.control_id)
        self._sending.addCallback(self._answered, entry, self._clock.seconds())
        return self._sending

    def _answered(self, report: DeliveryReport, entry: outbox.OutboxEntry,
                  sent_at: float) -> Deferred[Any]:
        self._sending = None
        metrics.HIS_ACK.labels(self.destination).observe(
            max(0.0, self._clock.seconds() - sent_at))
        return self._record(entry, report.status, report.text)

    def _record(self, entry: outbox.OutboxEntry, status: DeliveryStatus,
                text: str) -> Deferred[Any]:
        now = self._clock.seconds()
        attempts = entry.attempts + 1
        decision = decide(status, attempts, now, self._rand(), self._backoff)
        at = datetime.fromtimestamp(now, UTC)
        nxt = (at + timedelta(seconds=decision.next_attempt_at - now)
               if decision.next_attempt_at is not None else None)
        self._log.info("outbox-attempt", entry=entry.id, control_id=entry.control_id,
                       status=status.value, attempts=attempts, state=decision.state.value)
        metrics.DELIVERY.labels(self.destination, status.value).inc()
        d = self._pool.run(_record_attempt, entry, status, decision, error=text, at=at,
                           next_attempt_at=nxt)
        d.addCallback(self._recorded, at)
        d.addErrback(self._failed, "outbox-record-failed")
        return d

    def _recorded(self, received: datetime | None, at: datetime) -> None:
        if received is not None:
            metrics.END_TO_END.labels(self.destination).observe(
                max(0.0, (at - received).total_seconds()))
        self._done(0)

    def _failed(self, failure: Failure, event: str) -> None:
        self._sending = None
        if failure.check(CancelledError) is not None:  # stopService while waiting for the ACK
            self._done(0)
            return
        # Only the exception's type: database errors quote statement parameters,
        # which may be patient data.
        self._log.error(event, kind=failure.type.__name__ if failure.type else "")
        self._done(self.poll_interval)
