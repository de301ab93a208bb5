"""siemens-atellica: corpus-derived transcript siemens_3 (tests/fixtures/astm, README there).

Every expected value below was read off the fixture bytes by hand.
"""

from __future__ import annotations

from pathlib import Path

import drivers
from drivers import siemens_atellica
from drivers._spec import QueryStyle, ResultRole
from lis_gateway.capture import CaptureReport, decode_capture
from tests.drivers.tables import shipped

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

def test_mapping_table_covers_the_fixture() -> None:
    """Every code of siemens_3 has a row, none expects a unit (the data manager sends none)."""
    table = shipped("siemens-atellica")
    assert {row.test for _, row in decode_siemens_3().rows} == set(table.entries)
    assert all(e.analyzer_unit == "" for e in table.entries.values())
