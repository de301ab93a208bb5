"""biosystems-ba (BioSystems BA400, IHE LAW) on biosystems_1..4.

Expected values are read by hand from the fixtures, e.g.
``OBX|1|NM|CHOL HDL DIRECT^CHOL HDL DIRECT^A400||60.9779778|mg/dL^mg/dL^A400||025|||F|||||ADMIN||
A400^Biosystems~834002355^Biosystems|20230511222533``.
"""

from __future__ import annotations

import unicodedata
from decimal import Decimal
from pathlib import Path

import drivers
from drivers import Protocol, QueryStyle, ResultRole
from lis_gateway.capture import decode_capture
from lis_gateway.mapping import MappingTable, loinc_check_digit, parse_table
from lis_gateway.normalize import RowView, normalize

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "hl7"
MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
SPEC = drivers.get("biosystems-ba")
SPM = b"SPM|1|DOEJANEXX32988998||SER|||||||P|"
BA400 = "A400^Biosystems~834002355^Biosystems"


def load(name: str) -> bytes:
    return (FIXTURES / f"{name}.bin").read_bytes()


def table() -> MappingTable:
    return parse_table("biosystems-ba", (MAPPINGS / "biosystems-ba.csv").read_bytes(),
                       (MAPPINGS / "biosystems-ba.ranges.csv").read_bytes(),
                       file="mappings/biosystems-ba.csv")


def view(row) -> RowView:
    return RowView(row.sample_id, row.test, row.value, row.unit, row.reference_range,
                   row.flags, row.status, row.role.value, row.qc)


def test_registered_as_law_with_qbp_queries() -> None:
    assert SPEC.protocol is Protocol.HL7
    assert SPEC.query_style is QueryStyle.LAW_QBP
    assert SPEC.hl7_always_ack


def test_results_test_by_test() -> None:
    report = decode_capture(load("biosystems_1"), SPEC)
    (message,) = report.messages
    assert message.msh[21] == "LAB-29^IHE" and report.problems == []
    got = [(r.sample_id, r.test, r.value, r.unit, r.reference_range, r.flags, r.status,
            r.completed_at, r.instrument, r.role, r.qc) for _, r in report.rows]
    assert got == [
        ("DOEJANEXX32988998", "CHOL HDL DIRECT", "60.9779778", "mg/dL", "", ("025",), "F",
         "20230511222533",
         BA400, ResultRole.REPORTABLE, False),
        ("DOEJANEXX32988998", "CHOLESTEROL", "177.710159", "mg/dL", "", ("NONE",), "F",
         "20230511222036",
         BA400, ResultRole.REPORTABLE, False),
        ("DOEJANEXX32988998", "TRIGLYCERIDES", "52.4089546", "mg/dL", "", ("NONE",), "F",
         "20230511222036",
         BA400, ResultRole.REPORTABLE, False),
    ]


def test_none_is_no_flag_and_numeric_alarms_stay_instrument_flags() -> None:
    report = decode_capture(load("biosystems_1"), SPEC)
    hdl, chol, tg = normalize([view(r) for _, r in report.rows], table(), flag_map=SPEC.flag_map)
    assert (chol.flags, chol.instrument_flags, chol.problems) == ((), (), ())
    assert (tg.flags, tg.instrument_flags, tg.problems) == ((), (), ())
    assert hdl.flags == ()
    assert hdl.instrument_flags == ("025",)
    assert hdl.problems == ("unknown-flag: '025' has no HL7 0078 meaning in this driver",)
    assert "030" not in SPEC.flag_map and "025" not in SPEC.flag_map


def test_nine_digit_values_are_rounded_by_the_table() -> None:
    report = decode_capture(load("biosystems_1"), SPEC)
    got = normalize([view(r) for _, r in report.rows], table(), flag_map=SPEC.flag_map)
    assert [(x.code, x.number, x.unit_ucum) for x in got] == [
        ("HDL-C", Decimal("61"), "mg/dL"), ("CHOL", Decimal("178"), "mg/dL"),
        ("TG", Decimal("52"), "mg/dL")]


def test_query_is_a_law_qbp() -> None:
    report = decode_capture(load("biosystems_3"), SPEC)
    (message,) = report.messages
    assert message.message_type == "QBP^Q11"
    assert message.msh[21] == "LAB-27^IHE"
    qpd = message.first("QPD")
    assert qpd is not None and qpd[3] == "32971968"
    assert report.rows == []


def test_host_ack_carries_no_results() -> None:
    report = decode_capture(load("biosystems_2"), SPEC)
    assert [m.message_type for m in report.messages] == ["ACK^R22"]
    assert report.rows == []


def test_message_cut_at_1023_bytes_gives_no_results() -> None:
    data = load("biosystems_4")
    assert len(data) == 1024
    report = decode_capture(data, SPEC)
    assert report.messages == [] and report.rows == []
    assert any(p.startswith("error: offset 0: incomplete message") for p in report.problems)


def test_control_specimen_is_qc_and_calibrator_is_ignored() -> None:
    assert load("biosystems_1").count(SPM) == 1
    qc = decode_capture(load("biosystems_1").replace(SPM, SPM[:-2] + b"Q|"), SPEC)
    assert [r.qc for _, r in qc.rows] == [True, True, True]
    cal = decode_capture(load("biosystems_1").replace(SPM, SPM[:-2] + b"C|"), SPEC)
    assert [r.role for _, r in cal.rows] == [ResultRole.IGNORED] * 3


# -- mapping table -------------------------------------------------------------


def test_table_loads_with_valid_loinc_check_digits() -> None:
    t = table()
    assert set(t.entries) == {"ALT-GPT", "AST-GOT", "CHOLESTEROL", "CHOL HDL DIRECT",
                              "TRIGLYCERIDES", "GLUCOSE", "CREATININE", "CRP"}
    for entry in t.entries.values():
        number, check = entry.loinc.split("-")
        assert loinc_check_digit(number) == int(check), entry.loinc
        assert entry.factor == 1 and entry.offset == 0  # no inexact mg/dL -> mmol/L factors
    assert unicodedata.is_normalized("NFC", (MAPPINGS / "biosystems-ba.csv").read_text("utf-8"))
