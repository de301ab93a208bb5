"""StoreSink with Beckman AU online texts: stored as ``au``, resends recognised,
bad layouts kept with their problem, and held results re-extracted by ``reprocess``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, select

import drivers
from lis_gateway.au_online import AuMessage, encode_block, encode_text
from lis_gateway.autoverify import Autoverification
from lis_gateway.ingest import StoreSink
from lis_gateway.lifecycle import Policy, ResultState
from lis_gateway.mapping import load_table
from lis_gateway.reprocess import reprocess_held
from lis_gateway.store import judgements
from lis_gateway.store import repository as repo
from lis_gateway.store import schema as s
from lis_gateway.store.pool import NonThreadPool

from .test_ingest import T0, fired

SPEC = drivers.get("beckman-au")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "astm" / "beckman-au"
TEXT_2 = (FIXTURES / "beckman_2.bin").read_bytes()[1:-1]  # DOEJAN 41, 17 tests
TEXT_3 = (FIXTURES / "beckman_3.bin").read_bytes()[1:-1]  # ROEMARY 7, 098 = 3.68
HEADER = ("analyzer_code,local_code,national_code,appendix11_code,loinc,name_vi,name_en,"
          "analyzer_unit,unit_ucum,factor,offset,decimals,critical_low,critical_high,"
          "autoverify_low,autoverify_high\n")


def au(text: bytes, max_block: int = 0) -> AuMessage:
    """The message the live link hands over for ``text`` sent in blocks of ``max_block``."""
    blocks = encode_text(text, max_block=max_block)
    return AuMessage(text[:2].decode(), b"".join(blocks), text, 0, len(blocks))


def sink_for(engine: Engine, **kwargs: object) -> StoreSink:
    return StoreSink("au1", SPEC, "serial", None, NonThreadPool(engine),
                     utcnow=lambda: T0, **kwargs)  # type: ignore[arg-type]


def stored_message(engine: Engine, message_id: int) -> tuple[str, bytes]:
    with engine.begin() as conn:
        row = conn.execute(select(s.messages.c.protocol, s.messages.c.raw).where(
            s.messages.c.id == message_id)).one()
    return str(row.protocol), bytes(row.raw)


def test_au_text_is_stored_with_its_blocks_and_results(engine: Engine) -> None:
    """Protocol au, the blocks' bytes as received, one result per test with its value."""
    msg = au(TEXT_2, max_block=100)
    stored = fired(sink_for(engine).message_received(msg))
    assert isinstance(stored, repo.StoredMessage) and len(stored.new_result_ids) == 17
    assert stored_message(engine, stored.message_id) == ("au", msg.raw)
    with engine.begin() as conn:
        infos = repo.list_results(conn, "DOEJAN 41")
    by_test = {i.test_code: i.latest.content for i in infos}
    assert (by_test["005"].value_raw, by_test["097"].value_raw, by_test["099"].value_raw) == (
        "3.58", "131.69", "100.00")
    assert by_test["098"].problems[0].startswith("not-mapped")  # the shipped table is empty


def test_the_same_text_resent_after_a_lost_ack_is_a_repeat(engine: Engine) -> None:
    """Byte-identical text again: the store records a repeat and adds no result."""
    sink = sink_for(engine)
    first = fired(sink.message_received(au(TEXT_3)))
    again = fired(sink.message_received(au(TEXT_3)))
    assert isinstance(first, repo.StoredMessage) and isinstance(again, repo.StoredMessage)
    assert again.repeat and again.message_id == first.message_id and again.new_result_ids == ()
    with engine.begin() as conn:
        assert len(repo.list_results(conn, "ROEMARY 7")) == 1
        assert [r for _, r in repo.message_receptions(conn, first.message_id)] == [False, True]


def test_a_text_whose_layout_does_not_match_is_kept_with_its_problem(engine: Engine) -> None:
    """One character short: no results, the message and its bytes kept with the reason."""
    msg = au(TEXT_3[:-1])
    stored = fired(sink_for(engine).message_received(msg))
    assert isinstance(stored, repo.StoredMessage) and stored.result_ids == ()
    assert stored_message(engine, stored.message_id) == ("au", msg.raw)
    with engine.begin() as conn:
        (problem,) = repo.message_problems(conn, stored.message_id)
    assert "result text of 69 characters is not 50 + 20 x n" in problem


def test_a_host_query_is_kept_with_the_not_supported_warning(engine: Engine) -> None:
    """An R text has no results; it is stored, visible, with why nothing answered it."""
    raw = encode_block(b"R 000601 0010")
    msg = AuMessage("R ", raw, b"R 000601 0010", 0)
    stored = fired(sink_for(engine).message_received(msg))
    assert isinstance(stored, repo.StoredMessage)
    with engine.begin() as conn:
        (problem,) = repo.message_problems(conn, stored.message_id)
    assert "host query 'R ' not supported" in problem


def test_reprocess_reads_au_texts_again_from_their_bytes(engine: Engine, tmp_path: Path) -> None:
    """Held for not-mapped, then a table maps 098: reprocess stores version 2 with the code."""
    sink = sink_for(engine, autoverification=Autoverification(None, Policy()))
    stored = fired(sink.message_received(au(TEXT_3, max_block=16)))
    assert isinstance(stored, repo.StoredMessage)
    (rid,) = stored.result_ids
    (tmp_path / "beckman-au.csv").write_text(
        HEADER + "098,K,,,2823-3,Kali,Potassium,,mmol/L,1,0,2,,,,\n", encoding="utf-8")
    tables = {SPEC.table_name: load_table([tmp_path], SPEC.table_name)}
    with engine.begin() as conn:
        assert judgements.result_status(conn, rid).state is ResultState.HELD
        [done] = reprocess_held(conn, {"au1": SPEC}, tables, None, Policy(),
                                T0 + timedelta(hours=1), source="test")
        v1, v2 = repo.result_versions(conn, rid)
    assert (done.result_id, done.new_version) == (rid, 2)
    assert (v1.content.code, v2.content.code, v2.content.value_raw) == ("", "K", "3.68")
