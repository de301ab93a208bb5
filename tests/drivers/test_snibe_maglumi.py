"""snibe-maglumi (Snibe MAGLUMI, HL7 2.5 OUL^R22 without LAW) on snibe_1 and snibe_2.

Expected values are read by hand from the OBX lines of the fixtures, e.g.
``OBX|1||TSH||1.08^|uIU/mL|0.3 to 4.5|N|||F|||20240821100817||||P1^Maglumi|...``;
the result time is OBX-19 (OBX-14 is the registration time).
"""

from __future__ import annotations

import unicodedata
from decimal import Decimal
from pathlib import Path

import drivers
from drivers import Protocol, ResultRole
from lis_gateway.capture import decode_capture
from lis_gateway.mapping import MappingTable, loinc_check_digit, parse_table
from lis_gateway.normalize import RowView, normalize

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "hl7"
MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
SPEC = drivers.get("snibe-maglumi")
SPM = b"SPM|1|h1^^||Serum|||||||P|"

TSH, VD, T4, T3 = "0.3 to 4.5", "30 to 100", "5.2 to 12.7", "0.69 to 2.15"
#: (message, sample ID, test, value, unit, range, flags, OBX-14) of snibe_2, in order.
SNIBE_2 = [
    (1, "1", "TSH", "1.08^", "uIU/mL", TSH, ("N",), "20240821104849"),
    (2, "10", "25-OH VD II", "28.1^", "ng/mL", VD, ("L",), "20240822123724"),
    (2, "10", "TSH", "4.11^", "uIU/mL", TSH, ("N",), "20240823113526"),
    (3, "11", "TSH", "1.95^", "uIU/mL", TSH, ("N",), "20240820121429"),
    (3, "11", "T4", "6.87^", "ug/dL", T4, ("N",), "20240820120059"),
    (3, "11", "T3", "1.57^", "ng/mL", T3, ("N",), "20240820120511"),
    (3, "11", "TSH", "3.06^", "uIU/mL", TSH, ("N",), "20240821104943"),
    (3, "11", "25-OH VD II", "41.3^", "ng/mL", VD, ("N",), "20240822131102"),
    (3, "11", "TSH", "2.42^", "uIU/mL", TSH, ("N",), "20240824123403"),
    (3, "11", "T4", "7.43^", "ug/dL", T4, ("N",), "20240824122556"),
    (3, "11", "T3", "1.20^", "ng/mL", T3, ("N",), "20240824122950"),
    (4, "12", "TSH", "1.42^", "uIU/mL", TSH, ("N",), "20240820121411"),
    (4, "12", "25-OH VD II", "25.6^", "ng/mL", VD, ("L",), "20240822130031"),
    (4, "12", "TSH", "11.1^", "uIU/mL", TSH, ("H",), "20240823113543"),
    (4, "12", "TSH", "6.01^", "uIU/mL", TSH, ("H",), "20240828124851"),
    (5, "13", "TSH", "0.120^", "uIU/mL", TSH, ("L",), "20240820163053"),
    (5, "13", "TSH", "1.33^", "uIU/mL", TSH, ("N",), "20240825103801"),
    (6, "13re", "TSH", "3.23^", "uIU/mL", TSH, ("N",), "20240820163901"),
    (7, "14", "25-OH VD II", "42.7^", "ng/mL", VD, ("N",), "20240822132955"),
    (7, "14", "Ferritin", "93.2^", "ng/mL", "13 to 350", ("N",), "20240823112702"),
    (7, "14", "TSH", "3.29^", "uIU/mL", TSH, ("N",), "20240824130738"),
    (8, "15", "TSH", "2.85^", "uIU/mL", TSH, ("N",), "20240826111551"),
    (8, "15", "FT4", "1.30^", "ng/dL", "0.89 to 1.72", ("N",), "20240826110315"),
    (9, "16", "CCP", "7.07^", "U/mL", "0 to 17", ("N",), "20240824123625"),
    (9, "16", "TSH", "2.80^", "uIU/mL", TSH, ("N",), "20240826111609"),
]


def load(name: str) -> bytes:
    return (FIXTURES / f"{name}.bin").read_bytes()


def table() -> MappingTable:
    return parse_table("snibe-maglumi", (MAPPINGS / "snibe-maglumi.csv").read_bytes(),
                       (MAPPINGS / "snibe-maglumi.ranges.csv").read_bytes(),
                       file="mappings/snibe-maglumi.csv")


def view(row) -> RowView:
    return RowView(row.sample_id, row.test, row.value, row.unit, row.reference_range,
                   row.flags, row.status, row.role.value, row.qc)


def test_always_acknowledges_although_msh_says_ne() -> None:
    assert SPEC.protocol is Protocol.HL7
    assert SPEC.hl7_always_ack
    report = decode_capture(load("snibe_1"), SPEC)
    (message,) = report.messages
    assert (message.msh[15], message.msh[16]) == ("NE", "NE")
    assert message.msh[21] == ""  # no IHE LAW profile


def test_single_message_without_fs() -> None:
    report = decode_capture(load("snibe_1"), SPEC)
    assert not [p for p in report.problems if "error" in p]
    assert any("missing FS" in p for p in report.problems)
    ((number, row),) = report.rows
    assert number == 1
    assert (row.sample_id, row.test, row.value, row.unit, row.reference_range, row.flags,
            row.status, row.completed_at, row.instrument) == (
        "h1", "TSH", "4.53^", "uIU/mL", "0.3 to 4.5", ("H",), "F", "20240820121335",
        "P1^Maglumi")
    assert row.role is ResultRole.REPORTABLE and not row.qc


def test_batch_of_nine_messages_test_by_test() -> None:
    report = decode_capture(load("snibe_2"), SPEC)
    assert [m.control_id for m in report.messages] == [str(n) for n in range(849, 858)]
    assert not [p for p in report.problems if "error" in p]
    got = [(n, r.sample_id, r.test, r.value, r.unit, r.reference_range, r.flags, r.completed_at)
           for n, r in report.rows]
    assert got == SNIBE_2
    assert {r.role for _, r in report.rows} == {ResultRole.REPORTABLE}


def test_older_runs_resent_in_a_batch_stay_separate_results() -> None:
    report = decode_capture(load("snibe_2"), SPEC)
    # OBX-19, the analysis time, tells the resent runs apart
    tsh_11 = [r.completed_at for _, r in report.rows if (r.sample_id, r.test) == ("11", "TSH")]
    assert tsh_11 == ["20240820121429", "20240821104943", "20240824123403"]
    normalized = normalize([view(r) for n, r in report.rows if n == 3], table(),
                           flag_map=SPEC.flag_map)
    assert [(x.code, x.number) for x in normalized if x.code == "TSH"] == [
        ("TSH", Decimal("1.95")), ("TSH", Decimal("3.06")), ("TSH", Decimal("2.42"))]


def test_control_specimen_is_qc_and_calibrator_is_ignored() -> None:
    assert load("snibe_1").count(SPM) == 1
    qc = decode_capture(load("snibe_1").replace(SPM, SPM[:-2] + b"Q|"), SPEC)
    assert [r.qc for _, r in qc.rows] == [True]
    cal = decode_capture(load("snibe_1").replace(SPM, SPM[:-2] + b"C|"), SPEC)
    assert [r.role for _, r in cal.rows] == [ResultRole.IGNORED]
    assert [r.qc for _, r in decode_capture(load("snibe_1"), SPEC).rows] == [False]


# -- mapping table -------------------------------------------------------------


def test_table_covers_every_test_of_the_captures() -> None:
    t = table()
    assert {row[2] for row in SNIBE_2} | {"TSH"} == set(t.entries)
    for entry in t.entries.values():
        if entry.loinc:
            number, check = entry.loinc.split("-")
            assert loinc_check_digit(number) == int(check), entry.loinc
    assert t.entries["TSH"].unit_ucum == "u[IU]/mL"  # uIU/mL is not UCUM
    assert t.entries["25-OH VD II"].loinc == ""  # D2+D3 or D3 only: not confirmed
    assert unicodedata.is_normalized("NFC", (MAPPINGS / "snibe-maglumi.csv").read_text("utf-8"))


def test_trailing_component_separator_does_not_hide_the_number() -> None:
    ((_, row),) = decode_capture(load("snibe_1"), SPEC).rows
    (result,) = normalize([view(row)], table(), flag_map=SPEC.flag_map)
    assert (result.code, result.number, result.unit_ucum, result.flags, result.problems) == (
        "TSH", Decimal("4.53"), "u[IU]/mL", ("H",), ())
