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
