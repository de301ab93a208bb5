"""Wire recordings for people: the newest recording of a link, its tail, control characters shown.

The analyzers page shows the last kilobytes of a link's newest recording
(:mod:`lis_gateway.wire` writes them, one file per connection) with each
control character spelled out (``<STX>``, ``<ETX>``, ``<ENQ>``, ``<CR>``,
...), so a technician can see frame by frame what crossed the wire.
Recordings hold patient data: what this module returns goes to the page
of a person allowed to see it, never to a log.

:func:`newest_recording` and :func:`read_tail` read files; the rest is pure.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path

#: The ASCII control characters by code, as E1381 and the HL7 MLLP documents name them.
CONTROL_NAMES = {
    0x00: "NUL", 0x01: "SOH", 0x02: "STX", 0x03: "ETX", 0x04: "EOT", 0x05: "ENQ",
    0x06: "ACK", 0x07: "BEL", 0x08: "BS", 0x09: "HT", 0x0A: "LF", 0x0B: "VT", 0x0C: "FF",
    0x0D: "CR", 0x0E: "SO", 0x0F: "SI", 0x10: "DLE", 0x11: "DC1", 0x12: "DC2",
    0x13: "DC3", 0x14: "DC4", 0x15: "NAK", 0x16: "SYN", 0x17: "ETB", 0x18: "CAN",
    0x19: "EM", 0x1A: "SUB", 0x1B: "ESC", 0x1C: "FS", 0x1D: "GS", 0x1E: "RS", 0x1F: "US",
    0x7F: "DEL"}
#: After these a new line starts on the page (ends of frames and blocks, lone link
#: characters); after CR too (an HL7 segment, an ASTM record) unless the frame goes on.
_BREAK_AFTER = frozenset({"LF", "EOT", "ENQ", "ACK", "NAK", "FS"})
#: A CR followed by one of these is inside an E1381 frame end (``<CR><ETX>``, ``<CR><LF>``).
_FRAME_GOES_ON = frozenset({0x03, 0x17, 0x0A})
#: The default and the largest tail shown, in KiB.
DEFAULT_KB = 16
MAX_KB = 1024


@dataclass(frozen=True, slots=True)
class Piece:
    """A run of text, or one control character (``control`` is its name)."""

    text: str
    control: str = ""


@dataclass(frozen=True, slots=True)
class WireLine:
    """One recorded chunk for the page.

    Attributes:
        t: when (clock seconds).
        direction: ``rx`` (from the analyzer), ``tx`` (to it) or ``note``.
        rows: the chunk cut after ends of frames and records, each row a list of pieces.
        size: how many bytes the chunk held.
    """

    t: float
    direction: str
    rows: tuple[tuple[Piece, ...], ...]
    size: int


@dataclass(frozen=True, slots=True)
class WireTail:
    """The end of one recording.

    Attributes:
        file: the recording's file name (no directory).
        size: the file's size in bytes.
        start: the offset where the tail shown begins (0: the whole file).
        lines: the chunks, oldest first.
        unreadable: how many lines could not be read (cut or damaged).
    """

    file: str
    size: int
    start: int
    lines: tuple[WireLine, ...]
    unreadable: int


def visible(data: bytes, encoding: str = "latin-1") -> tuple[tuple[Piece, ...], ...]:
    """Bytes as rows of text and named control characters: an E1381 frame
    (``<STX>...<CR><ETX>xx<CR><LF>``) or an HL7 segment on a row of its own."""
    rows: list[tuple[Piece, ...]] = []
    row: list[Piece] = []
    run = bytearray()

    def flush_run() -> None:
        if run:
            row.append(Piece(bytes(run).decode(encoding, errors="replace")))
            run.clear()

    for i, byte in enumerate(data):
        name = CONTROL_NAMES.get(byte)
        if name is None:
            run.append(byte)
            continue
        flush_run()
        row.append(Piece(f"<{name}>", name))
        ends_segment = name == "CR" and (i + 1 == len(data) or data[i + 1] not in _FRAME_GOES_ON)
        if name in _BREAK_AFTER or ends_segment:
            rows.append(tuple(row))
            row = []
    flush_run()
    if row:
        rows.append(tuple(row))
    return tuple(rows)


def parse_tail(data: bytes, *, cut: bool, encoding: str = "latin-1"
               ) -> tuple[tuple[WireLine, ...], int]:
    """The chunks of a recording's tail, and how many lines could not be read.

    Args:
        data: the last bytes of a recording (JSON lines).
        cut: ``data`` starts inside the file: its first line is partial and dropped.
        encoding: the link's character encoding, for the text between control characters.
    """
    lines = data.split(b"\n")
    if cut and lines:
        lines = lines[1:]
    out: list[WireLine] = []
    unreadable = 0
    for raw in lines:
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            unreadable += 1
            continue
        if not isinstance(obj, dict) or "format" in obj:
            continue
        try:
            t, direction = float(obj["t"]), str(obj["dir"])
            if direction == "note":
                text = str(obj.get("text", ""))
                out.append(WireLine(t, direction, ((Piece(text),),), 0))
                continue
            payload = base64.b64decode(obj["b64"], validate=True)
        except (KeyError, TypeError, ValueError, binascii.Error):
            unreadable += 1
            continue
        out.append(WireLine(t, direction, visible(payload, encoding), len(payload)))
    return tuple(out), unreadable


def newest_recording(directory: Path, link: str) -> Path | None:
    """The link's most recently written recording in ``directory`` (None: none)."""
    if not directory.is_dir():
        return None
    prefix = f"{link}-"
    found = [p for p in directory.glob("*.wire.jsonl")
             if p.name.startswith(prefix) and p.is_file()
             and _stamp_follows(p.name[len(prefix):])]
    if not found:
        return None
    return max(found, key=lambda p: (p.stat().st_mtime_ns, p.name))


def _stamp_follows(rest: str) -> bool:
    """``rest`` begins with the recording's UTC stamp (so link "a" is not "a-b")."""
    return len(rest) > 15 and rest[:8].isdigit() and rest[8] == "T" and rest[9:15].isdigit()


def read_tail(path: Path, kb: int = DEFAULT_KB, encoding: str = "latin-1") -> WireTail:
    """The last ``kb`` KiB of a recording, read and made visible.

    Raises:
        OSError: the file cannot be read.
    """
    limit = max(1, min(kb, MAX_KB)) * 1024
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        start = max(0, size - limit)
        handle.seek(start)
        data = handle.read(size - start)
    lines, unreadable = parse_tail(data, cut=start > 0, encoding=encoding)
    return WireTail(path.name, size, start, lines, unreadable)
