"""Upgrading a database that already holds data, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import command
from sqlalchemy import insert, inspect, select

from lis_gateway.store import schema as s
from lis_gateway.store.engine import make_engine
from lis_gateway.store.migrations import alembic_config, migrate
from lis_gateway.store.users import get_user

from .test_repository import T0


def test_0007_gives_existing_users_an_empty_certificate_number(db_url: str) -> None:
    """Users made at revision 0006 keep everything and get "" (not known); down and up again."""
    engine = make_engine(db_url)
    try:
        migrate(db_url, "0006", engine=engine)
        assert "certificate_number" not in {c["name"] for c in inspect(engine).get_columns(
            "users")}
        with engine.begin() as conn:  # only 0006's columns: certificate_number is left out
            conn.execute(insert(s.users).values(
                id=1, username="dr_minh", display_name="Minh", active=True, created_at=T0,
                password_hash=None))
            conn.execute(insert(s.roles).values(id=1, name="doctor"))
            conn.execute(insert(s.user_roles).values(user_id=1, role_id=1))
        migrate(db_url, engine=engine)
        with engine.begin() as conn:
            user = get_user(conn, "dr_minh")
            conn.execute(s.users.update().values(certificate_number="0012345/HNO-CCHN"))
        assert (user.display_name, user.roles, user.certificate_number) == (
            "Minh", ("doctor",), "")
        config = alembic_config(db_url)
        config.attributes["engine"] = engine
        command.downgrade(config, "0006")
        assert "certificate_number" not in {c["name"] for c in inspect(engine).get_columns(
            "users")}
        with engine.begin() as conn:
            assert conn.execute(select(s.user_roles.c.user_id)).scalars().all() == [1]
        migrate(db_url, engine=engine)
        with engine.begin() as conn:
            assert get_user(conn, "dr_minh").certificate_number == ""
    finally:
        engine.dispose()
