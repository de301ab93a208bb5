"""Host queries: Mindray QRY^Q02 -> QCK^Q02/DSR^Q03 and IHE LAW QBP^Q11 -> RSP^K11, OML^O33."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import hl7
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message as hl7apy_parse

from lis_gateway.hl7.datatypes import HierarchicDesignator, MessageRoute
from lis_gateway.hl7.errors import BuildError
from lis_gateway.hl7.law import awos_id, build_oml_o33, build_rsp_k11, parse_qbp_q11
from lis_gateway.hl7.message import parse_message
from lis_gateway.hl7.patient import PatientIdentity, Sex
from lis_gateway.hl7.queries import (
    OrderedSample,
    Priority,
    SampleQueryKind,
    ascii_fold,
    build_dsr_q03,
    build_dsr_q03_batch,
    build_qck_q02,
    parse_qry_q02,
)

ICT = timezone(timedelta(hours=7))

# The three QRY^Q02 of the Mindray CL host-interface manual (corpus/mindray_2.txt and the
# same manual's following pages): by barcode, by sample-ID range, by receipt time range.
QRY_BARCODE = (b"MSH|^~\\&|||||20120508104700||QRY^Q02|4|P|2.3.1||||||ASCII|||\r"
               b"QRD|20120508104700|R|D|1|||RD|0019|OTH|||T|\rQRF||||||RCT|COR|ALL||\r")
QRY_ID_RANGE = (b"MSH|^~\\&|||||20120508115221||QRY^Q02|6|P|2.3.1||||||ASCII|||\r"
                b"QRD|20120508115221|R|D|3|||RD||OTH|||T|\rQRF||||1|9|RCT|COR|ALL||\r")
QRY_TIME_RANGE = (b"MSH|^~\\&|||||20120508150259||QRY^Q02|7|P|2.3.1||||||ASCII|||\r"
                  b"QRD|20120508150259|R|D|4|||RD||OTH|||T|\r"
                  b"QRF||20120508100000|20120508150000|||RCT|COR|ALL||\r")
# The BA400's LAB-27 query (corpus/biosystems_3.txt).
QBP_BA400 = (b"MSH|^~\\&|BA400|Biosystems|Host|Host provider|20230511180307||QBP^Q11^QBP_Q11|"
             b"105c0474-b00b-4c72-8492-fba65c1563d6|P|2.5.1|||ER|AL||UNICODE UTF-8|||LAB-27^IHE\r"
             b"QPD|WOS^Work Order Step^IHE_LABTF|105c0474b00b4c728492fba65c1563d6|32971968\r"
             b"RCP|I||R\r")

WALL = datetime(2012, 5, 8, 11, 1, 31, tzinfo=ICT)
NOW = datetime(2026, 11, 22, 9, 15, tzinfo=ICT)
LIS_ROUTE = MessageRoute(HierarchicDesignator("LISGW"), HierarchicDesignator("BVDK_XN"),
                         HierarchicDesignator("BA400"), HierarchicDesignator("Biosystems"))

JACKY = OrderedSample("1587120", (("1", "TSH"), ("4", "FT4")), PatientIdentity(
    family_name="Jacky", birth_date=date(1972, 2, 16), sex=Sex.MALE), specimen_type="SER",
    analyzer_sample_no="2")
ANATA = OrderedSample("1587125", (("8", "HCG"),), PatientIdentity(
    family_name="Anata", birth_date=date(1979, 12, 12), sex=Sex.FEMALE),
    priority=Priority.STAT, specimen_type="UR", analyzer_sample_no="9")
VIETNAMESE = OrderedSample(
    "2611220007", (("GLU", "Glucose"), ("ALT", "ALT (GPT)")),
    PatientIdentity(hospital_id="BN0001234", hospital=HierarchicDesignator("BVDK"),
                    family_name="Đặng", middle_name="Thị Ngọc", given_name="Ánh",
                    birth_date=date(1990, 7, 1), sex=Sex.FEMALE),
    priority=Priority.STAT, specimen_type="SER",
    collected_at=datetime(2026, 11, 22, 7, 5, tzinfo=ICT),
    received_at=datetime(2026, 11, 22, 7, 40, tzinfo=ICT), analyzer_sample_no="12")


def manual_dsp(values: dict[int, str], tests: list[str], dsc: str) -> bytes:
    """DSP and DSC lines laid out exactly as the Mindray manual prints them."""
    lines = [f"DSP|{n}||{values.get(n, '')}|||" for n in range(1, 29)]
    lines += [f"DSP|{n}||{t}^^^|||" for n, t in enumerate(tests, 29)]
    return ("\r".join([*lines, f"DSC|{dsc}|"]) + "\r").encode()


def strict(er7: bytes) -> None:
    """Parse with hl7apy STRICT (version from MSH-12) and validate."""
    message = hl7apy_parse(er7.decode("utf-8"), validation_level=VALIDATION_LEVEL.STRICT)
    assert message.validate() is True


# --- Mindray v2.3.1 ------------------------------------------------------------------------


def test_barcode_query_is_read() -> None:
    """The manual's real-time query gives the barcode of QRD-8 and the control and query IDs."""
    query = parse_qry_q02(parse_message(QRY_BARCODE))
    assert (query.kind, query.barcode, query.control_id, query.query_id, query.problems) == (
        SampleQueryKind.BARCODE, "0019", "4", "1", ())


def test_sample_id_range_query_reads_qrf4_and_qrf5() -> None:
    """The manual's ID-range query puts the first and last sample ID in QRF-4 and QRF-5."""
    query = parse_qry_q02(parse_message(QRY_ID_RANGE))
    assert (query.kind, query.first_sample_id, query.last_sample_id) == (
        SampleQueryKind.SAMPLE_ID_RANGE, "1", "9")


def test_time_range_query_reads_qrf2_and_qrf3_as_wall_times() -> None:
    """The manual's batch query gives the receipt time range, without inventing an offset."""
    query = parse_qry_q02(parse_message(QRY_TIME_RANGE))
    assert query.kind is SampleQueryKind.TIME_RANGE
    assert (query.received_from, query.received_to) == (datetime(2012, 5, 8, 10),
                                                        datetime(2012, 5, 8, 15))


@pytest.mark.parametrize(("raw", "code"), [
    (b"MSH|^~\\&|||||20120508||QRY^Q02|8|P|2.3.1\rQRF||||||RCT|COR|ALL\r", "100"),
    (b"MSH|^~\\&|||||20120508||QRY^Q02|8|P|2.3.1\rQRD|20120508|R|D|5|||RD||OTH|||T\r", "101"),
    (b"MSH|^~\\&|||||20120508||QRY^Q02|8|P|2.3.1\rQRD|x|R|D|5|||RD||OTH\rQRF||2012-05-08\r",
     "102"),
    (b"MSH|^~\\&|||||20120508||ORU^R01|8|P|2.3.1\rQRD|1|R|D|5|||RD|0019|OTH\r", "200"),
])
def test_unusable_query_is_reported_and_answered_ae(raw: bytes, code: str) -> None:
    """A query without QRD, filter or valid time is a problem, answered AE rather than dropped."""
    query = parse_qry_q02(parse_message(raw))
    assert code in [p.code for p in query.problems]
    answer = parse_message(build_qck_q02(query, found=True, control_id="8", now=WALL))
    msa, qak = answer.first("MSA"), answer.first("QAK")
    assert msa is not None and qak is not None
    assert msa[1] in ("AE", "AR") and msa[2] == "8" and qak[2] == "AE"


@pytest.mark.parametrize(("found", "status"), [(True, "OK"), (False, "NF")])
def test_qck_reproduces_the_manual(found: bool, status: str) -> None:
    """QCK^Q02 is byte for byte the manual's answer: QAK|SR|OK with orders, QAK|SR|NF without."""
    query = parse_qry_q02(parse_message(QRY_BARCODE))
    qck = build_qck_q02(query, found=found, control_id="4",
                        now=datetime(2012, 5, 8, 10, 47, tzinfo=ICT))
    assert qck == (b"MSH|^~\\&|||||20120508104700||QCK^Q02|4|P|2.3.1||||||ASCII|||\r"
                   b"MSA|AA|4|Message accepted|||0|\rERR|0|\r"
                   + f"QAK|SR|{status}|\r".encode())
    strict(qck)  # QCK^Q02 fits hl7apy's v2.3.1 structure, so STRICT applies.
    assert str(hl7.parse(qck.decode()).segment("QAK")[2]) == status


def test_dsr_reproduces_the_manual_batch() -> None:
    """Two samples of a batch: DSP lines as in the manual, DSC 1 then empty, MSA-2 = query ID."""
    query = parse_qry_q02(parse_message(QRY_TIME_RANGE))
    first, last = build_dsr_q03_batch([JACKY, ANATA], query=query, control_ids=["5", "6"],
                                      now=WALL)
    assert first.endswith(manual_dsp({3: "Jacky", 4: "19720216000000", 5: "M", 21: "1587120",
                                      22: "2", 24: "N", 26: "serum"}, ["1", "4"], "1"))
    assert last.endswith(manual_dsp({3: "Anata", 4: "19791212000000", 5: "F", 21: "1587125",
                                     22: "9", 24: "Y", 26: "urine"}, ["8"], ""))
    assert first.startswith(b"MSH|^~\\&|||||20120508110131||DSR^Q03|5|P|2.3.1||||||ASCII|||\r"
                            b"MSA|AA|7|Message accepted|||0|\rERR|0|\rQAK|SR|OK|\r"
                            b"QRD|20120508110131|R|D|4|||RD||OTH|||T|\r"
                            b"QRF||||||RCT|COR|ALL||\r")


def test_dsr_parses_with_hl7apy_quiet() -> None:
    """DSR^Q03 parses with hl7apy and python-hl7 and carries the sample and its tests."""
    # QUIET, not STRICT: the manual's QRD puts "RD" in QRD-7.1 (an NM in v2.3.1) and
    # leaves QRD-8 (required) empty; the analyzer expects exactly that, so STRICT fails.
    query = parse_qry_q02(parse_message(QRY_BARCODE))
    dsr = build_dsr_q03(VIETNAMESE, query=query, control_id="9", now=NOW)
    parsed = hl7apy_parse(dsr.decode(), validation_level=VALIDATION_LEVEL.QUIET)
    dsp = {int(s.dsp_1.to_er7()): s.dsp_3.to_er7() for s in parsed.children.get("DSP")}
    assert {n: dsp[n] for n in (1, 3, 4, 5, 12, 21, 22, 23, 24, 26, 29, 30)} == {
        1: "BN0001234", 3: "Dang Thi Ngoc Anh", 4: "19900701000000", 5: "F",
        12: "20261122070500", 21: "2611220007", 22: "12", 23: "20261122074000", 24: "Y",
        26: "serum", 29: "GLU^^^", 30: "ALT^^^"}
    assert len(dsp) == 30
    theirs = hl7.parse(dsr.decode())
    assert str(theirs.segment("MSA")[2]) == "4" and str(theirs.segment("DSC")[1]) == ""


def test_dsr_is_ascii_for_8bit_analyzers() -> None:
    """Vietnamese names lose their diacritics (đ -> d) and the DSR bytes are pure ASCII."""
    dsr = build_dsr_q03(VIETNAMESE, query=None, control_id="10", now=NOW)
    assert dsr.isascii() and b"DSP|3||Dang Thi Ngoc Anh|||\r" in dsr
    assert ascii_fold("Nguyễn Văn Đức, Lưu Thị Hương") == "Nguyen Van Duc, Luu Thi Huong"


def test_unsolicited_dsr_marks_msh15_p() -> None:
    """A download without a query sets MSH-15 = P (manual §1.3.3) and acknowledges itself."""
    dsr = parse_message(build_dsr_q03(JACKY, query=None, control_id="11", now=WALL))
    msa = dsr.first("MSA")
    assert dsr.msh[15] == "P" and msa is not None and msa[2] == "11"


def test_dsr_escapes_delimiters_in_values() -> None:
    """A | or ^ in a name is escaped in DSP-3 and reads back equal."""
    sample = OrderedSample("S1", (("1", "TSH"),), PatientIdentity(family_name="Le|Van^A"))
    dsr = parse_message(build_dsr_q03(sample, query=None, control_id="12", now=WALL))
    dsp3 = next(s for s in dsr.named("DSP") if s[1] == "3")
    assert dsp3[3] == "Le\\F\\Van\\S\\A" and dsr.text(dsp3[3]) == "Le|Van^A"


def test_dsr_refuses_what_the_analyzer_cannot_use() -> None:
    """No tests, no barcode or a wrong number of control IDs raise BuildError."""
    with pytest.raises(BuildError, match="no tests"):
        build_dsr_q03(OrderedSample("S1", (), PatientIdentity()), query=None, control_id="1",
                      now=WALL)
    with pytest.raises(BuildError, match="no barcode"):
        build_dsr_q03(OrderedSample("", (("1", "x"),), PatientIdentity()), query=None,
                      control_id="1", now=WALL)
    with pytest.raises(BuildError, match="control IDs"):
        build_dsr_q03_batch([JACKY, ANATA], query=None, control_ids=["1"], now=WALL)


# --- IHE LAW v2.5.1 ------------------------------------------------------------------------


def test_lab27_query_is_read() -> None:
    """The BA400 query gives the tag (QPD-2), the container ID (QPD-3) and its route."""
    query = parse_qbp_q11(parse_message(QBP_BA400))
    assert (query.query_tag, query.specimen_id, query.problems) == (
        "105c0474b00b4c728492fba65c1563d6", "32971968", ())
    assert query.route.sending_application == HierarchicDesignator("BA400")
    assert query.control_id == "105c0474-b00b-4c72-8492-fba65c1563d6"


@pytest.mark.parametrize(("found", "status"), [(True, "OK"), (False, "NF")])
def test_rsp_k11_answers_ok_or_nf(found: bool, status: str) -> None:
    """RSP^K11 validates STRICT: MSA AA, QAK tag with OK or NF, the QPD echoed, route swapped."""
    query = parse_qbp_q11(parse_message(QBP_BA400))
    rsp = build_rsp_k11(query, found=found, control_id="R-1", now=NOW)
    strict(rsp)
    ours = parse_message(rsp)
    msa, qak, qpd = ours.first("MSA"), ours.first("QAK"), ours.first("QPD")
    assert msa is not None and qak is not None and qpd is not None
    assert (msa[1], msa[2]) == ("AA", "105c0474-b00b-4c72-8492-fba65c1563d6")
    assert (qak[1], qak[2], qak[3]) == ("105c0474b00b4c728492fba65c1563d6", status,
                                        "WOS^Work Order Step^IHE_LABTF")
    assert qpd.fields == parse_message(QBP_BA400).first("QPD").fields  # type: ignore[union-attr]
    assert [ours.msh[n] for n in (3, 5, 9, 21)] == ["Host", "BA400", "RSP^K11^RSP_K11",
                                                    "LAB-27^IHE"]
    assert str(hl7.parse(rsp.decode()).segment("QAK")[2]) == status


def test_rsp_k11_reports_a_query_without_container_id() -> None:
    """A QPD without container ID gets MSA AE, ERR 101 at QPD-3 and QAK AE, still valid."""
    raw = QBP_BA400.replace(b"|32971968\r", b"\r")
    query = parse_qbp_q11(parse_message(raw))
    rsp = build_rsp_k11(query, found=False, control_id="R-2", now=NOW)
    strict(rsp)
    ours = parse_message(rsp)
    msa, err, qak = ours.first("MSA"), ours.first("ERR"), ours.first("QAK")
    assert msa is not None and err is not None and qak is not None
    assert (msa[1], err[2], err[3], err[4], qak[2]) == (
        "AE", "QPD^1^3", "101^Required field missing^HL70357", "E", "AE")


def test_rsp_k11_echoes_qpd_in_our_encoding_characters() -> None:
    """A query written with other delimiters is echoed in ^~\\& with its escapes re-encoded."""
    raw = (b"MSH#$%\\&#AN#LAB#AM#LAB#20260101120000##QBP$Q11$QBP_Q11#Q9#P#2.5.1\r"
           b"QPD#WOS$Work Order Step$IHE_LABTF#t\\S\\1#S-77\r")
    query = parse_qbp_q11(parse_message(raw))
    assert (query.query_tag, query.specimen_id, query.problems) == ("t$1", "S-77", ())
    rsp = build_rsp_k11(query, found=True, control_id="R-3", now=NOW)
    strict(rsp)
    assert b"\rQPD|WOS^Work Order Step^IHE_LABTF|t$1|S-77\r" in rsp


def order_groups(oml: bytes) -> list[bytes]:
    """Split a multi-test OML^O33 into one-test messages (header, PID, SPM, SAC + one ORDER)."""
    lines = oml.split(b"\r")[:-1]
    first = next(i for i, s in enumerate(lines) if s.startswith(b"ORC|"))
    head, rest = lines[:first], lines[first:]
    return [b"\r".join([*head, *rest[i:i + 3]]) + b"\r" for i in range(0, len(rest), 3)]


def test_oml_o33_carries_one_awos_per_test() -> None:
    """OML^O33 is PID, SPM, SAC, then ORC NW + TQ1 + OBR per test, each order STRICT-valid."""
    # The whole message parses only QUIET: hl7apy's greedy parser files the second
    # ORC/TQ1/OBR under OBSERVATION_REQUEST.PRIOR_RESULT (the OML_O33 grammar is ambiguous
    # there) and then misses the prior result's OBX. So each ORDER group is validated
    # STRICT in a message of its own, and the single-test message STRICT as a whole.
    oml = build_oml_o33(VIETNAMESE, route=LIS_ROUTE, control_id="O-1", now=NOW)
    hl7apy_parse(oml.decode(), validation_level=VALIDATION_LEVEL.QUIET)
    for single in order_groups(oml):
        strict(single)
    ours = parse_message(oml)
    assert [s.name for s in ours.segments] == ["MSH", "PID", "SPM", "SAC", "ORC", "TQ1", "OBR",
                                               "ORC", "TQ1", "OBR"]
    spm, sac = ours.first("SPM"), ours.first("SAC")
    assert spm is not None and sac is not None
    assert (spm[2], spm[4], spm[11], spm[17], spm[18], sac[3]) == (
        "2611220007", "SER^Serum^HL70487", "P", "20261122070500+0700",
        "20261122074000+0700", "2611220007")
    rows = [(s[1], s[2], s[9]) for s in ours.named("ORC")]
    assert rows == [("NW", "2611220007-GLU", "20261122091500+0700"),
                    ("NW", "2611220007-ALT", "20261122091500+0700")]
    assert [s[9] for s in ours.named("TQ1")] == ["S", "S"]
    assert [(s[1], s[2], s[4]) for s in ours.named("OBR")] == [
        ("1", "2611220007-GLU", "GLU^Glucose^99LOCAL"),
        ("2", "2611220007-ALT", "ALT^ALT (GPT)^99LOCAL")]
    assert [ours.msh[n] for n in (9, 15, 16, 18, 21)] == [
        "OML^O33^OML_O33", "NE", "AL", "UNICODE UTF-8", "LAB-28^IHE"]
    assert awos_id(VIETNAMESE, "GLU") == "2611220007-GLU"
    theirs = hl7.parse(oml.decode())
    assert theirs.unescape(str(theirs.segment("PID")[5])) == "Đặng^Ánh^Thị Ngọc^^^^L"


def test_oml_o33_without_patient_identifier_leaves_pid_out() -> None:
    """A QC-like sample with no patient identifier is sent without PID, still STRICT-valid."""
    oml = build_oml_o33(ANATA, route=LIS_ROUTE, control_id="O-2", now=NOW)
    strict(oml)
    assert [s.name for s in parse_message(oml).segments][:3] == ["MSH", "SPM", "SAC"]


def test_oml_o33_refuses_repeated_or_missing_tests() -> None:
    """The same test code twice, or no test, would make AWOS IDs collide: BuildError."""
    twice = OrderedSample("S1", (("GLU", "a"), ("GLU", "b")), PatientIdentity())
    with pytest.raises(BuildError, match="each code once"):
        build_oml_o33(twice, route=LIS_ROUTE, control_id="O-3", now=NOW)
    with pytest.raises(BuildError, match="each code once"):
        build_oml_o33(OrderedSample("S1", (), PatientIdentity()), route=LIS_ROUTE,
                      control_id="O-4", now=NOW)
