"""cepheid-genexpert: the Xpert MTB/RIF Ultra transcript (``H|@^\\``, 8-part R-3); hand-checked."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path

import drivers
from drivers import QueryStyle, ResultRole, TcpRole
from lis_gateway.astm.assembler import AstmMessage
from lis_gateway.astm.records import ResultRecord
from lis_gateway.capture import decode_capture
from lis_gateway.values import parse_value

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "astm"
MAPPINGS = Path(__file__).resolve().parent.parent.parent / "mappings"
SPEC = drivers.get("cepheid-genexpert")
INSTRUMENT = "Cepheid-44413S0^806149^653624^831583371^56401^20250525"


def decode():  # type: ignore[no-untyped-def]
    """cepheid_1 decoded with the cepheid-genexpert driver."""
    return decode_capture((FIXTURES / "cepheid_1.bin").read_bytes(), SPEC)


def test_spec_vendor_settings() -> None:
    """9600 8N1, the GeneXpert connects to us, host query by ASTM Q."""
    assert drivers.REGISTRY["cepheid-genexpert"] is SPEC
    assert (SPEC.serial.baudrate, SPEC.serial.bytesize, SPEC.serial.parity,
            SPEC.serial.stopbits) == (9600, 8, "N", 1)
    assert SPEC.tcp_role is TcpRole.SERVER
    assert SPEC.query_style is QueryStyle.ASTM_Q
    assert SPEC.default_status == "F"


def test_header_delimiters_are_at_caret_backslash() -> None:
    """``H|@^\\``: repeat ``@``, component ``^``, escape backslash."""
    (message,) = decode().messages
    assert isinstance(message, AstmMessage)
    d = message.decoded.delimiters
    assert (d.field, d.repeat, d.component, d.escape) == ("|", "@", "^", "\\")


def test_three_main_results_are_the_reportable_rows() -> None:
    """MTB (NOT DETECTED), MTB Trace and RIF Resistance (both empty) are reportable."""
    rows = [row for _, row in decode().rows]
    assert len(rows) == 84
    assert {r.sample_id for r in rows} == {"PR31A864"}
    main = [r for r in rows if r.role is ResultRole.REPORTABLE]
    assert [(r.test, r.value, r.status) for r in main] == [
        ("Xpert/MTB", "NOT DETECTED^", "F"), ("Trace/MTB Trace", "^", "F"),
        ("RIF/RIF Resistance", "^", "F")]
    assert {(r.completed_at, r.instrument) for r in main} == {("20250514132103", INSTRUMENT)}
    assert [rows.index(r) for r in main] == [0, 19, 38]
    assert parse_value(main[0].value).text == "NOT DETECTED"
    assert parse_value(main[1].value).empty
    assert not any(r.qc for r in rows)


def test_probe_and_complementary_rows_are_supplementary() -> None:
    """Probe results and Ct/EndPt values follow their main result, keyed assay/analyte[/kind]."""
    rows = [row for _, row in decode().rows]
    assert [(r.test, r.value) for r in rows[1:4]] == [
        ("Xpert/rpoB1", "INVALID^"), ("Xpert/rpoB1/Ct", "^0.0"), ("Xpert/rpoB1/EndPt", "^-2.0")]
    spc_ct = rows[14]
    assert (spc_ct.test, spc_ct.value, spc_ct.status) == ("Xpert/SPC/Ct", "^24.7", "")
    assert parse_value(spc_ct.value).number == Decimal("24.7")
    assert (rows[16].test, rows[16].value) == ("Xpert/", "FAIL^")  # R|17 sent without its name
    assert rows[83].test == "RIF/IS1081-IS6110/EndPt"
    assert all(r.role is ResultRole.SUPPLEMENTARY for i, r in enumerate(rows)
               if i not in (0, 19, 38))


def test_misspelt_panel_code_still_maps() -> None:
    """R|21 is ``^MTB-RI^^Trace^^^rpoB1^``; the panel is not in the key, so it is Trace/rpoB1."""
    report = decode()
    (message,) = report.messages
    assert isinstance(message, AstmMessage)
    r21 = [r for r in message.decoded.records if isinstance(r, ResultRecord)][20]
    assert r21.universal_test_id == "^MTB-RI^^Trace^^^rpoB1^"
    row = report.rows[20][1]
    assert (row.test, row.value, row.role) == ("Trace/rpoB1", "INVALID^",
                                               ResultRole.SUPPLEMENTARY)
    assert row.test == report.rows[39][1].test.replace("RIF/", "Trace/")


def test_mapping_table_covers_the_reportable_codes() -> None:
    """Each reportable code has a row; only the MTB detection carries a LOINC code."""
    text = (MAPPINGS / "cepheid-genexpert.csv").read_text(encoding="utf-8")
    table = {r["analyzer_code"]: r for r in csv.DictReader(io.StringIO(text))}
    reportable = {row.test for _, row in decode().rows if row.role is ResultRole.REPORTABLE}
    assert reportable == set(table)
    assert table["Xpert/MTB"]["loinc"] == "38379-4"
    assert table["RIF/RIF Resistance"]["unit_ucum"] == ""


def test_mapping_table_loads() -> None:
    """The gateway's loader accepts the table; MTB's range is the text 'Không phát hiện'."""
    from lis_gateway import mapping
    table = mapping.load_table([MAPPINGS], "cepheid-genexpert")
    assert table is not None
    mtb = table.lookup("Xpert/MTB")
    assert mtb is not None
    rng = mtb.reference_range("M", None)
    assert rng is not None and rng.display() == "Không phát hiện"
