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


def test_0008_keeps_outbox_entries_as_results_and_allows_a_retraction(db_url: str) -> None:
    """An entry made at 0007 becomes kind "result"; a retraction entry can then join it;
    downgrading drops retraction entries only."""
    from sqlalchemy.exc import IntegrityError

    from .test_lifecycle_store import ingest
    from .test_repository import result

    engine = make_engine(db_url)
    try:
        migrate(db_url, engine=engine)
        ingest(engine, [result(sample="S1", value="5.0")])  # today's schema writes it...
        config = alembic_config(db_url)
        config.attributes["engine"] = engine
        command.downgrade(config, "0007")  # ...and the outbox entry is made at 0007
        with engine.begin() as conn:
            version_id = conn.execute(select(s.result_versions.c.id)).scalar_one()
            sample_id = conn.execute(select(s.samples.c.id)).scalar_one()
            row = {"result_version_id": version_id, "destination": "his",
                   "sample_id": sample_id, "state": "delivered", "attempts": 1,
                   "created_at": T0, "updated_at": T0, "delivered_at": T0}
            conn.execute(insert(s.outbox).values(control_id=f"LG{version_id}", **row))
        migrate(db_url, engine=engine)
        with engine.begin() as conn:
            assert conn.execute(select(s.outbox.c.kind)).scalars().all() == ["result"]
            conn.execute(insert(s.outbox).values(control_id=f"LG{version_id}X",
                                                 kind="retraction", **row))
        try:
            with engine.begin() as conn:  # still one entry per version, destination and kind
                conn.execute(insert(s.outbox).values(control_id="dup", kind="retraction",
                                                     **row))
            raise AssertionError("a second retraction entry was accepted")
        except IntegrityError:
            pass
        command.downgrade(config, "0007")
        assert "kind" not in {c["name"] for c in inspect(engine).get_columns("outbox")}
        with engine.begin() as conn:
            assert conn.execute(select(s.outbox.c.control_id)).scalars().all() == [
                f"LG{version_id}"]
        migrate(db_url, engine=engine)
        with engine.begin() as conn:
            assert conn.execute(select(s.outbox.c.kind)).scalars().all() == ["result"]
    finally:
        engine.dispose()


def test_0009_adds_downloads_and_the_patient_analyzer_and_takes_them_back(db_url: str) -> None:
    """Samples stored at 0008 get patient_analyzer ""; downgrading keeps them and drops
    the downloads table (SQLite drops the column in place: samples are referenced)."""
    from .test_lifecycle_store import ingest
    from .test_repository import result

    engine = make_engine(db_url)
    try:
        migrate(db_url, engine=engine)
        ingest(engine, [result(sample="S1", value="5.0")])
        config = alembic_config(db_url)
        config.attributes["engine"] = engine
        command.downgrade(config, "0008")
        assert "downloads" not in inspect(engine).get_table_names()
        assert "patient_analyzer" not in {c["name"] for c in inspect(engine).get_columns(
            "samples")}
        migrate(db_url, engine=engine)
        with engine.begin() as conn:
            assert conn.execute(select(s.samples.c.accession, s.samples.c.patient_analyzer)
                                ).all() == [("S1", "")]
            assert conn.execute(select(s.downloads)).all() == []
    finally:
        engine.dispose()
