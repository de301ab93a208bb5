"""abbott-architect: corpus-derived transcript abbott_2 (tests/fixtures/astm, README there).

Every expected value below was read off the fixture bytes by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import drivers
from drivers import abbott_architect
from drivers._spec import QueryStyle, ResultRole
from lis_gateway.capture import CaptureReport, decode_capture
from tests.drivers.tables import shipped

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "astm"
MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
SPEC = drivers.get("abbott-architect")


def decode_abbott_2() -> CaptureReport:
    return decode_capture((FIXTURES / "abbott_2.bin").read_bytes(), SPEC)


def test_spec() -> None:
    assert SPEC is abbott_architect.SPEC
    # DriverSpec defaults kept: 9600 8N1 (not confirmed against Abbott's manual, see report)
    assert (SPEC.serial.baudrate, SPEC.serial.bytesize, SPEC.serial.parity,
            SPEC.serial.stopbits) == (9600, 8, "N", 1)
    assert SPEC.query_style is QueryStyle.ASTM_Q  # ARCHITECT sends Q|1|^<id>||^^^ALL...
    assert SPEC.default_status == "F"
    assert SPEC.receive_timeout == 30.0
    # LOW/HIGH are ARCHITECT spellings of L/H; EXP (expired reagent) has no 0078 code
    assert (SPEC.flag_map["LOW"], SPEC.flag_map["HIGH"], SPEC.flag_map["<"]) == ("L", "H", "<")
    assert "EXP" not in SPEC.flag_map and "CNTL" not in SPEC.flag_map


def test_five_messages_with_final_interpretation_and_rlu_rows() -> None:
    report = decode_abbott_2()
    assert len(report.messages) == 5
    assert [p for p in report.problems if "error" in p] == []
    got = [(n, r.sample_id, r.test, r.value, r.unit, r.role) for n, r in report.rows]
    final, supp = ResultRole.REPORTABLE, ResultRole.SUPPLEMENTARY
    assert got == [
        (1, "381947362049736", "580", "0.15", "S/CO", final),
        (1, "381947362049736", "580", "Nonreactive", "", supp),
        (1, "381947362049736", "580", "1277", "RLU", supp),
        (2, "81336065735I", "531", "0.0", "AU/mL", final),
        (2, "81336065735I", "531", "Nonreactive", "", supp),
        (2, "81336065735I", "531", "326", "RLU", supp),
        (3, "AA8XVA6BT3", "580", "0.17", "S/CO", final),
        (3, "AA8XVA6BT3", "580", "Nonreactive", "", supp),
        (3, "AA8XVA6BT3", "580", "1519", "RLU", supp),
        (4, "AA8XVA6BT3", "133", "2.87", "mIU/mL", final),
        (4, "AA8XVA6BT3", "133", "3685", "RLU", supp),
        (5, "CL7X4A92VH", "281", "0.11", "S/CO", final),
        (5, "CL7X4A92VH", "281", "Nonreactive", "", supp),
        (5, "CL7X4A92VH", "281", "1006", "RLU", supp),
    ]
    rows = [r for _, r in report.rows]
    # R-9 = R (previously transmitted), R-14 = module serial, no flags, patient samples
    assert {r.status for r in rows} == {"R"}
    assert {r.instrument for r in rows} == {"i1SR52842"}
    assert {r.flags for r in rows} == {()}
    assert not any(r.qc for r in rows)
    assert [r.completed_at for r in rows if r.test == "133"] == ["20250613110114"] * 2


HEADER = b"H|\\^&|||ARCHITECT^9.45^F3452430028^H1P1O1R1C1Q1L1|||||||P|1|20250613131519\r"
PATIENT = b"P|1|||||||U\r"
TAIL = b"L|1\r"


def bare(*records: bytes, header: bytes = HEADER) -> CaptureReport:
    return decode_capture(header + PATIENT + b"\r".join(records) + b"\r" + TAIL, SPEC)


# R record of the ARCHITECT manual example quoted by senaite.astm (a TSH control result)
CONTROL_RESULT = (b"R|1|^^^0241^TSH^UNDILUTED^P^0607M200^01824^40080^F|4.6011|mIU/mL|"
                  b"4.292500 TO 5.397300|||F||ECB^RY||19990715081030|I20100")
PATIENT_RESULT = (b"R|1|^^^580^Anti-HBcII^UNDILUTED^P^73294BE00^02130^^F|0.15|S/CO||||R||"
                  b"ADMIN^ADMIN||20250613101844|i1SR52842")


@pytest.mark.parametrize(("header", "order", "result", "qc"), [
    (HEADER, b"O|1|SID1|SID1^U265^1|^^^580^Anti-HBcII^UNDILUTED^P|R", PATIENT_RESULT, False),
    (HEADER.replace(b"|P|1|", b"|Q|1|"), b"O|1|SID1||^^^580", PATIENT_RESULT, True),
    (HEADER, b"O|1|CTL1||^^^241|R||||||Q", PATIENT_RESULT, True),
    (HEADER, b"O|1|CTL1||^^^241|R", CONTROL_RESULT, True),  # control lot 40080 in R-3
])
def test_qc_runs_are_recognised(header: bytes, order: bytes, result: bytes, qc: bool) -> None:
    [(_, row)] = bare(order, result, header=header).rows
    assert row.qc is qc


def test_sample_id_falls_back_to_o4_component_1_never_the_carrier() -> None:
    [(_, row)] = bare(b"O|1||SID3^A123^5|^^^123^Assay1^UNDILUTED^P", PATIENT_RESULT).rows
    assert row.sample_id == "SID3"
    [(_, row)] = bare(b"O|1||^A123^5|^^^123", PATIENT_RESULT).rows
    assert row.sample_id == ""


def test_a_short_test_id_has_no_result_type() -> None:
    """``^^^580^Anti-HBcII^UNDILUTED^P``: the P is the assay status, not 'preliminary'."""
    result = b"R|1|^^^580^Anti-HBcII^UNDILUTED^P|0.15|S/CO||||F"
    [(_, row)] = bare(b"O|1|SID1", result).rows
    assert (row.test, row.role) == ("580", ResultRole.REPORTABLE)


# --- mapping tables ----------------------------------------------------------------------

def test_mapping_table_covers_the_fixture() -> None:
    """Every test code abbott_2 produces has a row (tests/mapping validates the table itself)."""
    codes = set(shipped("abbott-architect").entries)
    assert {row.test for _, row in decode_abbott_2().rows} == codes
