"""sysmex-xn: XN-550 and XP-100 transcripts through the driver; values checked by hand."""

from __future__ import annotations

import csv
import io
import unicodedata
from pathlib import Path

import pytest

import drivers
from drivers import QueryStyle, ResultRole, TcpRole
from lis_gateway.capture import decode_capture

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "astm"
MAPPINGS = Path(__file__).resolve().parent.parent.parent / "mappings"
SPEC = drivers.get("sysmex-xn")

XN_PARAMETERS = ["WBC", "RBC", "HGB", "HCT", "MCV", "MCH", "MCHC", "PLT", "NEUT%", "LYMPH%",
                 "MONO%", "EO%", "BASO%", "NEUT#", "LYMPH#", "MONO#", "EO#", "BASO#", "IG%", "IG#",
                 "RDW-SD", "RDW-CV", "MPV"]


def decode(name: str):  # type: ignore[no-untyped-def]
    """The fixture decoded with the sysmex-xn driver."""
    return decode_capture((FIXTURES / name).read_bytes(), SPEC)


def test_spec_is_registered_with_the_vendor_link_settings() -> None:
    """Registered under its name; 9600 8N1, analyzer connects to us, ASTM Q host query."""
    assert drivers.REGISTRY["sysmex-xn"] is SPEC
    assert (SPEC.serial.baudrate, SPEC.serial.bytesize, SPEC.serial.parity,
            SPEC.serial.stopbits) == (9600, 8, "N", 1)
    assert SPEC.tcp_role is TcpRole.SERVER
    assert SPEC.query_style is QueryStyle.ASTM_Q
    assert SPEC.default_status == "F"
    assert SPEC.table_name == "sysmex-xn"


def test_flag_map_keeps_low_reliability_unmapped() -> None:
    """L/H/LL/HH/N/>/A map to table 0078; W (low reliability, not HL7 'worse') does not."""
    assert {k: SPEC.flag_map[k] for k in ("L", "H", "LL", "HH", "N", ">", "A")} == {
        "L": "L", "H": "H", "LL": "LL", "HH": "HH", "N": "N", ">": ">", "A": "A"}
    assert "W" not in SPEC.flag_map


def test_xn550_sample_number_comes_from_o4_component_3_trimmed() -> None:
    """O-4 is ``^^<20 spaces>58^M``: every row carries sample 58."""
    report = decode("sysmex_1.bin")
    assert len(report.messages) == 1
    assert {row.sample_id for _, row in report.rows} == {"58"}


def test_xn550_parameters_are_reportable_with_their_values() -> None:
    """R|1..R|23 are the 23 parameters, in transmission order, with R-4/R-5/R-7 as sent."""
    rows = [row for _, row in decode("sysmex_1.bin").rows]
    reportable = [r for r in rows if r.role is ResultRole.REPORTABLE]
    assert [r.test for r in reportable] == XN_PARAMETERS
    wbc, hct, eo_pct, mpv = reportable[0], reportable[3], reportable[11], reportable[22]
    assert (wbc.value, wbc.unit, wbc.flags, wbc.status, wbc.completed_at) == (
        "8.13", "10*3/uL", ("N",), "F", "20240627135407")
    assert (hct.test, hct.value, hct.unit, hct.flags) == ("HCT", "22.7", "%", ("L",))
    assert (eo_pct.test, eo_pct.value, eo_pct.flags) == ("EO%", "22.1", ("H",))
    assert (mpv.test, mpv.value, mpv.unit, mpv.flags) == ("MPV", "8.1", "fL", ("L",))
    assert all(not r.qc for r in rows)


def test_xn550_ip_messages_are_instrument_flags() -> None:
    """Abnormal messages (no value, flag A) and suspect ``?`` messages (Q-flag score)."""
    rows = {row.test: row for _, row in decode("sysmex_1.bin").rows}
    for name in ("Eosinophilia", "Anemia", "Positive_Diff", "Positive_Count"):
        assert (rows[name].value, rows[name].unit, rows[name].flags) == ("", "", ("A",))
        assert rows[name].role is ResultRole.INSTRUMENT_FLAG
    scores = {"Blasts/Abn_Lympho?": "40", "Left_Shift?": "0", "Atypical_Lympho?": "10",
              "NRBC?": "0", "RBC_Agglutination?": "70", "Turbidity/HGB_Interference?": "90",
              "Iron_Deficiency?": "80", "HGB_Defect?": "80", "Fragments?": "0",
              "PLT_Clumps?": "0"}
    for name, score in scores.items():
        assert rows[name].value == score
        assert rows[name].role is ResultRole.INSTRUMENT_FLAG


def test_xn550_image_file_names_are_ignored() -> None:
    """SCAT_/DIST_ rows carry ``PNG&R&…`` paths (escaped backslashes) and are not results."""
    rows = [row for _, row in decode("sysmex_1.bin").rows]
    images = [r for r in rows if r.role is ResultRole.IGNORED]
    assert [r.test for r in images] == ["SCAT_WDF", "SCAT_WDF-CBC", "DIST_RBC", "DIST_PLT"]
    assert images[0].value == "PNG\\20240628\\2024_06_27_13_54_27_WDF.PNG"
    assert len(rows) == 41


def test_xp100_padded_values_and_empty_status() -> None:
    """XP-100: sample ``647`` (15-wide), values keep their padding, R-9 empty -> default F."""
    report = decode("sysmex-xn/sysmex_2_xp100.bin")
    rows = [row for _, row in report.rows]
    assert len(rows) == 20
    assert {r.sample_id for r in rows} == {"647"}
    assert {r.status for r in rows} == {""}
    assert SPEC.default_status == "F"
    assert [(r.test, r.value, r.unit) for r in rows[:3]] == [
        ("WBC", "  5.5", "10*3/uL"), ("RBC", " 2.87", "10*6/uL"), ("HGB", " 10.1", "g/dL")]
    mchc = next(r for r in rows if r.test == "MCHC")
    assert (mchc.value, mchc.flags) == (" 41.7", ("H",))
    assert [r.test for r in rows[8:14]] == ["LYM%", "MXD%", "NEUT%", "LYM#", "MXD#", "NEUT#"]
    assert all(r.role is ResultRole.REPORTABLE for r in rows)


def _records(action_code: str) -> bytes:
    order = (f"O|1||^^{'QC-0001':>22}^M|^^^^WBC|||||||{action_code}||||||||||||||F")
    return ("\r".join(["H|\\^&|||XN-550^00-24^22723^^^^BD634545||||||||E1394-97", "P|1", order,
                       "R|1|^^^^WBC^1|7.10|10*3/uL||N||F||||20240627135407", "L|1|N"])
            + "\r").encode()


@pytest.mark.parametrize(("action_code", "qc"), [("Q", True), ("N", False), ("A", False)])
def test_qc_is_recognised_by_the_o12_action_code(action_code: str, qc: bool) -> None:
    """O-12 = Q (QC analysis) marks every row QC; N (initial) and A (rerun) do not."""
    (_, row), = decode_capture(_records(action_code), SPEC).rows
    assert (row.sample_id, row.test, row.value) == ("QC-0001", "WBC", "7.10")
    assert row.qc is qc


def test_masked_parameter_value_stays_reportable() -> None:
    """A parameter with a masked value (``----``) and a unit is still the parameter's row."""
    data = _records("N").replace(b"|7.10|10*3/uL||N||", b"|----|10*3/uL||A||")
    (_, row), = decode_capture(data, SPEC).rows
    assert (row.value, row.flags, row.role) == ("----", ("A",), ResultRole.REPORTABLE)


def _table() -> list[dict[str, str]]:
    text = (MAPPINGS / "sysmex-xn.csv").read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def test_mapping_table_covers_every_reportable_fixture_code() -> None:
    """Each parameter the fixtures report has a row with the unit the analyzer sends."""
    table = {r["analyzer_code"]: r for r in _table()}
    for name in ("sysmex_1.bin", "sysmex-xn/sysmex_2_xp100.bin"):
        for _, row in decode(name).rows:
            if row.role is ResultRole.REPORTABLE:
                assert table[row.test]["analyzer_unit"] == row.unit, row.test
    assert (table["HGB"]["unit_ucum"], table["HGB"]["factor"]) == ("g/L", "10")
    assert (table["WBC"]["unit_ucum"], table["WBC"]["factor"]) == ("10*9/L", "1")
    assert table["WBC"]["loinc"] == "6690-2"


def test_mapping_table_text_is_nfc_and_codes_are_empty_until_sourced() -> None:
    """Vietnamese names are NFC; QĐ 1227 / Appendix 11 codes are not filled in without a source."""
    for r in _table():
        assert unicodedata.normalize("NFC", r["name_vi"]) == r["name_vi"]
        assert r["national_code"] == "" and r["appendix11_code"] == ""


def test_mapping_table_loads() -> None:
    """The gateway's loader accepts the table and its ranges (UCUM and LOINC checks)."""
    from lis_gateway import mapping
    table = mapping.load_table([MAPPINGS], "sysmex-xn")
    assert table is not None
    hgb = table.lookup("HGB")
    assert hgb is not None and hgb.reference_range("F", 40 * 365) is not None
