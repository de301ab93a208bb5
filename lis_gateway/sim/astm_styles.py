"""ASTM E1394 messages as each analyzer family writes them (pure).

Each :class:`AstmStyle` copies the record layout of its family's fixture
transcripts (``tests/fixtures/astm``): where the sample ID sits, how R-3
carries the test code, which fields are filled, which comment records follow
a result, the delimiters and how the messages are cut into E1381 frames. The
panels use the codes and units of the family's mapping table
(``mappings/<driver>.csv``), so the gateway maps every result.

Host queries (families whose driver says ``astm-q``) are written in the
LIS2-A2 form ``Q|1|^<sample>||ALL||||||||O``, except Roche, which asks in its
cobas ``TSREQ`` form and cancels with Q-13 = ``A`` when no answer comes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from lis_gateway.astm.assembler import AstmMessage
from lis_gateway.astm.delimiters import Delimiters
from lis_gateway.astm.records import OrderRecord, TerminatorRecord

from .content import Analyte, Measured, Sample, stamp

#: Builds a message's records (without their CR) for one sample.
RecordBuilder = Callable[[Sample], list[str]]
#: Builds the records of a host query for a barcode at a time; ``cancel`` for Q-13 = A.
QueryBuilder = Callable[[str, datetime, bool], list[str]]

STANDARD = Delimiters()
ERBA = Delimiters(repeat="`")
CEPHEID = Delimiters(repeat="@")


@dataclass(frozen=True, slots=True)
class QueryAnswer:
    """What the gateway answered to a host query.

    Attributes:
        found: the gateway has work for the sample (``None``: it could not look).
        tests: the test codes it asked for, in the analyzer's codes.
        detail: a few words for the report line (never patient data).
    """

    found: bool | None
    tests: tuple[str, ...] = ()
    detail: str = ""


@dataclass(frozen=True, slots=True)
class AstmStyle:
    """One ASTM family's way of writing messages.

    Attributes:
        driver: the driver name the style is for.
        model: the analyzer it imitates (for the status line).
        panels: the test panels, used in turn sample after sample.
        records: the result message's records for a sample.
        query: the host query's records, or None when the family does not ask.
        delimiters: the delimiters its H record declares.
        per_record_frames, max_text: how E1381 frames are cut (see ``LinkConfig``).
        cancels_queries: sends the query again with Q-13 = A when no answer comes.
    """

    driver: str
    model: str
    panels: tuple[tuple[Analyte, ...], ...]
    records: RecordBuilder
    query: QueryBuilder | None = None
    delimiters: Delimiters = STANDARD
    per_record_frames: bool = True
    max_text: int = 240
    cancels_queries: bool = False

    def panel(self, seq: int) -> tuple[Analyte, ...]:
        """The panel of sample ``seq`` (panels are used in turn)."""
        return self.panels[(seq - 1) % len(self.panels)]

    def message(self, sample: Sample) -> bytes:
        """The result message of ``sample``: records ending in CR, latin-1.

        Names are written without diacritics, as 8-bit analyzers do.
        """
        folded = Sample(sample.seq, sample.sample_id, sample.patient.folded(), sample.results,
                        sample.when)
        return _encode(self.records(folded))

    def query_message(self, barcode: str, when: datetime, *, cancel: bool = False) -> bytes:
        """The host query for ``barcode`` (``cancel``: the Q-13 = A form).

        Raises:
            ValueError: the family does not ask host queries.
        """
        if self.query is None:
            raise ValueError(f"{self.driver} does not ask host queries")
        return _encode(self.query(barcode, when, cancel))


def _encode(lines: list[str]) -> bytes:
    return "".join(line + "\r" for line in lines).encode("latin-1", "replace")


def _esc(text: str, d: Delimiters = STANDARD) -> str:
    return d.escape_text(text)


def _lis2a2_query(barcode: str, when: datetime, cancel: bool) -> list[str]:
    return [f"H|\\^&|||SIM^1|||||LIS||P|LIS2-A2|{stamp(when)}",
            f"Q|1|^{_esc(barcode)}||ALL||||||||{'A' if cancel else 'O'}",
            "L|1|N"]


def _name(sample: Sample, d: Delimiters = STANDARD) -> str:
    p = sample.patient
    return f"{_esc(p.family_name, d)}{d.component}{_esc(p.given_name, d)}"


# ------------------------------------------------------------------ generic ASTM

#: The generic chemistry panel (codes and units as LIS2-A2 examples write them).
GENERIC_CHEMISTRY = (
    Analyte("GLU", "mmol/L", 5.4, 1.1, 2, 3.9, 6.1),
    Analyte("CREA", "umol/L", 85, 20, 0, 59, 104),
    Analyte("UREA", "mmol/L", 5.5, 1.6, 1, 2.5, 7.8),
    Analyte("ALT", "U/L", 28, 14, 0, 0, 41, minimum=5),
    Analyte("NA", "mmol/L", 140, 3, 0, 136, 145),
    Analyte("K", "mmol/L", 4.3, 0.5, 2, 3.5, 5.1),
)
#: The generic blood count panel.
GENERIC_HAEMATOLOGY = (
    Analyte("WBC", "10^9/L", 7.0, 2.0, 2, 4.0, 10.0),
    Analyte("RBC", "10^12/L", 4.6, 0.5, 2, 4.2, 5.4),
    Analyte("HGB", "g/L", 135, 16, 0, 120, 160),
    Analyte("HCT", "L/L", 0.41, 0.04, 2, 0.37, 0.47),
    Analyte("MCV", "fL", 88, 6, 1, 80, 100),
    Analyte("PLT", "10^9/L", 250, 70, 0, 150, 400),
)


def _generic_records(s: Sample) -> list[str]:
    heme = s.results[0].analyte.code == "WBC"
    tests = "\\".join(f"^^^{m.analyte.code}" for m in s.results)
    lines = [f"H|\\^&|||SIM-{'HEME' if heme else 'CHEM'}^1.0^SIM0001||||||LIS||P|LIS2-A2|"
             f"{stamp(s.when)}",
             f"P|1|{s.patient.patient_id}|||{_name(s)}||{s.patient.birth_date}|{s.patient.sex}",
             f"O|1|{_esc(s.sample_id)}||{tests}|R||{stamp(s.when)}||||N||||"
             f"{'Whole blood' if heme else 'Serum'}||||||||||F"]
    lines += [f"R|{i}|^^^{m.analyte.code}|{m.value}|{_esc(m.analyte.unit)}|"
              f"{m.analyte.range_text()}|{m.flag}||F||||{stamp(s.when)}|SIM^1"
              for i, m in enumerate(s.results, 1)]
    return [*lines, "L|1|N"]


GENERIC = AstmStyle("generic-astm", "a LIS2-A2 chemistry and haematology analyzer",
                    (GENERIC_CHEMISTRY, GENERIC_HAEMATOLOGY), _generic_records)


# ------------------------------------------------------------------ Sysmex XN

SYSMEX_PANEL = (
    Analyte("WBC", "10*3/uL", 7.0, 2.0, 2, 3.5, 10.0),
    Analyte("RBC", "10*6/uL", 4.6, 0.5, 2, 4.0, 5.5),
    Analyte("HGB", "g/dL", 13.5, 1.6, 1, 12.0, 16.0),
    Analyte("HCT", "%", 41.0, 4.5, 1, 36.0, 48.0),
    Analyte("MCV", "fL", 88.0, 6.0, 1, 80.0, 100.0),
    Analyte("MCH", "pg", 29.5, 2.0, 1, 27.0, 33.0),
    Analyte("MCHC", "g/dL", 33.5, 1.0, 1, 32.0, 36.0),
    Analyte("PLT", "10*3/uL", 250, 70, 0, 150, 400),
    Analyte("NEUT%", "%", 58.0, 9.0, 1, 40.0, 75.0),
    Analyte("LYMPH%", "%", 30.0, 8.0, 1, 20.0, 45.0),
    Analyte("MONO%", "%", 7.0, 2.0, 1, 2.0, 10.0),
    Analyte("EO%", "%", 3.0, 1.5, 1, 0.5, 6.0),
    Analyte("BASO%", "%", 0.5, 0.3, 1, 0.0, 1.0),
    Analyte("NEUT#", "10*3/uL", 4.1, 1.5, 2, 2.0, 7.0),
    Analyte("LYMPH#", "10*3/uL", 2.1, 0.6, 2, 1.0, 3.5),
    Analyte("MONO#", "10*3/uL", 0.5, 0.15, 2, 0.2, 1.0),
    Analyte("EO#", "10*3/uL", 0.2, 0.1, 2, 0.02, 0.5),
    Analyte("BASO#", "10*3/uL", 0.03, 0.02, 2, 0.0, 0.1),
    Analyte("IG%", "%", 0.3, 0.2, 1, 0.0, 1.0),
    Analyte("IG#", "10*3/uL", 0.02, 0.015, 2, 0.0, 0.06),
    Analyte("RDW-SD", "fL", 42.0, 4.0, 1, 37.0, 54.0),
    Analyte("RDW-CV", "%", 13.2, 1.2, 1, 11.5, 14.5),
    Analyte("PDW", "fL", 12.0, 2.0, 1, 9.0, 17.0),
    Analyte("MPV", "fL", 10.0, 1.0, 1, 9.0, 13.0),
    Analyte("P-LCR", "%", 25.0, 7.0, 1, 13.0, 43.0),
    Analyte("PCT", "%", 0.26, 0.06, 2, 0.17, 0.35),
)


def _sysmex_records(s: Sample) -> list[str]:
    # sysmex_1 (XN-550): sample no. right-aligned in 22 characters of O-4.3,
    # parameter in with the dilution 1 after it, R-6 empty, flags in R-7.
    tests = "\\".join(f"^^^^{m.analyte.code}" for m in s.results)
    lines = ["H|\\^&|||    XN-550^00-24^22723^^^^BD634545||||||||E1394-97",
             f"P|1|||{s.patient.patient_id}|{_name(s)}||{s.patient.birth_date}|"
             f"{s.patient.sex}",
             f"O|1||^^{_esc(s.sample_id):>22}^B|{tests}|||||||N||||||||||||||F"]
    lines += [f"R|{i}|^^^^{m.analyte.code}^1|{m.value}|{m.analyte.unit}||{m.flag}||F||||"
              f"{stamp(s.when)}" for i, m in enumerate(s.results, 1)]
    return [*lines, "L|1|N"]


SYSMEX = AstmStyle("sysmex-xn", "Sysmex XN-550", (SYSMEX_PANEL,), _sysmex_records,
                   _lis2a2_query, per_record_frames=False, max_text=0)


# ------------------------------------------------------------------ Roche cobas

ROCHE_PANEL = (
    Analyte("989", "mmol/l", 140, 3, 0, 136, 145, name="NA"),
    Analyte("990", "mmol/l", 4.2, 0.45, 2, 3.5, 5.1, name="K"),
    Analyte("717", "mmol/l", 5.4, 1.1, 2, 3.9, 6.1, name="GLU"),
    Analyte("413", "g/l", 42.0, 4.0, 1, 35.0, 52.0, name="ALB"),
    Analyte("678", "g/l", 72.0, 5.0, 1, 66.0, 83.0, name="TP"),
    Analyte("683", "U/l", 80, 25, 0, 40, 129, name="ALP", minimum=20),
    Analyte("685", "U/l", 25, 12, 0, 0, 41, name="ALT", minimum=5),
    Analyte("687", "U/l", 24, 9, 0, 0, 40, name="AST", minimum=6),
    Analyte("712", "umol/l", 11.0, 5.0, 1, 0.0, 21.0, name="BILT", minimum=2.0),
    Analyte("734", "umol/l", 3.0, 1.5, 1, 0.0, 5.0, name="BILD", minimum=0.5),
)
_ROCHE_ISE = frozenset({"989", "990"})


def _roche_keys(barcode: str) -> tuple[str, str, str]:
    """Sequence, carrier and position of a tube (kept stable per barcode)."""
    n = sum(barcode.encode()) % 900
    return str(n + 1), f"5{n % 100:04d}", str(n % 5 + 1)


def _roche_records(s: Sample) -> list[str]:
    # roche_3 (c 311, RSUPL): O-3 right-aligned in 22 characters, O-4 the
    # sequence^carrier^position^^type^container, R-3 ^^^<application>/, a data
    # alarm comment C|1|I|0|I after every result, packed 240-character frames.
    seq, carrier, pos = _roche_keys(s.sample_id)
    tests = "\\".join(f"^^^{m.analyte.code}^" for m in s.results)
    ts = stamp(s.when)
    lines = ["H|\\^&|||c311^1|||||host|RSUPL^REAL|P|1",
             f"P|1||{s.patient.patient_id}||{_name(s)}||{s.patient.birth_date}|"
             f"{s.patient.sex}",
             f"O|1|{_esc(s.sample_id):>22}|{seq}^{carrier}^{pos}^^S1^SC|{tests}|R||||||N||||1"
             f"|||||||{ts}|||F"]
    for i, m in enumerate(s.results, 1):
        module = "ISE1" if m.analyte.code in _ROCHE_ISE else "P1"
        lines += [f"R|{i}|^^^{m.analyte.code}/|{m.value}|{m.analyte.unit}||{m.flag}||F||SIM|"
                  f"{ts}||{module}", "C|1|I|0|I"]
    return [*lines, "L|1|N"]


def _roche_query(barcode: str, when: datetime, cancel: bool) -> list[str]:
    # e411_tsreq_cobas: ^^<sample ID>^<sequence>^<carrier>^<position>^^<type>^<container>
    seq, carrier, pos = _roche_keys(barcode)
    return ["H|\\^&|||c311^1|||||host|TSREQ^REAL|P|1",
            f"Q|1|^^{_esc(barcode)}^{seq}^{carrier}^{pos}^^S1^SC||ALL||||||||"
            f"{'A' if cancel else 'O'}",
            "L|1|N"]


ROCHE = AstmStyle("roche-cobas", "Roche cobas c 311", (ROCHE_PANEL,), _roche_records,
                  _roche_query, per_record_frames=False, max_text=240, cancels_queries=True)


# ------------------------------------------------------------------ Abbott ARCHITECT

#: One assay per message, as the ARCHITECT sends them (abbott_2): (analyte, cut-off).
ABBOTT_ASSAYS = (
    (Analyte("580", "S/CO", 0.25, 0.5, 2, name="Anti-HBcII", minimum=0.05), 1.0),
    (Analyte("531", "AU/mL", 2.0, 12.0, 1, name="CMV IgG", minimum=0.0), 6.0),
    (Analyte("133", "mIU/mL", 60.0, 150.0, 2, name="Anti-HBs", minimum=0.5), 10.0),
    (Analyte("281", "S/CO", 0.1, 0.3, 2, name="HBc IgM", minimum=0.02), 1.0),
)
_ABBOTT_CUTOFF = {a.code: cut for a, cut in ABBOTT_ASSAYS}


def _abbott_records(s: Sample) -> list[str]:
    # abbott_2: O-4 <specimen>^<carrier>^<position>; three R per assay: F (value),
    # I (interpretation) and P (RLU), told apart by R-3 component 11.
    m = s.results[0]
    a = m.analyte
    ts = stamp(s.when)
    test = f"^^^{a.code}^{a.name}^UNDILUTED^P"
    reactive = float(m.value) >= _ABBOTT_CUTOFF[a.code]
    rlu = int(float(m.value) * 3500 + 300 + s.seq % 97)
    sid = _esc(s.sample_id)
    tail = f"||||F||ADMIN^ADMIN||{ts}|i1SR52842"
    return ["H|\\^&|||ARCHITECT^9.45^F3452430028^H1P1O1R1C1Q1L1|||||||P|1|" + ts,
            f"P|1|||{s.patient.patient_id}|{_name(s)}||{s.patient.birth_date}|{s.patient.sex}",
            f"O|1|{sid}|{sid}^Z{s.seq % 300:03d}^{s.seq % 5 + 1}|{test}|R||||||||||||||||||||F",
            f"R|1|{test}^73294BE00^02130^^F|{m.value}|{a.unit}{tail}",
            f"R|2|{test}^73294BE00^02130^^I|{'Reactive' if reactive else 'Nonreactive'}|"
            f"{tail}",
            f"R|3|{test}^73294BE00^02130^^P|{rlu}|RLU{tail}",
            "L|1"]


ABBOTT = AstmStyle("abbott-architect", "Abbott ARCHITECT i1000SR",
                   tuple((a,) for a, _cut in ABBOTT_ASSAYS), _abbott_records, _lis2a2_query)


# ------------------------------------------------------------------ Beckman Access

BECKMAN_ACCESS_PANEL = (Analyte("TSH3", "uIU/mL", 1.9, 1.1, 3, 0.34, 5.6, minimum=0.01),)


def _access_records(s: Sample) -> list[str]:
    # beckman_1 (Access 2): one record per frame, O-4 ^<rack>^<position>, L|1|F.
    m = s.results[0]
    ts = stamp(s.when)
    return [f"H|\\^&|||ACCESS^508178|||||LIS||P|1|{ts}",
            f"P|1|{s.patient.patient_id}|||{_name(s)}||{s.patient.birth_date}|"
            f"{s.patient.sex}",
            f"O|1|{_esc(s.sample_id)}|^{2500 + s.seq % 100}^{s.seq % 10 + 1}|^^^TSH3^1"
            "|||||||||||Serum||||||||||F",
            f"R|1|^^^TSH3^1|{m.value}|{m.analyte.unit}||{m.flag}||F||||{ts}|508178",
            "L|1|F"]


BECKMAN_ACCESS = AstmStyle("beckman-access", "Beckman Coulter Access 2",
                           (BECKMAN_ACCESS_PANEL,), _access_records, _lis2a2_query)


# ------------------------------------------------------------------ Cepheid GeneXpert

CEPHEID_PANEL = (
    Analyte("Xpert/MTB", choices=(("NOT DETECTED", 80), ("DETECTED VERY LOW", 5),
                                  ("DETECTED LOW", 6), ("DETECTED MEDIUM", 5),
                                  ("DETECTED HIGH", 4))),
    Analyte("RIF/RIF Resistance", choices=(("NOT DETECTED", 85), ("DETECTED", 10),
                                           ("INDETERMINATE", 5))),
)


def _cepheid_records(s: Sample) -> list[str]:
    # cepheid_1 (Xpert MTB/RIF Ultra): delimiters |@^\, a main result per test
    # code with assay name and version, probe and Ct rows after it; the whole
    # message in one frame.
    mtb, rif = s.results
    ts = stamp(s.when)
    tail = f"|||||F||SIM|{ts}|{ts}|Cepheid-SIM0001^806149^653624^831583371^56401^20250525"
    assay = "Xpert MTB-RIF Ultra^4"
    lines = [f"H|@^\\|URM-{s.seq:08d}||GeneXpert PC^GeneXpert^4.8|||||LIS||P|1394-97|{ts}",
             f"P|1|||{s.patient.patient_id}|{_name(s, CEPHEID)}||{s.patient.birth_date}|"
             f"{s.patient.sex}",
             f"O|1|{_esc(s.sample_id, CEPHEID)}||^^^MTB-RIF|R|{ts}|||||||||ORH||||||||||F",
             f"R|1|^MTB-RIF^^Xpert^{assay}^MTB^|{mtb.value}^{tail}",
             "R|2|^MTB-RIF^^Xpert^^^SPC^|PASS^|||",
             f"R|3|^MTB-RIF^^Xpert^^^SPC^Ct|^{24 + s.seq % 30 / 10:.1f}|||"]
    detected = mtb.value.startswith("DETECTED")
    lines.append(f"R|4|^MTB-RIF^^RIF^{assay}^RIF Resistance^|"
                 f"{rif.value if detected else 'NOT DETECTED'}^{tail}")
    return [*lines, "L|1|N"]


CEPHEID_STYLE = AstmStyle("cepheid-genexpert", "Cepheid GeneXpert Dx", (CEPHEID_PANEL,),
                          _cepheid_records, _lis2a2_query, delimiters=CEPHEID,
                          per_record_frames=False, max_text=0)


# ------------------------------------------------------------------ Erba XL

ERBA_PANEL = (
    Analyte("Na", "mmol/l", 140, 3, 2, 135, 145),
    Analyte("K", "mmol/l", 4.2, 0.45, 2, 3.5, 5.0),
    Analyte("Cl", "mmol/l", 102, 3, 0, 98, 107),
    Analyte("CR", "mg/dl", 0.95, 0.25, 2, 0.6, 1.3),
    Analyte("ALT", "U/L", 25, 12, 0, 0, 41, minimum=5),
    Analyte("TBIL", "mg/dl", 0.7, 0.3, 1, 0.1, 1.2),
    Analyte("DBIL", "mg/dl", 0.2, 0.1, 1, 0.0, 0.3),
)


def _erba_records(s: Sample) -> list[str]:
    # erba_2 (XL-640): backquote repeats, R-6 the range set name ^DEFAULT, R-8 N,
    # every result followed by C|1|I|Instrument Flag <flag>; 1024-character frames.
    tests = "`".join(f"^^^{m.analyte.code}" for m in s.results)
    ts = stamp(s.when)
    lines = [f"H|`^&||||||||||P|E 1394-97|{ts}",
             f"P|1|{s.patient.patient_id}|||{_name(s, ERBA)}||{s.patient.birth_date}|"
             f"{s.patient.sex}||||||||0|0",
             f"O|1|{_esc(s.sample_id, ERBA)}||{tests}|||||||||||SERUM"]
    for i, m in enumerate(s.results, 1):
        lines += [f"R|{i}|^^^{m.analyte.code}|{m.value}|{m.analyte.unit}|^DEFAULT|{m.flag}|N|F"
                  f"||||{ts}", f"C|1|I|Instrument Flag {m.flag}"]
    return [*lines, "L|1|N"]


ERBA_STYLE = AstmStyle("erba-xl", "Erba XL-640", (ERBA_PANEL,), _erba_records,
                       delimiters=ERBA, per_record_frames=False, max_text=1024)


# ------------------------------------------------------------------ Horiba Yumizen

HORIBA_PANEL = (
    Analyte("WBC", "10E3/uL", 7.0, 2.0, 2, 3.5, 10.0, loinc="6690-2"),
    Analyte("RBC", "10E6/uL", 4.6, 0.5, 2, 3.8, 6.0, loinc="789-8"),
    Analyte("HGB", "g/dL", 13.5, 1.6, 1, 11.5, 17.0, loinc="718-7"),
    Analyte("HCT", "%", 41.0, 4.5, 1, 35.0, 52.0, loinc="4544-3"),
    Analyte("MCV", "um3", 88.0, 6.0, 1, 76.0, 100.0, loinc="787-2"),
    Analyte("MCH", "pg", 29.5, 2.0, 1, 27.0, 34.0, loinc="785-6"),
    Analyte("MCHC", "g/dL", 33.5, 1.0, 1, 32.0, 35.0, loinc="786-4"),
    Analyte("RDW-CV", "%", 13.2, 1.2, 1, 11.0, 17.0, loinc="788-0"),
    Analyte("PLT", "10E3/uL", 250, 70, 0, 150, 400, loinc="777-3"),
    Analyte("MPV", "um3", 9.5, 1.0, 1, 8.0, 11.0, loinc="32623-1"),
    Analyte("PCT", "%", 0.24, 0.06, 2, 0.15, 0.40, loinc="51637-7"),
    Analyte("NEU#", "10E3/uL", 4.1, 1.5, 2, 1.6, 7.0, loinc="751-8"),
    Analyte("NEU%", "%", 58.0, 9.0, 1, 40.0, 73.0, loinc="770-8"),
    Analyte("LYM#", "10E3/uL", 2.1, 0.6, 2, 1.0, 3.0, loinc="731-0"),
    Analyte("LYM%", "%", 30.0, 8.0, 1, 15.0, 45.0, loinc="736-9"),
    Analyte("MON#", "10E3/uL", 0.5, 0.15, 2, 0.2, 0.8, loinc="742-7"),
    Analyte("MON%", "%", 7.0, 2.0, 1, 4.0, 12.0, loinc="5905-5"),
    Analyte("EOS#", "10E3/uL", 0.2, 0.1, 2, 0.0, 0.5, loinc="711-2"),
    Analyte("EOS%", "%", 3.0, 1.5, 1, 0.5, 7.0, loinc="713-8"),
    Analyte("BAS#", "10E3/uL", 0.04, 0.02, 2, 0.0, 0.15, loinc="704-7"),
    Analyte("BAS%", "%", 0.6, 0.3, 1, 0.0, 2.0, loinc="706-2"),
)


def _horiba_records(s: Sample) -> list[str]:
    # horiba_5 (Yumizen H500): R-3 ^^^<parameter>^<LOINC>, R-6 "low - high^REFERENCE_RANGE",
    # R-11 PATHO^^USER, one record per frame.
    ts = stamp(s.when)
    lines = [f"H|\\^&|||H500^906YOXH02459^2.2.0.5|||||||P|LIS2-A2|{ts}",
             f"P|1||{s.patient.patient_id}||{_name(s)}||{s.patient.birth_date}|"
             f"{s.patient.sex}",
             f"O|1|{_esc(s.sample_id)}||^^^DIF|R|{ts}|||||||||BLOOD||||||||||F|||||"]
    lines += [f"R|{i}|^^^{m.analyte.code}^{m.analyte.loinc}|{m.value}|{m.analyte.unit}|"
              f"{m.analyte.range_text(' - ')}^REFERENCE_RANGE|{m.flag}||F||PATHO^^USER|{ts}||"
              for i, m in enumerate(s.results, 1)]
    return [*lines, "L|1|N"]


HORIBA = AstmStyle("horiba-yumizen", "Horiba Yumizen H500", (HORIBA_PANEL,),
                   _horiba_records, _lis2a2_query)


# ------------------------------------------------------------------ Siemens Atellica

SIEMENS_PANEL = (
    Analyte("RET%", "", 1.2, 0.4, 2, minimum=0.2),
    Analyte("RET#", "", 0.055, 0.02, 3, minimum=0.005),
    Analyte("IRF", "", 0.11, 0.05, 2, minimum=0.01),
    Analyte("CRC", "", 1.0, 0.35, 2, minimum=0.1),
    Analyte("MFI", "", 0.12, 0.04, 3, minimum=0.01),
    Analyte("RHCC", "", 29.5, 2.0, 1, minimum=20.0),
)


def _siemens_records(s: Sample) -> list[str]:
    # siemens_3 (Atellica DM 1.4 for a HEMA580): ^^^<code>^^^^^N, no unit, R-12 the
    # time, R-14 the module; the status is left empty (final).
    ts = stamp(s.when)
    lines = ["H|\\^&|||||||ATELLICA DATA MANAGER 1.4.1.8|||P|1|" + ts,
             f"P|1|{s.patient.patient_id}|||{_name(s)}||{s.patient.birth_date}|"
             f"{s.patient.sex}||||||Human^Human",
             f"O|1|{_esc(s.sample_id)}|^{46000 + s.seq % 1000:06d}^1||S|{ts}|||||||||"
             "Whole blood||||||||||F"]
    lines += [f"R|{i}|^^^{m.analyte.code}^^^^^N|{m.value}|||||||manager|{ts}||HEMA580"
              for i, m in enumerate(s.results, 1)]
    return [*lines, "L|1"]


SIEMENS = AstmStyle("siemens-atellica", "Siemens Atellica Data Manager (HEMA 580)",
                    (SIEMENS_PANEL,), _siemens_records)


#: Every ASTM style, by driver name.
STYLES: dict[str, AstmStyle] = {s.driver: s for s in (
    GENERIC, SYSMEX, ROCHE, ABBOTT, BECKMAN_ACCESS, CEPHEID_STYLE, ERBA_STYLE, HORIBA, SIEMENS)}


def read_reply(msg: AstmMessage) -> QueryAnswer:
    """The gateway's reply to a host query: ``H, P, O..., L|1|F`` or ``H, L|1|I``.

    Tests are the O-5 codes (the first non-empty component of each repeat).
    """
    d = msg.decoded.delimiters
    tests: list[str] = []
    termination = ""
    for rec in msg.decoded.records:
        if isinstance(rec, OrderRecord):
            for rep in d.repeats(rec.universal_test_id):
                code = next((c.strip() for c in d.components(rep) if c.strip()), "")
                if code:
                    tests.append(code)
        elif isinstance(rec, TerminatorRecord):
            termination = rec.termination_code.strip().upper()
    if tests:
        return QueryAnswer(True, tuple(tests), f"ordered: {' '.join(tests)}")
    if termination == "Q":
        return QueryAnswer(None, (), "the gateway could not look (L|1|Q)")
    return QueryAnswer(False, (), f"no order (L|1|{termination or '?'})")


def measured_codes(results: tuple[Measured, ...]) -> tuple[str, ...]:
    """The analyzer codes of a sample's results (for the report line)."""
    return tuple(m.analyte.code for m in results)
