"""MLLP framer: byte tables run whole, byte by byte and with trailing bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lis_gateway.hl7.errors import MllpFramingError
from lis_gateway.hl7.mllp import (
    BlockIncomplete,
    BlockReceived,
    MllpEvent,
    MllpFramer,
    StrayBytes,
    frame,
)

VT, FS, CR, LF = b"\x0b", b"\x1c", b"\r", b"\n"
MSG_A = b"MSH|^~\\&|A|B|||20240101||ORU^R01|1|P|2.3.1\rPID|1||P1\rOBX|1|NM|GLU||5.5|mmol/L\r"
MSG_B = b"MSH|^~\\&|A|B|||20240101||ORU^R01|2|P|2.3.1\rOBX|1|NM|NA||140|mmol/L\r"


def run_three_ways(data: bytes, trailing: bytes = b""
                   ) -> list[list[tuple[type, bytes, tuple[str, ...]]]]:
    """Feed whole, one byte at a time, and with trailing bytes; return comparable events."""
    def run(chunks: list[bytes]) -> list[MllpEvent]:
        framer = MllpFramer()
        out: list[MllpEvent] = []
        for chunk in chunks:
            out += framer.receive_data(chunk, 0.0)
        return out

    def shape(events: list[MllpEvent]) -> list[tuple[type, bytes, tuple[str, ...]]]:
        return [(type(e), e.data, e.deviations if isinstance(e, BlockReceived) else ())
                for e in events]

    return [shape(run([data])), shape(run([data[i:i + 1] for i in range(len(data))])),
            shape(run([data + trailing]))]


CASES = [
    # standard block
    (VT + MSG_A + FS + CR, [(BlockReceived, MSG_A, ())]),
    # two blocks back to back in one read
    (VT + MSG_A + FS + CR + VT + MSG_B + FS + CR,
     [(BlockReceived, MSG_A, ()), (BlockReceived, MSG_B, ())]),
    # 14 stray STX before VT (mindray_4)
    (b"\x02" * 14 + VT + MSG_A + FS + CR,
     [(BlockReceived, MSG_A, ("14 stray bytes before VT",))]),
    # CR LF between blocks is not worth reporting
    (VT + MSG_A + FS + CR + LF + VT + MSG_B + FS + CR,
     [(BlockReceived, MSG_A, ()), (BlockReceived, MSG_B, ())]),
    # missing FS, next VT ends the block (Tisenc)
    (VT + MSG_A + VT + MSG_B + FS + CR,
     [(BlockReceived, MSG_A, ("missing FS: the next VT began a new message",)),
      (BlockReceived, MSG_B, ())]),
    # segments ending in LF are the parser's business: the framer keeps the bytes
    (VT + MSG_A.replace(CR, LF) + FS + CR, [(BlockReceived, MSG_A.replace(CR, LF), ())]),
    # no VT at all, FS at the end
    (MSG_A + FS + CR, [(BlockReceived, MSG_A, ("no VT before the message",))]),
]


@pytest.mark.parametrize(("data", "expected"), CASES)
def test_framer_three_ways(data: bytes, expected: list) -> None:
    """Whole buffer, byte by byte, and with a trailing partial block give the same blocks."""
    whole, bytewise, trailing = run_three_ways(data, trailing=VT + b"MSH|partial")
    assert whole == expected
    assert bytewise == expected
    assert trailing == expected


def test_missing_fs_ended_by_silence_after_crlf() -> None:
    """Snibe ends with CR LF and no FS: the block completes after the quiet period."""
    framer = MllpFramer(missing_fs_timeout=1.0)
    assert framer.receive_data(VT + MSG_A + LF, 10.0) == []
    assert framer.get_timer() == 11.0
    assert framer.handle_timer(10.9) == []
    (block,) = framer.handle_timer(11.0)
    assert isinstance(block, BlockReceived) and block.data == MSG_A + LF
    assert "went quiet" in block.deviations[0]
    assert framer.get_timer() is None


def test_more_bytes_restart_the_silence_timer() -> None:
    """A pause after one LF-ended segment is not the end if more bytes follow in time."""
    framer = MllpFramer(missing_fs_timeout=1.0)
    framer.receive_data(VT + b"MSH|^~\\&|A\n", 0.0)
    framer.receive_data(b"OBX|1|NM|GLU||5\n", 0.5)
    assert framer.get_timer() == 1.5
    (block,) = framer.handle_timer(1.5)
    assert block.data.endswith(b"OBX|1|NM|GLU||5\n")


def test_no_timer_when_the_message_ends_with_cr_only() -> None:
    """A standard CR segment end waits for FS; only LF endings arm the silence timer."""
    framer = MllpFramer()
    framer.receive_data(VT + MSG_A, 0.0)
    assert framer.get_timer() is None


def test_read_of_1023_bytes_is_not_a_message() -> None:
    """A 1,023-byte read cut inside OBX-6 (biosystems_4) waits for the rest."""
    body = b"MSH|^~\\&|BA400\r" + b"OBX|1|NM|X||1|mg/dL\r" * 80
    wire = VT + body + FS + CR
    framer = MllpFramer()
    assert framer.receive_data(wire[:1023], 0.0) == []
    (block,) = framer.receive_data(wire[1023:], 0.1)
    assert isinstance(block, BlockReceived) and block.data == body


def test_connection_lost_mid_block_is_incomplete() -> None:
    """Bytes cut off by a closed connection are reported, not delivered."""
    framer = MllpFramer()
    framer.receive_data(VT + MSG_A[:50], 0.0)
    (item,) = framer.connection_lost()
    assert isinstance(item, BlockIncomplete) and item.data == MSG_A[:50]


def test_connection_closed_after_a_segment_end_delivers_with_a_deviation() -> None:
    """No FS, but the sender closed right after a CR: the message is delivered, flagged."""
    framer = MllpFramer()
    framer.receive_data(VT + MSG_A, 0.0)
    (block,) = framer.connection_lost()
    assert isinstance(block, BlockReceived) and block.data == MSG_A
    assert "connection closed after a segment end" in block.deviations[0]


def test_stray_bytes_without_a_message_are_reported_at_close() -> None:
    """Garbage with no block after it comes out as StrayBytes when the line closes."""
    framer = MllpFramer()
    assert framer.receive_data(b"hello", 0.0) == []
    assert framer.connection_lost() == [StrayBytes(b"hello", 0)]


def test_oversized_block_is_dropped_and_reported() -> None:
    """A block over the size limit is reported and the framer resynchronises."""
    framer = MllpFramer(max_message=100)
    events = framer.receive_data(VT + b"x" * 200 + FS + CR + VT + MSG_B + FS + CR, 0.0)
    assert isinstance(events[0], BlockIncomplete)
    assert events[-1] == BlockReceived(MSG_B, 203)
    assert len(events) == 2


def test_offsets_count_every_byte() -> None:
    """Block offsets are positions of the VT in the whole stream."""
    framer = MllpFramer()
    first = framer.receive_data(b"\r\n" + VT + MSG_A + FS + CR, 0.0)
    second = framer.receive_data(VT + MSG_B + FS + CR, 0.0)
    assert first[0].offset == 2
    assert second[0].offset == 2 + 1 + len(MSG_A) + 2


def test_frame_refuses_block_characters() -> None:
    """A message containing VT or FS cannot be framed."""
    with pytest.raises(MllpFramingError):
        frame(b"MSH|\x1c")
    assert frame(MSG_A) == VT + MSG_A + FS + CR


@given(st.lists(st.binary(min_size=1, max_size=300).map(
    lambda b: b.replace(VT, b"").replace(FS, b"")), min_size=1, max_size=5),
       st.integers(min_value=1, max_value=64))
def test_any_messages_any_read_size(messages: list[bytes], size: int) -> None:
    """Framed messages come back exactly, whatever the read size."""
    wire = b"".join(frame(m) for m in messages)
    framer = MllpFramer()
    out: list[MllpEvent] = []
    for i in range(0, len(wire), size):
        out += framer.receive_data(wire[i:i + size], 0.0)
    assert [e.data for e in out if isinstance(e, BlockReceived)] == messages
