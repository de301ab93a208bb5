"""MLLP framing (HL7 v2 over TCP), sans-IO.

A block is ``VT message FS CR``. The framer buffers across any read size (a
real middleware cut 34 of 329 messages at 1,023 bytes by treating one read as
one message) and tolerates what analyzers really send, recording each
tolerated departure on the block:

* bytes before VT (mindray_4 sends 14 STX first): dropped from the message,
  reported; CR, LF and NUL between blocks are not worth reporting;
* a message that starts with ``MSH`` and no VT;
* a missing FS when the next VT arrives (the block ends there);
* a missing FS when the message ends with LF or CR LF and the line then goes
  quiet (Snibe Maglumi, Tisenc, Wondfo): after ``missing_fs_timeout``
  seconds of silence the block ends;
* a missing FS when the connection closes right after a segment end (a cut
  inside a segment is reported as incomplete, never delivered);
* a missing CR after FS.

A block longer than ``max_message`` is not buffered: its head (up to the
first segment terminator, normally the whole MSH) is kept, the rest counted
and dropped, and when the block ends (FS, the next VT, the missing-FS
silence or the connection closing) it is reported as :class:`BlockTooLarge`
with its size, so the receiver can refuse it with an ACK built from that MSH.

Time is an argument; :meth:`MllpFramer.get_timer` says when
:meth:`MllpFramer.handle_timer` is due.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import MllpFramingError

VT = b"\x0b"
FS = b"\x1c"
CR = b"\r"
_VT, _FS = 0x0B, 0x1C
_BLANK = b"\r\n\x00 \t"

#: Default seconds of silence after a message ending in LF before it is taken as complete.
MISSING_FS_TIMEOUT = 1.0
#: Default largest message accepted (bigger blocks are dropped as garbage, and reported).
MAX_MESSAGE = 16 << 20
#: Most bytes kept of an oversized block when looking for its first segment terminator.
HEAD_LIMIT = 4096
#: Bytes kept of an oversized block that has no segment terminator in its first HEAD_LIMIT.
SHORT_HEAD = 256


@dataclass(frozen=True, slots=True)
class BlockReceived:
    """A complete message (the bytes between VT and FS), with tolerated deviations."""

    data: bytes
    offset: int
    deviations: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BlockIncomplete:
    """Bytes that never became a complete message (connection lost, too long)."""

    data: bytes
    offset: int
    reason: str


@dataclass(frozen=True, slots=True)
class BlockTooLarge(BlockIncomplete):
    """A block over the size limit: only its head was kept (a kind of incomplete block).

    Attributes:
        data: the head: the block up to and including its first segment
            terminator (CR or LF) within :data:`HEAD_LIMIT` bytes, normally the
            MSH segment; else its first :data:`SHORT_HEAD` bytes.
        size: bytes the block held between VT and its end.
        limit: the size limit it broke.
    """

    size: int = 0
    limit: int = 0


@dataclass(frozen=True, slots=True)
class StrayBytes:
    """Bytes outside any block that no message followed."""

    data: bytes
    offset: int


MllpEvent = BlockReceived | BlockIncomplete | StrayBytes  # BlockTooLarge is a BlockIncomplete


def frame(message: bytes) -> bytes:
    """Wrap one message in an MLLP block.

    Raises:
        MllpFramingError: the message contains VT or FS (it would break framing).
    """
    if VT in message or FS in message:
        raise MllpFramingError("message contains an MLLP block character (VT or FS)")
    return VT + message + FS + CR


class MllpFramer:
    """Turns a received byte stream into MLLP blocks.

    Args:
        missing_fs_timeout: silence after a trailing LF that ends a block with no FS.
        max_message: larger blocks are dropped and reported.
    """

    def __init__(self, *, missing_fs_timeout: float = MISSING_FS_TIMEOUT,
                 max_message: int = MAX_MESSAGE) -> None:
        self.missing_fs_timeout = missing_fs_timeout
        self.max_message = max_message
        self._block: bytearray | None = None
        self._block_offset = 0
        self._block_notes: list[str] = []
        self._stray = bytearray()
        self._stray_offset = 0
        self._offset = 0
        self._deadline: float | None = None
        self._skip_cr = False
        self._overflow = False  # the block broke max_message: _block holds only its head
        self._overflow_size = 0  # bytes of the oversized block so far
        self._overflow_lf = False  # its last byte so far was LF (the missing-FS rule)

    @property
    def in_block(self) -> bool:
        """``True`` while part of a message has been received."""
        return self._block is not None

    def receive_data(self, data: bytes, now: float) -> list[MllpEvent]:
        """Feed received bytes; return the blocks they complete.

        Args:
            data: any number of bytes.
            now: the current time (for the missing-FS silence timer).
        """
        out: list[MllpEvent] = []
        base, i, n = self._offset, 0, len(data)
        if self._skip_cr and n:
            self._skip_cr = False
            if data[0] == 0x0D:
                i = 1
        while i < n:
            i = self._inside(data, i, base, out) if self._block is not None \
                else self._outside(data, i, base, out)
        self._offset = base + n
        self._deadline = None
        if self._block is not None and (
                self._overflow_lf if self._overflow else self._block.endswith(b"\n")):
            self._deadline = now + self.missing_fs_timeout
        return out

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` is due, or ``None``."""
        return self._deadline

    def handle_timer(self, now: float) -> list[MllpEvent]:
        """End a block that has no FS once the line has been quiet long enough."""
        if self._deadline is None or now < self._deadline:
            return []
        self._deadline = None
        return [self._finish("missing FS: message ended with LF and the line went quiet")]

    def connection_lost(self) -> list[MllpEvent]:
        """The transport closed: report what was left."""
        out: list[MllpEvent] = []
        if self._overflow:
            out.append(self._finish("the connection closed before FS"))
        elif self._block is not None and self._block.rstrip(b"\r\n") != self._block \
                and self._block.lstrip(_BLANK + b"\x02").startswith(b"MSH"):
            out.append(self._finish("missing FS: the connection closed after a segment end"))
        elif self._block is not None:
            data, offset = bytes(self._block), self._block_offset
            self._block = None
            out.append(BlockIncomplete(data, offset, "connection closed before FS"))
        if self._stray.strip(_BLANK):
            out.append(StrayBytes(bytes(self._stray), self._stray_offset))
        self._stray.clear()
        self._deadline = None
        return out

    def _outside(self, data: bytes, i: int, base: int, out: list[MllpEvent]) -> int:
        j = data.find(VT, i)
        end = len(data) if j < 0 else j
        if end > i:
            if not self._stray:
                self._stray_offset = base + i
            before = len(self._stray)
            self._stray += data[i:end]
            k = self._stray.find(b"MSH")
            if k >= 0:  # a message with no VT: it starts at MSH
                return i + self._start_without_vt(k, before)
        if j < 0:
            return end
        self._start(base + j)
        return j + 1

    def _start(self, offset: int) -> None:
        notes = []
        if self._stray.strip(_BLANK):
            notes.append(f"{len(self._stray)} stray bytes before VT")
        self._stray.clear()
        self._block = bytearray()
        self._block_offset = offset
        self._block_notes = notes

    def _start_without_vt(self, k: int, before: int) -> int:
        """Open a block at ``MSH`` (stray index ``k``); return where to go on in this chunk."""
        carried = bytes(self._stray[k:before])  # MSH began in an earlier read
        offset = self._stray_offset + k
        del self._stray[k:]
        self._start(offset)
        self._block_notes.append("no VT before the message")
        if self._block is not None:
            self._block += carried
        return max(k - before, 0)

    def _inside(self, data: bytes, i: int, base: int, out: list[MllpEvent]) -> int:
        block = self._block if self._block is not None else bytearray()
        fs = data.find(FS, i)
        vt = data.find(VT, i)
        if vt >= 0 and (fs < 0 or vt < fs):
            self._add(block, data, i, vt)
            out.append(self._finish("missing FS: the next VT began a new message"))
            self._start(base + vt)
            return vt + 1
        end = len(data) if fs < 0 else fs
        self._add(block, data, i, end)
        if fs < 0:
            return end
        out.append(self._finish(None))
        if fs + 1 < len(data):
            if data[fs + 1] == 0x0D:
                return fs + 2
            self._note_missing_cr(out)
            return fs + 1
        self._skip_cr = True
        return fs + 1

    def _add(self, block: bytearray, data: bytes, i: int, end: int) -> None:
        """Append ``data[i:end]`` to the block; past the limit keep only its head."""
        if self._overflow:
            self._overflow_size += end - i
            if end > i:
                self._overflow_lf = data[end - 1] == 0x0A
            return
        block += data[i:end]
        if len(block) > self.max_message:
            self._overflow = True
            self._overflow_size = len(block)
            self._overflow_lf = block.endswith(b"\n")
            self._block = bytearray(_head(block))

    def _note_missing_cr(self, out: list[MllpEvent]) -> None:
        last = out[-1]
        if isinstance(last, BlockReceived):
            out[-1] = BlockReceived(last.data, last.offset, (*last.deviations, "no CR after FS"))

    def _finish(self, note: str | None) -> BlockReceived | BlockTooLarge:
        block = bytes(self._block or b"")
        notes = list(self._block_notes)
        if note:
            notes.append(note)
        self._block = None
        self._block_notes = []
        self._deadline = None
        if self._overflow:
            self._overflow = False
            reason = f"message longer than {self.max_message} bytes"
            if note and "closed" in note:
                reason += f" ({note})"
            return BlockTooLarge(block, self._block_offset, reason,
                                 size=self._overflow_size, limit=self.max_message)
        return BlockReceived(block, self._block_offset, tuple(notes))


def _head(block: bytearray) -> bytes:
    """The start of an oversized block worth keeping: through its first segment end."""
    start = len(block) - len(block.lstrip(_BLANK))
    window = block[start:start + HEAD_LIMIT]
    ends = [k for k in (window.find(b"\r"), window.find(b"\n")) if k >= 0]
    if ends:
        return bytes(block[:start + min(ends) + 1])
    return bytes(block[:SHORT_HEAD])
