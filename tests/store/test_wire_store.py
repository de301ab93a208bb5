"""Wire recordings kept in the store: every byte, in order, with direction and events."""

from __future__ import annotations

from sqlalchemy import Engine, select
from twisted.internet.task import Clock

from lis_gateway.store import repository as repo
from lis_gateway.store import schema as s
from lis_gateway.store.pool import NonThreadPool
from lis_gateway.wire_store import FLUSH_CHUNKS, FLUSH_SECONDS, StoreRecorder


def chunks(engine: Engine) -> list[tuple[int, str, bytes]]:
    """Every stored chunk: (seq, direction, data)."""
    with engine.begin() as conn:
        rows = conn.execute(select(s.raw_chunks.c.seq, s.raw_chunks.c.direction,
                                   s.raw_chunks.c.data).order_by(s.raw_chunks.c.seq))
        return [(r.seq, r.direction, bytes(r.data)) for r in rows]


def test_bytes_are_written_after_the_flush_delay_in_order(engine: Engine) -> None:
    """Nothing is written until the flush time; then everything, in order, with directions."""
    clock = Clock()
    clock.advance(1_700_000_000)
    rec = StoreRecorder("chem1", "generic-astm", "tcp-server", NonThreadPool(engine), clock)
    rec.note("connected", clock.seconds())
    rec.record("rx", b"\x05", clock.seconds())
    rec.record("tx", b"\x06", clock.seconds())
    assert chunks(engine) == []
    clock.advance(FLUSH_SECONDS)
    assert chunks(engine) == [(1, "evt", b"connected"), (2, "in", b"\x05"), (3, "out", b"\x06")]


def test_many_chunks_flush_at_once_and_close_marks_the_session(engine: Engine) -> None:
    """A burst is written without waiting; closing writes the rest and closes the session."""
    clock = Clock()
    clock.advance(1_700_000_000)
    rec = StoreRecorder("chem1", "generic-astm", "serial", NonThreadPool(engine), clock)
    for i in range(FLUSH_CHUNKS):
        rec.record("rx", bytes([i % 256]), clock.seconds())
    assert len(chunks(engine)) == FLUSH_CHUNKS
    rec.record("rx", b"tail", clock.seconds())
    rec.close()
    stored = chunks(engine)
    assert stored[-1] == (FLUSH_CHUNKS + 1, "in", b"tail")
    with engine.begin() as conn:
        session = conn.execute(select(s.raw_sessions)).one()
        assert session.closed_at is not None and session.transport == "serial"
        assert repo.raw_bytes(conn, session.id, "in")[-4:] == b"tail"


def test_nothing_is_recorded_after_close(engine: Engine) -> None:
    """Late calls after close are ignored (the connection is gone)."""
    clock = Clock()
    clock.advance(1_700_000_000)
    rec = StoreRecorder("chem1", "generic-astm", "tcp-server", NonThreadPool(engine), clock)
    rec.record("rx", b"x", clock.seconds())
    rec.close()
    rec.record("rx", b"late", clock.seconds())
    clock.advance(FLUSH_SECONDS)
    assert [c[2] for c in chunks(engine)] == [b"x"]
