"""horiba-yumizen: Yumizen H500/H550 and Pentra XLR transcripts; values checked by hand."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import drivers
from drivers import QueryStyle, ResultRole, TcpRole
from lis_gateway.astm.assembler import AstmMessage, MessageAssembler
from lis_gateway.astm.events import FrameAccepted, FrameRejected, TransferEnded
from lis_gateway.astm.frames import FrameProblem
from lis_gateway.astm.link import LinkConnection
from lis_gateway.astm.records import ManufacturerRecord
from lis_gateway.capture import decode_capture
from lis_gateway.values import parse_value

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "astm"
MAPPINGS = Path(__file__).resolve().parent.parent.parent / "mappings"
SPEC = drivers.get("horiba-yumizen")
QC_H500 = "horiba-yumizen/horiba_2_yumizen_h500_qc.bin"


def decode(name: str, **options: bool):  # type: ignore[no-untyped-def]
    """The fixture decoded with the horiba-yumizen driver."""
    return decode_capture((FIXTURES / name).read_bytes(), SPEC, **options)


def test_spec_link_and_vendor_settings() -> None:
    """Lenient frame numbers on the live link; 9600 8N1; analyzer connects; ASTM Q queries."""
    assert drivers.REGISTRY["horiba-yumizen"] is SPEC
    assert SPEC.lenient_frame_numbers and SPEC.link_config().lenient_frame_numbers
    assert (SPEC.serial.baudrate, SPEC.serial.bytesize, SPEC.serial.parity,
            SPEC.serial.stopbits) == (9600, 8, "N", 1)
    assert SPEC.tcp_role is TcpRole.SERVER
    assert SPEC.query_style is QueryStyle.ASTM_Q
    assert SPEC.default_status == "F"
    assert {SPEC.flag_map[f] for f in ("L", "H", "LL", "HH", "N")} == {"L", "H", "LL", "HH", "N"}


def _live(config_spec: drivers.DriverSpec) -> tuple[list[AstmMessage], list[FrameRejected]]:
    link = LinkConnection(config_spec.link_config())
    asm = MessageAssembler()
    messages: list[AstmMessage] = []
    rejected: list[FrameRejected] = []
    link.receive_data((FIXTURES / QC_H500).read_bytes(), 0.0)
    for event in link.events():
        if isinstance(event, FrameAccepted):
            messages += [m for m in asm.add_text(event.text, block_end=event.final,
                                                  offset=event.offset)
                         if isinstance(m, AstmMessage)]
        elif isinstance(event, FrameRejected):
            rejected.append(event)
        elif isinstance(event, TransferEnded):
            messages += [m for m in asm.end_transfer() if isinstance(m, AstmMessage)]
    return messages, rejected


def test_m_frames_numbered_1_are_accepted_on_a_live_link() -> None:
    """Frames 1 2 3 4 5 1 1 1 4 …: the driver's link takes all 31; a strict link NAKs."""
    messages, rejected = _live(SPEC)
    assert rejected == []
    (message,) = messages
    assert sum(isinstance(r, ManufacturerRecord) for r in message.decoded.records) == 4
    _, strict_rejected = _live(drivers.get("generic-astm"))
    assert strict_rejected[0].problem is FrameProblem.BAD_FRAME_NUMBER
    assert (strict_rejected[0].fn, strict_rejected[0].detail) == (1, "got 1, expected 6")


def test_yumizen_qc_run_is_marked_qc() -> None:
    """H-12 = Q and O-16 = CTRL^^CTRL MEDIUM: all 21 rows are QC, from R records only."""
    report = decode(QC_H500)
    rows = [row for _, row in report.rows]
    assert len(rows) == 21
    assert all(r.qc for r in rows)
    assert {r.sample_id for r in rows} == {"PX817N"}
    mcv, wbc, plt = rows[0], rows[8], rows[7]
    assert (mcv.test, mcv.value, mcv.unit, mcv.reference_range, mcv.flags, mcv.status) == (
        "MCV", "90.6", "um3", "84.0 - 94.0^REFERENCE_RANGE", ("N",), "F")
    assert (wbc.test, wbc.value, wbc.unit) == ("WBC", "8.30", "10E3/uL")
    assert (plt.test, plt.value, plt.reference_range) == ("PLT", "308", "231 - 291^REFERENCE_RANGE")
    assert all(r.role is ResultRole.REPORTABLE for r in rows)


def test_h550_records_with_doubled_backslash_header_are_qc() -> None:
    """Bare records, ``H|\\\\^&`` read as ``\\^&``; O-16 = CTRL^^CTRLLOW marks the run QC."""
    report = decode("horiba-yumizen/horiba_3_yumizen_h550_qc.records.bin")
    rows = [row for _, row in report.rows]
    assert len(rows) == 20 and all(r.qc for r in rows)
    assert any("doubled backslash" in p for p in report.problems)
    wbc = next(r for r in rows if r.test == "WBC")
    assert (wbc.sample_id, wbc.value, wbc.reference_range) == (
        "PX736L", "3.22", "2.95-3.35^REFERENCE_RANGE")


def test_pentra_unit_set_code_dashes_and_statuses() -> None:
    """Pentra XLR: R-5 = ``1``, ``-----`` with R-9 = X, W on the differential, F on RBC."""
    rows = [row for _, row in decode("horiba-yumizen/horiba_1_pentra_xlr.bin").rows]
    assert len(rows) == 21
    assert {r.sample_id for r in rows} == {"S5807"}
    assert {r.unit for r in rows} == {"1"}
    assert not any(r.qc for r in rows)
    by_test = {r.test: r for r in rows}
    assert (by_test["WBC"].value, by_test["WBC"].status) == ("8.5", "W")
    assert (by_test["BAS#"].value, by_test["BAS#"].flags, by_test["BAS#"].status) == (
        "-----", ("HH",), "X")
    assert (by_test["BAS%"].value, by_test["BAS%"].flags, by_test["BAS%"].status) == (
        "-----", (), "X")
    assert parse_value(by_test["BAS#"].value).empty
    assert (by_test["MON#"].value, by_test["MON#"].flags) == ("0.15", ("L",))
    assert (by_test["RBC"].value, by_test["RBC"].status) == ("4.65", "F")
    assert "RDW" in by_test and "RDWSD" in by_test
    assert by_test["WBC"].completed_at == "20220727121550"


def test_yumizen_patient_run_with_etb_continuation() -> None:
    """horiba_5: 27 rows for sample 3058142, not QC, R-9 W or F, HGB 4.6 LL."""
    rows = [row for _, row in decode("horiba_5.bin").rows]
    assert len(rows) == 27
    assert {r.sample_id for r in rows} == {"3058142"} and not any(r.qc for r in rows)
    assert {r.status for r in rows} == {"W", "F"}
    hgb = next(r for r in rows if r.test == "HGB")
    assert (hgb.value, hgb.unit, hgb.flags, hgb.status) == ("4.6", "g/dL", ("LL",), "F")


def test_crlf_damaged_capture_repairs_with_the_driver() -> None:
    """horiba_4: the repair option recovers 27 rows; CONTROL_FAILED in a C record is not QC."""
    assert decode("horiba_4_crlf_damaged.bin").rows == []
    rows = [row for _, row in decode("horiba_4_crlf_damaged.bin", repair_line_endings=True).rows]
    assert len(rows) == 27
    assert {r.sample_id for r in rows} == {"AUTO_SID0007"} and not any(r.qc for r in rows)
    assert (rows[0].test, rows[0].value) == ("PCT", "0.33")


def test_mapping_table_covers_every_fixture_code() -> None:
    """Yumizen and Pentra codes all have rows; text units as the Yumizen sends them."""
    text = (MAPPINGS / "horiba-yumizen.csv").read_text(encoding="utf-8")
    table = {r["analyzer_code"]: r for r in csv.DictReader(io.StringIO(text))}
    for name in (QC_H500, "horiba_5.bin", "horiba-yumizen/horiba_1_pentra_xlr.bin"):
        assert {row.test for _, row in decode(name).rows} <= set(table)
    for _, row in decode("horiba_5.bin").rows:
        assert table[row.test]["analyzer_unit"] == row.unit, row.test
    assert (table["MCV"]["unit_ucum"], table["MCV"]["factor"]) == ("fL", "1")
    assert (table["MCHC"]["unit_ucum"], table["MCHC"]["factor"]) == ("g/L", "10")
    assert table["RDW"]["local_code"] == table["RDW-CV"]["local_code"] == "RDW-CV"


def test_mapping_table_loads() -> None:
    """The gateway's loader accepts the table and its ranges."""
    from lis_gateway import mapping
    table = mapping.load_table([MAPPINGS], "horiba-yumizen")
    assert table is not None and table.lookup("NEU#") is not None
