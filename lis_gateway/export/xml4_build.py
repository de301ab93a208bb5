"""XML4 rows from released results and the mapping tables, every problem named (pure).

The store gives the released results (:mod:`lis_gateway.store.xml4_rows`);
the mapping tables give, by the lab's local code, what the store does not
keep: the service code (``service_code`` column, XML4 ``MA_DICH_VU``), the
indicator code (QĐ 1227, else Appendix 11: ``MA_CHI_SO``) and the Vietnamese
name (``TEN_CHI_SO``). :func:`build` joins them into
:class:`~lis_gateway.export.xml4.Xml4Row` objects and checks every row.

Decisions:

* Order: by ``MA_LK`` (visit number), release time, local code (then
  barcode and result id, so the output is stable). ``STT`` counts from 1
  within each ``MA_LK``: one claim file is one episode, and the table's STT
  runs within one submission, so the HIS can take each episode's rows as they
  are.
* ``NGAY_KQ`` is the release time (when the result became available to the
  clinician), local time in the zone given.
* ``GIA_TRI`` is the exact stored number written plainly
  (:func:`~lis_gateway.export.xml4.format_decimal`) with the analyzer's
  comparator kept (``<0.5``); a text result is its text; a "no value" marker
  (``-----``) is empty. ``DON_VI_DO`` is the unit of what ``GIA_TRI`` shows:
  the mapped UCUM unit for a number, else the analyzer's unit.
* ``MA_BS_DOC_KQ`` is the practising-certificate number of the user who
  released the result. A release without a person (the gateway releasing an
  autoverified result) takes ``approver_certificate``, the number of the lab
  doctor who answers for the autoverification rules; without one, the row is
  a problem, never a guess.
* The same local code mapped differently in two tables (another service code,
  indicator code or name) is a problem for every row of that code.

A problem does not stop the others from being found: :attr:`Xml4Export.problems`
lists all of them, each with the sample barcode and the test, so the lab can
fix the mapping or the user and run the export again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import tzinfo

from lis_gateway.export.xml4 import (
    FieldProblem,
    Xml4Row,
    check_row,
    format_decimal,
    format_time,
    is_referral,
)
from lis_gateway.mapping import MappingTable
from lis_gateway.store.xml4_rows import ReleasedRow
from lis_gateway.values import parse_value


@dataclass(frozen=True, slots=True)
class Indicator:
    """What the mapping tables say of one local code, for XML4."""

    service_code: str
    indicator_code: str
    name: str
    tables: tuple[str, ...]  #: the tables that say so


@dataclass(frozen=True, slots=True)
class Indicators:
    """Local code -> :class:`Indicator`, and the codes the tables disagree on."""

    by_code: dict[str, Indicator]
    conflicts: dict[str, str]  #: local code -> what differs


def indicators(tables: Iterable[MappingTable]) -> Indicators:
    """Index the tables' entries by local code."""
    by_code: dict[str, Indicator] = {}
    conflicts: dict[str, str] = {}
    for table in tables:
        for entry in table.entries.values():
            facts = (entry.service_code, entry.indicator_code, entry.name_vi)
            known = by_code.get(entry.local_code)
            if known is None:
                by_code[entry.local_code] = Indicator(*facts, (table.name,))
            elif (known.service_code, known.indicator_code, known.name) != facts:
                conflicts.setdefault(entry.local_code, (
                    f"local code {entry.local_code!r} is mapped differently in "
                    f"{', '.join(known.tables)} ({_facts(known)}) and in {table.name} "
                    f"({_facts(Indicator(*facts, ()))}); make them agree"))
            elif table.name not in known.tables:
                by_code[entry.local_code] = Indicator(*facts, (*known.tables, table.name))
    return Indicators(by_code, conflicts)


def _facts(indicator: Indicator) -> str:
    return (f"service_code {indicator.service_code!r}, indicator {indicator.indicator_code!r}, "
            f"name {indicator.name!r}")


@dataclass(frozen=True, slots=True)
class ExportProblem:
    """Why one result's row cannot be sent."""

    accession: str
    local_code: str
    test_code: str  #: the analyzer's code
    field: str  #: the XML4 field, or "mapping"
    message: str

    def __str__(self) -> str:
        return f"sample {self.accession} test {self.local_code or self.test_code}: " \
               f"{self.field}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        """A JSON-ready dictionary."""
        return {"sample": self.accession, "test": self.local_code,
                "analyzer_test": self.test_code, "field": self.field,
                "message": self.message}


@dataclass(frozen=True, slots=True)
class BuiltRow:
    """One released result and its XML4 row."""

    source: ReleasedRow
    row: Xml4Row

    def to_dict(self) -> dict[str, object]:
        """The row by element name with where it comes from (no patient data)."""
        s = self.source
        return {"sample": s.accession, "test": s.local_code, "result_id": s.result_id,
                "version": s.version, "released_at": s.released_at.isoformat(),
                "released_by": s.released_by, **self.row.to_dict()}


@dataclass(frozen=True, slots=True)
class Xml4Export:
    """The rows in output order and every problem found (none: the rows may be sent)."""

    rows: tuple[BuiltRow, ...]
    problems: tuple[ExportProblem, ...]


def value_text(source: ReleasedRow) -> tuple[str, str]:
    """``GIA_TRI`` and ``DON_VI_DO`` of a released result (see the module docstring)."""
    parsed = parse_value(source.value_raw)
    if source.number is not None:
        return parsed.comparator + format_decimal(source.number), source.unit_ucum
    if parsed.empty:
        return "", ""
    return parsed.text or source.value_raw.strip(), source.unit_raw.strip()


def build(released: Sequence[ReleasedRow], index: Indicators, zone: tzinfo, *,
          approver_certificate: str = "") -> Xml4Export:
    """The XML4 rows of ``released`` in output order, with every problem.

    Args:
        released: from :func:`lis_gateway.store.xml4_rows.released_rows`.
        index: from :func:`indicators` over the tables the results were mapped with.
        zone: the hospital's time zone for ``NGAY_KQ``.
        approver_certificate: whose number stands for releases made without a person.
    """
    ordered = sorted(released, key=lambda r: (r.visit_number, r.released_at, r.local_code,
                                              r.accession, r.result_id))
    rows: list[BuiltRow] = []
    problems: list[ExportProblem] = []
    stt, episode = 0, None
    for source in ordered:
        stt = stt + 1 if source.visit_number == episode else 1
        episode = source.visit_number
        row, found = _row(source, stt, index, zone, approver_certificate)
        rows.append(BuiltRow(source, row))
        reported = {p.field for p in found}
        found += [p for p in check_row(row) if p.field not in reported]
        problems += [ExportProblem(source.accession, source.local_code, source.test_code,
                                   p.field, p.message) for p in found]
    return Xml4Export(tuple(rows), tuple(problems))


def _row(source: ReleasedRow, stt: int, index: Indicators, zone: tzinfo,
         approver_certificate: str) -> tuple[Xml4Row, list[FieldProblem]]:
    problems: list[FieldProblem] = []
    code = source.local_code
    found = index.by_code.get(code)
    if code in index.conflicts:
        problems.append(FieldProblem("mapping", index.conflicts[code]))
    if found is None:
        found = Indicator("", "", "", ())
        problems.append(FieldProblem(
            "MA_DICH_VU", f"local code {code!r} is in none of the configured mapping tables"))
    elif not found.service_code:
        problems.append(FieldProblem(
            "MA_DICH_VU", f"local code {code!r} has no service_code in mapping table(s) "
                          f"{', '.join(found.tables)}: add the QĐ 2010 service code"))
    if not source.visit_number.strip():
        problems.append(FieldProblem(
            "MA_LK", "the sample has no visit number: no HIS order carried one"))
    person = source.released_by
    certificate = source.certificate_number if person else approver_certificate
    if not certificate and not is_referral(found.service_code):
        problems.append(FieldProblem("MA_BS_DOC_KQ", (
            f"user {person!r}, who released it, has no practising-certificate number: "
            f"lis-gateway user certificate {person} NUMBER") if person else (
            f"released without a person (by {source.actor!r}): give --approver-certificate "
            "NUMBER, the doctor who answers for autoverified results")))
    value, unit = value_text(source)
    row = Xml4Row(
        ma_lk=source.visit_number, stt=stt, ma_dich_vu=found.service_code,
        ma_chi_so=found.indicator_code, ten_chi_so=found.name, gia_tri=value,
        don_vi_do=unit, mo_ta="", ket_luan="", ngay_kq=format_time(source.released_at, zone),
        ma_bs_doc_kq=certificate, du_phong="")
    return row, problems
