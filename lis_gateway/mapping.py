"""Mapping tables: analyzer test code -> local, national and LOINC codes, UCUM unit, ranges.

One table per analyzer family in a mappings directory (``mappings/`` in the
repository; sites add their own directory in the configuration)::

    <table>.csv         analyzer_code,local_code,national_code,appendix11_code,loinc,
                        name_vi,name_en,analyzer_unit,unit_ucum,factor,offset,decimals,
                        critical_low,critical_high,autoverify_low,autoverify_high
                        [,service_code]
    <table>.ranges.csv  local_code,sex,age_from,age_to,low,high,text

``service_code`` (:data:`OPTIONAL_COLUMNS`) is the QĐ 2010/2025 App. 1 shared
service code that the social-insurance table XML4 needs as ``MA_DICH_VU``
(see :mod:`lis_gateway.export.xml4`); a table without the column loads as
before, with every service code empty.

Tables are validated completely when loaded; every problem names the file,
line and column, and a table with any error is not loaded at all
(:class:`MappingTableError` lists them all). Each loaded table carries a
version (SHA-256 of its files) that every mapped result records.

Pure: no I/O except :func:`load_table` reading files.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path

COLUMNS = ("analyzer_code", "local_code", "national_code", "appendix11_code", "loinc",
           "name_vi", "name_en", "analyzer_unit", "unit_ucum", "factor", "offset", "decimals",
           "critical_low", "critical_high", "autoverify_low", "autoverify_high")
#: Columns a table may leave out (every cell is then empty).
OPTIONAL_COLUMNS = ("service_code",)
RANGE_COLUMNS = ("local_code", "sex", "age_from", "age_to", "low", "high", "text")
_REQUIRED = ("analyzer_code", "local_code", "name_vi", "name_en")
_NATIONAL = re.compile(r"^\d{7}$")
_APPENDIX11 = re.compile(r"^[A-Z]{1,3}\d{1,4}$")
#: QĐ 2010/2025 App. 1 ``CC.KKKK.GGGG``, or a sample sent to another facility
#: ``XX.YYYY.ZZZZ.K.WWWWW`` (WWWWW: the performing facility's code)
SERVICE_CODE = re.compile(r"^[0-9A-Z]{2}\.\d{4}\.\d{4}$")
REFERRAL_SERVICE_CODE = re.compile(r"^[0-9A-Z]{2}\.\d{4}\.\d{4}\.\d\.\d{5}$")
_LOINC = re.compile(r"^(\d{1,7})-(\d)$")
_AGE = re.compile(r"^(\d+)([dmy])$")
_AGE_DAYS = {"d": 1, "m": 30, "y": 365}


@dataclass(frozen=True, slots=True)
class TableProblem:
    """One thing wrong in a mapping table, with its place."""

    file: str
    line: int
    column: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" + (f": column {self.column}" if self.column else "")
        return f"{where}: {self.message}"


class MappingTableError(Exception):
    """A table has errors; it was not loaded. ``problems`` lists every one."""

    def __init__(self, problems: Sequence[TableProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = tuple(problems)


def loinc_check_digit(number: str) -> int:
    """The mod-10 check digit of a LOINC code's numeric part (LOINC Users' Guide)."""
    digits = [int(c) for c in reversed(number)]
    total = 0
    for i, d in enumerate(digits):
        if i % 2 == 0:
            d *= 2
            total += d // 10 + d % 10
        else:
            total += d
    return (10 - total % 10) % 10


@dataclass(frozen=True, slots=True)
class ReferenceRange:
    """A reference range for one sex and age band (ages in days; None = open)."""

    sex: str
    age_from_days: int | None
    age_to_days: int | None
    low: Decimal | None
    high: Decimal | None
    text: str

    def applies(self, sex: str, age_days: int | None) -> bool:
        """Does this range apply to a patient of ``sex`` and ``age_days`` (unknowns allowed)?"""
        if self.sex != "*" and sex and sex != self.sex:
            return False
        if age_days is None:
            return True  # unknown age: every band applies; the open band is preferred
        if self.age_from_days is not None and age_days < self.age_from_days:
            return False
        return not (self.age_to_days is not None and age_days >= self.age_to_days)

    def display(self) -> str:
        """The range as a report shows it: ``3.9-6.1``, ``<5``, ``>10``, or its text."""
        if self.low is not None and self.high is not None:
            return f"{self.low}-{self.high}"
        if self.high is not None:
            return f"<{self.high}"
        if self.low is not None:
            return f">{self.low}"
        return self.text


@dataclass(frozen=True, slots=True)
class MappingEntry:
    """One row of a mapping table."""

    analyzer_code: str
    local_code: str
    national_code: str
    appendix11_code: str
    loinc: str
    name_vi: str
    name_en: str
    analyzer_unit: str
    unit_ucum: str
    factor: Decimal
    offset: Decimal
    decimals: int | None
    critical_low: Decimal | None
    critical_high: Decimal | None
    autoverify_low: Decimal | None
    autoverify_high: Decimal | None
    ranges: tuple[ReferenceRange, ...] = ()
    service_code: str = ""  #: QĐ 2010 shared service code (XML4 ``MA_DICH_VU``), or ""

    @property
    def indicator_code(self) -> str:
        """The code for XML4 ``MA_CHI_SO``: QĐ 1227 code, else the Appendix 11 fallback."""
        return self.national_code or self.appendix11_code

    def convert(self, number: Decimal) -> Decimal:
        """Analyzer unit -> reported UCUM unit, exactly, rounded half-up to ``decimals``."""
        value = number * self.factor + self.offset
        if self.decimals is None:
            return value
        return value.quantize(Decimal(1).scaleb(-self.decimals), rounding=ROUND_HALF_UP)

    def reference_range(self, sex: str = "", age_days: int | None = None
                        ) -> ReferenceRange | None:
        """The most specific range for the patient: an exact sex beats ``*``."""
        def open_band(r: ReferenceRange) -> bool:
            return r.age_from_days is None and r.age_to_days is None

        fitting = [r for r in self.ranges if r.applies(sex, age_days)]
        # exact sex first; with a known age the narrower band, without one the open band
        fitting.sort(key=lambda r: (r.sex == "*" or not sex,
                                    open_band(r) if age_days is not None else not open_band(r)))
        return fitting[0] if fitting else None


@dataclass(frozen=True, slots=True)
class MappingTable:
    """A loaded, validated table."""

    name: str
    version: str  #: SHA-256 of the table file(s), hex
    entries: Mapping[str, MappingEntry] = field(default_factory=dict)
    folded: Mapping[str, MappingEntry] = field(default_factory=dict)  #: by upper-case code

    def lookup(self, analyzer_code: str) -> MappingEntry | None:
        """The entry for an analyzer code (exact, then trimmed and case-insensitive)."""
        entry = self.entries.get(analyzer_code)
        if entry is None:
            entry = self.folded.get(analyzer_code.strip().upper())
        return entry


UnitCheck = Callable[[str], str | None]


def ucum_check() -> UnitCheck:
    """A UCUM syntax check (ucumvert's grammar): returns an error text or None."""
    from ucumvert import get_ucum_parser  # loaded only when tables are

    parser = get_ucum_parser()

    def check(unit: str) -> str | None:
        try:
            parser.parse(unit)
        except Exception as exc:
            return f"{unit!r} is not a valid UCUM unit ({type(exc).__name__})"
        return None

    return check


class _Reader:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[TableProblem] = []

    def problem(self, line: int, column: str, message: str) -> None:
        self.problems.append(TableProblem(self.file, line, column, message))

    def rows(self, data: bytes, columns: Sequence[str], optional: Sequence[str] = ()
             ) -> list[tuple[int, dict[str, str]]]:
        """The data rows as (line, column -> NFC-trimmed cell); an absent optional column is ""."""
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            self.problem(1, "", f"not UTF-8 (byte {exc.start})")
            return []
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        if header is None:
            self.problem(1, "", "empty file")
            return []
        header = [h.strip() for h in header]
        missing = [c for c in columns if c not in header]
        unknown = [h for h in header if h not in columns and h not in optional]
        if missing:
            self.problem(1, ",".join(missing), "missing column(s)")
        if unknown:
            self.problem(1, ",".join(unknown), "unknown column(s)")
        if missing or unknown:
            return []
        out = []
        for raw in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in raw):
                continue
            if len(raw) != len(header):
                self.problem(line, "", f"{len(raw)} cells, the header has {len(header)}")
                continue
            cells = dict.fromkeys(optional, "")
            cells.update({h: unicodedata.normalize("NFC", c.strip())
                          for h, c in zip(header, raw, strict=True)})
            out.append((line, cells))
        return out

    def decimal(self, line: int, column: str, text: str, default: Decimal | None = None
                ) -> Decimal | None:
        if text == "":
            return default
        try:
            value = Decimal(text)
        except InvalidOperation:
            self.problem(line, column, f"{text!r} is not a decimal number")
            return default
        if not value.is_finite():
            self.problem(line, column, f"{text!r} is not a finite number")
            return default
        return value

    def age(self, line: int, column: str, text: str) -> int | None:
        if text == "":
            return None
        m = _AGE.match(text)
        if m is None:
            self.problem(line, column, f"{text!r} is not an age like 0d, 6m or 18y")
            return None
        return int(m.group(1)) * _AGE_DAYS[m.group(2)]


def _entry(r: _Reader, line: int, row: dict[str, str], units: UnitCheck) -> MappingEntry | None:
    before = len(r.problems)
    for column in _REQUIRED:
        if not row[column]:
            r.problem(line, column, "required")
    if row["national_code"] and not _NATIONAL.match(row["national_code"]):
        r.problem(line, "national_code", "a QĐ 1227 code has 7 digits")
    if row["appendix11_code"] and not _APPENDIX11.match(row["appendix11_code"]):
        r.problem(line, "appendix11_code", "an Appendix 11 code looks like H02")
    service = row["service_code"]
    if service and not (SERVICE_CODE.match(service) or REFERRAL_SERVICE_CODE.match(service)):
        r.problem(line, "service_code", f"{service!r} is not a QĐ 2010 service code "
                                        "CC.KKKK.GGGG (digits; CC may hold capitals), or "
                                        "CC.KKKK.GGGG.K.WWWWW for a sample sent to "
                                        "facility WWWWW")
    m = _LOINC.match(row["loinc"]) if row["loinc"] else None
    if row["loinc"] and m is None:
        r.problem(line, "loinc", f"{row['loinc']!r} is not a LOINC code like 2345-7")
    elif m is not None and loinc_check_digit(m.group(1)) != int(m.group(2)):
        r.problem(line, "loinc", f"{row['loinc']!r} has a wrong check digit "
                                 f"(expected {loinc_check_digit(m.group(1))})")
    if row["unit_ucum"]:
        error = units(row["unit_ucum"])
        if error:
            r.problem(line, "unit_ucum", error)
    factor = r.decimal(line, "factor", row["factor"], Decimal(1))
    offset = r.decimal(line, "offset", row["offset"], Decimal(0))
    if factor is not None and factor == 0:
        r.problem(line, "factor", "a factor of 0 would erase every value")
    decimals: int | None = None
    if row["decimals"]:
        if row["decimals"].isdigit() and int(row["decimals"]) <= 6:
            decimals = int(row["decimals"])
        else:
            r.problem(line, "decimals", "a whole number from 0 to 6")
    limits = {c: r.decimal(line, c, row[c]) for c in
              ("critical_low", "critical_high", "autoverify_low", "autoverify_high")}
    for low, high in (("critical_low", "critical_high"), ("autoverify_low", "autoverify_high")):
        lo, hi = limits[low], limits[high]
        if lo is not None and hi is not None and lo >= hi:
            r.problem(line, high, f"must be above {low}")
    if len(r.problems) > before:
        return None
    return MappingEntry(
        row["analyzer_code"], row["local_code"], row["national_code"], row["appendix11_code"],
        row["loinc"], row["name_vi"], row["name_en"], row["analyzer_unit"], row["unit_ucum"],
        factor or Decimal(1), offset or Decimal(0), decimals, limits["critical_low"],
        limits["critical_high"], limits["autoverify_low"], limits["autoverify_high"],
        service_code=service)


def _ranges(r: _Reader, data: bytes, local_codes: set[str]
            ) -> dict[str, list[ReferenceRange]]:
    out: dict[str, list[ReferenceRange]] = {}
    for line, row in r.rows(data, RANGE_COLUMNS):
        before = len(r.problems)
        if row["local_code"] not in local_codes:
            r.problem(line, "local_code", f"{row['local_code']!r} is not in the main table")
        if row["sex"] not in ("M", "F", "*"):
            r.problem(line, "sex", "M, F or *")
        age_from = r.age(line, "age_from", row["age_from"])
        age_to = r.age(line, "age_to", row["age_to"])
        if age_from is not None and age_to is not None and age_from >= age_to:
            r.problem(line, "age_to", "must be above age_from")
        low, high = r.decimal(line, "low", row["low"]), r.decimal(line, "high", row["high"])
        if low is not None and high is not None and low > high:
            r.problem(line, "high", "must not be below low")
        if low is None and high is None and not row["text"]:
            r.problem(line, "", "a range needs low, high or text")
        if len(r.problems) == before:
            out.setdefault(row["local_code"], []).append(
                ReferenceRange(row["sex"], age_from, age_to, low, high, row["text"]))
    return out


def parse_table(name: str, data: bytes, ranges_data: bytes | None = None, *,
                file: str = "", ranges_file: str = "", units: UnitCheck | None = None
                ) -> MappingTable:
    """Validate and build a table from bytes.

    Raises:
        MappingTableError: any problem at all; nothing is half-loaded.
    """
    r = _Reader(file or f"{name}.csv")
    check = units or ucum_check()
    entries: dict[str, MappingEntry] = {}
    seen: set[str] = set()
    for line, row in r.rows(data, COLUMNS, OPTIONAL_COLUMNS):
        key = row["analyzer_code"]
        if key and key.upper() in seen:
            r.problem(line, "analyzer_code", f"{key!r} appears twice")
            continue
        seen.add(key.upper())
        entry = _entry(r, line, row, check)
        if entry is not None:
            entries[key] = entry
    problems = r.problems
    if ranges_data is not None:
        rr = _Reader(ranges_file or f"{name}.ranges.csv")
        by_code = _ranges(rr, ranges_data, {e.local_code for e in entries.values()})
        problems = problems + rr.problems
        entries = {k: _with_ranges(e, by_code.get(e.local_code, ())) for k, e in entries.items()}
    if problems:
        raise MappingTableError(problems)
    digest = table_version(data, ranges_data)
    return MappingTable(name, digest, entries, {k.upper(): e for k, e in entries.items()})


def table_version(data: bytes, ranges_data: bytes | None = None) -> str:
    """The version of a table made of these files: SHA-256 of both, hex."""
    return hashlib.sha256(data + b"\0" + (ranges_data or b"")).hexdigest()


def _with_ranges(entry: MappingEntry, ranges: Sequence[ReferenceRange]) -> MappingEntry:
    return dataclasses.replace(entry, ranges=tuple(ranges))


def load_table(directories: Sequence[Path], name: str, *, units: UnitCheck | None = None
               ) -> MappingTable | None:
    """Load table ``name`` from the first directory that has it (site directories first).

    Returns:
        The table, or None if no directory has ``<name>.csv``.

    Raises:
        MappingTableError: the table exists but has problems.
    """
    for directory in directories:
        path = directory / f"{name}.csv"
        if path.is_file():
            ranges = directory / f"{name}.ranges.csv"
            return parse_table(name, path.read_bytes(),
                               ranges.read_bytes() if ranges.is_file() else None,
                               file=str(path), ranges_file=str(ranges), units=units)
    return None
