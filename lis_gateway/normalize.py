"""From the analyzer's result rows to normalized results (pure).

* Reportable rows become results; supplementary rows (interpretation, raw
  signal, Ct, replicates) are attached to the reportable result before them
  for the same sample; instrument flags sent as pseudo-results are attached
  to every result of their sample; ignored rows are dropped (they stay in
  the raw message).
* Values are parsed into comparator, Decimal and text, the raw string kept;
  numbers are converted exactly to the table's UCUM unit and rounded to its
  decimals. A unit that differs from the table's analyzer unit is never
  converted silently: the result keeps its raw value and says why.
* Flags go through the driver's map to HL7 table 0078; unknown ones stay as
  instrument flags, with a problem.
* A code missing from the table is never dropped: the result is kept with a
  ``not-mapped`` problem and can be mapped again once the table is fixed.
* Every result records the table version that mapped it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from .mapping import MappingEntry, MappingTable
from .timestamps import parse_timestamp
from .values import ParsedValue, parse_value


@dataclass(frozen=True, slots=True)
class RowView:
    """What normalization needs of a result row (``drivers.extract.ResultRow`` fits)."""

    sample_id: str
    test: str
    value: str
    unit: str
    reference_range: str
    flags: tuple[str, ...]
    status: str
    role: str  #: reportable, supplementary, instrument-flag, ignored
    qc: bool
    completed_at: str = ""
    instrument: str = ""


@dataclass(frozen=True, slots=True)
class NormalizedResult:
    """One reportable result, mapped.

    Attributes:
        row: the analyzer's row as extracted (raw value, unit, flags as sent).
        value: the parsed analyzer value.
        code, national_code, loinc, name_vi, name_en, unit_ucum: from the table ("" unmapped).
        number: the value in ``unit_ucum`` (converted, rounded), or None.
        flags: HL7 table 0078 codes.
        instrument_flags: flags the map does not know, and pseudo-result flags.
        supplementary: the rows attached to this result.
        status: the analyzer's status, or the driver's default when empty.
        reference_range: the table's range for the patient, else the analyzer's.
        critical: ``LL`` or ``HH`` when outside the table's critical limits, else "".
        problems: why a person must look (not-mapped, unit-mismatch, unknown-flag, ...).
        mapping_version: the table version used ("" when no table).
        result_time: ``completed_at`` read in the analyzer's zone, or None (the raw
            string stays on the row; a problem says why it could not be read).
    """

    row: RowView
    value: ParsedValue
    code: str
    national_code: str
    loinc: str
    name_vi: str
    name_en: str
    unit_ucum: str
    number: Decimal | None
    flags: tuple[str, ...]
    instrument_flags: tuple[str, ...]
    supplementary: tuple[RowView, ...]
    status: str
    reference_range: str
    critical: str
    problems: tuple[str, ...]
    mapping_version: str
    result_time: datetime | None = None


@dataclass
class _Pending:
    row: RowView
    supplementary: list[RowView]
    instrument_flags: list[str]


def _group(rows: Sequence[RowView]) -> list[_Pending]:
    results: list[_Pending] = []
    sample_flags: dict[str, list[str]] = {}
    for row in rows:
        if row.role == "reportable":
            results.append(_Pending(row, [], []))
        elif row.role == "supplementary":
            owner = next((p for p in reversed(results) if p.row.sample_id == row.sample_id),
                         None)
            if owner is None:  # nothing to attach to: keep it visible as a result
                results.append(_Pending(row, [], []))
            else:
                owner.supplementary.append(row)
        elif row.role == "instrument-flag":
            text = row.test + (f" {row.value.strip()}" if row.value.strip() else "")
            sample_flags.setdefault(row.sample_id, []).append(text)
    for pending in results:
        pending.instrument_flags += sample_flags.get(pending.row.sample_id, [])
    return results


def normalize(rows: Sequence[RowView], table: MappingTable | None, *,
              flag_map: Mapping[str, str], default_status: str = "F",
              status_map: Mapping[str, str] | None = None,
              sex: str = "", age_days: int | None = None, zone: str = "UTC",
              timestamp_formats: tuple[str, ...] = ()) -> list[NormalizedResult]:
    """Normalize one message's rows.

    Args:
        rows: the rows of one message, in order, with their roles.
        table: the family's mapping table (None: every result is not mapped).
        flag_map: the driver's analyzer flag -> HL7 0078 map.
        default_status: for rows whose status is empty.
        status_map: the driver's status -> HL7 OBX-11 map (unlisted statuses pass as sent).
        sex, age_days: the patient, when known, for reference ranges.
        zone, timestamp_formats: the analyzer clock's zone and extra formats.
    """
    statuses = status_map or {}
    out = []
    for p in _group(rows):
        result = _one(p, table, flag_map, statuses, default_status, sex, age_days)
        when, why = parse_timestamp(p.row.completed_at, zone, formats=timestamp_formats)
        problems = (*result.problems, f"timestamp: {why}") if why else result.problems
        out.append(dataclasses.replace(result, result_time=when, problems=problems))
    return out


def _one(p: _Pending, table: MappingTable | None, flag_map: Mapping[str, str],
         status_map: Mapping[str, str], default_status: str, sex: str,
         age_days: int | None) -> NormalizedResult:
    row = p.row
    problems: list[str] = []
    value = parse_value(row.value)
    flags: list[str] = []
    instrument = list(p.instrument_flags)
    for flag in row.flags:
        for part in (f.strip() for f in flag.replace(",", " ").split() if f.strip()):
            mapped = flag_map.get(part)
            if mapped is None:
                instrument.append(part)
                problems.append(f"unknown-flag: {part!r} has no HL7 0078 meaning in this driver")
            elif mapped and mapped not in flags:
                flags.append(mapped)
    sent = row.status.strip()
    status = status_map.get(sent, sent) if sent else default_status
    entry = table.lookup(row.test) if table is not None else None
    if entry is None:
        why = "no mapping table for this driver" if table is None else \
            f"analyzer code {row.test!r} is not in table {table.name}"
        problems.append(f"not-mapped: {why}")
        return NormalizedResult(row, value, "", "", "", "", "", "", value.number, tuple(flags),
                                tuple(instrument), tuple(p.supplementary), status,
                                row.reference_range.strip(), "", tuple(problems),
                                table.version if table else "")
    number, unit_problem = _convert(entry, value, row.unit)
    if unit_problem:
        problems.append(unit_problem)
    ref = entry.reference_range(sex, age_days)
    if ref is not None:
        shown = ref.display()
    elif unit_problem:
        shown = row.reference_range.strip()  # the value stayed in the analyzer's unit too
    else:
        shown = _converted_range(entry, row.reference_range)
    return NormalizedResult(
        row, value, entry.local_code, entry.indicator_code, entry.loinc, entry.name_vi,
        entry.name_en, entry.unit_ucum, number, tuple(flags), tuple(instrument),
        tuple(p.supplementary), status, shown,
        _critical(entry, number), tuple(problems), table.version if table else "")


_RANGE = re.compile(r"^\s*(?P<low>[+-]?\d+(?:[.,]\d+)?)\s*(?:-|to|~)\s*"
                    r"(?P<high>[+-]?\d+(?:[.,]\d+)?)\s*$")
_BOUND = re.compile(r"^\s*(?P<cmp><=|>=|<|>)\s*(?P<num>[+-]?\d+(?:[.,]\d+)?)\s*$")


def _converted_range(entry: MappingEntry, text: str) -> str:
    """The analyzer's range in the reported unit, or "" when it cannot be converted.

    A range left in the analyzer's unit next to a converted value would mislead
    (HGB 125 g/L beside 11.0-16.0 g/dL), so an unconvertible one is dropped.
    """
    text = text.strip()
    if entry.factor == 1 and entry.offset == 0:
        return text
    m = _RANGE.match(text)
    if m is not None:
        low = entry.convert(Decimal(m.group("low").replace(",", ".")))
        high = entry.convert(Decimal(m.group("high").replace(",", ".")))
        return f"{low}-{high}"
    b = _BOUND.match(text)
    if b is not None:
        return f"{b.group('cmp')}{entry.convert(Decimal(b.group('num').replace(',', '.')))}"
    return ""


def _convert(entry: MappingEntry, value: ParsedValue, unit: str
             ) -> tuple[Decimal | None, str]:
    if value.number is None:
        return None, ""
    sent = unit.strip()
    if entry.analyzer_unit and sent and sent.casefold() != entry.analyzer_unit.casefold():
        return None, (f"unit-mismatch: the analyzer sent {sent!r}, the table expects "
                      f"{entry.analyzer_unit!r}; value not converted")
    return entry.convert(value.number), ""


def _critical(entry: MappingEntry, number: Decimal | None) -> str:
    if number is None:
        return ""
    if entry.critical_low is not None and number < entry.critical_low:
        return "LL"
    if entry.critical_high is not None and number > entry.critical_high:
        return "HH"
    return ""
