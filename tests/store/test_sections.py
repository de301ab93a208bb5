"""Lab sections in the store: analyzers' sections from the configuration, users' sections,
and who may see what (SQLite and PostgreSQL); migration 0010 up and down."""

from __future__ import annotations

import json

import pytest
from alembic import command
from sqlalchemy import Engine, insert, inspect, select

from lis_gateway.store import schema as s
from lis_gateway.store.audit import audit_entries
from lis_gateway.store.engine import make_engine
from lis_gateway.store.migrations import alembic_config, migrate
from lis_gateway.store.repository import create_user, ensure_analyzer
from lis_gateway.store.sections import (
    scope_of,
    section_name,
    section_of_result,
    sections_in_use,
    set_user_sections,
    sync_analyzer_sections,
    user_sections,
)

from .test_lifecycle_store import ingest
from .test_repository import T0, result


def audit(engine: Engine, action: str) -> list[tuple[str, dict[str, object]]]:
    """(target, detail) of the audit rows of one kind."""
    with engine.begin() as conn:
        return [(e.target, json.loads(e.detail)) for e in audit_entries(conn)
                if e.action == action]


def test_a_lab_without_sections_lets_everybody_see_everything(engine: Engine) -> None:
    """No analyzer has a section: every user's scope is everything, held sections or not."""
    with engine.begin() as conn:
        create_user(conn, "lan", T0, roles=["technician"])
        sync_analyzer_sections(conn, [("cobas", "roche-cobas", ""), ("xn", "sysmex-xn", "")],
                               T0)
        scope = scope_of(conn, "lan")
    assert scope.everything and not scope.in_use and scope.allows("")
    assert audit(engine, "analyzer.section") == []


def test_sections_follow_the_configuration_and_restrict_users(engine: Engine) -> None:
    """Configured sections reach the store (audited); a user sees their sections only, an
    admin everything, a user with none nothing; a removed analyzer keeps its section until
    the configuration has no section at all."""
    with engine.begin() as conn:
        for name, roles in (("lan", ["technician"]), ("hoa", ["technician"]),
                            ("root", ["admin"]), ("new", ["technician"])):
            create_user(conn, name, T0, roles=roles)
        assert sync_analyzer_sections(conn, [("cobas", "roche-cobas", "hoá sinh"),
                                             ("xn", "sysmex-xn", "huyết học")], T0) == 2
        assert sync_analyzer_sections(conn, [("cobas", "roche-cobas", "hoá sinh"),
                                             ("xn", "sysmex-xn", "huyết học")], T0) == 0
        assert sections_in_use(conn) == ("hoá sinh", "huyết học")
        set_user_sections(conn, "lan", ["hoá sinh"], T0, actor="cli:root")
        set_user_sections(conn, "hoa", [" huyết học ", "hoá sinh", "huyết học"], T0)
        lan, hoa, root, new = (scope_of(conn, n) for n in ("lan", "hoa", "root", "new"))
    assert lan.allows("hoá sinh") and not lan.allows("huyết học") and not lan.allows("")
    assert hoa.sections == {"huyết học", "hoá sinh"} and not hoa.everything
    assert root.everything and root.allows("huyết học") and root.in_use
    assert not new.sections and not new.allows("hoá sinh")
    assert audit(engine, "analyzer.section") == [
        ("analyzer:cobas", {"from": "", "to": "hoá sinh"}),
        ("analyzer:xn", {"from": "", "to": "huyết học"})]
    assert audit(engine, "user.sections")[0] == ("user:lan", {"from": [], "to": ["hoá sinh"]})

    with engine.begin() as conn:  # xn leaves the configuration: it keeps its section
        sync_analyzer_sections(conn, [("cobas", "roche-cobas", "hoá sinh")], T0)
        assert sections_in_use(conn) == ("hoá sinh", "huyết học")
        sync_analyzer_sections(conn, [("cobas", "roche-cobas", "")], T0)  # sections off
        assert sections_in_use(conn) == ()
        assert scope_of(conn, "lan").everything
        assert user_sections(conn, "hoa") == ("hoá sinh", "huyết học")  # kept for later


def test_a_result_belongs_to_its_analyzers_section(engine: Engine) -> None:
    """The section of a result is its analyzer's."""
    [result_id] = ingest(engine, [result(sample="S1")])  # analyzer "cobas"
    with engine.begin() as conn:
        assert section_of_result(conn, result_id) == ""
        sync_analyzer_sections(conn, [("cobas", "roche-cobas", "hoá sinh")], T0)
        assert section_of_result(conn, result_id) == "hoá sinh"


def test_users_sections_are_replaced_whole_and_unknown_users_refused(engine: Engine) -> None:
    """Setting sections replaces them; clearing leaves none; unknown users are refused."""
    from lis_gateway.store._common import NotFoundError

    with engine.begin() as conn:
        create_user(conn, "lan", T0, roles=["technician"])
        set_user_sections(conn, "lan", ["a", "b"], T0)
        assert set_user_sections(conn, "lan", ["c"], T0) == ("c",)
        assert set_user_sections(conn, "lan", [], T0) == ()
        with pytest.raises(NotFoundError):
            set_user_sections(conn, "nobody", ["a"], T0)
    assert [d for _, d in audit(engine, "user.sections")] == [
        {"from": [], "to": ["a", "b"]}, {"from": ["a", "b"], "to": ["c"]},
        {"from": ["c"], "to": []}]


@pytest.mark.parametrize("text,why", [("", "empty"), ("  ", "empty"), ("a,b", "','"),
                                      ("x\ty", "control"), ("x" * 101, "at most")])
def test_bad_section_names_are_refused(text: str, why: str) -> None:
    """Names are trimmed and NFC; empty, comma, control characters, too long: refused."""
    with pytest.raises(ValueError, match=why):
        section_name(text)
    assert section_name(" hoa\u0301 sinh ") == "hoá sinh"


def test_0010_adds_sections_and_takes_them_back(db_url: str) -> None:
    """Analyzers made at 0009 get section ""; user sections are a new table; downgrading
    drops both and keeps the analyzers."""
    engine = make_engine(db_url)
    try:
        migrate(db_url, "0009", engine=engine)
        assert "user_sections" not in inspect(engine).get_table_names()
        with engine.begin() as conn:  # 0009's columns only
            conn.execute(insert(s.analyzers).values(name="cobas", family="roche-cobas",
                                                    created_at=T0))
        migrate(db_url, engine=engine)
        with engine.begin() as conn:
            assert conn.execute(select(s.analyzers.c.name, s.analyzers.c.section)).all() == [
                ("cobas", "")]
            ensure_analyzer(conn, "xn", T0)
            create_user(conn, "lan", T0)
            set_user_sections(conn, "lan", ["huyết học"], T0)
        config = alembic_config(db_url)
        config.attributes["engine"] = engine
        command.downgrade(config, "0009")
        assert "user_sections" not in inspect(engine).get_table_names()
        assert "section" not in {c["name"] for c in inspect(engine).get_columns("analyzers")}
        migrate(db_url, engine=engine)
        with engine.begin() as conn:
            assert conn.execute(select(s.analyzers.c.name).order_by(s.analyzers.c.id)
                                ).scalars().all() == ["cobas", "xn"]
    finally:
        engine.dispose()
