"""E1394 text <-> records.

Decoding never stops at the first problem: it returns a :class:`Decoded`
report with every record it could read and every problem with its position
(hl7apy's errors-and-warnings idea). Encoding is strict: records the gateway
sends must be in a legal order and encodable, or :class:`RecordError` is raised.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .delimiters import DEFAULT, Delimiters
from .errors import RecordError, RecordOrderError
from .records import (
    FIELD_NAMES,
    RECORD_TYPES,
    HeaderRecord,
    Record,
    UnknownRecord,
    record_type,
)

#: Legal successors (E1394 §5 message structure). C, M and S may follow any
#: record and do not change the level, so they are looked up by the last
#: record of another type. ``None`` is the start of a message.
RECORD_ORDER: dict[str | None, frozenset[str]] = {
    None: frozenset("H"),
    "H": frozenset("PQLCMS"),
    "P": frozenset("OPLCMS"),
    "O": frozenset("ROPLCMS"),
    "R": frozenset("ROPLCMS"),
    "Q": frozenset("QLCMS"),
    "L": frozenset("H"),
}
_LEVEL_NEUTRAL = frozenset("CMS")


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong in received text, with where it is.

    Attributes:
        severity: ``"error"`` (data could not be read) or ``"warning"`` (read, but off-standard).
        record_index: 0-based record index in the message, or -1.
        field_index: E1394 field number, or -1.
        message: what is wrong.
    """

    severity: str
    record_index: int
    field_index: int
    message: str

    def __str__(self) -> str:
        where = f"record {self.record_index + 1}" if self.record_index >= 0 else "message"
        if self.field_index >= 0:
            where += f", field {self.field_index}"
        return f"{self.severity}: {where}: {self.message}"


@dataclass(frozen=True, slots=True)
class Decoded:
    """Records decoded from one message, with the problems found."""

    records: tuple[Record, ...]
    delimiters: Delimiters
    problems: tuple[Problem, ...]

    @property
    def errors(self) -> tuple[Problem, ...]:
        """Problems of severity ``error``."""
        return tuple(p for p in self.problems if p.severity == "error")


def decode_record(text: str, delimiters: Delimiters = DEFAULT) -> Record:
    """Decode one record (without its CR).

    Args:
        text: the record text, e.g. ``"R|1|^^^GLU|5.5|mmol/L"``.
        delimiters: the message's delimiters.

    Returns:
        A typed record, or :class:`UnknownRecord` for an undefined type letter.
    """
    parts = text.split(delimiters.field)
    letter = parts[0]
    cls = RECORD_TYPES.get(letter)
    if cls is None:
        return UnknownRecord(letter, tuple(parts[1:]), len(parts))
    names = FIELD_NAMES[cls]
    n = len(names)
    values = parts[1:1 + n]
    if len(values) < n:
        values += [""] * (n - len(values))
    factory: Callable[..., Record] = cls  # positional: every field is a str, in order
    return factory(*values, extra=tuple(parts[1 + n:]), field_count=len(parts))


def encode_record(record: Record, delimiters: Delimiters = DEFAULT) -> str:
    """Encode one record (without its CR), writing back trailing empty fields it had.

    Raises:
        RecordError: a field contains the field delimiter or a line break.
    """
    if isinstance(record, UnknownRecord):
        values = [record.record_type, *record.extra]
    else:
        names = FIELD_NAMES[type(record)]
        values = [record.TYPE, *(getattr(record, n) for n in names), *record.extra]
        if isinstance(record, HeaderRecord):
            values[1] = delimiters.definition
    for i, v in enumerate(values[1:], start=2):
        if delimiters.field in v or "\r" in v or "\n" in v:
            raise RecordError(-1, i, f"field contains a delimiter or line break: {v!r}")
    keep = len(values)
    while keep > 1 and values[keep - 1] == "":
        keep -= 1
    keep = max(keep, min(record.field_count, len(values)))
    return delimiters.field.join(values[:keep])


def check_order(types: Iterable[str]) -> list[tuple[int, str]]:
    """Return (index, message) for each record out of E1394 order."""
    problems: list[tuple[int, str]] = []
    prev: str | None = None
    for i, t in enumerate(types):
        allowed = RECORD_ORDER.get(prev, frozenset())
        if t in _LEVEL_NEUTRAL and prev is not None:
            continue
        if t not in allowed:
            problems.append((i, f"{t} record may not follow {prev or 'the start'}"))
        if t in RECORD_ORDER:
            prev = t
    if prev not in (None, "L"):
        problems.append((-1, "message does not end with an L record"))
    return problems


def decode_records(lines: Sequence[str], default: Delimiters = DEFAULT) -> Decoded:
    """Decode the records of one message.

    Args:
        lines: record texts without their CR, in order; the first should be H.
        default: delimiters to use when the message has no H record.

    Returns:
        The report; never raises for what the peer sent.
    """
    problems: list[Problem] = []
    delims = default
    if lines and lines[0].lstrip().startswith("H"):
        delims, warnings = Delimiters.from_header(lines[0])
        problems += [Problem("warning", 0, 2, w) for w in warnings]
    else:
        problems.append(Problem("error", -1, -1, "message has no H (header) record"))
    records: list[Record] = []
    for i, line in enumerate(lines):
        stripped = line.lstrip(" \t")
        if stripped != line:
            problems.append(Problem("warning", i, -1, "record starts with white space"))
        rec = decode_record(stripped, delims)
        if isinstance(rec, UnknownRecord):
            problems.append(Problem("error", i, 1, f"unknown record type {rec.record_type!r}"))
        records.append(rec)
    for index, message in check_order(record_type(r) for r in records):
        problems.append(Problem("warning", index, 1, message))
    return Decoded(tuple(records), delims, tuple(problems))


def encode_message(records: Sequence[Record], delimiters: Delimiters = DEFAULT,
                   encoding: str = "latin-1") -> bytes:
    """Encode a message for sending: records joined by CR, legal order enforced.

    Args:
        records: H first, L last, in a legal E1394 order.
        delimiters: the delimiters to declare in H and use throughout.
        encoding: the link's character encoding.

    Returns:
        The message text, each record ending in CR.

    Raises:
        RecordOrderError: the records are not in a legal order.
        RecordError: a field cannot be encoded.
    """
    problems = check_order(record_type(r) for r in records)
    if problems:
        index, message = problems[0]
        raise RecordOrderError(index, 1, message)
    out = []
    for i, rec in enumerate(records):
        try:
            text = encode_record(rec, delimiters)
            out.append(text.encode(encoding) + b"\r")
        except RecordError as exc:
            raise RecordError(i, exc.field_index, exc.reason) from None
        except UnicodeEncodeError as exc:
            raise RecordError(i, -1, f"not encodable in {encoding}: {exc.reason}") from None
    return b"".join(out)
