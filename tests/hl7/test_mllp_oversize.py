"""MLLP framer: a block over the size limit keeps only its head and is reported with its
size, however it ends, whole and byte by byte."""

from __future__ import annotations

import pytest

from lis_gateway.hl7.mllp import (
    SHORT_HEAD,
    BlockIncomplete,
    BlockReceived,
    BlockTooLarge,
    MllpEvent,
    MllpFramer,
)

VT, FS, CR, LF = b"\x0b", b"\x1c", b"\r", b"\n"
MSH = b"MSH|^~\\&|AN|LAB|LIS||20240506070809||ORU^R01|BIG1|P|2.5.1\r"
BIG = MSH + b"OBX|1|ED|IMG||" + b"A" * 500 + b"\r"
NEXT = b"MSH|^~\\&|AN|LAB|LIS||20240506070809||ORU^R01|OK1|P|2.5.1\r"
LIMIT = 200


def feed(data: bytes, *, byte_by_byte: bool) -> tuple[MllpFramer, list[MllpEvent]]:
    """A framer with a 200-byte limit given ``data`` whole or one byte at a time."""
    framer = MllpFramer(max_message=LIMIT)
    chunks = [data[i:i + 1] for i in range(len(data))] if byte_by_byte else [data]
    events: list[MllpEvent] = []
    for chunk in chunks:
        events += framer.receive_data(chunk, 0.0)
    return framer, events


@pytest.mark.parametrize("byte_by_byte", [False, True])
def test_oversized_block_keeps_its_msh_and_size_and_the_next_block_follows(
        byte_by_byte: bool) -> None:
    """The head through MSH's CR is kept, the size counts every byte, the next block is
    framed as usual."""
    _framer, events = feed(b"\r\n" + VT + BIG + FS + CR + VT + NEXT + FS + CR,
                           byte_by_byte=byte_by_byte)
    assert events == [
        BlockTooLarge(MSH, 2, f"message longer than {LIMIT} bytes", size=len(BIG), limit=LIMIT),
        BlockReceived(NEXT, 2 + len(BIG) + 3)]
    assert isinstance(events[0], BlockIncomplete)  # what every other reader of events sees


def test_oversized_block_ended_by_the_next_vt_is_still_too_large() -> None:
    """A missing FS does not let an oversized block through as a message."""
    _framer, events = feed(VT + BIG + VT + NEXT + FS + CR, byte_by_byte=False)
    assert [type(e) for e in events] == [BlockTooLarge, BlockReceived]
    assert events[0].data == MSH
    assert isinstance(events[0], BlockTooLarge) and events[0].size == len(BIG)


def test_oversized_block_cut_by_the_connection_is_reported_too_large() -> None:
    """The connection closing in an oversized block reports its head and size, no more."""
    framer, events = feed(VT + BIG, byte_by_byte=False)
    assert events == []
    [lost] = framer.connection_lost()
    assert lost == BlockTooLarge(
        MSH, 0, f"message longer than {LIMIT} bytes (the connection closed before FS)",
        size=len(BIG), limit=LIMIT)


def test_oversized_block_ending_in_lf_ends_after_the_missing_fs_silence() -> None:
    """The missing-FS rule applies to an oversized block by its last byte, not its head."""
    framer = MllpFramer(max_message=LIMIT, missing_fs_timeout=1.0)
    assert framer.receive_data(VT + BIG.replace(b"\r", b"\n"), 5.0) == []
    assert framer.get_timer() == 6.0
    [ended] = framer.handle_timer(6.0)
    assert isinstance(ended, BlockTooLarge) and ended.data == MSH.replace(b"\r", b"\n")


def test_oversized_block_without_a_segment_end_keeps_its_first_bytes() -> None:
    """No CR or LF within the head limit: the first 256 bytes are kept, as before."""
    data = b"X" * 5000
    framer = MllpFramer(max_message=LIMIT)
    [event] = framer.receive_data(VT + data + FS + CR, 0.0)
    assert isinstance(event, BlockTooLarge)
    assert (event.data, event.size) == (data[:SHORT_HEAD], len(data))
