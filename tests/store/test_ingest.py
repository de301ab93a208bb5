"""StoreSink: each message and its normalized results are committed before the ACK."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine
from twisted.internet.defer import Deferred

import drivers
from lis_gateway.astm.assembler import AstmMessage, IncompleteTransmission, MessageAssembler
from lis_gateway.hl7.message import parse_message
from lis_gateway.ingest import StoreSink
from lis_gateway.mapping import load_table
from lis_gateway.store import repository as repo
from lis_gateway.store.pool import NonThreadPool

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
ASTM = (b"H|\\^&|||c311^1\rP|1\rO|1|S77||^^^685\r"
        b"R|1|^^^685/|35|U/L||N||F||||20261122075900|P1\rL|1|N\r")


def message(raw: bytes) -> AstmMessage:
    """One assembled ASTM message."""
    (msg,) = MessageAssembler().add_text(raw, block_end=True)
    assert isinstance(msg, AstmMessage)
    return msg


def fired(d: Deferred[object]) -> object:
    """The result of an already-fired Deferred (NonThreadPool runs inline)."""
    out: list[object] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    return out[0]


def test_astm_message_is_stored_mapped_and_a_resend_is_a_repeat(engine: Engine) -> None:
    """roche-cobas: ALT 685 maps to ALT in U/L; the same bytes again are a repeat, not a double."""
    spec = drivers.get("roche-cobas")
    sink = StoreSink("chem1", spec, "tcp-server", load_table([MAPPINGS], spec.table_name),
                     NonThreadPool(engine), utcnow=lambda: T0)
    first = fired(sink.message_received(message(ASTM)))
    again = fired(sink.message_received(message(ASTM)))
    assert isinstance(first, repo.StoredMessage) and not first.repeat
    assert isinstance(again, repo.StoredMessage) and again.repeat
    with engine.begin() as conn:
        (info,) = repo.list_results(conn, "S77")
    assert (info.analyzer, info.test_code, info.latest.content.code) == ("chem1", "685", "ALT")
    assert info.latest.content.problems == ()


def test_hl7_message_without_table_is_stored_with_not_mapped(engine: Engine) -> None:
    """generic-hl7 has no table: the result is kept, saying it is not mapped."""
    raw = (b"MSH|^~\\&|A||||20240101||ORU^R01|9|P|2.3.1\rOBR|1|B1\r"
           b"OBX|1|NM|GLU||5.5|mmol/L|||||F\r")
    sink = StoreSink("hl7", drivers.get("generic-hl7"), "tcp-server", None,
                     NonThreadPool(engine), utcnow=lambda: T0)
    fired(sink.message_received(parse_message(raw)))
    with engine.begin() as conn:
        (info,) = repo.list_results(conn, "B1")
    assert info.latest.content.problems[0].startswith("not-mapped")


def test_a_failed_commit_fails_the_deferred_so_the_link_naks(engine: Engine) -> None:
    """When the database refuses, the Deferred fails (the adapter answers NAK/AE)."""
    sink = StoreSink("chem1", drivers.get("generic-astm"), "tcp-server", None,
                     NonThreadPool(engine), utcnow=lambda: datetime(2026, 1, 1))  # naive: refused
    outcome = fired(sink.message_received(message(ASTM)))
    assert hasattr(outcome, "check") and outcome.check(ValueError)  # a Failure


def test_incomplete_transmission_is_kept(engine: Engine) -> None:
    """Text that never became a message is stored raw (as a closed raw session)."""
    sink = StoreSink("chem1", drivers.get("generic-astm"), "tcp-server", None,
                     NonThreadPool(engine), utcnow=lambda: T0)
    sink.incomplete(IncompleteTransmission(b"H|\\^&\rP|1\rO|1|S9", "receive-timeout", 0))
    with engine.begin() as conn:
        assert repo.raw_bytes(conn, 1, "in") == b"H|\\^&\rP|1\rO|1|S9"


def test_message_without_terminator_is_stored_with_its_deviation(engine: Engine) -> None:
    """No L record before EOT: the message is committed and the deviation kept with it."""
    asm = MessageAssembler()
    asm.add_text(b"H|\\^&\rP|1\rO|1|S55\rR|1|^^^GLU|5.1|mmol/L\r", block_end=True)
    (msg,) = asm.end_transfer()
    assert isinstance(msg, AstmMessage) and not msg.terminated
    sink = StoreSink("chem1", drivers.get("generic-astm"), "tcp-server", None,
                     NonThreadPool(engine), utcnow=lambda: T0)
    stored = fired(sink.message_received(msg))
    assert isinstance(stored, repo.StoredMessage)
    with engine.begin() as conn:
        problems = repo.message_problems(conn, stored.message_id)
        (info,) = repo.list_results(conn, "S55")
    assert any("no L (terminator) record before EOT" in p for p in problems)
    assert info.test_code == "GLU"


class FlakyPool:
    """NonThreadPool that fails every transaction while ``down`` is set."""

    def __init__(self, engine: Engine) -> None:
        self.inner = NonThreadPool(engine)
        self.down = False
        self.runs = 0

    def run(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.runs += 1
        if self.down:
            from twisted.internet.defer import fail
            return fail(RuntimeError("database is down"))
        return self.inner.run(fn, *args, **kwargs)


def test_after_a_failed_store_the_sink_says_busy_until_a_probe_commits(engine: Engine) -> None:
    """accepting(): True normally; after a failure False, and the probe it starts decides."""
    pool = FlakyPool(engine)
    sink = StoreSink("chem1", drivers.get("generic-astm"), "tcp-server", None, pool,
                     utcnow=lambda: T0)
    assert sink.accepting() and pool.runs == 0
    pool.down = True
    assert hasattr(fired(sink.message_received(message(ASTM))), "check")
    assert not sink.accepting()  # the probe failed too (database still down)
    assert pool.runs == 2
    pool.down = False
    assert not sink.accepting()  # this question starts a probe, which commits at once here
    assert pool.runs == 3
    assert sink.accepting() and pool.runs == 3
    stored = fired(sink.message_received(message(ASTM)))
    assert isinstance(stored, repo.StoredMessage) and not stored.repeat
