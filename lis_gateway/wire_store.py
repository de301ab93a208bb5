"""Wire recordings kept in the store (``raw_sessions`` / ``raw_chunks``).

The link protocols call :meth:`StoreRecorder.record` on the reactor thread
for every byte in and out, before anything else looks at the bytes. This
recorder buffers them and writes them through the database pool in order:
every :data:`FLUSH_SECONDS` while bytes are waiting, at once when
:data:`FLUSH_CHUNKS` are waiting, and when the connection closes. Directions
are stored as ``in`` and ``out``; transport events (connected, connection
lost) as ``evt`` with their text.

This is the diagnostic record, written best-effort and never in the way of
the ACK: each message's raw bytes are committed with the message itself
before it is acknowledged. A failed write is logged (never its bytes) and
the next ones go on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import Connection
from structlog.typing import FilteringBoundLogger
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from lis_gateway.ingest import RunsWork
from lis_gateway.store import repository

#: Seconds bytes may wait in memory before they are written.
FLUSH_SECONDS = 0.5
#: Chunks waiting that trigger an immediate write.
FLUSH_CHUNKS = 64
_DIRECTIONS = {"rx": "in", "tx": "out"}


def _open_and_record(conn: Connection, *, analyzer: str, family: str, transport: str,
                     peer: str, opened_at: datetime,
                     chunks: list[tuple[int, str, datetime, bytes]]) -> int:
    known = repository.ensure_analyzer(conn, analyzer, opened_at, family=family)
    session = repository.open_raw_session(conn, known.id, transport[:20], opened_at,
                                          peer=peer[:200])
    repository.record_chunks(conn, session, chunks)
    return session


def _record_and_maybe_close(conn: Connection, session: int,
                            chunks: list[tuple[int, str, datetime, bytes]],
                            closed_at: datetime | None) -> None:
    repository.record_chunks(conn, session, chunks)
    if closed_at is not None:
        repository.close_raw_session(conn, session, closed_at)


class StoreRecorder:
    """One connection's wire recording, written to the store.

    Args:
        analyzer: the link name; family: its driver; transport: tcp-server, serial, ...
        pool: the database pool (writes happen off the reactor thread).
        clock: schedules the periodic flush; its time stamps the session.
        peer: the remote address or device, for the session row.
        log: a logger bound to the link.
    """

    def __init__(self, analyzer: str, family: str, transport: str, pool: RunsWork,
                 clock: IReactorTime, *, peer: str = "",
                 log: FilteringBoundLogger | None = None) -> None:
        self._analyzer, self._family, self._transport = analyzer, family, transport
        self._pool, self._clock, self._peer = pool, clock, peer
        self._log: FilteringBoundLogger = (
            log if log is not None
            else structlog.get_logger("lis_gateway.wire").bind(analyzer=analyzer))
        self._buffer: list[tuple[int, str, datetime, bytes]] = []
        self._seq = 0
        self._session: int | None = None
        self._tail: Deferred[Any] = succeed(None)
        self._timer: IDelayedCall | None = None
        self._opened_at = self._at(clock.seconds())
        self._closed = False

    def flushed(self) -> Deferred[None]:
        """A Deferred that fires once everything handed over so far has been written."""
        done: Deferred[None] = Deferred()

        def fire(result: object) -> object:
            done.callback(None)
            return result

        self._tail.addBoth(fire)
        return done

    def record(self, direction: str, data: bytes, t: float) -> None:
        """Buffer bytes received (``rx``) or sent (``tx``)."""
        if data and not self._closed:
            self._add(_DIRECTIONS.get(direction, direction[:3]), data, t)

    def note(self, text: str, t: float) -> None:
        """Buffer a transport event."""
        if not self._closed:
            self._add("evt", text.encode("utf-8", "replace"), t)

    def close(self) -> None:
        """Write what is left and mark the session closed."""
        if self._closed:
            return
        self._closed = True
        self._flush(closing=True)

    def _add(self, direction: str, data: bytes, t: float) -> None:
        self._seq += 1
        self._buffer.append((self._seq, direction, self._at(t), data))
        if len(self._buffer) >= FLUSH_CHUNKS:
            self._flush()
        elif self._timer is None:
            self._timer = self._clock.callLater(FLUSH_SECONDS, self._flush)

    @staticmethod
    def _at(t: float) -> datetime:
        return datetime.fromtimestamp(t, UTC)

    def _flush(self, closing: bool = False) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        chunks, self._buffer = self._buffer, []
        closed_at = self._at(self._clock.seconds()) if closing else None
        if not chunks and closed_at is None:
            return
        self._tail.addCallback(lambda _: self._write(chunks, closed_at))
        self._tail.addErrback(self._failed, len(chunks))

    def _write(self, chunks: list[tuple[int, str, datetime, bytes]],
               closed_at: datetime | None) -> Deferred[Any]:
        if self._session is None:
            d: Deferred[Any] = self._pool.run(
                _open_and_record, analyzer=self._analyzer, family=self._family,
                transport=self._transport, peer=self._peer, opened_at=self._opened_at,
                chunks=chunks)
            d.addCallback(self._opened)
            if closed_at is not None:
                d.addCallback(self._close_session, closed_at)
            return d
        return self._pool.run(_record_and_maybe_close, self._session, chunks, closed_at)

    def _opened(self, session: int) -> None:
        self._session = session

    def _close_session(self, _result: object, closed_at: datetime) -> Deferred[Any] | None:
        if self._session is None:
            return None
        return self._pool.run(_record_and_maybe_close, self._session, [], closed_at)

    def _failed(self, failure: Failure, count: int) -> None:
        self._log.error("wire-recording-not-stored", chunks=count,
                        error=failure.type.__qualname__ if failure.type else "unknown")
