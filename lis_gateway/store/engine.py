"""Create the database engine from a URL, at run time (never at import).

SQLite durability choice: ``journal_mode=WAL`` with ``synchronous=FULL``.
The MLLP/ASTM acknowledgement promises the analyzer that the message is safe;
SQLite's documentation (https://www.sqlite.org/pragma.html#pragma_synchronous,
and https://www.sqlite.org/wal.html "Performance Considerations") says that in
WAL mode with ``synchronous=NORMAL`` "a transaction committed in WAL mode ...
might roll back following a power loss or system crash" (it is durable only
across application crashes), while ``FULL`` syncs the WAL at every commit.
An acknowledged message lost at a power cut is exactly what "durable before
acknowledged" forbids, so FULL it is. The cost measured here
(docs/performance.md section 3.3) is 332 -> 471 us per message with Core
inserts, i.e. still > 2,000 messages/s from one writer thread.

SQLite transactions: the pysqlite driver's own implicit BEGIN is switched off
and every transaction starts with ``BEGIN IMMEDIATE``, so the single writer
takes the write lock up front (no lock upgrade failing half-way through, and
the audit chain's read-then-append is serialised even against other
processes such as ``lis-gateway audit verify``). ``busy_timeout`` makes
another process wait instead of failing at once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=10000",
)


def is_sqlite(url: str) -> bool:
    """Whether ``url`` names an SQLite database."""
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` with the store's connection settings.

    Args:
        url: an SQLAlchemy URL, e.g. ``sqlite:////var/lib/lis-gateway/lis.db`` or
            ``postgresql+psycopg://lis@db/lis``.
        kwargs: passed on to :func:`sqlalchemy.create_engine`.

    Returns:
        The engine. For SQLite every new connection gets :data:`SQLITE_PRAGMAS`.
    """
    if not is_sqlite(url):
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(url, **kwargs)
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        try:
            for pragma in SQLITE_PRAGMAS:
                cur.execute(pragma)
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
