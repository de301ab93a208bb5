"""mindray-bs (Mindray host-interface HL7 2.3.1) on the manual examples mindray_1/mindray_2.

Expected values are read by hand from tests/fixtures/hl7/mindray_1_oru.bin:
``OBR|1|12345678|10|...`` and ``OBX|1|NM|2|TBil|100| umol/L |-|N|||F||100|20120405194245``.
"""

from __future__ import annotations

import unicodedata
from decimal import Decimal
from pathlib import Path

import drivers
from drivers import Protocol, QueryStyle, ResultRole
from lis_gateway.capture import decode_capture
from lis_gateway.hl7.message import Hl7Message
from lis_gateway.mapping import MappingTable, loinc_check_digit, parse_table
from lis_gateway.normalize import RowView, normalize

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "hl7"
MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
SPEC = drivers.get("mindray-bs")
MSH16_PATIENT = b"|P|2.3.1||||0||ASCII|||"


def load(name: str) -> bytes:
    return (FIXTURES / f"{name}.bin").read_bytes()


def rows(data: bytes) -> list:
    return [row for _, row in decode_capture(data, SPEC).rows]


def table() -> MappingTable:
    return parse_table("mindray-bs", (MAPPINGS / "mindray-bs.csv").read_bytes(),
                       (MAPPINGS / "mindray-bs.ranges.csv").read_bytes(),
                       file="mappings/mindray-bs.csv")


def view(row) -> RowView:
    return RowView(row.sample_id, row.test, row.value, row.unit, row.reference_range,
                   row.flags, row.status, row.role.value, row.qc)


def with_result_kind(kind: bytes) -> bytes:
    data = load("mindray_1_oru")
    assert data.count(MSH16_PATIENT) == 1
    return data.replace(MSH16_PATIENT, b"|P|2.3.1||||" + kind + b"||ASCII|||")


def test_registered_with_the_mindray_query_style() -> None:
    assert SPEC.protocol is Protocol.HL7
    assert SPEC.query_style is QueryStyle.MINDRAY_QRY
    assert SPEC.hl7_always_ack


def test_patient_result_test_by_test() -> None:
    report = decode_capture(load("mindray_1_oru"), SPEC)
    assert len(report.messages) == 1 and report.problems == []
    got = [(r.sample_id, r.test, r.value, r.unit, r.reference_range, r.flags, r.status,
            r.completed_at, r.role, r.qc) for _, r in report.rows]
    assert got == [
        ("12345678", "TBil", "100", " umol/L ", "-", ("N",), "F", "20120405194245",
         ResultRole.REPORTABLE, False),
        ("12345678", "ALT", "98.2", " umol/L ", "-", ("N",), "F", "20120405194403",
         ResultRole.REPORTABLE, False),
        ("12345678", "AST", "26.4", " umol/L ", "-", ("N",), "F", "",
         ResultRole.REPORTABLE, False),
    ]


def test_test_code_is_the_obx4_name_not_the_channel_number() -> None:
    assert [r.test for r in rows(load("mindray_1_oru"))] == ["TBil", "ALT", "AST"]
    padded = load("mindray_1_oru").replace(b"|2|TBil|", b"|2|  TBil |")
    assert rows(padded)[0].test == "TBil"
    no_name = load("mindray_1_oru").replace(b"|2|TBil|", b"|2||")
    assert rows(no_name)[0].test == "2"


def test_sample_id_is_the_bar_code_then_the_sample_id() -> None:
    no_bar_code = load("mindray_1_oru").replace(b"OBR|1|12345678|10|", b"OBR|1||10|")
    assert {r.sample_id for r in rows(no_bar_code)} == {"10"}


def test_qc_result_message_is_qc_and_has_no_obx() -> None:
    report = decode_capture(load("mindray_1_qc"), SPEC)
    (message,) = report.messages
    assert isinstance(message, Hl7Message)
    assert SPEC.is_qc(message)
    assert report.rows == []
    assert not SPEC.is_qc(decode_capture(load("mindray_1_oru"), SPEC).messages[0])


def test_msh16_two_with_obx_gives_qc_rows() -> None:
    got = rows(with_result_kind(b"2"))
    assert [r.test for r in got] == ["TBil", "ALT", "AST"]
    assert all(r.qc for r in got)


def test_calibration_results_are_ignored() -> None:
    got = rows(with_result_kind(b"1"))
    assert [r.role for r in got] == [ResultRole.IGNORED] * 3
    assert not any(r.qc for r in got)
    normalized = normalize([view(r) for r in got], table(), flag_map=SPEC.flag_map)
    assert normalized == []


def test_query_and_order_download_carry_no_results() -> None:
    qry = decode_capture(load("mindray_2_qry"), SPEC)
    (message,) = qry.messages
    assert isinstance(message, Hl7Message)
    assert message.message_type == "QRY^Q02"
    qrd = message.first("QRD")
    assert qrd is not None and qrd[8] == "0019"  # the bar code asked for
    assert qry.rows == []
    dsr = decode_capture(load("mindray_2_dsr"), SPEC)
    assert [m.message_type for m in dsr.messages] == ["DSR^Q03"]
    assert dsr.rows == []


def test_fixed_n_flag_is_not_reported_as_normal() -> None:
    (tbil, *_) = rows(load("mindray_1_oru"))
    assert tbil.flags == ("N",)
    (result,) = normalize([view(tbil)], table(), flag_map=SPEC.flag_map)
    assert result.flags == () and result.instrument_flags == ()
    assert result.problems == ()


# -- mapping table -------------------------------------------------------------


def test_table_loads_with_valid_loinc_check_digits() -> None:
    t = table()
    assert set(t.entries) == {"TBil", "ALT", "AST"}
    for entry in t.entries.values():
        number, check = entry.loinc.split("-")
        assert loinc_check_digit(number) == int(check), entry.loinc
    assert t.entries["TBil"].loinc == "14631-6"  # bilirubin, moles/volume (umol/L)
    assert unicodedata.is_normalized("NFC", (MAPPINGS / "mindray-bs.csv").read_text("utf-8"))


def test_padded_unit_maps_and_a_wrong_unit_is_refused() -> None:
    """The manual's example sends ALT and AST in umol/L: the table expects U/L and says so."""
    got = normalize([view(r) for r in rows(load("mindray_1_oru"))], table(),
                    flag_map=SPEC.flag_map)
    tbil, alt, ast = got
    assert (tbil.code, tbil.number, tbil.unit_ucum, tbil.problems) == (
        "TBIL", Decimal("100.0"), "umol/L", ())
    for result in (alt, ast):
        assert result.number is None
        assert result.problems[0].startswith("unit-mismatch: the analyzer sent 'umol/L'")
