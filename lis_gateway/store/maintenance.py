"""Command-line maintenance of the store, run outside the reactor (synchronous)."""

from __future__ import annotations

from collections.abc import Callable

from .audit import verify_audit
from .engine import make_engine
from .migrations import migrate


def migrate_database(url: str) -> None:
    """Bring the database at ``url`` to the newest schema (creating it if needed)."""
    engine = make_engine(url)
    try:
        migrate(url, engine=engine)
    finally:
        engine.dispose()


def verify_audit_log(url: str, progress: Callable[[int, int], None] | None = None
                     ) -> list[int]:
    """Check the audit chain; return the ids of rows that break it (empty: intact)."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            return verify_audit(conn, progress)
    finally:
        engine.dispose()
