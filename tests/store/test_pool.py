"""DbPool (real worker thread) and NonThreadPool, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, event, func, select

from lis_gateway.store import repository as repo
from lis_gateway.store import schema as s
from lis_gateway.store.engine import make_engine
from lis_gateway.store.migrations import migrate
from lis_gateway.store.pool import DbPool, GroupCommit, NonThreadPool

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


class DirectReactor:
    """Delivers ``callFromThread`` calls in the calling thread (no global reactor)."""

    def callFromThread(self, f: Callable[..., object], *args: object,
                       **kwargs: object) -> None:
        f(*args, **kwargs)


def _count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(s.analyzers)).scalar_one())


def test_threaded_pool_commits(engine: Engine, db_url: str) -> None:
    """Work run on the worker thread commits, and the Deferred fires with a dataclass."""
    pool = DbPool(make_engine(db_url), DirectReactor())
    done = threading.Event()
    got: list[object] = []
    pool.start()
    try:
        d = pool.run(repo.ensure_analyzer, "sysmex", T0)
        d.addBoth(lambda r: (got.append(r), done.set()))
        assert done.wait(10), "the pool did not answer within 10 s"
    finally:
        pool.stop()
    assert isinstance(got[0], repo.Analyzer) and got[0].name == "sysmex"
    with engine.connect() as conn:
        assert _count(conn) == 1
    if engine.dialect.name == "sqlite":
        assert pool.threadpool.max == 1


def test_non_thread_pool_rolls_back_on_error(engine: Engine) -> None:
    """A failing function rolls back its transaction and the Deferred fails with it."""
    pool = NonThreadPool(engine)

    def boom(conn: Connection) -> None:
        repo.ensure_analyzer(conn, "sysmex", T0)
        raise RuntimeError("boom")

    failure = []
    pool.run(boom).addErrback(failure.append)
    assert failure and failure[0].check(RuntimeError)
    ok: list[repo.Analyzer] = []
    pool.run(repo.ensure_analyzer, "cobas", T0).addCallback(ok.append)
    assert ok[0].name == "cobas"
    with engine.connect() as conn:
        assert _count(conn) == 1


def test_sqlite_pragmas(tmp_path: Path) -> None:
    """SQLite connections use WAL, synchronous=FULL (2) and foreign keys."""
    eng = make_engine(f"sqlite:///{tmp_path}/p.db")
    try:
        with eng.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        eng.dispose()


def _insert_analyzer(conn: Connection, name: str) -> str:
    return repo.ensure_analyzer(conn, name, T0).name


def _fail_after_insert(conn: Connection, name: str) -> None:
    repo.ensure_analyzer(conn, name, T0)
    raise RuntimeError("refused")


class QueuedReactor:
    """Collects ``callFromThread`` calls; the test delivers them on its own thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., object], tuple[object, ...]]] = []
        self.lock = threading.Lock()

    def callFromThread(self, f: Callable[..., object], *args: object,
                       **kwargs: object) -> None:
        with self.lock:
            self.calls.append((f, args))

    def deliver(self) -> int:
        with self.lock:
            calls, self.calls = self.calls, []
        for f, args in calls:
            f(*args)
        return len(calls)


def test_group_commit_commits_queued_work_together_and_fails_pieces_alone(
        engine: Engine, db_url: str) -> None:
    """Work queued while the thread is busy shares one transaction; a failing piece is undone alone.

    The pool's only thread is held by a blocker while eight pieces queue: they run
    as one group (savepoint each); the one that raises leaves nothing behind and
    its Deferred fails, the other seven commit and fire with their values.
    """
    reactor = QueuedReactor()
    pool = DbPool(make_engine(db_url), reactor, max_threads=1)
    group = GroupCommit(pool, reactor, max_group=32)
    release = threading.Event()
    pool.start()
    try:
        pool.threadpool.callInThread(release.wait, 10)
        outcomes: dict[str, object] = {}
        for i in range(8):
            name = f"a{i}"
            fn = _fail_after_insert if i == 3 else _insert_analyzer
            group.run(fn, name).addBoth(lambda r, n=name: outcomes.__setitem__(n, r))
        release.set()
        for _ in range(1000):
            reactor.deliver()
            if len(outcomes) == 8:
                break
            threading.Event().wait(0.01)
    finally:
        pool.stop()
    assert len(outcomes) == 8
    assert (group.groups, group.pieces, group.largest) == (1, 8, 8)
    failed = outcomes.pop("a3")
    assert hasattr(failed, "check") and failed.check(RuntimeError)
    assert outcomes == {f"a{i}": f"a{i}" for i in (0, 1, 2, 4, 5, 6, 7)}
    with engine.connect() as conn:
        names = set(conn.execute(select(s.analyzers.c.name)).scalars())
    assert names == {f"a{i}" for i in (0, 1, 2, 4, 5, 6, 7)}


def test_group_commit_fails_the_whole_group_when_the_commit_fails(tmp_path: Path) -> None:
    """No piece reports success unless the group's commit did (SQLite locked by another writer)."""
    url = f"sqlite:///{tmp_path / 'locked.db'}"
    migrate_engine = make_engine(url)
    migrate(url, engine=migrate_engine)
    locker = migrate_engine.connect()
    held = locker.begin()  # BEGIN IMMEDIATE: another writer holds the lock
    reactor = QueuedReactor()
    impatient = make_engine(url)

    @event.listens_for(impatient, "connect")
    def _short_wait(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=100")  # after the store's own 10 s

    pool = DbPool(impatient, reactor)
    group = GroupCommit(pool, reactor)
    outcomes: list[object] = []
    pool.start()
    try:
        for i in range(3):
            group.run(_insert_analyzer, f"b{i}").addBoth(outcomes.append)
        for _ in range(1000):
            reactor.deliver()
            if len(outcomes) == 3:
                break
            threading.Event().wait(0.01)
    finally:
        pool.stop()
        held.rollback()
        locker.close()
    assert len(outcomes) == 3 and all(hasattr(o, "check") for o in outcomes)
    with migrate_engine.connect() as conn:
        assert _count(conn) == 0
    migrate_engine.dispose()
