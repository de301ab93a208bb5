"""beckman-access: corpus-derived transcript beckman_1 (tests/fixtures/astm, README there).

Every expected value below was read off the fixture bytes by hand.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from pathlib import Path

from ucumvert import get_ucum_parser

import drivers
from drivers import beckman_access
from drivers._spec import QueryStyle, ResultRole
from lis_gateway.astm.records import TerminatorRecord
from lis_gateway.capture import CaptureReport, decode_capture

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

MAPPING_HEADER = ["analyzer_code", "local_code", "national_code", "appendix11_code", "loinc",
                  "name_vi", "name_en", "analyzer_unit", "unit_ucum", "factor", "offset",
                  "decimals", "critical_low", "critical_high", "autoverify_low",
                  "autoverify_high"]
RANGES_HEADER = ["local_code", "sex", "age_from", "age_to", "low", "high", "text"]


def loinc_check_digit_ok(code: str) -> bool:
    """LOINC's mod-10 check digit (the Luhn algorithm over the part before the dash)."""
    m = re.fullmatch(r"(\d{1,7})-(\d)", code)
    if m is None:
        return False
    total = 0
    for i, ch in enumerate(reversed(m.group(1))):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d // 10 + d % 10
    return (10 - total % 10) % 10 == int(m.group(2))


def read_csv(path: Path, header: list[str]) -> list[dict[str, str]]:
    text = path.read_text(encoding="utf-8")
    assert unicodedata.is_normalized("NFC", text) and not text.startswith("\ufeff")
    reader = csv.DictReader(text.splitlines())
    assert reader.fieldnames == header
    return list(reader)


def test_mapping_tables_are_well_formed() -> None:
    [row] = read_csv(MAPPINGS / "beckman-access.csv", MAPPING_HEADER)
    assert (row["analyzer_code"], row["local_code"], row["loinc"]) == ("TSH3", "TSH", "3016-3")
    assert loinc_check_digit_ok(row["loinc"])
    assert (row["analyzer_unit"], row["unit_ucum"], row["factor"]) == ("uIU/mL", "u[IU]/mL", "1")
    get_ucum_parser().parse(row["unit_ucum"])
    assert row["national_code"] == row["appendix11_code"] == ""
    assert read_csv(MAPPINGS / "beckman-access.ranges.csv", RANGES_HEADER) == []
