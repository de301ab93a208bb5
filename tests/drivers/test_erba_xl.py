"""erba-xl: the erba_2 transcript (backquote repeats, 1025-character ETB frame); hand-checked."""

from __future__ import annotations

import csv
import io
from itertools import pairwise
from pathlib import Path

import drivers
from drivers import QueryStyle, ResultRole, TcpRole
from drivers.erba_xl import comment_flags, reference_range, split_flags
from lis_gateway.astm.assembler import AstmMessage
from lis_gateway.astm.delimiters import Delimiters
from lis_gateway.astm.records import CommentRecord, OrderRecord, ResultRecord
from lis_gateway.capture import decode_capture
from lis_gateway.values import parse_value

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "astm"
MAPPINGS = Path(__file__).resolve().parent.parent.parent / "mappings"
SPEC = drivers.get("erba-xl")
ERBA = Delimiters("|", "`", "^", "&")


def decode():  # type: ignore[no-untyped-def]
    """erba_2 decoded with the erba-xl driver."""
    return decode_capture((FIXTURES / "erba_2.bin").read_bytes(), SPEC)


def test_spec_vendor_settings_and_flag_map() -> None:
    """9600 8N1, analyzer connects, no host query; only N/H/L/HH/LL map to table 0078."""
    assert drivers.REGISTRY["erba-xl"] is SPEC
    assert (SPEC.serial.baudrate, SPEC.serial.bytesize, SPEC.serial.parity,
            SPEC.serial.stopbits) == (9600, 8, "N", 1)
    assert SPEC.tcp_role is TcpRole.SERVER
    assert SPEC.query_style is QueryStyle.NONE
    assert dict(SPEC.flag_map) == {"N": "N", "H": "H", "L": "L", "HH": "HH", "LL": "LL"}
    assert "A" not in SPEC.flag_map and "R1?" not in SPEC.flag_map


def test_backquote_repeat_delimiter_is_read_from_the_header() -> None:
    """``H|`^&``: O-5 holds 13 backquote-separated tests, DBIL five times."""
    report = decode()
    (message,) = report.messages
    assert isinstance(message, AstmMessage)
    delims = message.decoded.delimiters
    assert (delims.field, delims.repeat, delims.component, delims.escape) == ("|", "`", "^", "&")
    order = next(r for r in message.decoded.records if isinstance(r, OrderRecord))
    tests = [delims.components(t)[3] for t in delims.repeats(order.universal_test_id)]
    assert tests == ["Na", "K", "Cl", "Li", "CR", "CR", "ALT", "TBIL", "DBIL", "DBIL", "DBIL",
                     "DBIL", "DBIL"]


def test_rows_as_sent() -> None:
    """13 R records for sample 5309; NA values; R1? flag; the ``^DEFAULT`` range name dropped."""
    report = decode()
    rows = [row for _, row in report.rows]
    assert [(r.test, r.value, r.unit) for r in rows] == [
        ("ALT", "24", "U/L"), ("Cl", "NA", "mmol/l"), ("CR", "0.5", "mg/dl"),
        ("CR", "0.4", "mg/dl"), ("DBIL", "NA", "mg/dl"), ("DBIL", "NA", "mg/dl"),
        ("DBIL", "0.0", "mg/dl"), ("DBIL", "NA", "mg/dl"), ("DBIL", "NA", "mg/dl"),
        ("K", "6.00", "mmol/l"), ("Li", "NA", "mmol/l"), ("Na", "141.95", "mmol/l"),
        ("TBIL", "0.0", "mg/dl")]
    assert {r.sample_id for r in rows} == {"5309"}
    assert {r.status for r in rows} == {"F"}
    assert all(r.role is ResultRole.REPORTABLE and not r.qc for r in rows)
    # R-7 holds "A"; the "Instrument Flag A,H" comment after the R adds "H"
    assert rows[7].flags == ("R1?",) and rows[9].flags == ("A", "H")
    # R-6 "^DEFAULT" arrives split across the ETB frames (^DEFA|ULT), is joined whole,
    # and is a range-set name, not a range
    assert b"|^DEFAULT|" in report.messages[0].raw
    assert rows[11].reference_range == ""
    assert rows[11].completed_at == "20200316034436"
    assert parse_value(rows[1].value).empty
    assert any("frame-too-long" in p for p in report.problems)


def test_default_range_name_is_not_a_range() -> None:
    """``^DEFAULT`` gives an empty range; a range before the name is kept."""
    assert reference_range("^DEFAULT", ERBA) == ""
    assert reference_range("", ERBA) == ""
    assert reference_range("70-110^DEFAULT", ERBA) == "70-110"
    assert {reference_range(row.reference_range, ERBA) for _, row in decode().rows} == {""}


def test_flag_lists_split_on_commas() -> None:
    """``A,H`` is two flags, ``R1?`` one; the comment text carries the full list."""
    assert split_flags(["A,H"]) == ("A", "H")
    assert split_flags(["R1?"]) == ("R1?",)
    assert split_flags(["N", " L , "]) == ("N", "L")
    assert comment_flags("Instrument Flag A,H") == ("A", "H")
    assert comment_flags("Notes") == ()


def test_comment_after_each_result_repeats_its_flags() -> None:
    """In erba_2 each R is followed by ``C|1|I|Instrument Flag …``; K says A,H, R-7 only A."""
    (message,) = decode().messages
    assert isinstance(message, AstmMessage)
    delims = message.decoded.delimiters
    pairs: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = []
    records = message.decoded.records
    for rec, nxt in pairwise(records):
        if isinstance(rec, ResultRecord) and isinstance(nxt, CommentRecord):
            test = delims.components(rec.universal_test_id)[3]
            pairs.append((test, split_flags(delims.repeats(rec.abnormal_flags)),
                          comment_flags(delims.text(nxt.text))))
    assert len(pairs) == 13
    assert pairs[9] == ("K", ("A",), ("A", "H"))
    assert pairs[7] == ("DBIL", ("R1?",), ("R1?",))
    assert all(r7[0] == comment[0] for _, r7, comment in pairs)


def test_qc_rule_is_the_lis2_a2_one() -> None:
    """No Erba QC capture exists: H-12 = Q marks QC, the fixture's P does not."""
    assert not any(row.qc for _, row in decode().rows)
    records = (b"H|`^&||||||||||Q|E 1394-97|20200316044631\rP|1\rO|1|QC1||^^^ALT\r"
               b"R|1|^^^ALT|41|U/L|^DEFAULT|N|N|F||||20200316035344\rL|1|N\r")
    (_, row), = decode_capture(records, SPEC).rows
    assert row.qc and row.test == "ALT" and row.sample_id == "QC1"


def test_mapping_table_covers_fixture_codes_with_exact_conversions() -> None:
    """Every code of erba_2 has a row; mg/dl converts to umol/L by molar mass."""
    text = (MAPPINGS / "erba-xl.csv").read_text(encoding="utf-8")
    table = {r["analyzer_code"]: r for r in csv.DictReader(io.StringIO(text))}
    for _, row in decode().rows:
        assert table[row.test]["analyzer_unit"] == row.unit, row.test
    assert (table["CR"]["unit_ucum"], table["CR"]["factor"]) == ("umol/L", "88.40")
    assert (table["TBIL"]["unit_ucum"], table["TBIL"]["factor"]) == ("umol/L", "17.10")
    assert table["Na"]["loinc"] == "2951-2" and table["Na"]["unit_ucum"] == "mmol/L"


def test_mapping_table_loads() -> None:
    """The gateway's loader accepts the table; creatinine 0.5 mg/dl is 44 umol/L."""
    from decimal import Decimal

    from lis_gateway import mapping
    table = mapping.load_table([MAPPINGS], "erba-xl")
    assert table is not None
    creatinine = table.lookup("CR")
    assert creatinine is not None and creatinine.convert(Decimal("0.5")) == Decimal("44")
