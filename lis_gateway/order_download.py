"""Work pushed to analyzers that take it (``order_download = true``; the thin Twisted part).

The rows come from :mod:`lis_gateway.store.downloads`: an order's added and
cancelled tests are queued in the order's own transaction, a rerun in the
transition's. One :class:`DownloadService` per gateway looks at the queue
every poll interval (and at once when a link connects). For each ASTM link
that is connected and has nothing in flight, it takes that analyzer's
pending rows, groups them by sample and action, and sends each group as one
download (:func:`lis_gateway.astm.host_query.build_download`):

* ``new``: O-12 ``N`` (``A`` when the analyzer already had the sample), the
  tests translated to the analyzer's codes through its mapping table, with
  the sample's patient (folded to the link's encoding; the store keeps the
  original);
* ``cancel``: O-12 ``C``;
* ``rerun``: O-12 ``A`` with the analyzer's own test code.

A row is ``sent`` once the analyzer has acknowledged the last frame; a
refused or dropped transfer leaves it pending with the error, tried again at
the next poll (the text goes out again). Rows of analyzers that take no
downloads become ``not-sent`` with the reason, and a test the mapping table
no longer has is ``not-sent`` too: nothing waits forever unseen. Logs carry
counts, ids and reasons, never patient data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import Connection
from structlog.typing import FilteringBoundLogger
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from lis_gateway import metrics
from lis_gateway.adapters.astm_protocol import AstmLinkProtocol, SendError
from lis_gateway.astm.host_query import (
    ACTION_ADD,
    ACTION_CANCEL,
    ACTION_NEW,
    ReplySample,
    build_download,
)
from lis_gateway.ingest import RunsWork
from lis_gateway.store import downloads
from lis_gateway.store.orders import SampleOrder, sample_for_download

#: Seconds between looks at the queue.
POLL_INTERVAL = 2.0
#: Rows taken per analyzer per look.
BATCH = 50


@dataclass(slots=True)
class PushTarget:
    """One analyzer link that takes downloads, and its connection when it is up.

    Attributes:
        name: the link (analyzer) name.
        codes: local code -> the analyzer's code (from its mapping table).
        encoding: the link's character encoding.
        timezone: the analyzer clock's IANA zone (H-14 and O-7 are its wall time).
    """

    name: str
    codes: Mapping[str, str]
    encoding: str = "latin-1"
    timezone: str = "UTC"
    protocol: AstmLinkProtocol | None = None
    busy: bool = False
    #: called when a connection comes up (the service looks at the queue at once)
    on_connect: list[Callable[[], object]] = field(default_factory=list)

    def connected(self, protocol: AstmLinkProtocol) -> None:
        """A connection of the link is up: downloads use it from now on."""
        self.protocol = protocol
        for wake in self.on_connect:
            wake()

    def disconnected(self, protocol: AstmLinkProtocol) -> None:
        """That connection is gone (a newer one may already have replaced it)."""
        if self.protocol is protocol:
            self.protocol = None


@dataclass(frozen=True, slots=True)
class Job:
    """One group of rows to send as one download."""

    rows: tuple[downloads.Download, ...]
    sample: SampleOrder | None
    already_sent: bool


def collect(conn: Connection, targets: Sequence[str], ready: Sequence[str], now: datetime
            ) -> dict[str, list[Job]]:
    """One transaction: settle rows nobody can send; the ready analyzers' jobs, grouped."""
    downloads.settle_unsupported(conn, targets, now)
    jobs: dict[str, list[Job]] = {}
    for name in ready:
        groups: dict[tuple[str, str], list[downloads.Download]] = {}
        for row in downloads.pending(conn, name, BATCH):
            groups.setdefault((row.accession, row.action), []).append(row)
        jobs[name] = [Job(tuple(rows), sample_for_download(conn, accession),
                          downloads.was_sent(conn, name, accession))
                      for (accession, _action), rows in groups.items()]
    return jobs


def compose(job: Job, codes: Mapping[str, str], *, now: datetime, encoding: str
            ) -> tuple[bytes | None, list[int], str]:
    """The download for ``job``: (text or None, the row ids it cannot carry, why not)."""
    action = job.rows[0].action
    tests: list[str] = []
    unsendable: list[int] = []
    for row in job.rows:
        code = row.test_code if action == downloads.RERUN else codes.get(row.test_code)
        if not code:
            unsendable.append(row.id)
        elif code not in tests:
            tests.append(code)
    why = "not in this analyzer's mapping table" if unsendable else ""
    if not tests:
        return None, unsendable, why
    p = job.sample
    priorities = {t.test_code: t.priority for t in (p.tests if p is not None else ())}
    local = {code: loc for loc, code in codes.items()}  # a rerun's analyzer code -> local
    stat = any(priorities.get(local.get(r.test_code, r.test_code) if action == downloads.RERUN
                              else r.test_code) == "S" for r in job.rows)
    sample = ReplySample(
        job.rows[0].accession, tuple(tests), stat=stat,
        patient_id=p.hospital_id if p else "", family_name=p.family_name if p else "",
        given_name=p.given_name if p else "", middle_name=p.middle_name if p else "",
        birth_date=p.birth_date.strftime("%Y%m%d") if p and p.birth_date else "",
        sex=(p.sex if p and p.sex in ("M", "F") else "U" if p and p.sex else ""))
    code = (ACTION_CANCEL if action == downloads.CANCEL
            else ACTION_ADD if action == downloads.RERUN or job.already_sent else ACTION_NEW)
    return build_download([(sample, code)], now=now, encoding=encoding), unsendable, why


class DownloadService(Service):
    """Sends the downloads queue to the analyzers that take it; see the module docstring.

    Args:
        targets: the links with ``order_download = true``.
        pool: runs store work in transactions off the reactor thread.
        clock: the only time source.
        poll_interval: seconds between looks at the queue.
        log: a logger.
    """

    def __init__(self, targets: Sequence[PushTarget], pool: RunsWork, clock: IReactorTime, *,
                 poll_interval: float = POLL_INTERVAL,
                 log: FilteringBoundLogger | None = None) -> None:
        self._targets = {t.name: t for t in targets}
        self._pool, self._clock, self.poll_interval = pool, clock, poll_interval
        self._log: FilteringBoundLogger = (
            log if log is not None else structlog.get_logger("lis_gateway.downloads"))
        self._call: IDelayedCall | None = None
        self._looking = False
        for target in targets:
            target.on_connect.append(lambda: self._schedule(0))

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.seconds(), UTC)

    def startService(self) -> None:
        super().startService()
        self._schedule(0)

    def stopService(self) -> None:
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _schedule(self, delay: float) -> None:
        if not self.running:
            return
        if self._call is not None and self._call.active():
            if delay > 0:
                return
            self._call.cancel()
        self._call = self._clock.callLater(delay, self._look)

    def _look(self) -> None:
        self._call = None
        if self._looking:
            return
        ready = [t.name for t in self._targets.values() if t.protocol is not None and not t.busy]
        self._looking = True
        d = self._pool.run(collect, list(self._targets), ready, self._now())
        d.addCallback(self._dispatch)
        d.addErrback(self._failed, "downloads-read-failed")
        d.addBoth(self._looked)

    def _looked(self, _: object) -> None:
        self._looking = False
        self._schedule(self.poll_interval)

    def _dispatch(self, jobs: dict[str, list[Job]]) -> None:
        for name, queue in jobs.items():
            target = self._targets[name]
            if queue and target.protocol is not None and not target.busy:
                target.busy = True
                self._next(target, list(queue))

    def _next(self, target: PushTarget, queue: list[Job]) -> None:
        """Send the jobs one after the other over the target's connection."""
        protocol = target.protocol
        if not queue or protocol is None or not self.running:
            target.busy = False
            return
        job = queue.pop(0)
        wall = self._now().astimezone(ZoneInfo(target.timezone))
        text, unsendable, why = compose(job, target.codes, now=wall, encoding=target.encoding)
        if unsendable:
            self._record(unsendable, downloads.NOT_SENT, why, None, target.name)
        sendable = [r.id for r in job.rows if r.id not in unsendable]
        if text is None:
            self._next(target, queue)
            return
        self._log.info("download-sending", analyzer=target.name, rows=len(sendable),
                       action=job.rows[0].action)
        d = protocol.send_tracked(text)
        d.addBoth(self._sent, sendable, text, target.name).addBoth(
            lambda _: self._next(target, queue))

    def _sent(self, outcome: Failure | None, ids: list[int], text: bytes, analyzer: str
              ) -> Deferred[None]:
        if isinstance(outcome, Failure):
            return self._record(ids, downloads.PENDING, _reason(outcome), None, analyzer)
        return self._record(ids, downloads.SENT, "", text, analyzer)

    def _record(self, ids: list[int], state: str, error: str, payload: bytes | None,
                analyzer: str) -> Deferred[None]:
        self._log.info("download-recorded", analyzer=analyzer, rows=len(ids), state=state,
                       error=error)
        metrics.DOWNLOADS.labels(analyzer, state).inc(len(ids))
        d = self._pool.run(downloads.record, ids, state, self._now(), error=error,
                           payload=payload)
        d.addErrback(self._failed, "downloads-record-failed")
        return d

    def _failed(self, failure: Failure, event: str) -> None:
        # Only the type: database errors quote statement parameters (patient data).
        self._log.error(event, kind=failure.type.__name__ if failure.type else "")


def _reason(failure: Failure) -> str:
    if isinstance(failure.value, SendError):
        return f"the analyzer did not take it ({failure.value.reason.value}); sent again later"
    return f"not sent ({type(failure.value).__name__}); sent again later"
