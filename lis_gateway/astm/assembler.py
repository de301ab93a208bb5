"""Join frame texts into E1394 messages (sans-IO).

Frame texts are joined first and only then split into records on CR, so a
record (or a field) cut across ETB frames comes out whole. A message runs
from an H record to its L record; several may come in one transfer.

* A message is delivered when its L record has arrived and the low-level
  message around it has ended (ETX), or at the sender's EOT.
* Records left without an L record at a normal EOT after an ETX frame are
  delivered as an *unterminated* message (a deviation, recorded).
* Text left after an ETB frame at EOT, or any text when the transfer is
  aborted (timeout, lost connection), is an :class:`IncompleteTransmission`:
  kept with its raw bytes, never turned into results.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field

from .codec import Decoded, Problem, decode_records
from .delimiters import DEFAULT, Delimiters

SUPPORTED_ENCODINGS = ("latin-1", "utf-8", "cp1252", "cp1258", "ascii")


@dataclass(frozen=True, slots=True)
class AstmMessage:
    """One received E1394 message.

    Attributes:
        raw: the joined frame texts of the message, exactly as received.
        decoded: records, delimiters and problems.
        terminated: ``True`` if it ended with an L record.
        offset: link offset of the frame that carried its first record.
    """

    raw: bytes
    decoded: Decoded
    terminated: bool
    offset: int = 0

    @property
    def problems(self) -> tuple[Problem, ...]:
        """Every problem found, including link-level ones added by the assembler."""
        return self.decoded.problems


@dataclass(frozen=True, slots=True)
class IncompleteTransmission:
    """Text that never became a complete message; kept for the record."""

    raw: bytes
    reason: str
    offset: int = 0


AssemblerEvent = AstmMessage | IncompleteTransmission


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The assembler's state before one :meth:`MessageAssembler.add_text` call."""

    pending: bytes
    pending_offset: int
    msg: _Building | None
    msg_lines: int
    msg_problems: int
    msg_terminated: bool
    ready: tuple[_Building, ...]
    mid_block: bool


@dataclass
class _Building:
    lines: list[bytes] = field(default_factory=list)
    offset: int = 0
    problems: list[Problem] = field(default_factory=list)
    terminated: bool = False


class MessageAssembler:
    """Turns the text of accepted frames into :class:`AstmMessage` objects.

    Args:
        encoding: the link's character encoding (latin-1 by default).
        default_delimiters: used for a message without an H record.
        any_newline: also split records on LF and CR LF (bare-record links).
    """

    def __init__(self, encoding: str = "latin-1", default_delimiters: Delimiters = DEFAULT,
                 *, any_newline: bool = False) -> None:
        codecs.lookup(encoding)  # raises LookupError for an unknown encoding
        self.encoding = encoding
        self.default_delimiters = default_delimiters
        self.any_newline = any_newline
        self._pending = bytearray()
        self._pending_offset = 0
        self._msg: _Building | None = None
        self._ready: list[_Building] = []
        self._mid_block = False

    def add_text(self, text: bytes, *, block_end: bool = True, offset: int = 0
                 ) -> list[AssemblerEvent]:
        """Add the text of one accepted frame.

        Args:
            text: frame text as accepted (checksum already verified).
            block_end: the frame ended with ETX (end of a low-level message).
            offset: link offset of the frame, for problem positions.

        Returns:
            Messages completed by this frame.
        """
        if not self._pending:
            self._pending_offset = offset
        self._pending += text
        if self.any_newline:
            self._pending[:] = self._pending.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
        while True:
            cut = self._pending.find(b"\r")
            if cut < 0:
                break
            line = bytes(self._pending[:cut])
            del self._pending[:cut + 1]
            self._add_record(line, self._pending_offset)
            self._pending_offset = offset
        if block_end and self._pending:
            line = bytes(self._pending)
            self._pending.clear()
            self._add_record(line, self._pending_offset, unterminated_record=True)
        self._mid_block = not block_end
        if block_end:
            return self._flush_ready()
        return []

    def checkpoint(self) -> Checkpoint:
        """Remember the current state, to undo the next :meth:`add_text` (cost O(1)).

        Used when the frame that completed a message is refused (NAK) after
        all, because it could not be stored: the analyzer sends it again and
        its text must not be added twice.
        """
        msg = self._msg
        return Checkpoint(bytes(self._pending), self._pending_offset, msg,
                          len(msg.lines) if msg else 0, len(msg.problems) if msg else 0,
                          msg.terminated if msg else False, tuple(self._ready), self._mid_block)

    def rollback(self, cp: Checkpoint) -> None:
        """Return to the state saved by :meth:`checkpoint` (records are only ever
        appended, so truncating them restores the earlier state exactly)."""
        self._pending[:] = cp.pending
        self._pending_offset = cp.pending_offset
        self._msg = cp.msg
        if cp.msg is not None:
            del cp.msg.lines[cp.msg_lines:]
            del cp.msg.problems[cp.msg_problems:]
            cp.msg.terminated = cp.msg_terminated
        self._ready = list(cp.ready)
        self._mid_block = cp.mid_block

    def end_transfer(self, *, aborted: str | None = None) -> list[AssemblerEvent]:
        """The transfer ended: normally with EOT (``aborted=None``) or abnormally.

        Args:
            aborted: the reason the transfer was aborted, or ``None`` for EOT.

        Returns:
            Messages still waiting, and what is left as incomplete.
        """
        out: list[AssemblerEvent] = []
        if aborted is None and not self._mid_block:
            if self._pending:
                self._add_record(bytes(self._pending), self._pending_offset,
                                 unterminated_record=True)
                self._pending.clear()
            out += self._flush_ready()
            if self._msg is not None and self._msg.lines:
                self._msg.problems.append(
                    Problem("warning", -1, -1, "no L (terminator) record before EOT"))
                out.append(self._build(self._msg, terminated=False))
        else:
            out += self._flush_ready()
            leftover = b"\r".join(self._msg.lines) if self._msg else b""
            if self._pending:
                leftover += (b"\r" if leftover else b"") + bytes(self._pending)
            if leftover:
                reason = aborted or "transfer ended with EOT after an ETB frame"
                off = self._msg.offset if self._msg else self._pending_offset
                out.append(IncompleteTransmission(leftover, reason, off))
        self._reset()
        return out

    def _reset(self) -> None:
        self._pending.clear()
        self._msg = None
        self._ready = []
        self._mid_block = False

    def _add_record(self, line: bytes, offset: int, *, unterminated_record: bool = False) -> None:
        head = line.lstrip(b" \t")
        if not head:
            return  # empty record: CR CR from capture tools or terminal servers
        if head[:1] == b"H":
            if self._msg is not None and self._msg.lines:
                self._msg.problems.append(
                    Problem("warning", -1, -1, "no L (terminator) record before the next H"))
                self._msg.terminated = False
                self._ready.append(self._msg)
            self._msg = _Building(offset=offset)
        elif self._msg is None:
            self._msg = _Building(offset=offset)
        msg = self._msg
        if unterminated_record:
            msg.problems.append(Problem("warning", len(msg.lines), -1,
                                        "last record of the block not ended by CR"))
        msg.lines.append(line)
        if head[:1] == b"L" and len(head) > 1 and not head[1:2].isalnum():
            msg.terminated = True
            self._ready.append(msg)
            self._msg = None

    def _flush_ready(self) -> list[AssemblerEvent]:
        out: list[AssemblerEvent] = [self._build(m, m.terminated) for m in self._ready]
        self._ready = []
        return out

    def _build(self, msg: _Building, terminated: bool) -> AstmMessage:
        raw = b"\r".join(msg.lines) + b"\r"
        problems = list(msg.problems)
        lines: list[str] = []
        for i, line in enumerate(msg.lines):
            text = line.decode(self.encoding, errors="replace")
            if "\ufffd" in text and "\ufffd".encode(self.encoding, "ignore") not in line:
                problems.append(Problem("warning", i, -1,
                                        f"bytes not valid in {self.encoding} were replaced"))
            lines.append(text)
        decoded = decode_records(lines, self.default_delimiters)
        decoded = Decoded(decoded.records, decoded.delimiters,
                          decoded.problems + tuple(problems))
        return AstmMessage(raw, decoded, terminated, msg.offset)
