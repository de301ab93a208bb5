"""HL7 v2 messages: a small strict parser and writer for the hot path.

hl7apy is far too slow for analyzer traffic (about 60 ms per 20-OBX
ORU^R01); this module splits and joins in tens of microseconds and is
checked against hl7apy and python-hl7 in the tests.

Field numbering follows HL7: ``field(seg, 3)`` is SEG-3. For MSH, MSH-1 is
the field separator and MSH-2 the encoding characters, so ``field(msh, 9)``
is the message type as everywhere else.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .delimiters import DEFAULT, Hl7Delimiters

#: MSH-18 values seen in the field -> Python codec. ASCII is read as UTF-8
#: (a superset): Tisenc declares ASCII and sends UTF-8 units.
CHARSETS: dict[str, str] = {
    "ASCII": "utf-8", "UNICODE UTF-8": "utf-8", "UTF-8": "utf-8", "UTF8": "utf-8",
    "UNICODE": "utf-8", "8859/1": "latin-1", "8859/15": "iso8859-15", "ISO IR100": "latin-1",
    "ISO-8859-1": "latin-1", "WINDOWS-1252": "cp1252", "CP1258": "cp1258",
    "WINDOWS-1258": "cp1258",
}


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment: its name and its fields as received (escaped).

    ``fields[0]`` is the name; for MSH, ``fields[1]`` is the field separator
    and ``fields[2]`` the encoding characters, so ``fields[n]`` is always SEG-n.
    """

    fields: tuple[str, ...]

    @property
    def name(self) -> str:
        """The segment ID (MSH, PID, OBX, ...)."""
        return self.fields[0]

    def __getitem__(self, n: int) -> str:
        """SEG-n as received, or ``""`` when the segment is shorter."""
        return self.fields[n] if 0 <= n < len(self.fields) else ""


@dataclass(frozen=True, slots=True)
class Hl7Problem:
    """Something wrong or off-standard in a received message."""

    severity: str  #: "error" or "warning"
    segment_index: int  #: 0-based, or -1 for the whole message
    field_index: int  #: HL7 field number, or -1
    message: str

    def __str__(self) -> str:
        where = f"segment {self.segment_index + 1}" if self.segment_index >= 0 else "message"
        if self.field_index >= 0:
            where += f", field {self.field_index}"
        return f"{self.severity}: {where}: {self.message}"


@dataclass(frozen=True, slots=True)
class Hl7Message:
    """A received HL7 message.

    Attributes:
        raw: the bytes between the MLLP start and end characters, as received.
        segments: the parsed segments.
        delimiters: from MSH-1 and MSH-2.
        encoding: the codec the text was decoded with.
        problems: errors and warnings found while parsing.
    """

    raw: bytes
    segments: tuple[Segment, ...]
    delimiters: Hl7Delimiters
    encoding: str
    problems: tuple[Hl7Problem, ...]

    @property
    def msh(self) -> Segment:
        """The MSH segment (an empty one if the message has none)."""
        return self.segments[0] if self.segments and self.segments[0].name == "MSH" \
            else Segment(("MSH",))

    @property
    def message_type(self) -> str:
        """MSH-9 components 1 and 2, e.g. ``ORU^R01`` (the structure component dropped)."""
        comps = self.delimiters.components(self.msh[9])
        return "^".join(c for c in comps[:2] if c) if comps else ""

    @property
    def control_id(self) -> str:
        """MSH-10."""
        return self.msh[10]

    @property
    def version(self) -> str:
        """MSH-12 first component."""
        return self.delimiters.component_at(self.msh[12], 1)

    def named(self, name: str) -> Iterator[Segment]:
        """The segments called ``name``, in order."""
        return (s for s in self.segments if s.name == name)

    def first(self, name: str) -> Segment | None:
        """The first segment called ``name``."""
        return next(self.named(name), None)

    def text(self, raw: str) -> str:
        """A raw field with escapes decoded."""
        return self.delimiters.text(raw)


def _split_segments(data: bytes) -> tuple[list[bytes], bool]:
    """Split on CR, tolerating LF and CR LF; report whether anything but CR was used."""
    if b"\n" not in data:
        return [s for s in data.split(b"\r") if s.strip()], False
    unified = data.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    return [s for s in unified.split(b"\r") if s.strip()], True


def choose_encoding(raw_msh: bytes, default: str, override: str | None) -> tuple[str, str]:
    """Pick the codec: the analyzer override, else a sane MSH-18, else the link default.

    Returns:
        (codec name, the MSH-18 value as sent, "" if absent).
    """
    fs = raw_msh[3:4] or b"|"
    parts = raw_msh.split(fs)  # parts[0] is "MSH", parts[1] MSH-2: parts[n - 1] is MSH-n
    declared = parts[17].decode("latin-1").strip() if len(parts) > 17 else ""
    if override:
        return override, declared
    declared_first = declared.split("~")[0].split("^")[0].strip().upper()
    return CHARSETS.get(declared_first, default), declared


def parse_message(raw: bytes, *, default_encoding: str = "utf-8",
                  encoding_override: str | None = None) -> Hl7Message:
    """Parse one message (the bytes inside an MLLP block).

    Never raises for what the peer sent: problems are collected in the result.

    Args:
        raw: message bytes; segments end with CR (LF and CR LF are tolerated).
        default_encoding: used when MSH-18 is absent or unknown.
        encoding_override: the analyzer profile's encoding, which wins over MSH-18.

    Returns:
        The message with its problems.
    """
    problems: list[Hl7Problem] = []
    lines, other_endings = _split_segments(raw)
    if other_endings:
        problems.append(Hl7Problem("warning", -1, -1, "segments end with LF or CR LF"))
    stripped = [line.lstrip(b"\x00\x02 \t") for line in lines]
    encoding, declared = choose_encoding(stripped[0] if stripped else b"", default_encoding,
                                         encoding_override)
    codecs.lookup(encoding)
    texts: list[str] = []
    for i, line in enumerate(stripped):
        try:
            texts.append(line.decode(encoding))
        except UnicodeDecodeError:
            fallback = "utf-8" if encoding != "utf-8" else "latin-1"
            try:
                texts.append(line.decode(fallback))
            except UnicodeDecodeError:
                fallback = "latin-1"
                texts.append(line.decode(fallback))
            problems.append(Hl7Problem(
                "warning", i, -1, f"not valid {encoding} (MSH-18 {declared or 'absent'}); "
                                  f"read as {fallback}"))
    if not texts or not texts[0].startswith("MSH"):
        problems.append(Hl7Problem("error", 0, -1, "message does not start with MSH"))
        delims = DEFAULT
    else:
        delims, warnings = Hl7Delimiters.from_msh(texts[0])
        problems += [Hl7Problem("warning", 0, 2, w) for w in warnings]
    segments = [_segment(t, delims) for t in texts]
    for i, seg in enumerate(segments):
        if len(seg.name) != 3 or not seg.name.isalnum() or not seg.name[0].isalpha():
            problems.append(Hl7Problem("error", i, 0, f"not a segment name: {seg.name[:20]!r}"))
    msg = Hl7Message(raw, tuple(segments), delims, encoding, ())
    if segments and segments[0].name == "MSH":
        for n, what in ((9, "message type"), (10, "message control ID"), (12, "version ID")):
            if not msg.msh[n]:
                problems.append(Hl7Problem("warning", 0, n, f"MSH-{n} ({what}) is empty"))
    return Hl7Message(raw, tuple(segments), delims, encoding, tuple(problems))


def _segment(text: str, delims: Hl7Delimiters) -> Segment:
    if text.startswith("MSH") and len(text) > 3:
        rest = text[4:].split(delims.field)
        return Segment(("MSH", text[3], *rest))
    return Segment(tuple(text.split(delims.field)))


def write_segment(fields: Sequence[str], delims: Hl7Delimiters = DEFAULT) -> str:
    """Join raw (already escaped) fields into a segment, dropping trailing empty ones.

    ``fields[0]`` is the segment name. For MSH pass ``["MSH", "|", "^~\\\\&", ...]``.
    """
    keep = len(fields)
    while keep > 1 and fields[keep - 1] == "":
        keep -= 1
    if fields[0] == "MSH":
        return "MSH" + delims.field + delims.field.join(fields[2:keep])
    return delims.field.join(fields[:keep])


def write_message(segments: Sequence[str], encoding: str = "utf-8") -> bytes:
    """Join segments with CR (each one terminated) and encode."""
    return "".join(s + "\r" for s in segments).encode(encoding)
