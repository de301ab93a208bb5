"""Drains the outbox of one destination (the thin Twisted part).

One loop per destination, a batch of entries at a time, one message in
flight (MLLP's original-mode ACKs allow no more):

1. in one transaction: queue newly released versions
   (:func:`lis_gateway.store.outbox.enqueue_released`), read up to
   ``batch_size`` due entries (:func:`~lis_gateway.store.outbox.due_batch`:
   a sample's entries in order) and what their messages need
   (:func:`~lis_gateway.store.outbox.payloads`);
2. for each entry in turn: build its payload with the destination's
   :class:`~lis_gateway.outbound.channel.Channel` (an ORU^R01, a JSON body,
   a FHIR bundle), send it through the same channel (which reconnects by
   itself and reports silence, or no connection, after the destination's
   timeout) and note the decision of
   :func:`lis_gateway.outbound.delivery.decide` (delivered, retried after a
   back-off, or dead-lettered). A sample whose entry was not delivered and
   waits for a retry sends none of its later entries in this batch; a
   destination that did not answer, dropped the connection or could not be
   reached ends the batch;
3. in one transaction: record the batch's answers.

Then straight to the next batch; when nothing was due, a poll interval
later, or at once when :meth:`OutboxWorker.wake` says a release was
committed. When the destination could not be reached (no connection, no
answer, connection lost) that is the destination's fault, not the entry's:
the entry stays first in line (due at once, its attempt counted) and the
whole worker waits out the back-off, growing with each such answer in a
row, releases or not, until the channel sees the destination again
(:meth:`~lis_gateway.outbound.channel.Channel.reachable`); so after an
outage delivery resumes with the oldest entry, in order. An HIS that
answers AE backs off only that entry.

A crash before 3 leaves the batch's entries pending, so they are sent again
with the same control IDs (MSH-10, idempotency key, Observation identifier):
at least once, recognisably. Stopping abandons the message in flight (it
stays pending) and records the answers already received. Logs carry the
entry id, control ID and status, never patient data.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

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

#: Seconds between looks at the outbox when nothing was due (and nothing woke the worker).
POLL_INTERVAL = 2.0

#: Entries read, sent and recorded together.
BATCH_SIZE = 50

#: Lifecycle events re-examined behind the high-water mark at most once a poll
#: interval (the looks in between start at the mark), so a release committed
#: late with a smaller id (concurrent writers) is not missed.
LOOKBACK_EVENTS = 10_000

#: Seconds between reads of the depth and age metrics while entries keep coming.
DEPTH_INTERVAL = 1.0

#: Answers after which the destination is not asked again in the same batch.
_UNREACHABLE = frozenset({DeliveryStatus.TIMEOUT, DeliveryStatus.CONNECTION_LOST,
                          DeliveryStatus.NOT_SENT})


@dataclass(frozen=True, slots=True)
class _Look:
    mark: int
    items: list[tuple[outbox.OutboxEntry, outbox.OutboundResult]]
    depth: outbox.Depth | None


def _look(conn: Connection, destination: str, now: datetime, after_event_id: int,
          limit: int, with_depth: bool) -> _Look:
    mark = outbox.last_event_id(conn)
    outbox.enqueue_released(conn, destination, now, after_event_id=after_event_id)
    found = outbox.due_batch(conn, destination, now, limit)
    items = outbox.payloads(conn, found)
    depth = outbox.depth(conn, destination, now) if with_depth or not found else None
    return _Look(mark, [(entry, items[entry.id]) for entry in found], depth)


def _record(conn: Connection, attempts: Sequence[outbox.Attempt],
            delivered: Sequence[int]) -> dict[int, datetime]:
    """Record the answers; when each delivered result was received."""
    outbox.record_attempts(conn, attempts)
    return outbox.received_at_many(conn, delivered)


@dataclass(slots=True)
class _Batch:
    todo: deque[tuple[outbox.OutboxEntry, outbox.OutboundResult]]
    attempts: list[outbox.Attempt] = field(default_factory=list)
    delivered: list[tuple[int, datetime]] = field(default_factory=list)  #: result id, when
    held: set[str] = field(default_factory=set)  #: samples whose later entries wait
    over: bool = False  #: send nothing more (destination unreachable, or stopping)
    pause: float = 0.0  #: seconds before the next look (the destination is unreachable)
    looping: bool = False  #: inside _send's loop (an answer that came at once continues it)


class OutboxWorker(Service):
    """Sends one destination's outbox entries through its channel, a batch at a time.

    Args:
        destination: the destination's configured name (the outbox key).
        pool: runs store work in transactions off the reactor thread.
        channel: builds and sends the payloads (started and stopped with this service).
        clock: the only time source (``seconds()`` is Unix time under a reactor).
        poll_interval: seconds between looks when nothing is due.
        backoff: retry delays.
        rand: uniform numbers in [0, 1) for the jitter.
        log: a logger bound to the destination.
        batch_size: entries read, sent and recorded together.
    """

    def __init__(self, destination: str, pool: RunsWork, channel: Channel,
                 clock: IReactorTime, *,
                 poll_interval: float = POLL_INTERVAL, backoff: Backoff = DEFAULT_BACKOFF,
                 rand: Callable[[], float] = random.random,
                 log: FilteringBoundLogger | None = None,
                 batch_size: int = BATCH_SIZE) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.destination = destination
        self._pool, self._channel, self._clock = pool, channel, clock
        self.poll_interval, self.batch_size = poll_interval, batch_size
        self._backoff, self._rand = backoff, rand
        self._log: FilteringBoundLogger = (
            log if log is not None
            else structlog.get_logger("lis_gateway.outbox").bind(destination=destination))
        self._call: IDelayedCall | None = None
        self._mark: int | None = None  # lifecycle high-water mark; None: scan everything
        self._scanned_at: float | None = None  # when the last look behind the mark ran
        self._depth_at: float | None = None  # when the depth metrics were last read
        self._busy = False
        self._woken = False  # wake() while busy: look again as soon as the loop is idle
        self._unreachable = 0  # answers in a row saying the destination cannot be reached
        self._paused_until = 0.0  # no look before this (clock seconds), wake() or not
        self._reach: Deferred[None] | None = None  # ends the pause when the HIS is back
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
        """Stop: the message in flight stays pending; the answers received are recorded."""
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self._sending is not None:
            self._sending.cancel()
        if self._reach is not None:
            self._reach.cancel()
        stopped = self._channel.stopService()
        if not self._busy:
            return stopped
        self._idle = Deferred()
        return self._idle.addCallback(lambda _: stopped)

    def wake(self) -> None:
        """Look at the outbox now rather than at the next poll (a release was committed).

        Cheap and coalesced: while a look or a batch is under way, one more look
        follows it at once; while idle, the pending poll is brought forward.
        """
        if not self.running or self._clock.seconds() < self._paused_until:
            return  # the destination is unreachable: its back-off decides, not releases
        if self._busy:
            self._woken = True
            return
        call = self._call
        if call is not None and call.active() and call.getTime() > self._clock.seconds():
            call.cancel()
            self._call = None
            self._schedule(0)

    def _schedule(self, delay: float) -> None:
        if self.running and self._call is None:
            self._call = self._clock.callLater(delay, self._tick)

    def _done(self, delay: float) -> None:
        self._busy = False
        if self._idle is not None:
            idle, self._idle = self._idle, None
            idle.callback(None)
        # only while running: a restart during the wait carries on
        self._schedule(0 if self._woken else delay)

    def _after(self, now: float) -> int:
        """The lifecycle event id to scan after: the mark, or behind it once a poll interval."""
        if self._mark is None:
            self._scanned_at = now
            return 0
        if self._scanned_at is None or now - self._scanned_at >= self.poll_interval:
            self._scanned_at = now
            return max(0, self._mark - LOOKBACK_EVENTS)
        return self._mark

    def _tick(self) -> None:
        self._call = None
        if self._busy or not self.running:
            return
        self._busy, self._woken = True, False
        now = self._clock.seconds()
        if now < self._paused_until:  # unreachable: keep the depth and age metrics moving
            paused = self._pool.run(outbox.depth, self.destination, self._now())
            paused.addCallback(self._publish)
            paused.addCallback(lambda _: self._done(
                min(self.poll_interval, max(0.0, self._paused_until - self._clock.seconds()))))
            paused.addErrback(self._failed, "outbox-read-failed")
            return
        with_depth = self._depth_at is None or now - self._depth_at >= DEPTH_INTERVAL
        d = self._pool.run(_look, self.destination, self._now(), self._after(now),
                           self.batch_size, with_depth)
        d.addCallback(self._got)
        d.addErrback(self._failed, "outbox-read-failed")

    def _got(self, look: _Look) -> None:
        self._mark = look.mark
        if look.depth is not None:
            self._publish(look.depth)
        if not look.items:
            self._done(self.poll_interval)
            return
        self._send(_Batch(deque(look.items)))

    def _publish(self, depth: outbox.Depth) -> None:
        self._depth_at = self._clock.seconds()
        metrics.OUTBOX_DEPTH.labels(self.destination, "pending").set(depth.pending)
        metrics.OUTBOX_DEPTH.labels(self.destination, "dead").set(depth.dead)
        metrics.OUTBOX_OLDEST.labels(self.destination).set(depth.oldest_seconds)

    def _send(self, batch: _Batch) -> None:
        """Send the batch's entries in turn until one waits for its answer; then record."""
        batch.looping = True
        try:
            waiting = self._send_some(batch)
        except Exception as exc:  # a defect must not leave the loop busy for ever
            self._log.error("outbox-batch-failed", kind=type(exc).__name__)
            batch.over, waiting = True, False
        batch.looping = False
        if not waiting:
            self._record(batch)

    def _send_some(self, batch: _Batch) -> bool:
        """True when a message waits for its answer (:meth:`_answered` carries on)."""
        while batch.todo and not batch.over and self.running:
            entry, item = batch.todo.popleft()
            if entry.accession in batch.held:
                continue  # an earlier entry of its sample waits for a retry
            payload = self._build(batch, entry, item)
            if payload is None:
                continue
            try:
                sending = self._channel.send(payload, entry.control_id)
            except BuildError as exc:  # e.g. no control ID in what was built: a defect
                self._answer(batch, entry, DeliveryStatus.UNBUILDABLE, str(exc))
                continue
            self._sending = sending
            sending.addBoth(self._answered, batch, entry, self._clock.seconds())
            if self._sending is sending:
                return True
        return False

    def _build(self, batch: _Batch, entry: outbox.OutboxEntry,
               item: outbox.OutboundResult) -> bytes | None:
        try:
            return self._channel.build(item, self._now())
        except BuildError as exc:
            # no patient identifier yet: an order may bring it, so it waits (retried);
            # anything else is in the released content and needs a person (dead)
            waits = not (item.hospital_id or item.national_id or item.insurance_card)
            status = DeliveryStatus.NOT_BUILT if waits else DeliveryStatus.UNBUILDABLE
            self._answer(batch, entry, status, str(exc))
        except Exception as exc:  # a defect must not block the destination forever
            self._answer(batch, entry, DeliveryStatus.UNBUILDABLE,
                         f"message could not be built ({type(exc).__name__})")
        return None

    def _answered(self, got: DeliveryReport | Failure, batch: _Batch,
                  entry: outbox.OutboxEntry, sent_at: float) -> None:
        self._sending = None
        try:
            if isinstance(got, Failure):
                batch.over = True
                if got.check(CancelledError) is None:  # stopService cancels: it waits
                    kind = got.type.__name__ if got.type else ""
                    self._log.error("outbox-send-failed", kind=kind)
                    self._answer(batch, entry, DeliveryStatus.NOT_SENT,
                                 f"the send failed ({kind})")
            else:
                metrics.HIS_ACK.labels(self.destination).observe(
                    max(0.0, self._clock.seconds() - sent_at))
                self._answer(batch, entry, got.status, got.text)
        except Exception as exc:  # a defect must not leave the loop busy for ever
            self._log.error("outbox-answer-failed", kind=type(exc).__name__)
            batch.over = True
        if not batch.looping:
            self._send(batch)

    def _answer(self, batch: _Batch, entry: outbox.OutboxEntry, status: DeliveryStatus,
                text: str) -> None:
        """Decide the entry's fate now; it is recorded with the batch."""
        now = self._clock.seconds()
        attempts = entry.attempts + 1
        decision = decide(status, attempts, now, self._rand(), self._backoff)
        if status in _UNREACHABLE:
            # The destination's fault, not the entry's: the entry stays first in line
            # (due now, its attempts counted) and the whole destination waits out the
            # back-off, so delivery resumes with the oldest entry when it comes back.
            self._unreachable += 1
            batch.pause = self._backoff.delay(self._unreachable, self._rand())
            decision = Decision(EntryState.PENDING, now)
        else:
            self._unreachable = 0
        at = datetime.fromtimestamp(now, UTC)
        nxt = (at + timedelta(seconds=decision.next_attempt_at - now)
               if decision.next_attempt_at is not None else None)
        self._log.info("outbox-attempt", entry=entry.id, control_id=entry.control_id,
                       status=status.value, attempts=attempts, state=decision.state.value)
        metrics.DELIVERY.labels(self.destination, status.value).inc()
        batch.attempts.append(outbox.Attempt(entry.id, status, decision, text, at, nxt))
        if decision.state is EntryState.PENDING:
            batch.held.add(entry.accession)
        elif decision.state is EntryState.DELIVERED and entry.kind == outbox.RESULT:
            batch.delivered.append((entry.result_id, at))
        if status in _UNREACHABLE:
            batch.over = True

    def _record(self, batch: _Batch) -> None:
        if not batch.attempts:
            self._done(0)
            return
        d = self._pool.run(_record, batch.attempts, [r for r, _at in batch.delivered])
        d.addCallback(self._recorded, batch)
        d.addErrback(self._failed, "outbox-record-failed")

    def _recorded(self, received: dict[int, datetime], batch: _Batch) -> None:
        for result_id, at in batch.delivered:
            if result_id in received:
                metrics.END_TO_END.labels(self.destination).observe(
                    max(0.0, (at - received[result_id]).total_seconds()))
        if batch.pause:  # the next tick reads the depth; a look follows the pause
            self._paused_until = self._clock.seconds() + batch.pause
            self._woken = False
            self._watch_reachable()
        self._done(0)

    def _watch_reachable(self) -> None:
        """End the pause as soon as the channel sees the destination again."""
        if self._reach is not None:
            return
        reach = self._channel.reachable()
        if reach is None:
            return
        self._reach = reach
        reach.addCallbacks(self._reachable_again, lambda _failure: None)
        reach.addBoth(self._reach_settled)

    def _reach_settled(self, _: object) -> None:
        self._reach = None

    def _reachable_again(self, _: object) -> None:
        if self._clock.seconds() < self._paused_until:
            self._log.info("destination-reachable-again")
            self._paused_until = 0.0
            self.wake()

    def _failed(self, failure: Failure, event: str) -> None:
        # Only the exception's type: database errors quote statement parameters,
        # which may be patient data.
        self._log.error(event, kind=failure.type.__name__ if failure.type else "")
        self._done(self.poll_interval)

