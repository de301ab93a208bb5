"""Editing one row of a mapping table's CSV text (pure: bytes in, bytes out).

The web app's mapping page fixes a table in place: the row of an analyzer
code is replaced, or appended when the table has none. Everything else in
the file stays byte for byte as it was (other rows, quoting, comments in
cells, the line ending, a UTF-8 byte order mark), so the change a person
sees in the file is that one row. The caller validates the whole result
with :func:`lis_gateway.mapping.parse_table` before writing anything.

A row is matched like :meth:`lis_gateway.mapping.MappingTable.lookup`
matches a code: exactly first, then trimmed and case-insensitive.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lis_gateway.mapping import COLUMNS, OPTIONAL_COLUMNS

#: The header of a table written from nothing (every column, the optional ones too).
NEW_TABLE_COLUMNS = (*COLUMNS, *OPTIONAL_COLUMNS)


class RowEditError(ValueError):
    """The row cannot be written as given (the message says why)."""


@dataclass(frozen=True, slots=True)
class RowEdit:
    """One row replaced or added.

    Attributes:
        data: the whole new file.
        columns: the table's header, in file order.
        old_row: the row as it was (column -> cell), None when the row is new.
        new_row: the row as written (column -> cell).
        line: the line of the file where the new row starts.
    """

    data: bytes
    columns: tuple[str, ...]
    old_row: dict[str, str] | None
    new_row: dict[str, str]
    line: int


@dataclass(frozen=True, slots=True)
class _Record:
    first: int  #: index of its first line in the file's lines
    end: int  #: index after its last line
    cells: list[str]


def _records(lines: Sequence[str]) -> list[_Record]:
    out: list[_Record] = []
    reader = csv.reader(iter(lines))
    start = 0
    for cells in reader:
        out.append(_Record(start, reader.line_num, cells))
        start = reader.line_num
    return out


def header_of(data: bytes | None) -> tuple[str, ...]:
    """The columns of a table's file (those of a new table when there is no file).

    Raises:
        RowEditError: the file is not UTF-8 or has no header.
    """
    if data is None:
        return NEW_TABLE_COLUMNS
    records = _records(_text(data).splitlines(keepends=True))
    if not records or not any(c.strip() for c in records[0].cells):
        raise RowEditError("the table's file has no header line")
    return tuple(c.strip() for c in records[0].cells)


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RowEditError(f"the table's file is not UTF-8 (byte {exc.start})") from None


def find_row(data: bytes | None, analyzer_code: str) -> dict[str, str] | None:
    """The row of ``analyzer_code`` (column -> cell, trimmed), or None."""
    if data is None:
        return None
    columns = header_of(data)
    found = _find(_records(_text(data).splitlines(keepends=True))[1:], columns, analyzer_code)
    return None if found is None else _as_row(columns, found.cells)


def _as_row(columns: Sequence[str], cells: Sequence[str]) -> dict[str, str]:
    return {c: (cells[i].strip() if i < len(cells) else "") for i, c in enumerate(columns)}


def _find(records: Sequence[_Record], columns: Sequence[str], code: str) -> _Record | None:
    if "analyzer_code" not in columns:
        return None
    index = list(columns).index("analyzer_code")

    def cell(r: _Record) -> str:
        return r.cells[index] if index < len(r.cells) else ""

    for r in records:
        if cell(r) == code:
            return r
    folded = code.strip().upper()
    return next((r for r in records if cell(r).strip().upper() == folded), None)


def edit_row(data: bytes | None, row: Mapping[str, str]) -> RowEdit:
    """Replace the row of ``row["analyzer_code"]`` in a table's file, or append it.

    Args:
        data: the file as it is (None: there is no file yet; one is started
            with :data:`NEW_TABLE_COLUMNS`).
        row: column -> cell; a column left out is written empty.

    Raises:
        RowEditError: no analyzer code, a cell on several lines, or a value
            for a column the file does not have.
    """
    code = row.get("analyzer_code", "").strip()
    if not code:
        raise RowEditError("the analyzer code is required")
    for column, value in row.items():
        if "\n" in value or "\r" in value:
            raise RowEditError(f"{column}: a cell cannot span lines")
    columns = header_of(data)
    missing = [c for c, v in row.items() if v.strip() and c not in columns]
    if missing:
        raise RowEditError(f"the table's file has no column {', '.join(missing)}")
    new_row = {c: row.get(c, "").strip() for c in columns}
    if data is None:
        bom, newline = b"", "\n"
        lines = [_line(columns, newline)]
    else:
        bom = codecs.BOM_UTF8 if data.startswith(codecs.BOM_UTF8) else b""
        text = _text(data)
        newline = "\r\n" if "\r\n" in text else "\n"
        lines = text.splitlines(keepends=True)
    records = _records(lines)
    found = _find(records[1:], columns, code)
    new_line = _line([new_row[c] for c in columns], newline)
    if found is None:
        if lines and not lines[-1].endswith(("\n", "\r")):
            lines[-1] += newline
        at, old = len(lines), None
        lines.append(new_line)
    else:
        at, old = found.first, _as_row(columns, found.cells)
        lines[found.first:found.end] = [new_line]
    return RowEdit(bom + "".join(lines).encode("utf-8"), columns, old, new_row, at + 1)


def _line(cells: Sequence[str], newline: str) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator=newline).writerow(cells)
    return out.getvalue()
