"""E1381 frames: checksum, encoding, splitting, and the byte-stream scanner."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lis_gateway.astm.frames import (
    ChecksumMode,
    FrameScanner,
    Token,
    TokenKind,
    check_frame,
    checksum,
    encode_frame,
    split_text,
)

STX, ETX, ETB, ENQ, EOT, ACK = b"\x02", b"\x03", b"\x17", b"\x05", b"\x04", b"\x06"


def test_checksum_worked_example_from_ortho_3() -> None:
    """The sum FN..ETX mod 256 of `3L|1|N<CR><ETX>` is 0x06 (protocols.md §1.5)."""
    assert checksum(b"3L|1|N\r\x03") == b"06"


def test_checksum_is_upper_case_hex() -> None:
    """Checksums are written as two upper-case hex digits, high nibble first."""
    assert checksum(bytes([0x30, 0x7B])) == b"AB"


def test_encode_frame_layout() -> None:
    """A frame is STX FN text ETX C1 C2 CR LF, with FN written modulo 8."""
    frame = encode_frame(9, b"L|1|N\r", final=True)
    assert frame == STX + b"1L|1|N\r" + ETX + checksum(b"1L|1|N\r" + ETX) + b"\r\n"


def test_encode_frame_lowercase_and_no_checksum_dialects() -> None:
    """Dialect switches write a lower-case checksum or none at all."""
    assert checksum(b"1Z\x17") == b"A2"
    assert encode_frame(1, b"Z", final=False, lowercase=True) == STX + b"1Z" + ETB + b"a2\r\n"
    assert encode_frame(1, b"A", final=True, with_checksum=False) == STX + b"1A" + ETX + b"\r\n"


def test_latin1_text_verifies_on_raw_bytes() -> None:
    """A Latin-1 'É' (0xC9) is summed as a byte and never causes a mismatch."""
    frame = encode_frame(1, "P|1||NGUYỄN".encode() + "É".encode("latin-1") + b"\r",
                         final=True)
    checked = check_frame(frame[:-2], ChecksumMode.STRICT)
    assert checked.checksum_ok and checked.text.endswith(b"\xc9\r")


def test_checksum_compared_case_insensitively() -> None:
    """A lower-case checksum from the peer is accepted."""
    body = b"1R|1|^^^GLU|5.5\r" + ETX
    frame = STX + body + checksum(body).lower()
    assert check_frame(frame, ChecksumMode.STRICT).checksum_ok


def test_bad_checksum_reported_not_raised() -> None:
    """A wrong checksum comes back as checksum_ok=False with both values."""
    checked = check_frame(STX + b"1L|1\r" + ETX + b"00", ChecksumMode.STRICT)
    assert not checked.checksum_ok
    assert checked.received == b"00" and checked.expected == checksum(b"1L|1\r" + ETX)


@pytest.mark.parametrize("damage", [
    lambda t: t.replace(b"\r", b"\n"),  # CR turned into LF (horiba_4, agappe_1 captures)
    lambda t: t.replace(b"\r", b"\r\n"),  # LF added after every CR (roche_3, roche_4)
])
def test_line_ending_repair(damage) -> None:
    """Undoing CR/LF damage makes the original checksum verify again, when allowed."""
    text = b"P|1\rO|1|S1\rR|1|^^^GLU|5.5\r"
    good = encode_frame(2, text, final=True)[:-2]
    body = good[1:-2]
    damaged = STX + damage(body[:-1]) + body[-1:] + good[-2:]
    assert not check_frame(damaged, ChecksumMode.STRICT).checksum_ok
    fixed = check_frame(damaged, ChecksumMode.STRICT, repair_line_endings=True)
    assert fixed.checksum_ok and fixed.repaired and fixed.text == text


def test_none_mode_has_no_checksum_characters() -> None:
    """In NONE mode the frame ends at ETX and is accepted as is."""
    checked = check_frame(STX + b"1H|\\^&\r" + ETX, ChecksumMode.NONE)
    assert checked.checksum_ok and checked.final and checked.text == b"H|\\^&\r"


def test_split_text_per_record_and_oversized_records() -> None:
    """Each record is its own low-level message; records over 240 bytes go out as ETB frames."""
    long_record = b"R|1|" + b"x" * 500
    frames = split_text(b"H|\\^&\r" + long_record + b"\rL|1|N\r")
    assert [final for _, final in frames] == [True, False, False, True, True]
    assert all(len(text) <= 240 for text, _ in frames)
    assert b"".join(text for text, _ in frames) == b"H|\\^&\r" + long_record + b"\rL|1|N\r"


def test_split_text_packed() -> None:
    """Packed mode cuts the whole message at 240 bytes with ETX only at the end."""
    text = b"R|1|^^^A|1\r" * 60
    frames = split_text(text, per_record=False)
    assert [final for _, final in frames][-1] is True
    assert not any(final for _, final in frames[:-1])
    assert b"".join(t for t, _ in frames) == text


@given(st.binary(max_size=3000), st.integers(min_value=1, max_value=500))
def test_split_join_round_trip(payload: bytes, max_text: int) -> None:
    """Joining the frame texts gives back the payload for any size and limit."""
    text = payload.replace(b"\r", b"") + b"\r"
    frames = split_text(text, max_text=max_text, per_record=False)
    assert b"".join(t for t, _ in frames) == text
    assert all(len(t) <= max_text for t, _ in frames)


# ---------------------------------------------------------------- scanner

def scan_three_ways(data: bytes, trailing: bytes = b"") -> list[list[tuple[TokenKind, bytes]]]:
    """Scan ``data`` whole, one byte at a time, and followed by trailing bytes.

    Returns the three token lists (kind, data) so that callers can compare them.
    """
    def run(chunks: list[bytes]) -> list[Token]:
        scanner = FrameScanner()
        out: list[Token] = []
        for chunk in chunks:
            out += scanner.feed(chunk)
        return out

    whole = run([data])
    bytewise = run([data[i:i + 1] for i in range(len(data))])
    with_trailing = run([data + trailing])
    return [[(t.kind, t.data) for t in toks] for toks in (whole, bytewise, with_trailing)]


def merge_noise(tokens: list[tuple[TokenKind, bytes]]) -> list[tuple[TokenKind, bytes]]:
    """Byte-by-byte feeding reports noise per call: merge adjacent noise for comparison."""
    out: list[tuple[TokenKind, bytes]] = []
    for kind, data in tokens:
        if out and kind is TokenKind.NOISE and out[-1][0] is TokenKind.NOISE:
            out[-1] = (kind, out[-1][1] + data)
        else:
            out.append((kind, data))
    return out


FRAME_1 = encode_frame(1, b"H|\\^&\r", final=True)
FRAME_2 = encode_frame(2, b"R|1|^^^GLU|5.5|mmol/L\r", final=False)

SCANNER_CASES = [
    # (input, expected tokens)
    (ENQ, [(TokenKind.CONTROL, ENQ)]),
    (FRAME_1, [(TokenKind.FRAME, FRAME_1[:-2])]),
    (ENQ + FRAME_1 + FRAME_2 + EOT,
     [(TokenKind.CONTROL, ENQ), (TokenKind.FRAME, FRAME_1[:-2]),
      (TokenKind.FRAME, FRAME_2[:-2]), (TokenKind.CONTROL, EOT)]),
    # a frame cut off by EOT is broken, and the EOT still counts
    (STX + b"1R|1|^^^GL" + EOT,
     [(TokenKind.BROKEN_FRAME, STX + b"1R|1|^^^GL"), (TokenKind.CONTROL, EOT)]),
    # a frame cut off by a new STX: the new frame is read whole
    (STX + b"1R|1" + FRAME_1,
     [(TokenKind.BROKEN_FRAME, STX + b"1R|1"), (TokenKind.FRAME, FRAME_1[:-2])]),
    # garbage before a frame
    (b"xyz" + FRAME_1, [(TokenKind.NOISE, b"xyz"), (TokenKind.FRAME, FRAME_1[:-2])]),
    # a frame over 247 bytes is still one frame
    (encode_frame(1, b"M|1|" + b"A" * 26000 + b"\r", final=True),
     [(TokenKind.FRAME, encode_frame(1, b"M|1|" + b"A" * 26000 + b"\r", final=True)[:-2])]),
    # checksum characters that happen to be control-like are still read as checksum
    (STX + b"1A" + ETX + b"0" + b"5", [(TokenKind.FRAME, STX + b"1A" + ETX + b"05")]),
]


@pytest.mark.parametrize(("data", "expected"), SCANNER_CASES)
def test_scanner_three_ways(data: bytes, expected: list[tuple[TokenKind, bytes]]) -> None:
    """Whole buffer, byte by byte, and with trailing bytes all give the same tokens."""
    whole, bytewise, trailing = scan_three_ways(data, trailing=STX + b"1partial")
    assert whole == expected
    assert merge_noise(bytewise) == expected
    assert trailing == expected  # the trailing partial frame yields nothing yet


def test_scanner_offsets_are_absolute() -> None:
    """Token offsets count every byte fed, across calls."""
    scanner = FrameScanner()
    scanner.feed(b"abc")
    tokens = scanner.feed(ENQ + FRAME_1)
    assert [t.offset for t in tokens][:2] == [3, 4]


def test_scanner_hard_limit_drops_garbage() -> None:
    """A 'frame' longer than the hard limit is dropped as broken, then scanning resumes."""
    scanner = FrameScanner(hard_max_frame=100)
    tokens = scanner.feed(STX + b"x" * 200 + ETX + b"00\r\n" + ENQ)
    kinds = [t.kind for t in tokens]
    assert kinds[0] is TokenKind.BROKEN_FRAME
    assert tokens[-1] == Token(TokenKind.CONTROL, ENQ, tokens[-1].offset)


def test_scanner_reset_returns_partial_frame() -> None:
    """Resetting in the middle of a frame returns it as broken."""
    scanner = FrameScanner()
    scanner.feed(STX + b"1abc")
    assert scanner.in_frame
    assert [t.kind for t in scanner.reset()] == [TokenKind.BROKEN_FRAME]
    assert not scanner.in_frame
