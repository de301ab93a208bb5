"""mindray-bc (Mindray BC haematology, HL7 2.3.1) on the BC-5130 capture mindray_4.

Expected values are copied by hand from the OBX lines of
tests/fixtures/hl7/mindray_4.bin, not from decoder output.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

import drivers
from drivers import Protocol, QueryStyle, ResultRole
from lis_gateway.capture import decode_capture
from lis_gateway.mapping import MappingTable, loinc_check_digit, parse_table
from lis_gateway.normalize import RowView, normalize

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "hl7"
MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
SPEC = drivers.get("mindray-bc")

#: (test, value, unit, reference range, flags) of the 25 result OBX, in order.
RESULTS = [
    ("WBC", "7.52", "10*3/uL", "4.00-10.00", ("N",)),
    ("BAS#", "0.02", "10*3/uL", "0.00-0.10", ("N",)),
    ("BAS%", "0.3", "%", "0.0-1.0", ("N",)),
    ("NEU#", "4.65", "10*3/uL", "2.00-7.00", ("N",)),
    ("NEU%", "61.8", "%", "50.0-70.0", ("N",)),
    ("EOS#", "0.19", "10*3/uL", "0.02-0.50", ("N",)),
    ("EOS%", "2.6", "%", "0.5-5.0", ("N",)),
    ("LYM#", "2.23", "10*3/uL", "0.80-4.00", ("N",)),
    ("LYM%", "29.6", "%", "20.0-40.0", ("N",)),
    ("MON#", "0.43", "10*3/uL", "0.12-1.20", ("N",)),
    ("MON%", "5.7", "%", "3.0-12.0", ("N",)),
    ("RBC", "4.82", "10*6/uL", "3.50-5.50", ("N",)),
    ("HGB", "12.5", "g/dL", "11.0-16.0", ("N",)),
    ("MCV", "77.5", "fL", "80.0-100.0", ("L", "N")),
    ("MCH", "25.9", "pg", "27.0-34.0", ("L", "N")),
    ("MCHC", "33.5", "g/dL", "32.0-36.0", ("N",)),
    ("RDW-CV", "12.9", "%", "11.0-16.0", ("N",)),
    ("RDW-SD", "39.6", "fL", "35.0-56.0", ("N",)),
    ("HCT", "37.4", "%", "37.0-54.0", ("N",)),
    ("PLT", "300", "10*3/uL", "100-300", ("N",)),
    ("MPV", "8.5", "fL", "7.0-11.0", ("N",)),
    ("PDW", "15.5", "", "9.0-17.0", ("N",)),
    ("PCT", "0.254", "%", "0.108-0.282", ("N",)),
    ("PLCC", "49", "10*3/uL", "30-90", ("N",)),
    ("PLCR", "16.3", "%", "11.0-45.0", ("N",)),
]

#: The LOINC codes the BC-5130 put in OBX-3 (coding system LN), by Mindray name.
SENT_LOINC = {
    "WBC": "6690-2", "BAS#": "704-7", "BAS%": "706-2", "NEU#": "751-8", "NEU%": "770-8",
    "EOS#": "711-2", "EOS%": "713-8", "LYM#": "731-0", "LYM%": "736-9", "MON#": "742-7",
    "MON%": "5905-5", "RBC": "789-8", "HGB": "718-7", "MCV": "787-2", "MCH": "785-6",
    "MCHC": "786-4", "RDW-CV": "788-0", "RDW-SD": "21000-5", "HCT": "4544-3", "PLT": "777-3",
    "MPV": "32623-1", "PDW": "32207-3",
}


def fixture() -> bytes:
    return (FIXTURES / "mindray_4.bin").read_bytes()


def rows(data: bytes) -> list:
    return [row for _, row in decode_capture(data, SPEC).rows]


def table(name: str = "mindray-bc") -> MappingTable:
    return parse_table(name, (MAPPINGS / f"{name}.csv").read_bytes(),
                       (MAPPINGS / f"{name}.ranges.csv").read_bytes(),
                       file=f"mappings/{name}.csv")


def view(row) -> RowView:
    return RowView(row.sample_id, row.test, row.value, row.unit, row.reference_range,
                   row.flags, row.status, row.role.value, row.qc)


def test_registered_as_hl7_with_the_orm_worklist_query_style() -> None:
    """HL7, always acknowledged, and the BC's ORM^O01 worklist request is its query style."""
    assert SPEC.protocol is Protocol.HL7
    assert SPEC.query_style is QueryStyle.MINDRAY_ORM
    assert SPEC.hl7_always_ack
    assert "BC-5130" in SPEC.models and "BC-6800" in SPEC.models


def test_worklist_requests_carry_no_results() -> None:
    """The ORM^O01 requests of mindray_bc_orm decode cleanly; their IS row is only ignored."""
    data = (Path(__file__).resolve().parent.parent / "fixtures" / "hl7" /
            "mindray_bc_orm.bin").read_bytes()
    report = decode_capture(data, SPEC)
    assert [m.message_type for m in report.messages] == ["ORM^O01", "ORM^O01"]
    assert report.problems == []
    assert [(row.test, row.role) for _, row in report.rows] == [
        ("BothLis Switch", ResultRole.IGNORED)]


def test_capture_gives_one_message_despite_stray_stx_and_missing_fs() -> None:
    report = decode_capture(fixture(), SPEC)
    assert len(report.messages) == 1
    assert report.messages[0].message_type == "ORU^R01"
    assert not [p for p in report.problems if "error" in p]
    assert any("14 stray bytes" in p for p in report.problems)
    assert any("missing FS" in p for p in report.problems)


def test_run_mode_rows_are_kept_but_ignored() -> None:
    got = rows(fixture())
    assert len(got) == 29
    assert [(r.test, r.value, r.role) for r in got[:4]] == [
        ("Take Mode", "O", ResultRole.IGNORED),
        ("Blood Mode", "W", ResultRole.IGNORED),
        ("Test Mode", "CBC+DIFF", ResultRole.IGNORED),
        ("Ref Group", "General", ResultRole.IGNORED),
    ]


def test_every_result_value_test_by_test() -> None:
    got = [r for r in rows(fixture()) if r.role is ResultRole.REPORTABLE]
    assert [(r.test, r.value, r.unit, r.reference_range, r.flags) for r in got] == RESULTS
    assert {r.sample_id for r in got} == {"1"}  # OBR-3; OBR-2 is empty
    assert {r.status for r in got} == {"F"}
    assert not any(r.qc for r in got)
    assert {r.completed_at for r in got} == {""}  # the OBX has only 11 fields


def test_flags_l_tilde_n_map_to_low_only() -> None:
    got = {r.test: r for r in rows(fixture())}
    assert got["MCV"].flags == ("L", "N")  # as sent
    results = {n.row.test: n for n in normalize([view(got["MCV"]), view(got["WBC"])], table(),
                                                flag_map=SPEC.flag_map)}
    assert results["MCV"].flags == ("L",)
    assert results["WBC"].flags == ()
    assert results["MCV"].problems == () and results["WBC"].problems == ()


def test_sample_id_is_obr3_then_obr2() -> None:
    obr = b"OBR|1||1|00001^Automated Count^99MRC"
    assert fixture().count(obr) == 1
    both = fixture().replace(obr, b"OBR|1|BAR77|1|00001^Automated Count^99MRC")
    assert {r.sample_id for r in rows(both)} == {"1"}
    only_obr2 = fixture().replace(obr, b"OBR|1|BAR77||00001^Automated Count^99MRC")
    assert {r.sample_id for r in rows(only_obr2)} == {"BAR77"}


def test_test_code_falls_back_to_loinc_when_the_name_is_missing() -> None:
    data = fixture().replace(b"6690-2^WBC^LN", b"6690-2^^LN")
    assert rows(data)[4].test == "6690-2"


def test_raised_alarms_are_instrument_flags_and_binaries_are_ignored() -> None:
    extra = (b"OBX|30|IS|12002^Leucocytosis^99MRC||T||||||F\r"
             b"OBX|31|IS|12046^Lym left region alert^99MRC||F||||||F\r"
             b"OBX|32|ED|15000^WBC Histogram. Binary^99MRC||"
             b"^Application^Octet-stream^Base64^AAE=||||||F\r"
             b"OBX|33|NM|30525-0^Age^LN||42|yr|||||F\r")
    got = rows(fixture() + extra)[-4:]
    assert [(r.test, r.value, r.role) for r in got] == [
        ("Leucocytosis", "T", ResultRole.INSTRUMENT_FLAG),
        ("Lym left region alert", "F", ResultRole.IGNORED),
        ("WBC Histogram. Binary", "^Application^Octet-stream^Base64^AAE=", ResultRole.IGNORED),
        ("Age", "42", ResultRole.IGNORED),
    ]
    normalized = normalize([view(r) for r in rows(fixture() + extra)], table(),
                           flag_map=SPEC.flag_map)
    assert len(normalized) == 25
    assert all(n.instrument_flags == ("Leucocytosis T",) for n in normalized)


def test_msh16_two_marks_qc() -> None:
    msh = b"||ORU^R01|1|P|2.3.1||||||UNICODE"
    assert fixture().count(msh) == 1
    qc = fixture().replace(msh, b"||ORU^R01|1|P|2.3.1||||2||UNICODE")
    assert all(r.qc for r in rows(qc))
    assert not any(r.qc for r in rows(fixture()))


# -- mapping table -------------------------------------------------------------


def test_table_loads_with_valid_ucum_and_loinc_check_digits() -> None:
    t = table()
    assert len(t.entries) == 25
    for entry in t.entries.values():
        if entry.loinc:
            number, check = entry.loinc.split("-")
            assert loinc_check_digit(number) == int(check), entry.loinc
        assert entry.national_code == ""  # no QĐ 1227 list to cite
    assert t.entries["HGB"].appendix11_code == "H02"
    assert [e.analyzer_code for e in t.entries.values() if e.appendix11_code] == ["HGB"]


def test_table_names_are_nfc_and_ranges_file_has_the_header() -> None:
    text = (MAPPINGS / "mindray-bc.csv").read_text(encoding="utf-8")
    assert unicodedata.is_normalized("NFC", text)
    assert "Số lượng bạch cầu" in text
    header = (MAPPINGS / "mindray-bc.ranges.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == "local_code,sex,age_from,age_to,low,high,text"


def test_every_reported_code_is_mapped_with_the_analyzer_unit() -> None:
    t = table()
    for test, _value, unit, _range, _flags in RESULTS:
        entry = t.lookup(test)
        assert entry is not None, test
        assert entry.analyzer_unit == unit, test


def test_table_loinc_agrees_with_what_the_analyzer_sends() -> None:
    """PDW is left empty: 32207-3 is an entitic volume (fL), the BC sends PDW without unit."""
    t = table()
    for name, loinc in SENT_LOINC.items():
        expected = "" if name == "PDW" else loinc
        assert t.entries[name].loinc == expected, name


@pytest.mark.parametrize(("code", "sent", "number", "unit"), [
    ("HGB", "12.5", "125", "g/L"),
    ("MCHC", "33.5", "335", "g/L"),
    ("WBC", "7.52", "7.52", "10*9/L"),
    ("RBC", "4.82", "4.82", "10*12/L"),
])
def test_unit_conversion_is_exact(code: str, sent: str, number: str, unit: str) -> None:
    from decimal import Decimal

    entry = table().entries[code]
    assert entry.unit_ucum == unit
    assert entry.convert(Decimal(sent)) == Decimal(number)
