"""DbPool (real worker thread) and NonThreadPool, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, func, select

from lis_gateway.store import repository as repo
from lis_gateway.store import schema as s
from lis_gateway.store.engine import make_engine
from lis_gateway.store.pool import DbPool, NonThreadPool

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
