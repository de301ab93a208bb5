"""Mapping tables: strict loading, exact conversion, ranges; results never dropped."""

from __future__ import annotations

from decimal import Decimal

import pytest

from lis_gateway.mapping import MappingTableError, loinc_check_digit, parse_table
from lis_gateway.normalize import RowView, normalize

HEADER = ("analyzer_code,local_code,national_code,appendix11_code,loinc,name_vi,name_en,"
          "analyzer_unit,unit_ucum,factor,offset,decimals,critical_low,critical_high,"
          "autoverify_low,autoverify_high\n")
TABLE = (HEADER
         + "HGB,HGB,,H02,718-7,Huyết sắc tố,Hemoglobin,g/dL,g/L,10,0,0,50,200,110,170\n"
         + "GLU,GLU,,,2345-7,Glucose,Glucose,mg/dL,mmol/L,0.0555,0,1,2.5,25,,\n"
         + "HBSAG,HBSAG,,,,HBsAg,HBsAg,,,,,,,,,\n").encode()
RANGES = ("local_code,sex,age_from,age_to,low,high,text\n"
          "HGB,M,18y,,130,170,\nHGB,F,18y,,120,155,\nHGB,*,,,110,170,\n"
          "HBSAG,*,,,,,Âm tính\n").encode()
FLAGS = {"H": "H", "L": "L", "N": "N"}


def row(test: str, value: str, unit: str = "", flags: tuple[str, ...] = (), role: str =
        "reportable", sample: str = "S1", status: str = "F") -> RowView:
    """A result row as a driver would extract it."""
    return RowView(sample, test, value, unit, "", flags, status, role, False)


def table():
    """The test table with its ranges."""
    return parse_table("t", TABLE, RANGES)


@pytest.mark.parametrize(("code", "digit"), [("718", 7), ("2345", 7), ("6690", 2), ("777", 3),
                                              ("2160", 0), ("1742", 6)])
def test_loinc_check_digit(code: str, digit: int) -> None:
    """The mod-10 check digit matches known LOINC codes."""
    assert loinc_check_digit(code) == digit


def test_conversion_is_exact_and_rounded_half_up() -> None:
    """g/dL -> g/L ×10 with 0 decimals; mg/dL glucose -> mmol/L ×0.0555 to 1 decimal."""
    (hgb, glu) = normalize([row("HGB", "12.45", "g/dL"), row("GLU", "99", "mg/dL")], table(),
                           flag_map=FLAGS)
    assert hgb.number == Decimal("125") and hgb.unit_ucum == "g/L"
    assert glu.number == Decimal("5.5")  # 99 × 0.0555 = 5.4945 -> 5.5
    assert hgb.national_code == "H02"  # the Appendix 11 fallback
    assert hgb.value.raw == "12.45"  # the raw string is kept


def test_reference_range_by_sex_and_age() -> None:
    """A man gets the male range, a patient of unknown sex the general one."""
    (man,) = normalize([row("HGB", "14", "g/dL")], table(), flag_map=FLAGS, sex="M",
                       age_days=40 * 365)
    (unknown,) = normalize([row("HGB", "14", "g/dL")], table(), flag_map=FLAGS)
    assert man.reference_range == "130-170"
    assert unknown.reference_range == "110-170"


def test_unmapped_code_is_kept_with_a_problem() -> None:
    """A code missing from the table is never dropped."""
    (res,) = normalize([row("XYZ", "1.0")], table(), flag_map=FLAGS)
    assert res.code == "" and res.number == Decimal("1.0")
    assert res.problems[0].startswith("not-mapped")


def test_unit_mismatch_is_not_converted_silently() -> None:
    """mmol/L sent where the table expects mg/dL: no conversion, a problem."""
    (res,) = normalize([row("GLU", "5.4", "mmol/L")], table(), flag_map=FLAGS)
    assert res.number is None and res.problems[0].startswith("unit-mismatch")


def test_critical_values_are_marked() -> None:
    """Haemoglobin 4 g/dL (40 g/L) is below the critical low of 50 g/L."""
    (res,) = normalize([row("HGB", "4.0", "g/dL")], table(), flag_map=FLAGS)
    assert res.critical == "LL"


def test_supplementary_rows_and_pseudo_flags_attach_to_results() -> None:
    """Interpretation rows join the result before them; pseudo-result flags join the sample."""
    rows = [row("HBSAG", "0.45"), row("HBSAG-I", "Nonreactive", role="supplementary"),
            row("Eosinophilia", "", role="instrument-flag"), row("HGB", "13", "g/dL")]
    hbsag, hgb = normalize(rows, table(), flag_map=FLAGS)
    assert [s.value for s in hbsag.supplementary] == ["Nonreactive"]
    assert hbsag.instrument_flags == ("Eosinophilia",) and hgb.instrument_flags == (
        "Eosinophilia",)


def test_unknown_flags_stay_as_instrument_flags() -> None:
    """`R1?` has no table 0078 meaning: kept, with a problem."""
    (res,) = normalize([row("HGB", "13", "g/dL", flags=("A,H", "R1?"))], table(),
                       flag_map={"H": "H", "A": "A"})
    assert res.flags == ("A", "H")
    assert res.instrument_flags == ("R1?",)
    assert any("unknown-flag" in p for p in res.problems)


def test_empty_status_gets_the_driver_default() -> None:
    """Atellica DM leaves R-9 empty: the driver's default applies."""
    (res,) = normalize([row("HGB", "13", "g/dL", status="")], table(), flag_map=FLAGS,
                       default_status="F")
    assert res.status == "F"


def test_every_result_records_the_table_version() -> None:
    """Mapped and unmapped results carry the version (hash) of the table."""
    t = table()
    results = normalize([row("HGB", "13", "g/dL"), row("XYZ", "1")], t, flag_map=FLAGS)
    assert {r.mapping_version for r in results} == {t.version}
    assert len(t.version) == 64


def test_bad_table_never_half_loads_and_names_every_problem() -> None:
    """Bad LOINC check digit, bad UCUM, bad number, duplicate code: all reported, nothing loaded."""
    bad = (HEADER
           + "HGB,HGB,,,718-8,Hb,Hb,g/dL,g/L,10,,,,,,\n"
           + "GLU,GLU,,,,G,G,mg/dL,uIU/mL,abc,,,,,,\n"
           + "HGB,HGB2,,,,Hb,Hb,,,,,,,,,\n"
           + "K,K,12345,,,K,K,,mmol/L,,,9,,,,\n").encode()
    with pytest.raises(MappingTableError) as err:
        parse_table("bad", bad, file="mappings/bad.csv")
    where = [(p.line, p.column) for p in err.value.problems]
    assert (2, "loinc") in where
    assert (3, "unit_ucum") in where and (3, "factor") in where
    assert (4, "analyzer_code") in where
    assert (5, "national_code") in where and (5, "decimals") in where
    assert str(err.value.problems[0]).startswith("mappings/bad.csv:2: column loinc")


def test_missing_columns_are_named() -> None:
    """A header without a required column is refused with the column's name."""
    with pytest.raises(MappingTableError) as err:
        parse_table("x", b"analyzer_code,local_code\nA,B\n")
    assert "name_vi" in err.value.problems[0].column


def test_ranges_must_refer_to_known_codes() -> None:
    """A range row for a local code that is not in the table is an error."""
    with pytest.raises(MappingTableError) as err:
        parse_table("t", TABLE, b"local_code,sex,age_from,age_to,low,high,text\nNOPE,*,,,1,2,\n")
    assert err.value.problems[0].column == "local_code"


def test_lookup_tolerates_case_and_padding() -> None:
    """` hgb ` finds HGB (analyzers pad and vary case); the exact code wins first."""
    assert table().lookup(" hgb ") is not None


def test_analyzer_range_is_converted_with_the_value() -> None:
    """No lab range: the analyzer's 11.0-16.0 g/dL is shown as 110-160 g/L next to 125 g/L."""
    t = parse_table("t", TABLE)  # no ranges file
    (res,) = normalize([RowView("S1", "HGB", "12.5", "g/dL", "11.0-16.0", (), "F",
                                "reportable", False)], t, flag_map=FLAGS)
    assert (res.number, res.reference_range) == (Decimal("125"), "110-160")


def test_unconvertible_analyzer_range_is_dropped_not_shown_in_the_wrong_unit() -> None:
    """A range the gateway cannot read is not shown beside a converted value."""
    t = parse_table("t", TABLE)
    (res,) = normalize([RowView("S1", "HGB", "12.5", "g/dL", "see report", (), "F",
                                "reportable", False)], t, flag_map=FLAGS)
    assert res.reference_range == ""


def test_service_code_column_is_optional() -> None:
    """A table without ``service_code`` loads as before, each entry's service code empty."""
    assert {e.service_code for e in table().entries.values()} == {""}


def test_service_code_is_loaded_in_either_form_and_any_column_position() -> None:
    """CC.KKKK.GGGG and the referral form CC.KKKK.GGGG.K.WWWWW load; empty stays allowed."""
    data = ("service_code," + HEADER
            + "12.3456.7890,GLU,GLU,,,,Glucose,Glucose,,mmol/L,,,,,,,\n"
            + "AB.0001.0002.1.01001,HBSAG,HBSAG,,,,HBsAg,HBsAg,,,,,,,,,\n"
            + ",K,K,,,,Kali,Potassium,,mmol/L,,,,,,,\n").encode()
    entries = parse_table("s", data).entries
    assert {code: e.service_code for code, e in entries.items()} == {
        "GLU": "12.3456.7890", "HBSAG": "AB.0001.0002.1.01001", "K": ""}


@pytest.mark.parametrize("code", ["12.345.7890", "1.3456.7890", "ab.3456.7890", "12.3456.7890.1",
                                  "12.3456.7890.1.0100", "12.3456.7890.12.01001", "123456 7890",
                                  "12.3456.7890X"])
def test_bad_service_code_is_a_located_problem(code: str) -> None:
    """A malformed service code names the file, line and column, and the table is refused."""
    data = (HEADER.rstrip("\n") + ",service_code\n"
            + f"GLU,GLU,,,,Glucose,Glucose,,mmol/L,,,,,,,,{code}\n").encode()
    with pytest.raises(MappingTableError) as err:
        parse_table("s", data, file="site/s.csv")
    [problem] = err.value.problems
    assert (problem.line, problem.column) == (2, "service_code")
    assert str(problem).startswith(f"site/s.csv:2: column service_code: {code!r} is not a QĐ 2010")


def test_unknown_columns_are_still_refused_beside_the_optional_one() -> None:
    """The optional column does not open the header to anything else."""
    data = (HEADER.rstrip("\n") + ",service_code,ma_dv\n"
            + "GLU,GLU,,,,Glucose,Glucose,,mmol/L,,,,,,,,,\n").encode()
    with pytest.raises(MappingTableError) as err:
        parse_table("s", data)
    assert [(p.line, p.column, p.message) for p in err.value.problems] == [
        (1, "ma_dv", "unknown column(s)")]
