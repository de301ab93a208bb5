"""E1381 frames: checksum, encoding, splitting and the byte-stream scanner.

Pure functions and one small incremental scanner; no state machine here (the
link transitions live in :mod:`lis_gateway.astm.link`).

Frame layout (E1381 §6.3)::

    <STX> FN text <ETB|ETX> C1 C2 <CR> <LF>

The checksum is the sum of the bytes from FN up to and including ETB/ETX,
modulo 256, written as two upper-case hex characters. It is computed on the
raw bytes, before any character decoding, and compared case-insensitively.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from .constants import (
    CR,
    ETB,
    ETB_B,
    ETX,
    ETX_B,
    LF,
    RESTRICTED,
    STANDARD_MAX_TEXT,
    STX,
    STX_B,
)

_HEX = b"0123456789ABCDEF"


class ChecksumMode(enum.Enum):
    """How a receiver treats the two checksum characters."""

    #: Verify; a mismatch is answered with NAK (the standard).
    STRICT = "strict"
    #: Verify; a mismatch is reported as a deviation but the frame is accepted.
    LOG_ONLY = "log-only"
    #: The dialect sends no checksum characters at all.
    NONE = "none"


def checksum(body: bytes) -> bytes:
    """Return the E1381 checksum of ``body`` as two upper-case hex bytes.

    Args:
        body: the bytes from FN up to and including ETB/ETX.

    Returns:
        Two ASCII bytes, for example ``b"06"``.
    """
    total = sum(body) & 0xFF
    return bytes((_HEX[total >> 4], _HEX[total & 0x0F]))


def encode_frame(
    fn: int, text: bytes, *, final: bool, lowercase: bool = False, with_checksum: bool = True
) -> bytes:
    """Build one frame.

    Args:
        fn: frame number; only ``fn % 8`` is written.
        text: frame text (already encoded bytes; CR allowed).
        final: ``True`` ends with ETX (last frame of a low-level message), else ETB.
        lowercase: write the checksum in lower case (a dialect option).
        with_checksum: ``False`` omits C1 C2 (dialects without a checksum).

    Returns:
        The frame bytes including the CR LF trailer.
    """
    body = bytes((0x30 + fn % 8,)) + text + (ETX if final else ETB)
    cs = checksum(body) if with_checksum else b""
    if lowercase:
        cs = cs.lower()
    return STX + body + cs + CR + LF


def split_text(text: bytes, *, max_text: int = STANDARD_MAX_TEXT, per_record: bool = True
               ) -> list[tuple[bytes, bool]]:
    """Cut message text into frame texts.

    Args:
        text: E1394 records, each ending in CR.
        max_text: most text bytes per frame; ``0`` means no limit.
        per_record: ``True`` makes each record its own low-level message
            (ETX after each record, the E1381 norm); ``False`` packs all
            records and ends only the last frame with ETX.

    Returns:
        ``(frame_text, ends_with_etx)`` pairs in sending order.
    """
    blocks: list[bytes]
    if per_record:
        blocks = [r + CR for r in text.split(CR) if r]
    else:
        blocks = [text] if text else []
    out: list[tuple[bytes, bool]] = []
    for block in blocks:
        if max_text <= 0 or len(block) <= max_text:
            out.append((block, True))
            continue
        chunks = [block[i:i + max_text] for i in range(0, len(block), max_text)]
        out.extend((c, i == len(chunks) - 1) for i, c in enumerate(chunks))
    return out


class FrameProblem(enum.Enum):
    """Why a received frame was not accepted."""

    BAD_CHECKSUM = "bad-checksum"
    BAD_FRAME_NUMBER = "bad-frame-number"
    TRUNCATED = "truncated"
    TOO_LONG = "too-long"


@dataclass(frozen=True, slots=True)
class CheckedFrame:
    """A complete frame after checksum verification.

    Attributes:
        fn: the frame-number digit's value (0-9; E1381 allows 0-7), or -1 if not a digit.
        text: the frame text, with line endings repaired if that was needed and allowed.
        final: ``True`` for ETX, ``False`` for ETB.
        checksum_ok: the (possibly repaired) frame verified.
        repaired: CR/LF damage was undone to make the checksum verify.
        received: the two checksum characters as sent (empty in ``NONE`` mode).
        expected: the checksum computed over the raw bytes as received.
    """

    fn: int
    text: bytes
    final: bool
    checksum_ok: bool
    repaired: bool
    received: bytes
    expected: bytes


def _repair_candidates(text: bytes) -> list[bytes]:
    """Texts that undo CR/LF damage done by terminal servers and capture tools."""
    out = []
    if b"\r\n" in text:
        out.append(text.replace(b"\r\n", b"\r"))  # LF added after every CR
    if b"\n" in text:
        out.append(text.replace(b"\r\n", b"\r").replace(b"\n", b"\r"))  # CR turned into LF
    return out


def check_frame(raw: bytes, mode: ChecksumMode, *, repair_line_endings: bool = False
                ) -> CheckedFrame:
    """Verify a raw frame ``STX FN text ETB|ETX [C1 C2]`` (trailer excluded).

    Args:
        raw: the frame bytes from STX through the checksum characters.
        mode: the link's checksum mode.
        repair_line_endings: try undoing CR/LF damage when the checksum fails.

    Returns:
        The checked frame. A mismatch is reported, never raised.
    """
    cs_len = 0 if mode is ChecksumMode.NONE else 2
    end = len(raw) - cs_len - 1
    terminator = raw[end]
    body = raw[1:end + 1]
    received = raw[end + 1:]
    fn_byte = raw[1] if len(raw) > end and end >= 2 else -1
    fn = fn_byte - 0x30 if 0x30 <= fn_byte <= 0x39 else -1
    text = raw[2:end] if end >= 2 else b""
    final = terminator == ETX_B
    if mode is ChecksumMode.NONE:
        return CheckedFrame(fn, text, final, True, False, b"", b"")
    expected = checksum(body)
    if received.upper() == expected:
        return CheckedFrame(fn, text, final, True, False, received, expected)
    if repair_line_endings:
        for candidate in _repair_candidates(text):
            fixed = body[:1] + candidate + body[-1:]
            if checksum(fixed) == received.upper():
                return CheckedFrame(fn, candidate, final, True, True, received, expected)
    return CheckedFrame(fn, text, final, False, False, received, expected)


_RESTRICTED_RE = re.compile(b"[" + b"".join(re.escape(bytes((c,))) for c in sorted(RESTRICTED))
                            + b"]")


def restricted_characters(text: bytes) -> list[int]:
    """Offsets in ``text`` of characters E1381 forbids in frame text."""
    if _RESTRICTED_RE.search(text) is None:  # the usual case, at C speed
        return []
    return [m.start() for m in _RESTRICTED_RE.finditer(text)]


class TokenKind(enum.Enum):
    """What the scanner found in the byte stream."""

    CONTROL = "control"  #: a single control byte outside a frame (ENQ, ACK, NAK, EOT)
    FRAME = "frame"  #: a complete frame STX…ETB|ETX [C1 C2]
    BROKEN_FRAME = "broken-frame"  #: a frame cut short by STX/EOT/ENQ or over the size limit
    NOISE = "noise"  #: other bytes outside a frame (garbage; CR, LF and NUL are dropped)


@dataclass(frozen=True, slots=True)
class Token:
    """One item of the received byte stream, with its absolute offset."""

    kind: TokenKind
    data: bytes
    offset: int
    detail: str = ""


_OUTSIDE = re.compile(b"[\x02\x04\x05\x06\x15]")  # STX EOT ENQ ACK NAK
_INSIDE = re.compile(b"[\x02\x03\x04\x05\x17]")  # STX ETX EOT ENQ ETB


class FrameScanner:
    """Cut a byte stream into control bytes, frames and noise.

    Buffered across any read size: a frame split over many reads (or one
    byte at a time) yields exactly one ``FRAME`` token. Inside a frame, STX,
    ENQ or EOT before ETB/ETX mean the sender gave up on that frame: it is
    returned as ``BROKEN_FRAME`` and the byte is scanned again.
    """

    def __init__(self, *, checksum_chars: int = 2, hard_max_frame: int = 1 << 20) -> None:
        self._cs_chars = checksum_chars
        self._max = hard_max_frame
        self._frame: bytearray | None = None
        self._frame_start = 0
        self._tail_needed = -1  # >=0 once ETB/ETX was seen: checksum chars still missing
        self._noise = bytearray()
        self._noise_start = 0
        self._offset = 0  # absolute offset of the next byte fed

    @property
    def in_frame(self) -> bool:
        """``True`` while part of a frame has been received."""
        return self._frame is not None

    def feed(self, data: bytes) -> list[Token]:
        """Scan ``data`` and return the tokens it completes.

        Args:
            data: the bytes just received, of any length.

        Returns:
            Tokens in stream order; noise is reported once per call.
        """
        out: list[Token] = []
        base = self._offset
        i, n = 0, len(data)
        while i < n:
            if self._frame is None:
                i = self._outside(data, i, base, out)
            else:
                i = self._inside(data, i, base, out)
        self._offset = base + n
        self._flush_noise(out)
        return out

    def reset(self) -> list[Token]:
        """Forget a partial frame (after an abort); return it as broken, if any."""
        out: list[Token] = []
        if self._frame is not None:
            out.append(Token(TokenKind.BROKEN_FRAME, bytes(self._frame), self._frame_start,
                             "cut off"))
        self._frame = None
        self._tail_needed = -1
        self._flush_noise(out)
        return out

    def _flush_noise(self, out: list[Token]) -> None:
        if self._noise:
            out.append(Token(TokenKind.NOISE, bytes(self._noise), self._noise_start))
            self._noise.clear()

    def _outside(self, data: bytes, i: int, base: int, out: list[Token]) -> int:
        m = _OUTSIDE.search(data, i)
        j = m.start() if m else len(data)
        if j > i and data[i:j].strip(b"\r\n\x00"):  # frame trailers are not noise
            if not self._noise:
                self._noise_start = base + i
            self._noise += data[i:j]
        if m is None:
            return j
        self._flush_noise(out)
        b = data[j]
        if b == STX_B:
            self._frame = bytearray(STX)
            self._frame_start = base + j
        else:
            out.append(Token(TokenKind.CONTROL, bytes((b,)), base + j))
        return j + 1

    def _inside(self, data: bytes, i: int, base: int, out: list[Token]) -> int:
        frame = self._frame if self._frame is not None else bytearray()
        if self._tail_needed >= 0:
            take = min(self._tail_needed, len(data) - i)
            frame += data[i:i + take]
            self._tail_needed -= take
            if self._tail_needed == 0:
                self._emit_frame(out)
            return i + take
        m = _INSIDE.search(data, i)
        j = m.start() if m else len(data)
        frame += data[i:j]
        if len(frame) > self._max:
            out.append(Token(TokenKind.BROKEN_FRAME, bytes(frame[:64]), self._frame_start,
                             f"longer than {self._max} bytes"))
            self._frame = None
            return j
        if m is None:
            return j
        b = data[j]
        if b in (ETX_B, ETB_B):
            frame.append(b)
            self._tail_needed = self._cs_chars
            if self._tail_needed == 0:
                self._emit_frame(out)
            return j + 1
        out.append(Token(TokenKind.BROKEN_FRAME, bytes(frame), self._frame_start,
                         f"cut off by 0x{b:02X}"))
        self._frame = None
        return j  # scan the interrupting byte again, outside a frame

    def _emit_frame(self, out: list[Token]) -> None:
        out.append(Token(TokenKind.FRAME, bytes(self._frame or b""), self._frame_start))
        self._frame = None
        self._tail_needed = -1
