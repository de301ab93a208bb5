"""The analyzer's own patient record around a result (used for ``unsolicited`` analyzers)."""

from __future__ import annotations

import drivers
from drivers import AnalyzerPatient
from drivers.extract import extract_hl7_results, extract_results
from lis_gateway.hl7.message import parse_message

from ..store.test_ingest import message


def test_astm_p_record_gives_id_name_birth_date_and_sex() -> None:
    """P-3 first; P-6 last^first^middle as written; escapes decoded; P-9 lower case is read."""
    raw = (b"H|\\^&\rP|1|BN42|LAB7||NGUYEN^AN^VAN&E&||19800102|m\rO|1|S1||^^^GLU\r"
           b"R|1|^^^GLU|5.4|mmol/L||N||F\rL|1|N\r")
    (row,) = extract_results(message(raw), drivers.get("generic-astm"))
    assert row.patient == AnalyzerPatient("BN42", "NGUYEN", "AN", "VAN&", "19800102", "M")


def test_astm_results_without_patient_data_have_none_and_rows_never_show_it() -> None:
    """An empty P record is no patient; to_dict and repr carry no patient data."""
    raw = b"H|\\^&\rP|1\rO|1|S1||^^^GLU\rR|1|^^^GLU|5.4|mmol/L||N||F\rL|1|N\r"
    (row,) = extract_results(message(raw), drivers.get("generic-astm"))
    assert row.patient is None
    named = message(raw.replace(b"P|1\r", b"P|1|BN42|||TRAN^BINH\r"))
    (row,) = extract_results(named, drivers.get("generic-astm"))
    assert row.patient is not None and row.patient.family_name == "TRAN"
    assert "patient" not in row.to_dict() and "TRAN" not in repr(row)


def test_hl7_pid_gives_id_name_birth_date_and_sex() -> None:
    """PID-3 first CX.1 (PID-2 when empty), PID-5 family^given^middle, PID-7, PID-8."""
    raw = (b"MSH|^~\\&|BS-240|M||LIS|20261122||ORU^R01|9|P|2.3.1\r"
           b"PID|1||P-77^^^BV^PI~X||Tr\\T\\n^B\xc3\xacnh^Th\xe1\xbb\x8b||19851203000000|F\r"
           b"OBR|1|B1\rOBX|1|NM|GLU||5.5|mmol/L|||||F\r")
    (row,) = extract_hl7_results(parse_message(raw), drivers.get("generic-hl7"))
    assert row.patient == AnalyzerPatient("P-77", "Tr&n", "Bình", "Thị", "19851203000000", "F")
    no_pid3 = parse_message(raw.replace(b"PID|1||P-77^^^BV^PI~X|", b"PID|1|OLD9||"))
    (row,) = extract_hl7_results(no_pid3, drivers.get("generic-hl7"))
    assert row.patient is not None and row.patient.patient_id == "OLD9"


def test_each_result_carries_the_patient_of_its_own_p_record_or_pid() -> None:
    """Read once per P/O (PID/OBR) group, the patient still follows each result's own group."""
    raw = (b"H|\\^&\rP|1|BN1|||TRAN^AN\rO|1|S1||^^^GLU\rR|1|^^^GLU|5.4\rR|2|^^^K|4.1\r"
           b"P|2\rO|1|S2||^^^GLU\rR|1|^^^GLU|6.0\r"
           b"P|3|BN3|||LE^BA\rO|1|S3||^^^GLU\rR|1|^^^GLU|7.0\rO|2|S4||^^^K\rR|1|^^^K|3.9\r"
           b"L|1|N\r")
    rows = extract_results(message(raw), drivers.get("generic-astm"))
    assert [(r.sample_id, r.patient.patient_id if r.patient else None) for r in rows] == [
        ("S1", "BN1"), ("S1", "BN1"), ("S2", None), ("S3", "BN3"), ("S4", "BN3")]
    hl7 = (b"MSH|^~\\&|BS-240|M||LIS|20261122||ORU^R01|9|P|2.3.1\r"
           b"PID|1||P-1||A^B\rOBR|1|B1\rOBX|1|NM|GLU||5.5|mmol/L|||||F\r"
           b"OBX|2|NM|K||4.0|mmol/L|||||F\r"
           b"PID|2||P-2||C^D\rOBR|1|B2\rOBX|1|NM|GLU||6.5|mmol/L|||||F\r")
    rows = extract_hl7_results(parse_message(hl7), drivers.get("generic-hl7"))
    assert [r.patient.patient_id if r.patient else None for r in rows] == ["P-1", "P-1", "P-2"]
