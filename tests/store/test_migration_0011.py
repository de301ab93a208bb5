"""Revision 0011: the audit log's search indexes, up and down, with rows in place."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect

from lis_gateway.store.audit import append_audit, verify_audit
from lis_gateway.store.engine import make_engine
from lis_gateway.store.migrations import alembic_config, migrate

from .test_repository import T0

INDEXES = {"ix_audit_log_actor", "ix_audit_log_target", "ix_audit_log_at"}


def test_0011_indexes_the_audit_log_and_keeps_its_chain(db_url: str) -> None:
    """Rows written at 0010 stay and verify; the three indexes come and go."""
    engine = make_engine(db_url)
    try:
        migrate(db_url, "0010", engine=engine)
        with engine.begin() as conn:
            append_audit(conn, actor="dr_minh", action="view.sample", target="sample:S1",
                         detail={}, source="10.0.0.5", at=T0)
        migrate(db_url, engine=engine)
        names = {i["name"] for i in inspect(engine).get_indexes("audit_log")}
        assert names >= INDEXES
        with engine.begin() as conn:
            assert verify_audit(conn) == []
        config = alembic_config(db_url)
        config.attributes["engine"] = engine
        command.downgrade(config, "0010")
        assert not INDEXES & {i["name"] for i in inspect(engine).get_indexes("audit_log")}
        with engine.begin() as conn:
            assert verify_audit(conn) == []
    finally:
        engine.dispose()
