"""AU online blocks: BCC, encoding, splitting and the byte-stream scanner.

Pure functions and one small incremental scanner; no state machine here (the
link transitions live in :mod:`lis_gateway.au_online.link`).

Block layout (as third-party descriptions of the AU online protocol give it;
no Beckman specification was available here)::

    <STX> text <ETX|ETB> [BCC]

A text is one block ended by ETX, or several blocks of which every one but
the last ends with ETB. The first block's text starts with the two-character
distinction code. The BCC, when the analyzer's menu switches it on, is one
byte: the XOR of every byte after STX up to and including ETX or ETB, so each
block carries its own. It may take any value (even STX or ETX): the byte
after the end mark is always the BCC when BCC is on.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

STX, ETX, EOT, ENQ, ACK, NAK, ETB = 0x02, 0x03, 0x04, 0x05, 0x06, 0x15, 0x17
#: Bytes that end a block.
ENDS = frozenset({ETX, ETB})
#: Bytes that, inside a block, mean the sender gave up on it (rescanned outside).
BREAKS = frozenset({STX, ENQ, EOT})
#: Link control bytes (outside a block).
CONTROL = frozenset({ENQ, EOT, ACK, NAK})


def bcc(body: bytes) -> int:
    """The block check character of ``body``.

    Args:
        body: the bytes after STX up to and including ETX or ETB.

    Returns:
        Their XOR, one byte value.
    """
    value = 0
    for b in body:
        value ^= b
    return value


def encode_block(text: bytes, *, final: bool = True, with_bcc: bool = True) -> bytes:
    """One block: STX, ``text``, ETX (``final``) or ETB, and the BCC when ``with_bcc``."""
    body = text + bytes((ETX if final else ETB,))
    return bytes((STX,)) + body + (bytes((bcc(body),)) if with_bcc else b"")


def encode_text(text: bytes, *, max_block: int = 0, with_bcc: bool = True) -> list[bytes]:
    """A text as its blocks (one block when ``max_block`` is 0 or the text fits).

    Args:
        text: starts with the distinction code.
        max_block: most text bytes per block (0: no limit).
        with_bcc: append each block's BCC.
    """
    if not text:
        raise ValueError("cannot encode an empty text")
    size = max_block if max_block > 0 else len(text)
    parts = [text[i:i + size] for i in range(0, len(text), size)]
    return [encode_block(part, final=k == len(parts) - 1, with_bcc=with_bcc)
            for k, part in enumerate(parts)]


class TokenKind(enum.Enum):
    """What the scanner cut out of the stream."""

    BLOCK = "block"  #: STX ... ETX|ETB [BCC], complete
    OVERSIZE = "oversize"  #: a complete block whose text went over the size limit
    CONTROL = "control"  #: one of ENQ, EOT, ACK, NAK outside a block
    NOISE = "noise"  #: other bytes outside a block
    BROKEN = "broken"  #: a block cut short (STX, ENQ or EOT inside it, a timeout, a close)


@dataclass(frozen=True, slots=True)
class Token:
    """One piece of the received stream.

    Attributes:
        kind: what it is.
        raw: its bytes as received (an oversize block: its first bytes only).
        offset: where its first byte was received (bytes since the link was made).
        text: a block's text (between STX and the end mark).
        final: a block ended by ETX (else ETB).
        bcc_ok: the BCC matched (``True`` when BCC is off).
        detail: why a block is broken, or its size when oversize.
    """

    kind: TokenKind
    raw: bytes
    offset: int
    text: bytes = b""
    final: bool = False
    bcc_ok: bool = True
    detail: str = ""


class BlockScanner:
    """Cut a byte stream into blocks, control bytes and noise, across any read size.

    Args:
        with_bcc: a BCC byte follows every ETX and ETB.
        max_block: most text bytes one block may carry; beyond it the block's
            bytes are counted, not kept, and it ends as ``OVERSIZE``.
    """

    def __init__(self, *, with_bcc: bool = True, max_block: int = 1 << 20) -> None:
        self._bcc = with_bcc
        self._max = max_block
        self._block: bytearray | None = None  # STX + text (+ end mark while the BCC is due)
        self._start = 0
        self._dropped = 0  # text bytes beyond max_block
        self._noise = bytearray()
        self._noise_start = 0
        self._offset = 0  # absolute offset of the next byte fed

    @property
    def in_block(self) -> bool:
        """``True`` while part of a block has been received."""
        return self._block is not None

    def feed(self, data: bytes) -> list[Token]:
        """Scan ``data``; return the tokens it completes (noise once per call)."""
        out: list[Token] = []
        for i, b in enumerate(data):
            at = self._offset + i
            if self._block is None:
                self._outside(b, at, out)
            else:
                self._inside(b, at, out)
        self._offset += len(data)
        self._flush_noise(out)
        return out

    def reset(self, why: str = "cut off") -> list[Token]:
        """Forget a partial block (timeout, connection lost); return it as broken."""
        out: list[Token] = []
        self._flush_noise(out)
        if self._block is not None:
            out.append(Token(TokenKind.BROKEN, bytes(self._block), self._start, detail=why))
        self._block = None
        self._dropped = 0
        return out

    def _outside(self, b: int, at: int, out: list[Token]) -> None:
        if b == STX:
            self._flush_noise(out)
            self._block = bytearray((STX,))
            self._start = at
            self._dropped = 0
        elif b in CONTROL:
            self._flush_noise(out)
            out.append(Token(TokenKind.CONTROL, bytes((b,)), at))
        else:
            if not self._noise:
                self._noise_start = at
            self._noise.append(b)

    def _inside(self, b: int, at: int, out: list[Token]) -> None:
        block = self._block if self._block is not None else bytearray()
        if block[-1] in ENDS and len(block) > 1:  # only reached with BCC on: b is the BCC
            self._finish(block, b, out)
        elif b in BREAKS:
            out += self.reset(f"0x{b:02X} inside the block at offset {at}")
            self._outside(b, at, out)
        elif b in ENDS:
            block.append(b)
            if not self._bcc:
                self._finish(block, None, out)
        elif len(block) - 1 < self._max:
            block.append(b)
        else:
            self._dropped += 1

    def _finish(self, block: bytearray, check: int | None, out: list[Token]) -> None:
        raw = bytes(block) + (b"" if check is None else bytes((check,)))
        self._block = None
        if self._dropped:
            size = len(block) - 2 + self._dropped
            out.append(Token(TokenKind.OVERSIZE, raw, self._start,
                             detail=f"{size} text bytes, limit {self._max}"))
            self._dropped = 0
            return
        ok = check is None or check == bcc(bytes(block[1:]))
        out.append(Token(TokenKind.BLOCK, raw, self._start, text=bytes(block[1:-1]),
                         final=block[-1] == ETX, bcc_ok=ok,
                         detail="" if ok else f"BCC sent {check:02X}, computed "
                                              f"{bcc(bytes(block[1:])):02X}"))

    def _flush_noise(self, out: list[Token]) -> None:
        if self._noise:
            out.append(Token(TokenKind.NOISE, bytes(self._noise), self._noise_start))
            self._noise.clear()
