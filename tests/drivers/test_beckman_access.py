"""beckman-access: corpus-derived transcript beckman_1 (tests/fixtures/astm, README there).

Every expected value below was read off the fixture bytes by hand.
"""

from __future__ import annotations

from pathlib import Path

import drivers
from drivers import beckman_access
from drivers._spec import QueryStyle, ResultRole
from lis_gateway.astm.records import TerminatorRecord
from lis_gateway.capture import CaptureReport, decode_capture
from tests.drivers.tables import shipped

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "astm"
MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
SPEC = drivers.get("beckman-access")


def test_spec() -> None:
    assert SPEC is beckman_access.SPEC
    # DriverSpec defaults kept: 9600 8N1 (not confirmed against Beckman's manual, see report)
    assert (SPEC.serial.baudrate, SPEC.serial.bytesize, SPEC.serial.parity,
            SPEC.serial.stopbits) == (9600, 8, "N", 1)
    assert SPEC.query_style is QueryStyle.ASTM_Q
    assert SPEC.default_status == "F"
    assert SPEC.per_record_frames is True  # the Access itself sends one record per ETX frame


def test_access_2_one_record_per_frame() -> None:
    data = (FIXTURES / "beckman_1.bin").read_bytes()
    assert data.count(b"\x03") == 5 and b"\x17" not in data  # 5 records, 5 ETX frames
    report = decode_capture(data, SPEC)
    assert len(report.messages) == 1 and report.problems == []
    [(_, row)] = report.rows
    # O-3 held a name typed by the operator (anonymized to JohnDoe): kept as sent
    assert (row.sample_id, row.test, row.value, row.unit) == ("JohnDoe", "TSH3", "1.210",
                                                               "uIU/mL")
    assert (row.flags, row.status, row.completed_at) == (("N",), "F", "20240216154349")
    assert row.instrument == "508178" and row.role is ResultRole.REPORTABLE and not row.qc
    # L|1|F ("last request processed") closes a plain result upload without complaint
    [terminator] = [r for r in report.messages[0].decoded.records
                    if isinstance(r, TerminatorRecord)]
    assert terminator.termination_code == "F"


HEADER = b"H|\\^&|||ACCESS^508178|||||LIS||P|1|20240216164347\r"
RESULT = b"R|1|^^^TSH3^1|1.210|uIU/mL||N||F||||20240216154349|508178\rL|1|F\r"


def bare(order: bytes, header: bytes = HEADER) -> CaptureReport:
    return decode_capture(header + b"P|1|PID0001\r" + order + b"\r" + RESULT, SPEC)


def test_rack_and_position_are_never_a_sample_id() -> None:
    """O-3 empty, O-4 = ``^2501^1``: the generic rule would take the rack 2501."""
    [(_, row)] = bare(b"O|1||^2501^1|^^^TSH3^1|||||||||||Serum||||||||||F").rows
    assert row.sample_id == ""
    generic = decode_capture(HEADER + b"P|1\rO|1||^2501^1\r" + RESULT,
                             drivers.get("generic-astm"))
    assert generic.rows[0][1].sample_id == "2501"


def test_qc_runs_are_recognised() -> None:
    order = b"O|1|QC1|^2501^1|^^^TSH3^1|||||||Q||||Serum||||||||||F"
    assert bare(order).rows[0][1].qc is True
    qc_header = HEADER.replace(b"||P|1|", b"||Q|1|")
    assert bare(b"O|1|QC1", header=qc_header).rows[0][1].qc is True
    assert bare(b"O|1|S1").rows[0][1].qc is False


# --- mapping tables ----------------------------------------------------------------------

def test_mapping_table_maps_tsh3() -> None:
    """TSH3 maps to TSH, LOINC 3016-3, uIU/mL sent and reported as UCUM u[IU]/mL, factor 1."""
    entry = shipped("beckman-access").lookup("TSH3")
    assert entry is not None
    assert (entry.local_code, entry.loinc, entry.analyzer_unit, entry.unit_ucum) == (
        "TSH", "3016-3", "uIU/mL", "u[IU]/mL")
    assert entry.factor == 1 and entry.national_code == ""
