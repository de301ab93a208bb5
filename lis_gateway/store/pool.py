"""Database work off the reactor thread (buildbot's ``DBThreadPool`` shape).

:meth:`DbPool.run` runs ``fn(conn, *args)`` inside one transaction on a worker
thread and returns a Deferred firing on the reactor thread with ``fn``'s
result (a frozen dataclass, never a live ORM object) or failing with its
exception after the rollback. This module owns the transaction lifecycle.

SQLite allows one writer at a time, so an SQLite pool has exactly one thread
(as buildbot's ``pool.py`` does): transactions are serialised in submission
order and never contend for the lock. PostgreSQL pools may have more.

:class:`NonThreadPool` runs the function at once in the caller's thread and
returns an already-fired Deferred, for tests (buildbot's
``test/fake/reactor.py`` ``NonThreadPool``).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from sqlalchemy import Connection, Engine
from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

T = TypeVar("T")
P = ParamSpec("P")


class CallFromThread(Protocol):
    """The part of the reactor the pool needs (``IReactorFromThreads``)."""

    def callFromThread(self, f: Callable[..., object], *args: object,
                       **kwargs: object) -> None: ...


class DbPool:
    """Run repository functions in a transaction on worker threads.

    Args:
        engine: from :func:`lis_gateway.store.engine.make_engine`.
        reactor: delivers results back on the reactor thread.
        max_threads: worker threads; forced to 1 for SQLite.
    """

    def __init__(self, engine: Engine, reactor: CallFromThread, max_threads: int = 4) -> None:
        self.engine = engine
        self._reactor = reactor
        size = 1 if engine.dialect.name == "sqlite" else max(1, max_threads)
        self.threadpool = ThreadPool(minthreads=1, maxthreads=size, name="lis-db")

    def start(self) -> None:
        """Start the worker threads."""
        self.threadpool.start()

    def stop(self) -> None:
        """Finish queued work, join the threads and dispose of the engine."""
        self.threadpool.stop()
        self.engine.dispose()

    def run(self, fn: Callable[Concatenate[Connection, P], T], *args: P.args,
            **kwargs: P.kwargs) -> Deferred[T]:
        """Run ``fn(conn, *args, **kwargs)`` in one transaction on a worker thread.

        Returns:
            A Deferred firing (on the reactor thread) after the commit with
            ``fn``'s return value, or failing with its exception after rollback.
        """
        d: Deferred[T] = Deferred()

        def work() -> T:
            with self.engine.begin() as conn:
                return fn(conn, *args, **kwargs)

        def done(ok: bool, value: Any) -> None:
            if ok:
                self._reactor.callFromThread(d.callback, value)
            else:
                self._reactor.callFromThread(d.errback, value)

        self.threadpool.callInThreadWithCallback(done, work)
        return d


_Work = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], Deferred[Any]]


class GroupCommit:
    """Many small transactions committed together when they queue up (group commit).

    :meth:`run` has :meth:`DbPool.run`'s contract: ``fn(conn, ...)`` runs in a
    transaction off the reactor thread and its Deferred fires after the commit
    that made its work durable (or fails, and nothing of it was kept). What is
    new is that work queued while the pool's thread was busy is run in *one*
    transaction, each piece inside its own savepoint: a piece that raises is
    rolled back alone and fails alone; the others commit together, so one
    ``BEGIN IMMEDIATE`` and one fsync serve them all. When the commit itself
    fails, every piece of the group fails. A group holds at most
    ``max_group`` pieces, and each group is a separate job on the pool, so other
    work (outbox, web) is not starved behind a stream of messages.

    Meant for the analyzers' messages (many links, small transactions, each
    waiting for its ACK), which is where the cost per transaction shows.

    Args:
        pool: the pool whose engine and threads run the groups.
        reactor: delivers the outcomes on the reactor thread.
        max_group: the most pieces in one transaction.
        max_concurrent: groups running at once (1 for SQLite, its single writer).
    """

    def __init__(self, pool: DbPool, reactor: CallFromThread, *, max_group: int = 32,
                 max_concurrent: int | None = None) -> None:
        self._pool, self._reactor = pool, reactor
        self.max_group = max(1, max_group)
        threads = pool.threadpool.max
        self._max_running = max(1, min(threads, max_concurrent or threads))
        self._lock = threading.Lock()
        self._queue: deque[_Work] = deque()
        self._running = 0  # groups scheduled or running
        #: groups committed, the pieces in them, and the largest (tests, benchmarks)
        self.groups = self.pieces = self.largest = 0

    def run(self, fn: Callable[Concatenate[Connection, P], T], *args: P.args,
            **kwargs: P.kwargs) -> Deferred[T]:
        """Queue ``fn(conn, *args, **kwargs)``; the Deferred fires after its group commits."""
        d: Deferred[T] = Deferred()
        with self._lock:
            self._queue.append((fn, args, kwargs, d))
            start = self._running < self._max_running
            if start:
                self._running += 1
        if start:
            self._pool.threadpool.callInThread(self._one_group)
        return d

    def _one_group(self) -> None:
        """On a pool thread: commit what is queued (up to ``max_group``), then reschedule."""
        with self._lock:
            group = [self._queue.popleft()
                     for _ in range(min(self.max_group, len(self._queue)))]
            if not group:
                self._running -= 1
                return
        outcomes = self._commit(group)
        for (_fn, _args, _kwargs, d), (ok, value) in zip(group, outcomes, strict=True):
            self._reactor.callFromThread(d.callback if ok else d.errback, value)
        with self._lock:
            again = bool(self._queue)
            if not again:
                self._running -= 1
        if again:  # behind whatever else the pool was asked to do meanwhile
            self._pool.threadpool.callInThread(self._one_group)

    def _commit(self, group: list[_Work]) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        try:
            with self._pool.engine.begin() as conn:
                for fn, args, kwargs, _d in group:
                    try:
                        with conn.begin_nested():
                            outcomes.append((True, fn(conn, *args, **kwargs)))
                    except Exception:
                        outcomes.append((False, Failure()))
        except Exception:  # BEGIN or COMMIT failed: nothing of the group is kept
            failure = Failure()
            return [(False, failure)] * len(group)
        self.groups += 1
        self.pieces += len(group)
        self.largest = max(self.largest, len(group))
        return outcomes


class NonThreadPool:
    """:class:`DbPool`'s interface, run synchronously in the calling thread (tests)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def start(self) -> None:
        """Nothing to start."""

    def stop(self) -> None:
        """Dispose of the engine."""
        self.engine.dispose()

    def run(self, fn: Callable[Concatenate[Connection, P], T], *args: P.args,
            **kwargs: P.kwargs) -> Deferred[T]:
        """Run ``fn`` in a transaction now; the Deferred has already fired."""
        try:
            with self.engine.begin() as conn:
                result = fn(conn, *args, **kwargs)
        except Exception:
            return fail(Failure())
        return succeed(result)
