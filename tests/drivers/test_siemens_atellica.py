"""siemens-atellica: corpus-derived transcript siemens_3 (tests/fixtures/astm, README there).

Every expected value below was read off the fixture bytes by hand.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from pathlib import Path

from ucumvert import get_ucum_parser

import drivers
from drivers import siemens_atellica
from drivers._spec import QueryStyle, ResultRole
from lis_gateway.capture import CaptureReport, decode_capture

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "astm"
MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
SPEC = drivers.get("siemens-atellica")


def decode_siemens_3() -> CaptureReport:
    return decode_capture((FIXTURES / "siemens_3.bin").read_bytes(), SPEC)


def test_spec() -> None:
    assert SPEC is siemens_atellica.SPEC
    assert SPEC.default_status == "F"  # R-9 arrives empty
    assert SPEC.query_style is QueryStyle.NONE
    assert SPEC.table_name == "siemens-atellica"


def test_data_manager_relaying_hema580() -> None:
    report = decode_siemens_3()
    assert len(report.messages) == 1 and report.problems == []
    message = report.messages[0]
    assert siemens_atellica.sender_name(message) == "ATELLICA DATA MANAGER 1.4.1.8"
    rows = [row for _, row in report.rows]
    assert [(r.test, r.value) for r in rows] == [
        ("CRC", "0.99"), ("IRF", "0.11"), ("MFI", "0.119"), ("RET#", "0.052"),
        ("RET%", "1.07"), ("RHCC", "29.5")]
    assert {r.sample_id for r in rows} == {"S000418735"}
    # no units, empty R-9 (the default status F applies downstream), R-14 = HEMA580
    assert {r.unit for r in rows} == {""} and {r.status for r in rows} == {""}
    assert {r.instrument for r in rows} == {"HEMA580"}
    assert {r.role for r in rows} == {ResultRole.REPORTABLE} and not any(r.qc for r in rows)
    # the time is in R-12 only
    assert {r.completed_at for r in rows} == {"20250213132140"}  # R-13 is empty


HEADER = b"H|\\^&|||||||ATELLICA DATA MANAGER 1.4.1.8|||P|1|20250218111513\r"
RESULT = b"R|1|^^^RET%^^^^^N|1.07|||||||manager|20250213132140||HEMA580\rL|1\r"


def bare(order: bytes, header: bytes = HEADER) -> CaptureReport:
    return decode_capture(header + b"P|1\r" + order + b"\r" + RESULT, SPEC)


def test_rack_is_never_a_sample_id() -> None:
    [(_, row)] = bare(b"O|1||^046691^1||S").rows
    assert (row.sample_id, row.test) == ("", "RET%")


def test_sender_falls_back_to_h5() -> None:
    report = bare(b"O|1|S1", header=b"H|\\^&|||ADM^1.4|||||||P|1\r")
    assert siemens_atellica.sender_name(report.messages[0]) == "ADM"


def test_qc_runs_are_recognised() -> None:
    assert bare(b"O|1|QC1|||||||||Q").rows[0][1].qc is True
    assert bare(b"O|1|S1", header=HEADER.replace(b"|P|1|", b"|Q|1|")).rows[0][1].qc is True
    assert bare(b"O|1|S1|||||||||N").rows[0][1].qc is False


# --- mapping tables ----------------------------------------------------------------------

MAPPING_HEADER = ["analyzer_code", "local_code", "national_code", "appendix11_code", "loinc",
                  "name_vi", "name_en", "analyzer_unit", "unit_ucum", "factor", "offset",
                  "decimals", "critical_low", "critical_high", "autoverify_low",
                  "autoverify_high"]
RANGES_HEADER = ["local_code", "sex", "age_from", "age_to", "low", "high", "text"]


def loinc_check_digit_ok(code: str) -> bool:
    """LOINC's mod-10 check digit (the Luhn algorithm over the part before the dash)."""
    m = re.fullmatch(r"(\d{1,7})-(\d)", code)
    if m is None:
        return False
    total = 0
    for i, ch in enumerate(reversed(m.group(1))):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d // 10 + d % 10
    return (10 - total % 10) % 10 == int(m.group(2))


def read_csv(path: Path, header: list[str]) -> list[dict[str, str]]:
    text = path.read_text(encoding="utf-8")
    assert unicodedata.is_normalized("NFC", text) and not text.startswith("\ufeff")
    reader = csv.DictReader(text.splitlines())
    assert reader.fieldnames == header
    return list(reader)


def test_mapping_tables_are_well_formed_and_cover_the_fixture() -> None:
    rows = read_csv(MAPPINGS / "siemens-atellica.csv", MAPPING_HEADER)
    parser = get_ucum_parser()
    for r in rows:
        assert r["local_code"] and r["name_vi"] and r["name_en"]
        assert r["national_code"] == r["appendix11_code"] == ""
        assert r["analyzer_unit"] == ""  # the data manager sends no units
        assert r["loinc"] == "" or loinc_check_digit_ok(r["loinc"]), r
        if r["unit_ucum"]:
            parser.parse(r["unit_ucum"])
        float(r["factor"]), float(r["offset"]), int(r["decimals"])
    codes = [r["analyzer_code"] for r in rows]
    assert len(codes) == len(set(codes))
    assert {row.test for _, row in decode_siemens_3().rows} == set(codes)
    assert read_csv(MAPPINGS / "siemens-atellica.ranges.csv", RANGES_HEADER) == []
