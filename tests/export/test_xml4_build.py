"""XML4 rows from released results and mapping tables: order, values, every problem (pure)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from lis_gateway.export.xml4_build import build, indicators, value_text
from lis_gateway.mapping import MappingTable, parse_table
from lis_gateway.store.xml4_rows import ReleasedRow

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
T0 = datetime(2026, 11, 1, 1, 0, tzinfo=UTC)  # 08:00 in Hanoi
HEADER = ("analyzer_code,local_code,national_code,appendix11_code,loinc,name_vi,name_en,"
          "analyzer_unit,unit_ucum,factor,offset,decimals,critical_low,critical_high,"
          "autoverify_low,autoverify_high,service_code\n")


def table(name: str, *rows: str) -> MappingTable:
    """A mapping table with the service_code column (units unchecked)."""
    return parse_table(name, (HEADER + "".join(r + "\n" for r in rows)).encode(),
                       units=lambda _unit: None)


CHEM = table("chem",
             "685,ALT,1234567,,,Hoạt độ ALT (GPT),ALT,U/L,U/L,,,,,,,,12.3456.0001",
             "GLU,GLU,,,,Định lượng Glucose,Glucose,mmol/L,mmol/L,,,,,,,,12.3456.0002",
             "HBSAG,HBSAG,,,,HBsAg test nhanh,HBsAg,,,,,,,,,,12.3456.0003",
             "NOSVC,NOSVC,,,,Không mã,No code,,,,,,,,,,",
             "SENT,SENT,,,,Gửi mẫu,Referred,,,,,,,,,,12.3456.0004.1.01001")
HAEM = table("haem", "HGB,HGB,,H02,,Huyết sắc tố,Haemoglobin,g/dL,g/L,10,,0,,,,,12.3456.0005")
INDEX = indicators([CHEM, HAEM])


def released(accession: str = "S1", code: str = "GLU", *, visit: str = "V1",
             minutes: int = 0, number: str | None = "5.4", raw: str = "5.4",
             unit: str = "mmol/L", user: str = "lan", cert: str = "0012/HNO-CCHN",
             result_id: int = 1) -> ReleasedRow:
    """A released result as the store reads it."""
    return ReleasedRow(
        result_id=result_id, version_id=result_id, version=1, accession=accession,
        visit_number=visit, analyzer="chem1", test_code=code, local_code=code,
        number=None if number is None else Decimal(number), value_raw=raw, unit_ucum=unit,
        unit_raw=unit, released_at=T0 + timedelta(minutes=minutes), released_by=user,
        actor=user or "autorelease", certificate_number=cert if user else "")


def test_rows_are_ordered_by_visit_time_code_and_numbered_per_visit() -> None:
    """STT runs from 1 within each MA_LK; the mapping gives service code, indicator and name."""
    export = build([released("S2", "GLU", visit="V2", minutes=1, result_id=4),
                    released("S1", "HGB", visit="V1", minutes=3, number="125", raw="12.5",
                             unit="g/L", result_id=3),
                    released("S1", "GLU", visit="V1", minutes=3, result_id=2),
                    released("S1", "ALT", visit="V1", minutes=2, number="35", raw="35",
                             unit="U/L", result_id=1)], INDEX, HCM)
    assert export.problems == ()
    got = [(r.row.ma_lk, r.row.stt, r.row.ma_dich_vu, r.row.ma_chi_so, r.row.ten_chi_so,
            r.row.gia_tri, r.row.don_vi_do, r.row.ngay_kq, r.row.ma_bs_doc_kq)
           for r in export.rows]
    assert got == [
        ("V1", 1, "12.3456.0001", "1234567", "Hoạt độ ALT (GPT)", "35", "U/L", "202611010802",
         "0012/HNO-CCHN"),
        ("V1", 2, "12.3456.0002", "", "Định lượng Glucose", "5.4", "mmol/L", "202611010803",
         "0012/HNO-CCHN"),
        ("V1", 3, "12.3456.0005", "H02", "Huyết sắc tố", "125", "g/L", "202611010803",
         "0012/HNO-CCHN"),
        ("V2", 1, "12.3456.0002", "", "Định lượng Glucose", "5.4", "mmol/L", "202611010801",
         "0012/HNO-CCHN")]
    assert {(r.row.mo_ta, r.row.ket_luan, r.row.du_phong) for r in export.rows} == {("", "", "")}


def test_values_keep_the_comparator_text_and_plain_numbers() -> None:
    """<0.5 stays censored; 1E+2 is 100; text is its text; '-----' is empty; text uses raw unit."""
    assert value_text(released(number="0.5", raw="<0.5")) == ("<0.5", "mmol/L")
    assert value_text(released(number="1E+2", raw="100")) == ("100", "mmol/L")
    assert value_text(released(number=None, raw=" Âm tính^ ", unit="")) == ("Âm tính", "")
    assert value_text(released(number=None, raw="-----")) == ("", "")
    mismatch = dataclasses.replace(released(number=None, raw="99"), unit_raw="mg/dL")
    assert value_text(mismatch) == ("99", "mg/dL")  # not converted: the analyzer's unit


def test_mapping_problems_name_the_sample_test_and_fix() -> None:
    """Not in any table; no service_code; both are MA_DICH_VU problems, reported once each."""
    export = build([released("S1", "XYZ"), released("S2", "NOSVC", number=None, raw="x")],
                   INDEX, HCM)
    assert [str(p) for p in export.problems] == [  # in row order: NOSVC before XYZ
        "sample S2 test NOSVC: MA_DICH_VU: local code 'NOSVC' has no service_code in mapping "
        "table(s) chem: add the QĐ 2010 service code",
        "sample S1 test XYZ: MA_DICH_VU: local code 'XYZ' is in none of the configured "
        "mapping tables"]


def test_a_code_mapped_differently_in_two_tables_is_a_problem() -> None:
    """GLU with another service code in a second table: every GLU row says so."""
    other = table("chem2", "GLUC,GLU,,,,Định lượng Glucose,Glucose,,mmol/L,,,,,,,,12.3456.9999")
    same = table("chem3", "G,GLU,,,,Định lượng Glucose,Glucose,,mmol/L,,,,,,,,12.3456.0002")
    assert indicators([CHEM, same]).conflicts == {}
    assert indicators([CHEM, same]).by_code["GLU"].tables == ("chem", "chem3")
    export = build([released()], indicators([CHEM, other]), HCM)
    [problem] = export.problems
    assert (problem.field, problem.accession) == ("mapping", "S1")
    assert problem.message.startswith("local code 'GLU' is mapped differently in chem "
                                      "(service_code '12.3456.0002'")
    assert "chem2 (service_code '12.3456.9999'" in problem.message


def test_who_answers_for_the_result() -> None:
    """A user without a number, a release without a person: problems with the fix."""
    export = build([released("S1", user="minh", cert=""), released("S2", user="")], INDEX, HCM)
    assert [str(p) for p in export.problems] == [
        "sample S1 test GLU: MA_BS_DOC_KQ: user 'minh', who released it, has no "
        "practising-certificate number: lis-gateway user certificate minh NUMBER",
        "sample S2 test GLU: MA_BS_DOC_KQ: released without a person (by 'autorelease'): "
        "give --approver-certificate NUMBER, the doctor who answers for autoverified results"]
    given = build([released("S2", user="")], INDEX, HCM, approver_certificate="0099/BYT-CCHN")
    assert given.problems == ()
    assert given.rows[0].row.ma_bs_doc_kq == "0099/BYT-CCHN"


def test_a_referred_out_sample_needs_no_reader() -> None:
    """The referral service code form: MA_BS_DOC_KQ may stay empty."""
    export = build([released("S1", "SENT", user="", number=None, raw="Dương tính")], INDEX, HCM)
    assert export.problems == ()
    assert export.rows[0].row.ma_dich_vu == "12.3456.0004.1.01001"


def test_no_visit_number_and_field_rules_are_reported_together() -> None:
    """A sample without its HIS order, and a value too long for GIA_TRI."""
    export = build([released("S1", visit="", number=None, raw="x" * 51)], INDEX, HCM)
    assert [(p.field, p.message) for p in export.problems] == [
        ("MA_LK", "the sample has no visit number: no HIS order carried one"),
        ("GIA_TRI", "too long: 51 characters, at most 50")]


def test_rows_and_problems_as_json_ready_dicts() -> None:
    """Each row with where it comes from (no patient data); each problem with its fields."""
    export = build([released(), released("S2", "XYZ", result_id=2)], INDEX, HCM)
    first = export.rows[0].to_dict()
    assert (first["sample"], first["test"], first["STT"], first["MA_DICH_VU"]) == (
        "S1", "GLU", 1, "12.3456.0002")
    assert export.problems[0].to_dict() == {
        "sample": "S2", "test": "XYZ", "analyzer_test": "XYZ", "field": "MA_DICH_VU",
        "message": "local code 'XYZ' is in none of the configured mapping tables"}
