"""Store repository tests, each run on SQLite (WAL) and PostgreSQL."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.exc import DBAPIError

from lis_gateway.normalize import NormalizedResult, RowView
from lis_gateway.store import judgements
from lis_gateway.store import repository as repo
from lis_gateway.store import schema as s
from lis_gateway.values import parse_value

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def result(sample: str = "S1", test: str = "GLU", value: str = "5.4",
           completed_at: str = "20261101080000") -> NormalizedResult:
    """A normalized result as the receive path would hand it to the store."""
    row = RowView(sample_id=sample, test=test, value=value, unit="mmol/L",
                  reference_range="3.9-6.1", flags=("N",), status="F", role="reportable",
                  qc=False, completed_at=completed_at, instrument="")
    parsed = parse_value(value)
    return NormalizedResult(
        row=row, value=parsed, code=test, national_code="", loinc="2345-7",
        name_vi="", name_en="Glucose", unit_ucum="mmol/L", number=parsed.number,
        flags=("N",), instrument_flags=(), supplementary=(), status="F",
        reference_range="3.9-6.1", critical="", problems=(), mapping_version="v1",
        result_time=T0)


RAW = b"H|\\^&|||cobas\rP|1\rO|1|S1\rR|1|^^^GLU|5.4|mmol/L\rL|1|N\r"


def store(engine: Engine, raw: bytes, results: list[NormalizedResult],
          at: datetime = T0) -> repo.StoredMessage:
    """Store one message from analyzer ``cobas`` in its own transaction."""
    with engine.begin() as conn:
        analyzer = repo.ensure_analyzer(conn, "cobas", at, family="roche_cobas")
        return repo.store_message(
            conn, analyzer_id=analyzer.id, protocol="astm", raw=raw, received_at=at,
            results=results,
            patients={"S1": repo.PatientIds(hospital_id="H42", national_id="0790001")})


def test_migrated_schema_equals_metadata(engine: Engine) -> None:
    """Alembic's first revision creates exactly schema.metadata (autogenerate finds no diff)."""
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), s.metadata)
    assert diff == []


def test_message_and_results_are_stored(engine: Engine) -> None:
    """A message is kept byte for byte with its results, sample and patient identifiers."""
    stored = store(engine, RAW, [result(), result(test="UREA", value="4.1")])
    assert not stored.repeat and len(stored.result_ids) == 2
    assert stored.new_result_ids == stored.result_ids
    with engine.begin() as conn:
        raw = conn.execute(select(s.messages.c.raw)).scalar_one()
        infos = repo.results_for_sample(conn, "S1")
        ids = repo.sample_ids(conn, "S1")
    assert raw == RAW
    assert [i.test_code for i in infos] == ["GLU", "UREA"]
    latest = infos[0].latest
    assert latest.version == 1 and latest.reason == "received"
    assert latest.author == "analyzer:cobas"
    assert latest.content.number == Decimal("5.4")
    assert latest.content.flags == ("N",)
    assert latest.content.result_time == T0
    assert ids == repo.PatientIds(hospital_id="H42", national_id="0790001")


def test_resend_is_a_repeat_not_doubled(engine: Engine) -> None:
    """The same bytes sent again are recorded as a repeat reception; no result is doubled."""
    first = store(engine, RAW, [result()])
    again = store(engine, RAW, [result()], at=T0 + timedelta(minutes=1))
    assert again.repeat and again.message_id == first.message_id
    assert again.result_ids == first.result_ids and again.new_result_ids == ()
    with engine.begin() as conn:
        assert conn.execute(select(func.count()).select_from(s.results)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(s.messages)).scalar_one() == 1
        receptions = repo.message_receptions(conn, first.message_id)
    assert [r for _, r in receptions] == [False, True]


def test_reframed_resend_links_existing_result(engine: Engine) -> None:
    """A resend with different header bytes but the same result is shown as a repeat."""
    first = store(engine, RAW, [result()])
    again = store(engine, RAW.replace(b"cobas", b"cobas2"), [result()])
    assert not again.repeat and again.new_result_ids == ()
    assert again.result_ids == first.result_ids
    with engine.begin() as conn:
        repeat = conn.execute(select(s.message_results.c.repeat).where(
            s.message_results.c.message_id == again.message_id)).scalar_one()
        assert repeat is True
        assert conn.execute(select(func.count()).select_from(s.results)).scalar_one() == 1


def test_rerun_is_a_new_result_old_kept(engine: Engine) -> None:
    """A genuine rerun (new completion time) is a new result pointing at the old one."""
    first = store(engine, RAW, [result()])
    rerun = store(engine, RAW.replace(b"5.4", b"5.9"),
                  [result(value="5.9", completed_at="20261101090000")])
    assert rerun.new_result_ids and rerun.new_result_ids != first.result_ids
    with engine.begin() as conn:
        infos = repo.results_for_sample(conn, "S1")
    assert [i.latest.content.value_raw for i in infos] == ["5.4", "5.9"]
    assert infos[1].rerun_of_id == infos[0].id


def test_one_message_with_a_test_repeated_and_a_mixture_of_known_results(
        engine: Engine) -> None:
    """Reruns inside one message chain in message order; known results are linked, not new.

    The store inserts a message's results in rounds (one ``executemany`` each);
    this pins what the rounds must keep: ids in message order, each rerun naming
    the run before it (also one from the same message), the first versions'
    ids returned in step, and two samples in one message.
    """
    first = store(engine, RAW, [result()])
    mixed = [result(),  # known: linked as a repeat
             result(value="5.6", completed_at="20261101083000"),
             result(test="UREA", value="4.1"),
             result(value="5.7", completed_at="20261101084000"),
             result(sample="S2", value="6.0")]
    stored = store(engine, RAW + b"2", mixed)
    assert stored.result_ids[0] == first.result_ids[0]
    assert stored.new_result_index == (1, 2, 3, 4)
    assert list(stored.new_result_ids) == sorted(stored.new_result_ids)
    with engine.begin() as conn:
        glu = [i for i in repo.results_for_sample(conn, "S1") if i.test_code == "GLU"]
        s2 = repo.results_for_sample(conn, "S2")
        links = dict(conn.execute(select(s.message_results.c.result_id,
                                         s.message_results.c.repeat).where(
            s.message_results.c.message_id == stored.message_id)).all())
        versions = [repo.get_result(conn, i).latest.id for i in stored.new_result_ids]
    assert [i.latest.content.value_raw for i in glu] == ["5.4", "5.6", "5.7"]
    assert [i.rerun_of_id for i in glu] == [None, glu[0].id, glu[1].id]
    assert s2[0].rerun_of_id is None and s2[0].latest.content.value_raw == "6.0"
    assert stored.new_version_ids == tuple(versions)
    assert links == {**{i: False for i in stored.new_result_ids}, first.result_ids[0]: True}


def test_correction_is_a_linked_version(engine: Engine) -> None:
    """A correction inserts version 2 with reason/author/time; version 1 is unchanged."""
    stored = store(engine, RAW, [result()])
    with engine.begin() as conn:
        v1 = repo.get_result(conn, stored.result_ids[0]).latest
        user = repo.create_user(conn, "lan", T0, roles=["technician"])
        judgements.add_validation_event(conn, v1.id, "released", user.id, T0)
        fixed = dataclasses.replace(v1.content, value_raw="5.5", number=Decimal("5.5"))
        v2 = repo.correct_result(conn, v1.id, fixed, reason="transcription", author="lan",
                                 at=T0 + timedelta(hours=1), source="10.0.0.7")
    with engine.begin() as conn:
        versions = repo.result_versions(conn, stored.result_ids[0])
        with pytest.raises(repo.StaleVersionError):
            repo.correct_result(conn, v1.id, fixed, reason="again", author="lan", at=T0)
    assert versions == (v1, v2)
    assert (v2.version, v2.supersedes_id, v2.reason, v2.author) == (2, v1.id, "transcription",
                                                                    "lan")
    assert v2.created_at == T0 + timedelta(hours=1)
    assert versions[0].content.value_raw == "5.4"
    assert user.roles == ("technician",)


def test_released_version_cannot_be_updated(engine: Engine) -> None:
    """The database itself refuses an UPDATE of a stored result version (trigger)."""
    store(engine, RAW, [result()])
    with pytest.raises(DBAPIError), engine.begin() as conn:
        conn.execute(update(s.result_versions).values(value_raw="9.9"))


def _tamper(engine: Engine, table: str, stmt: str) -> None:
    """Change a row behind the repository's back, removing the guard trigger first."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
            conn.execute(text(stmt))
            conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))
        else:
            conn.execute(text(f"DROP TRIGGER {table}_no_update"))
            conn.execute(text(f"DROP TRIGGER {table}_no_delete"))
            conn.execute(text(stmt))


def test_audit_chain_verifies_and_detects_tampering(engine: Engine) -> None:
    """An intact chain verifies; an edited row (guard bypassed) is reported by id."""
    with engine.begin() as conn:
        for n in range(3):
            repo.append_audit(conn, actor="lan", action="login", target=f"user:{n}",
                              detail={"n": n}, source="10.0.0.7", at=T0)
        entries = repo.audit_entries(conn)
        assert repo.verify_audit(conn) == []
    with pytest.raises(DBAPIError), engine.begin() as conn:
        conn.execute(update(s.audit_log).values(actor="mallory"))
    _tamper(engine, "audit_log", f"UPDATE audit_log SET actor = 'mallory' "
                                 f"WHERE id = {entries[1].id}")
    with engine.begin() as conn:
        assert repo.verify_audit(conn) == [entries[1].id]


def test_audit_detects_removed_tail(engine: Engine) -> None:
    """Deleting the newest audit row is detected through the chain head."""
    with engine.begin() as conn:
        for n in range(2):
            repo.append_audit(conn, actor="lan", action="x", target="t", detail={"n": n},
                              source="", at=T0)
        entries = repo.audit_entries(conn)
    _tamper(engine, "audit_log", f"DELETE FROM audit_log WHERE id = {entries[1].id}")
    with engine.begin() as conn:
        assert repo.verify_audit(conn) == [entries[0].id]


def test_raw_session_keeps_every_byte(engine: Engine) -> None:
    """The wire recording returns each direction's bytes in order."""
    with engine.begin() as conn:
        analyzer = repo.ensure_analyzer(conn, "cobas", T0)
        sid = repo.open_raw_session(conn, analyzer.id, "tcp", T0, peer="10.0.0.9:4001")
        repo.record_chunks(conn, sid, [(1, "in", T0, b"\x05"), (2, "out", T0, b"\x06"),
                                       (3, "in", T0, b"\x021H|\\^&\r\x03")])
        repo.close_raw_session(conn, sid, T0)
        assert repo.raw_bytes(conn, sid, "in") == b"\x05\x021H|\\^&\r\x03"
        assert repo.raw_bytes(conn, sid, "out") == b"\x06"


def test_naive_time_is_refused(engine: Engine) -> None:
    """Times must be timezone-aware (local misuse raises)."""
    with pytest.raises(ValueError), engine.begin() as conn:
        repo.ensure_analyzer(conn, "x", datetime(2026, 1, 1))


def test_list_results_all_or_per_sample_with_the_analyzer_name(engine: Engine) -> None:
    """list_results returns every result oldest first, or one sample's, naming the analyzer."""
    store(engine, RAW, [result(), result(sample="S2", test="UREA", value="4.1")])
    with engine.begin() as conn:
        everything = repo.list_results(conn)
        only_s2 = repo.list_results(conn, "S2")
    assert [(i.accession, i.test_code, i.analyzer) for i in everything] == [
        ("S1", "GLU", "cobas"), ("S2", "UREA", "cobas")]
    assert [i.test_code for i in only_s2] == ["UREA"]
