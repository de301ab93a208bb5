"""AU online blocks: BCC, encoding, splitting, and the byte-stream scanner."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lis_gateway.au_online.blocks import (
    BlockScanner,
    Token,
    TokenKind,
    bcc,
    encode_block,
    encode_text,
)

STX, ETX, ETB, ENQ, EOT, ACK = b"\x02", b"\x03", b"\x17", b"\x05", b"\x04", b"\x06"


def test_bcc_worked_examples() -> None:
    """BCC is the XOR from the distinction code through ETX: DB -> 05, DE -> 02 (an STX)."""
    assert bcc(b"DB\x03") == 0x44 ^ 0x42 ^ 0x03 == 0x05
    assert bcc(b"DE\x03") == 0x02
    assert encode_block(b"DB") == STX + b"DB" + ETX + b"\x05"


def test_encode_block_without_bcc_and_with_etb() -> None:
    """BCC off writes nothing after the end mark; ETB blocks carry their own BCC."""
    assert encode_block(b"DB", with_bcc=False) == STX + b"DB" + ETX
    assert encode_block(b"D 0", final=False) == STX + b"D 0" + ETB + bytes([bcc(b"D 0" + ETB)])


def test_encode_text_splits_into_etb_blocks() -> None:
    """A 10-byte text in blocks of 4: ETB, ETB, ETX, each with its BCC."""
    blocks = encode_text(b"D 12345678", max_block=4)
    assert [b[1:-2] for b in blocks] == [b"D 12", b"3456", b"78"]
    assert [b[-2:-1] for b in blocks] == [ETB, ETB, ETX]
    assert encode_text(b"DB") == [encode_block(b"DB")]
    with pytest.raises(ValueError):
        encode_text(b"")


def three_ways(feed: Callable[[], BlockScanner], data: bytes) -> list[list[Token]]:
    """Tokens from the whole buffer, byte by byte, and with trailing noise (h11's tr())."""
    whole = feed().feed(data)
    scanner = feed()
    single = [t for i in range(len(data)) for t in scanner.feed(data[i:i + 1])]
    trailing = feed().feed(data + b"zz")
    return [whole, single, trailing]


def kinds(tokens: list[Token]) -> list[TokenKind]:
    return [t.kind for t in tokens]


def test_block_scanned_whole_byte_by_byte_and_with_trailing_bytes() -> None:
    """One block gives one BLOCK token however the bytes arrive; trailing bytes are noise."""
    data = encode_block(b"D 000601 0010")
    whole, single, trailing = three_ways(BlockScanner, data)
    assert whole == single == trailing[:1]
    assert whole[0] == Token(TokenKind.BLOCK, data, 0, text=b"D 000601 0010", final=True)
    assert kinds(trailing) == [TokenKind.BLOCK, TokenKind.NOISE]
    assert trailing[1].raw == b"zz" and trailing[1].offset == len(data)


def test_a_bcc_equal_to_stx_or_etx_is_still_the_bcc() -> None:
    """DE's BCC is 0x02: with BCC on, the byte after ETX is always the BCC."""
    data = encode_block(b"DE") + encode_block(b"DB")
    tokens = BlockScanner().feed(data)
    assert [(t.text, t.bcc_ok) for t in tokens] == [(b"DE", True), (b"DB", True)]
    text_with_bcc_etx = next(bytes([a, b]) for a in range(0x20, 0x7F) for b in range(0x20, 0x7F)
                             if a ^ b ^ 0x03 == 0x03)
    block = encode_block(text_with_bcc_etx)
    assert block[-1:] == ETX
    assert BlockScanner().feed(block)[0].bcc_ok


def test_bad_bcc_is_reported_with_both_values() -> None:
    """A wrong BCC gives a BLOCK with bcc_ok False and the sent and computed values."""
    data = STX + b"DB" + ETX + b"\x07"
    (token,) = BlockScanner().feed(data)
    assert not token.bcc_ok and token.detail == "BCC sent 07, computed 05"


def test_without_bcc_the_block_ends_at_etx() -> None:
    """BCC off: ETX ends the block and the next byte is outside it."""
    tokens = BlockScanner(with_bcc=False).feed(STX + b"DB" + ETX + b"\x05")
    assert kinds(tokens) == [TokenKind.BLOCK, TokenKind.CONTROL]
    assert tokens[0].raw == STX + b"DB" + ETX


def test_etb_block_is_not_final() -> None:
    """A block ending with ETB is a non-final block."""
    (token,) = BlockScanner().feed(encode_block(b"D 0", final=False))
    assert token.kind is TokenKind.BLOCK and not token.final and token.bcc_ok


@pytest.mark.parametrize("breaker", [STX, ENQ, EOT])
def test_stx_enq_eot_inside_a_block_break_it(breaker: bytes) -> None:
    """STX, ENQ or EOT before the end mark: the partial block is broken, the byte rescanned."""
    data = STX + b"D 00" + breaker + encode_block(b"DB")[1:] if breaker == STX else \
        STX + b"D 00" + breaker
    tokens = BlockScanner().feed(data)
    assert tokens[0].kind is TokenKind.BROKEN and tokens[0].raw == STX + b"D 00"
    if breaker == STX:
        assert tokens[1].kind is TokenKind.BLOCK and tokens[1].offset == 5
    else:
        assert tokens[1] == Token(TokenKind.CONTROL, breaker, 5)


def test_control_bytes_and_noise_outside_blocks() -> None:
    """ENQ/EOT/ACK/NAK are control tokens; anything else outside a block is noise."""
    tokens = BlockScanner().feed(ENQ + b"\r\nxy" + ETX + ACK)
    assert [(t.kind, t.raw, t.offset) for t in tokens] == [
        (TokenKind.CONTROL, ENQ, 0), (TokenKind.NOISE, b"\r\nxy" + ETX, 1),
        (TokenKind.CONTROL, ACK, 6)]


def test_oversize_block_is_counted_not_kept() -> None:
    """Beyond max_block text bytes the block is kept to the limit and ends as OVERSIZE."""
    data = encode_block(b"D " + b"9" * 20)
    (token,) = BlockScanner(max_block=8).feed(data)
    assert token.kind is TokenKind.OVERSIZE
    assert token.raw == STX + b"D 999999" + ETX + data[-1:]
    assert token.detail == "22 text bytes, limit 8"


def test_reset_returns_the_partial_block() -> None:
    """A timeout or a close returns the partial block as broken, with the reason."""
    scanner = BlockScanner()
    assert scanner.feed(STX + b"D 0") == [] and scanner.in_block
    assert scanner.reset("gone") == [Token(TokenKind.BROKEN, STX + b"D 0", 0, detail="gone")]
    assert not scanner.in_block and scanner.reset() == []


def test_bcc_pending_counts_as_in_block() -> None:
    """After ETX with BCC on, the block is not complete until the BCC byte."""
    scanner = BlockScanner()
    assert scanner.feed(STX + b"DB" + ETX) == [] and scanner.in_block
    assert kinds(scanner.feed(b"\x05")) == [TokenKind.BLOCK]


@given(st.binary(max_size=64), st.integers(min_value=1, max_value=8))
def test_any_split_gives_the_same_tokens(data: bytes, size: int) -> None:
    """Reads of any size give the same blocks, control bytes and broken blocks as one read."""
    whole = BlockScanner().feed(data)
    scanner = BlockScanner()
    parts = [t for i in range(0, len(data), size) for t in scanner.feed(data[i:i + size])]

    def solid(tokens: list[Token]) -> list[Token]:
        return [t for t in tokens if t.kind is not TokenKind.NOISE]

    assert solid(parts) == solid(whole)
    noise = b"".join(t.raw for t in whole if t.kind is TokenKind.NOISE)
    assert b"".join(t.raw for t in parts if t.kind is TokenKind.NOISE) == noise


@given(st.binary(min_size=1, max_size=300).filter(lambda b: not set(b) & {2, 3, 4, 5, 0x17}),
       st.integers(min_value=0, max_value=50))
def test_encoded_texts_scan_back(text: bytes, max_block: int) -> None:
    """encode_text then scanning gives back the text, block by block, every BCC good."""
    tokens = BlockScanner().feed(b"".join(encode_text(text, max_block=max_block)))
    assert all(t.kind is TokenKind.BLOCK and t.bcc_ok for t in tokens)
    assert b"".join(t.text for t in tokens) == text
    assert [t.final for t in tokens] == [False] * (len(tokens) - 1) + [True]
