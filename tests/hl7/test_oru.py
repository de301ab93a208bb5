"""ORU^R01 v2.5.1 to the HIS: hl7apy STRICT, python-hl7 and our parser agree with the input."""

from __future__ import annotations

import unicodedata
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import hl7
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.factories import datatype_factory
from hl7apy.parser import parse_message as hl7apy_parse

from lis_gateway.hl7.datatypes import (
    Code,
    EntityIdentifier,
    HierarchicDesignator,
    MessageRoute,
    ObservationCode,
    Person,
)
from lis_gateway.hl7.errors import BuildError
from lis_gateway.hl7.message import Hl7Message, parse_message
from lis_gateway.hl7.oru import (
    ABNORMAL_FLAGS,
    ALLOWED_OBSERVATION_STATUSES,
    LRI_COMMON_COMPONENT,
    LRI_NG_COMPONENT,
    CodedValue,
    NumericValue,
    Observation,
    ObservationStatus,
    Order,
    ReportStatus,
    StructuredNumeric,
    TextValue,
    build_oru_r01,
    value_from_text,
)
from lis_gateway.hl7.patient import Location, PatientClass, PatientIdentity, Sex, Visit

ICT = timezone(timedelta(hours=7))
NOW = datetime(2026, 11, 22, 10, 30, 5, tzinfo=ICT)
COLLECTED = datetime(2026, 11, 22, 7, 15, tzinfo=ICT)
RECEIVED = datetime(2026, 11, 22, 7, 40, tzinfo=ICT)
ANALYZED = datetime(2026, 11, 22, 8, 2, 30, tzinfo=ICT)

ROUTE = MessageRoute(HierarchicDesignator("LISGW"), HierarchicDesignator("BVDK_XN"),
                     HierarchicDesignator("HIS"), HierarchicDesignator("BVDK"))
HOSPITAL = HierarchicDesignator("BVDK")
PATIENT = PatientIdentity(
    hospital_id="BN0001234", hospital=HOSPITAL, national_id="001099012345",
    insurance_card="GD4797908000123", family_name="Nguyễn", middle_name="Thị",
    given_name="Hương", birth_date=date(1980, 2, 29), sex=Sex.FEMALE)
VISIT = Visit(PatientClass.INPATIENT, Location("Nội tiết", "P12", "G3"), "LK2026-0001", HOSPITAL)
VALIDATOR = Person("000123/BYT-CCHN", "Trần", "Bình", HOSPITAL, "LN")
ANALYZER = (EntityIdentifier("AU480", "BECKMAN"), EntityIdentifier("2011A0042", "BECKMAN"))

GLUCOSE = ObservationCode("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "GLU",
                          "Glucose")
CRP = ObservationCode("1988-5", "C reactive protein [Mass/volume] in Serum or Plasma", "CRP",
                      "CRP")
HBSAG = ObservationCode("5196-1", "Hepatitis B virus surface Ag [Presence] in Serum", "HBSAG",
                        "HBsAg")
APPEARANCE = ObservationCode(local="APPEAR", local_text="Serum appearance")


def obs(code: ObservationCode, value: NumericValue | StructuredNumeric | TextValue | CodedValue
        | None, status: ObservationStatus = ObservationStatus.FINAL, **kw: Any) -> Observation:
    """An observation with the shared defaults of these tests."""
    return replace(Observation(code, value, status, validated_by=VALIDATOR, equipment=ANALYZER,
                               analyzed_at=ANALYZED), **kw)


def order(*observations: Observation, status: ReportStatus = ReportStatus.FINAL,
          **kw: Any) -> Order:
    """An order of the chemistry panel holding ``observations``."""
    base = Order(EntityIdentifier("XN-260001", "LAB"),
                 ObservationCode("24323-8", "Comprehensive metabolic panel", "SH", "Sinh hoá"),
                 status, observations,
                 placer_order_number=EntityIdentifier("YL2026-77", "HIS"),
                 collected_at=COLLECTED, received_at=RECEIVED,
                 ordering_provider=Person("BS042", "Lê", "Minh", HOSPITAL),
                 specimen_type=Code("SER", "Serum", "HL70487"))
    return replace(base, **kw)


def build(*orders: Order, patient: PatientIdentity = PATIENT, visit: Visit | None = VISIT,
          **kw: Any) -> bytes:
    """An ORU^R01 with the fixed route, control ID and time."""
    return build_oru_r01(ROUTE, patient, orders, control_id="GW-000042", now=NOW, visit=visit,
                         **kw)


NUMERIC = obs(GLUCOSE, NumericValue(Decimal("5.40")), unit="mmol/L", reference_range="3.9-6.4",
              abnormal_flags=("N",))
CENSORED = obs(CRP, value_from_text("<10"), unit="mg/L", reference_range="<10",
               abnormal_flags=("N",))
TEXT = obs(APPEARANCE, TextValue("Huyết thanh vàng trong"))
CODED = obs(HBSAG, CodedValue(Code("260385009", "Negative", "SCT")), abnormal_flags=("N",))

SHAPES: dict[str, bytes] = {
    "NM": build(order(NUMERIC)),
    "SN <10": build(order(CENSORED)),
    "ST": build(order(TEXT)),
    "CWE": build(order(CODED)),
    "all four, no PV1": build(order(NUMERIC, CENSORED, TEXT, CODED), visit=None),
    "correction": build(order(replace(NUMERIC, value=NumericValue(Decimal("6.80")),
                                      status=ObservationStatus.CORRECTED,
                                      abnormal_flags=("H",),
                                      comments=("Sửa kết quả: nhập nhầm mẫu",)),
                              CENSORED, status=ReportStatus.CORRECTED)),
    "cancelled": build(order(obs(GLUCOSE, None, ObservationStatus.CANNOT_OBTAIN,
                                 comments=("Mẫu vỡ hồng cầu",)),
                             status=ReportStatus.CANCELLED)),
    "two orders, LRI profiles": build(order(NUMERIC), order(CODED, comments=("Ghi chú",)),
                                      profiles=(LRI_COMMON_COMPONENT, LRI_NG_COMPONENT)),
}


def strict_251(er7: bytes) -> None:
    """Parse with hl7apy STRICT v2.5.1 (it wants CR separators) and validate."""
    message = hl7apy_parse(er7.decode("utf-8"), validation_level=VALIDATION_LEVEL.STRICT)
    assert message.validate() is True


def check_value_type(value_type: str, value: str) -> None:
    """hl7apy leaves OBX-5 untyped ("varies"); check it against OBX-2 with its STRICT types."""
    comps = value.split("^")
    if value_type == "NM":
        datatype_factory("NM", value, version="2.5.1", validation_level=VALIDATION_LEVEL.STRICT)
    elif value_type == "SN":
        assert 2 <= len(comps) <= 4 and comps[0] in {"", "<", ">", "<=", ">=", "=", "<>"}
        assert comps[1] and (len(comps) < 3 or comps[2] in {"-", "+", "/", ".", ":"})
        for number in comps[1::2]:
            datatype_factory("NM", number, version="2.5.1",
                             validation_level=VALIDATION_LEVEL.STRICT)
    elif value_type == "CWE":
        assert len(comps) == 3 and all(comps)
    elif value_type in ("ST", "FT"):
        assert "\r" not in value
    else:
        assert (value_type, value) == ("", "")


def our_obx(message: Hl7Message) -> list[tuple[str, ...]]:
    """OBX-3, -5, -6, -8, -11 as our parser reads them (raw)."""
    return [(s[3], s[5], s[6], s[8], s[11]) for s in message.named("OBX")]


def their_obx(message: hl7.Message) -> list[tuple[str, ...]]:
    """OBX-3, -5, -6, -8, -11 as python-hl7 reads them (raw)."""
    return [tuple(str(s[n]) for n in (3, 5, 6, 8, 11)) for s in message.segments("OBX")]


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_shape_validates_with_hl7apy_strict(shape: str) -> None:
    """Each message shape passes hl7apy's STRICT v2.5.1 structure and datatype validation."""
    strict_251(SHAPES[shape])


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_obx5_matches_its_value_type(shape: str) -> None:
    """Every OBX-5 is a valid value of the type OBX-2 declares (NM never holds a comparator)."""
    for segment in parse_message(SHAPES[shape]).named("OBX"):
        check_value_type(segment[2], segment[5])


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_python_hl7_and_our_parser_read_the_same_values(shape: str) -> None:
    """python-hl7 and parse_message read the same PID-3 and OBX-3/5/6/8/11."""
    raw = SHAPES[shape]
    ours = parse_message(raw)
    theirs = hl7.parse(raw.decode("utf-8"))
    assert not ours.problems
    assert str(theirs.segment("PID")[3]) == ours.first("PID")[3]  # type: ignore[index]
    assert their_obx(theirs) == our_obx(ours)


def test_values_come_back_as_given() -> None:
    """The four value types, units, flags and statuses read back exactly as they went in."""
    ours = parse_message(SHAPES["all four, no PV1"])
    assert our_obx(ours) == [
        ("2345-7^Glucose [Mass/volume] in Serum or Plasma^LN^GLU^Glucose^99LOCAL", "5.40",
         "mmol/L^mmol/L^UCUM", "N", "F"),
        ("1988-5^C reactive protein [Mass/volume] in Serum or Plasma^LN^CRP^CRP^99LOCAL",
         "<^10", "mg/L^mg/L^UCUM", "N", "F"),
        ("APPEAR^Serum appearance^99LOCAL", "Huyết thanh vàng trong", "", "", "F"),
        ("5196-1^Hepatitis B virus surface Ag [Presence] in Serum^LN^HBSAG^HBsAg^99LOCAL",
         "260385009^Negative^SCT", "", "N", "F"),
    ]
    assert [s[2] for s in ours.named("OBX")] == ["NM", "SN", "ST", "CWE"]
    assert ours.first("PV1") is None


def test_patient_identifiers_carry_type_and_authority() -> None:
    """PID-3 has the hospital ID (PI), the CCCD (NNVNM) and the BHYT card (HC), each with CX.4."""
    theirs = hl7.parse(SHAPES["NM"].decode("utf-8"))
    assert [(theirs[f"PID.F3.R{r}.C1"], theirs[f"PID.F3.R{r}.C4"], theirs[f"PID.F3.R{r}.C5"])
            for r in (1, 2, 3)] == [("BN0001234", "BVDK", "PI"),
                                    ("001099012345", "BCA", "NNVNM"),
                                    ("GD4797908000123", "BHXH", "HC")]
    pid = parse_message(SHAPES["NM"]).first("PID")
    assert pid is not None
    assert (pid[5], pid[7], pid[8]) == ("Nguyễn^Hương^Thị^^^^L", "19800229", "F")


def test_one_identifier_is_enough_and_none_is_an_error() -> None:
    """Any one of the three identifiers makes a valid PID; none raises BuildError."""
    for only in ({"hospital_id": "BN1", "hospital": HOSPITAL}, {"national_id": "079203000001"},
                 {"insurance_card": "HC4010123456789"}):
        patient = replace(PatientIdentity(family_name="Lê", given_name="Na"), **only)
        strict_251(build(order(NUMERIC), patient=patient))
    with pytest.raises(BuildError, match="hospital ID, a national ID or an insurance"):
        build(order(NUMERIC), patient=PatientIdentity(family_name="Lê"))


@pytest.mark.parametrize("patient", [
    PatientIdentity(hospital_id="BN1"),
    PatientIdentity(national_id="12345678901"),
    PatientIdentity(national_id="0010990123AB"),
])
def test_malformed_identifiers_are_refused(patient: PatientIdentity) -> None:
    """A hospital ID without its hospital, or a CCCD that is not 12 digits, raises BuildError."""
    with pytest.raises(BuildError):
        build(order(NUMERIC), patient=patient)


def test_header_fields() -> None:
    """MSH has type, version, AL/NE, UTF-8 and an offset timestamp; MSH-21 only on request."""
    msh = parse_message(SHAPES["NM"]).msh
    assert [msh[n] for n in (3, 4, 5, 6, 7, 9, 10, 11, 12, 15, 16, 18, 21)] == [
        "LISGW", "BVDK_XN", "HIS", "BVDK", "20261122103005+0700", "ORU^R01^ORU_R01",
        "GW-000042", "P", "2.5.1", "AL", "NE", "UNICODE UTF-8", ""]
    profiles = parse_message(SHAPES["two orders, LRI profiles"]).msh[21]
    assert profiles == ("LRI_Common_Component^^2.16.840.1.113883.9.16^ISO~"
                        "LRI_NG_Component^^2.16.840.1.113883.9.13^ISO")


def test_order_and_observation_times_and_people() -> None:
    """OBR-7/14/22/25, ORC-12, OBX-14 (collection), -16, -18 and -19 are where LRI wants them."""
    message = parse_message(SHAPES["NM"])
    orc, obr, obx = message.first("ORC"), message.first("OBR"), message.first("OBX")
    assert orc is not None and obr is not None and obx is not None
    assert (orc[1], orc[2], orc[3], orc[12]) == ("RE", "YL2026-77^HIS", "XN-260001^LAB",
                                                 "BS042^Lê^Minh^^^^^^BVDK")
    assert (obr[2], obr[3], obr[7], obr[14], obr[16], obr[22], obr[25]) == (
        "YL2026-77^HIS", "XN-260001^LAB", "20261122071500+0700", "20261122074000+0700",
        "BS042^Lê^Minh^^^^^^BVDK", "20261122103005+0700", "F")
    assert (obx[14], obx[16], obx[18], obx[19]) == (
        "20261122071500+0700", "000123/BYT-CCHN^Trần^Bình^^^^^^BVDK^^^^LN",
        "AU480^BECKMAN~2011A0042^BECKMAN", "20261122080230+0700")
    spm = message.first("SPM")
    assert spm is not None
    assert (spm[2], spm[4], spm[17], spm[18]) == ("^XN-260001&LAB", "SER^Serum^HL70487",
                                                  "20261122071500+0700", "20261122074000+0700")
    assert [s.name for s in message.segments] == ["MSH", "PID", "PV1", "ORC", "OBR", "OBX",
                                                  "SPM"]


def test_visit_segment() -> None:
    """PV1 holds the patient class, ward^room^bed and the visit number with its authority."""
    pv1 = parse_message(SHAPES["NM"]).first("PV1")
    assert pv1 is not None
    assert (pv1[2], pv1[3], pv1[19]) == ("I", "Nội tiết^P12^G3", "LK2026-0001^^^BVDK^VN")


def test_correction_is_c_in_obx_and_obr_with_a_reason() -> None:
    """A corrected result is OBX-11 C under OBR-25 C, same OBX-3, with the reason in an NTE."""
    message = parse_message(SHAPES["correction"])
    obr = message.first("OBR")
    assert obr is not None and obr[25] == "C"
    rows = [(s.name, s[3] if s.name == "NTE" else s[11]) for s in message.segments[5:]]
    assert rows == [("OBX", "C"), ("NTE", "Sửa kết quả: nhập nhầm mẫu"), ("OBX", "F"),
                    ("SPM", "")]
    assert our_obx(message)[0][0] == our_obx(parse_message(SHAPES["NM"]))[0][0]


@pytest.mark.parametrize(("report", "observation", "message"), [
    (ReportStatus.FINAL, ObservationStatus.CORRECTED, "a correction needs OBR-25 C"),
    (ReportStatus.PRELIMINARY, ObservationStatus.CORRECTED, "a correction needs OBR-25 C"),
    (ReportStatus.CORRECTED, ObservationStatus.FINAL, "needs at least one OBX-11 C"),
    (ReportStatus.FINAL, ObservationStatus.PRELIMINARY, "does not allow OBX-11 P"),
    (ReportStatus.CANCELLED, ObservationStatus.FINAL, "does not allow OBX-11 F"),
])
def test_report_and_observation_statuses_must_agree(
        report: ReportStatus, observation: ObservationStatus, message: str) -> None:
    """OBR-25 and OBX-11 combinations outside the table raise BuildError."""
    with pytest.raises(BuildError, match=message):
        build(order(replace(NUMERIC, status=observation), status=report))


def test_status_table_covers_every_report_status() -> None:
    """Each OBR-25 value has its allowed OBX-11 set, and only a corrected report allows C."""
    assert set(ALLOWED_OBSERVATION_STATUSES) == set(ReportStatus)
    with_c = {r for r, allowed in ALLOWED_OBSERVATION_STATUSES.items()
              if ObservationStatus.CORRECTED in allowed}
    assert with_c == {ReportStatus.CORRECTED}


def test_cancelled_result_has_no_value() -> None:
    """OBX-11 X leaves OBX-2 and OBX-5 empty; a value with X, or none without X, is refused."""
    obx = parse_message(SHAPES["cancelled"]).first("OBX")
    assert obx is not None and (obx[2], obx[5], obx[11]) == ("", "", "X")
    with pytest.raises(BuildError, match="exactly when OBX-11 is X"):
        build(order(replace(NUMERIC, status=ObservationStatus.CANNOT_OBTAIN),
                    status=ReportStatus.CANCELLED))
    with pytest.raises(BuildError, match="exactly when OBX-11 is X"):
        build(order(replace(NUMERIC, value=None)))


@pytest.mark.parametrize(("text", "expected"), [
    ("5.40", NumericValue(Decimal("5.40"))),
    ("-0.5", NumericValue(Decimal("-0.5"))),
    ("<10", StructuredNumeric("<", Decimal("10"))),
    (">160", StructuredNumeric(">", Decimal("160"))),
    ("<=0.5", StructuredNumeric("<=", Decimal("0.5"))),
    ("> 2.0", StructuredNumeric(">", Decimal("2.0"))),
    ("1:128", StructuredNumeric("", Decimal("1"), ":", Decimal("128"))),
    ("10-20", StructuredNumeric("", Decimal("10"), "-", Decimal("20"))),
    ("2+", StructuredNumeric("", Decimal("2"), "+")),
])
def test_value_from_text_chooses_nm_or_sn(
        text: str, expected: NumericValue | StructuredNumeric) -> None:
    """Plain numbers become NM; comparators, ratios and ranges become SN."""
    value = value_from_text(text)
    assert value == expected
    raw = parse_message(build(order(replace(NUMERIC, value=value)))).first("OBX")
    assert raw is not None
    check_value_type(raw[2], raw[5])


@pytest.mark.parametrize("value", [
    StructuredNumeric("~", Decimal("1")),
    StructuredNumeric("", Decimal("1"), ":"),
    StructuredNumeric("", Decimal("1"), "", Decimal("2")),
    NumericValue(Decimal("Infinity")),
])
def test_malformed_structured_numbers_are_refused(value: NumericValue | StructuredNumeric) -> None:
    """A bad comparator, a ratio without its second number or an infinite NM raise BuildError."""
    with pytest.raises(BuildError):
        build(order(replace(NUMERIC, value=value)))


@pytest.mark.parametrize("text", ["", "positive", "<", "1..2", "1e5", "NaN", "+"])
def test_value_from_text_refuses_what_is_not_a_number(text: str) -> None:
    """Text that is not a number of the known forms raises BuildError instead of a bad NM."""
    with pytest.raises(BuildError):
        value_from_text(text)


def test_long_or_multiline_text_goes_as_ft() -> None:
    """Text over 199 characters or with line breaks is FT with \\.br\\, never a raw CR."""
    raw = build(order(replace(TEXT, value=TextValue("dòng 1\ndòng 2"))))
    strict_251(raw)
    obx = parse_message(raw).first("OBX")
    assert obx is not None and (obx[2], obx[5]) == ("FT", "dòng 1\\.br\\dòng 2")


def test_unknown_flag_and_repeated_code_are_refused() -> None:
    """OBX-8 outside table 0078, or the same OBX-3 twice without OBX-4, raises BuildError."""
    with pytest.raises(BuildError, match="table 0078"):
        build(order(replace(NUMERIC, abnormal_flags=("HIGH",))))
    with pytest.raises(BuildError, match="without a distinct OBX-4"):
        build(order(NUMERIC, NUMERIC))
    twice = build(order(NUMERIC, replace(NUMERIC, sub_id="2")))
    strict_251(twice)
    assert {"L", "H", "LL", "HH", "N", "A", "<", ">"} <= set(ABNORMAL_FLAGS)


def test_repeated_flags_round_trip() -> None:
    """OBX-8 repeats (L~N as Mindray sends) and python-hl7 reads both repetitions."""
    raw = build(order(replace(NUMERIC, abnormal_flags=("L", "N"))))
    strict_251(raw)
    theirs = hl7.parse(raw.decode("utf-8")).segments("OBX")[0]
    assert [str(r) for r in theirs[8]] == ["L", "N"]


def test_delimiters_in_names_and_comments_are_escaped_and_read_back() -> None:
    """A | ^ & ~ or \\ in a name or a comment is escaped and reads back equal everywhere."""
    patient = replace(PATIENT, family_name="Phạm|Vũ", given_name="An^Bình&~\\")
    comment = "HbA1c > 7 | xem lại ^ ngày mai"
    raw = build(order(replace(NUMERIC, comments=(comment,))), patient=patient)
    strict_251(raw)
    text = raw.decode("utf-8")
    assert "Phạm\\F\\Vũ^An\\S\\Bình\\T\\\\R\\\\E\\" in text
    ours = parse_message(raw)
    pid, nte = ours.first("PID"), ours.first("NTE")
    assert pid is not None and nte is not None
    assert ours.delimiters.components(pid[5])[:2] == ["Phạm|Vũ", "An^Bình&~\\"]
    assert ours.text(nte[3]) == comment
    theirs = hl7.parse(text)
    assert theirs.unescape(str(theirs.segment("PID")[5][0][0])) == "Phạm|Vũ"
    assert theirs.unescape(str(theirs.segment("NTE")[3])) == comment
    hl7apy_name = hl7apy_parse(text, validation_level=VALIDATION_LEVEL.STRICT) \
        .oru_r01_patient_result.oru_r01_patient.pid.pid_5.xpn_1.to_er7()
    assert hl7apy_name == "Phạm\\F\\Vũ"


def test_control_characters_cannot_split_a_segment() -> None:
    """A CR or LF inside a name is written as \\X0D\\ / \\X0A\\ and the PID stays one segment."""
    raw = build(order(NUMERIC), patient=replace(PATIENT, given_name="An\rOBX|9|ST"))
    assert raw.count(b"\r") == len(parse_message(raw).segments)
    pid = parse_message(raw).first("PID")
    assert pid is not None
    assert parse_message(raw).delimiters.components(pid[5])[1] == "An\rOBX|9|ST"


def test_vietnamese_names_are_utf8_nfc() -> None:
    """A name given in NFD comes out NFC-normalised, UTF-8 encoded, under MSH-18 UNICODE UTF-8."""
    nfd = unicodedata.normalize("NFD", "Đặng Thị Ngọc Ánh")
    family, *rest = nfd.split(" ")
    raw = build(order(NUMERIC), patient=replace(PATIENT, family_name=family,
                                                middle_name=" ".join(rest[:-1]),
                                                given_name=rest[-1]))
    assert "Đặng^Ánh^Thị Ngọc^^^^L".encode() in raw
    assert unicodedata.normalize("NFD", "Đặng").encode() not in raw
    assert parse_message(raw).encoding == "utf-8"


def test_naive_time_and_missing_parts_are_local_misuse() -> None:
    """A naive timestamp, no orders, an empty control ID or a codeless service raise BuildError."""
    naive = datetime(2026, 11, 22, 10, 30)
    with pytest.raises(BuildError, match="no UTC offset"):
        build_oru_r01(ROUTE, PATIENT, [order(NUMERIC)], control_id="1", now=naive)
    with pytest.raises(BuildError, match="no UTC offset"):
        build(order(replace(NUMERIC, analyzed_at=naive)))
    with pytest.raises(BuildError, match="at least one order"):
        build()
    with pytest.raises(BuildError, match="MSH-10"):
        build_oru_r01(ROUTE, PATIENT, [order(NUMERIC)], control_id="", now=NOW)
    with pytest.raises(BuildError, match="LOINC or a local code"):
        build(order(replace(NUMERIC, code=ObservationCode())))
    with pytest.raises(BuildError, match="at least one observation"):
        build(order())


def test_output_is_bytes_with_cr_and_no_framing() -> None:
    """The builder returns UTF-8 bytes, every segment CR-terminated, no VT/FS and no LF."""
    raw = SHAPES["all four, no PV1"]
    assert raw.startswith(b"MSH|^~\\&|") and raw.endswith(b"\r")
    assert b"\n" not in raw and b"\x0b" not in raw and b"\x1c" not in raw
