"""Mindray BC worklist request (ORM^O01, ORC-1 RF) and its ORR^O02 answer, sans-IO."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from itertools import count
from pathlib import Path

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import MaxChildLimitReached, ValidationError
from hl7apy.parser import parse_message as hl7apy_parse
from hl7apy.parser import parse_segment as hl7apy_segment

from lis_gateway.hl7.datatypes import HierarchicDesignator
from lis_gateway.hl7.errors import BuildError
from lis_gateway.hl7.message import Hl7Message, parse_message
from lis_gateway.hl7.mllp import BlockReceived, MllpFramer
from lis_gateway.hl7.patient import PatientIdentity, Sex
from lis_gateway.hl7.queries import OrderedSample
from lis_gateway.hl7.responder import MessageRole, build_answers, read_query, role_of
from lis_gateway.hl7.worklist import (
    TestMode,
    answer_for,
    build_orr_o02,
    choose_test_mode,
    is_worklist_request,
    parse_orm_o01,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "hl7"
ICT = timezone(timedelta(hours=7))
NOW = datetime(2026, 11, 22, 9, 15, tzinfo=ICT)

CBC = (("WBC", "Leukocytes"), ("HGB", "Hemoglobin"), ("PLT", "Platelets"))
DIFF = (*CBC, ("NEU#", "Neutrophils"), ("LYM%", "Lymphocytes/100 leukocytes"))
ANH = PatientIdentity(hospital_id="BN0001234", hospital=HierarchicDesignator("BVDK"),
                      family_name="Đặng", middle_name="Thị Ngọc", given_name="Ánh",
                      birth_date=date(1990, 7, 1), sex=Sex.FEMALE)


def fixture_messages() -> list[Hl7Message]:
    """The two worklist requests of mindray_bc_orm."""
    framer = MllpFramer()
    events = framer.receive_data((FIXTURES / "mindray_bc_orm.bin").read_bytes(), 0.0)
    return [parse_message(e.data) for e in events if isinstance(e, BlockReceived)]


def sample(tests: tuple[tuple[str, str], ...] = DIFF, sample_id: str = "SampleID1"
           ) -> OrderedSample:
    """Ánh's tube with ``tests``, collected at 07:05 and received at 07:40."""
    return OrderedSample(sample_id, tests, ANH,
                         collected_at=datetime(2026, 11, 22, 7, 5, tzinfo=ICT),
                         received_at=datetime(2026, 11, 22, 7, 40, tzinfo=ICT))


def lines(answer: bytes) -> list[str]:
    """The answer's segments, decoded as UTF-8 (MSH-18 UNICODE)."""
    assert answer.endswith(b"\r")
    return answer.decode("utf-8").split("\r")[:-1]


# ------------------------------------------------------------------ reading


def test_the_bc5300_request_is_read() -> None:
    """ORC-3 is the sample ID and MSH-10 the ID the answer's MSA-2 echoes."""
    first, _ = fixture_messages()
    request = parse_orm_o01(first)
    assert (request.control_id, request.sample_id, request.settings, request.problems) == (
        "9", "SampleID1", (), ())


def test_an_is_row_after_the_orc_is_kept_as_a_setting() -> None:
    """The BothLis Switch row some firmware adds changes nothing but is kept."""
    _, second = fixture_messages()
    request = parse_orm_o01(second)
    assert (request.control_id, request.sample_id, request.problems) == ("389", "1905040011", ())
    assert request.settings == (("BothLis Switch", "O"),)


def test_orc2_is_read_when_orc3_is_empty() -> None:
    """ORC-2 is the fallback for the sample ID."""
    raw = (b"MSH|^~\\&|||||20240101||ORM^O01|5|P|2.3.1||||||UNICODE\r"
           b"ORC|RF|A-77 ||||IP\r")
    assert parse_orm_o01(parse_message(raw)).sample_id == "A-77"


@pytest.mark.parametrize(("raw", "code"), [
    (b"MSH|^~\\&|||||20240101||ORM^O01|5|P|2.3.1\r", "100"),
    (b"MSH|^~\\&|||||20240101||ORM^O01|5|P|2.3.1\rORC|RF||||IP\r", "101"),
    (b"MSH|^~\\&|||||20240101||ORM^O01|5|P|2.3.1\rORC|NW|X1|X1||IP\r", "103"),
    (b"MSH|^~\\&|||||20240101||ORU^R01|5|P|2.3.1\rORC|RF||X1||IP\r", "200"),
])
def test_unusable_requests_are_reported_not_raised(raw: bytes, code: str) -> None:
    """No ORC, no sample ID, another ORC-1 or another message type: a problem, no exception."""
    request = parse_orm_o01(parse_message(raw))
    assert code in [p.code for p in request.problems]


def test_only_an_rf_orm_is_a_worklist_request() -> None:
    """An HIS order (ORC-1 NW) is data; RF (any case) is a request; the ORU is data."""
    nw = parse_message(b"MSH|^~\\&|HIS||||20240101||ORM^O01|5|P|2.3.1\r"
                       b"ORC|NW|CD1\rOBR|1|CD1||WBC\r")
    rf = parse_message(b"MSH|^~\\&|||||20240101||ORM^O01|6|P|2.3.1\rORC| rf ||X1||IP\r")
    assert not is_worklist_request(nw) and role_of(nw) is MessageRole.DATA
    assert is_worklist_request(rf) and role_of(rf) is MessageRole.QUERY
    assert all(role_of(m) is MessageRole.QUERY for m in fixture_messages())


# ------------------------------------------------------------------ the test mode


@pytest.mark.parametrize(("tests", "mode"), [
    (CBC, TestMode.CBC),
    (DIFF, TestMode.CBC_DIFF),
    ((("HGB", ""),), TestMode.CBC),
    ((("mon%", ""),), TestMode.CBC_DIFF),
    ((("BAS#", ""),), TestMode.CBC_DIFF),
    ((("MID#", ""),), TestMode.CBC_DIFF),
    ((("GRAN%", ""),), TestMode.CBC_DIFF),
    ((("ALY#", ""),), TestMode.CBC_DIFF),
    ((("LIC%", ""),), TestMode.CBC_DIFF),
    ((("EOS#", ""),), TestMode.CBC_DIFF),
    ((("RDW-CV", ""), ("MCHC", "")), TestMode.CBC),
])
def test_the_test_mode_follows_the_ordered_tests(tests: tuple[tuple[str, str], ...],
                                                 mode: TestMode) -> None:
    """A differential parameter among the tests asks CBC+DIFF; counts alone ask CBC."""
    assert choose_test_mode(tests) is mode


# ------------------------------------------------------------------ writing


def test_not_found_is_msa_ar_alone() -> None:
    """No order: ORR^O02 with MSA|AR|<the request's MSH-10>, nothing else (BC-5300 example)."""
    request = parse_orm_o01(fixture_messages()[0])
    answer = build_orr_o02(request, None, control_id="GW2", now=NOW)
    assert answer == (b"MSH|^~\\&|||||20261122091500||ORR^O02|GW2|P|2.3.1||||||UNICODE\r"
                      b"MSA|AR|9\r")


def test_found_carries_the_patient_the_order_and_the_run_settings() -> None:
    """An order with a differential: PID, PV1, ORC AF, OBR, Blood Mode W, Test Mode CBC+DIFF."""
    request = parse_orm_o01(fixture_messages()[0])
    answer = build_orr_o02(request, sample(), control_id="GW1", now=NOW)
    assert lines(answer) == [
        "MSH|^~\\&|||||20261122091500||ORR^O02|GW1|P|2.3.1||||||UNICODE",
        "MSA|AA|9",
        "PID|1||BN0001234^^^^MR||Đặng^Thị Ngọc Ánh||19900701|Female",
        "PV1|1",
        "ORC|AF|SampleID1",
        "OBR|1|SampleID1||00001^Automated Count^99MRC||20261122070500||||||||20261122074000"
        "||||||||||HM",
        "OBX|1|IS|08002^Blood Mode^99MRC||W||||||F",
        "OBX|2|IS|08003^Test Mode^99MRC||CBC+DIFF||||||F",
    ]
    obr = parse_message(answer).first("OBR")
    assert obr is not None and (obr[4], obr[6], obr[14], obr[24]) == (
        "00001^Automated Count^99MRC", "20261122070500", "20261122074000", "HM")


def test_counts_only_ask_cbc_and_absent_details_stay_empty() -> None:
    """CBC tests, a male patient without birth date or times: CBC, empty PID-7 and OBR times."""
    tube = OrderedSample("2611220042", CBC, PatientIdentity(
        hospital_id="BN9", hospital=HierarchicDesignator("BVDK"), family_name="Lê",
        given_name="Minh", sex=Sex.MALE))
    request = parse_orm_o01(parse_message(
        b"MSH|^~\\&|||||20261122||ORM^O01|12|P|2.3.1||||||UNICODE\rORC|RF||2611220042||IP\r"))
    got = lines(build_orr_o02(request, tube, control_id="GW3", now=NOW))
    assert got[2:] == ["PID|1||BN9^^^^MR||Lê^Minh|||Male", "PV1|1", "ORC|AF|2611220042",
                       "OBR|1|2611220042||00001^Automated Count^99MRC||||||||||||||||||||HM",
                       "OBX|1|IS|08002^Blood Mode^99MRC||W||||||F",
                       "OBX|2|IS|08003^Test Mode^99MRC||CBC||||||F"]


def test_delimiters_in_values_are_escaped() -> None:
    """A ``|`` or ``^`` in a name or sample ID cannot shift the analyzer's fields."""
    tube = OrderedSample("A|1", CBC, PatientIdentity(hospital_id="B^9", family_name="X&Y"))
    request = parse_orm_o01(parse_message(
        b"MSH|^~\\&|||||20261122||ORM^O01|7|P|2.3.1\rORC|RF||A\\F\\1||IP\r"))
    assert request.sample_id == "A|1"
    got = lines(build_orr_o02(request, tube, control_id="GW4", now=NOW))
    assert got[2] == "PID|1||B\\S\\9^^^^MR||X\\T\\Y"
    assert got[4] == "ORC|AF|A\\F\\1"


def test_a_request_with_problems_is_answered_ar_even_if_something_was_found() -> None:
    """Nothing is sent for a request that could not be read (no sample ID): AR."""
    request = parse_orm_o01(parse_message(
        b"MSH|^~\\&|||||20240101||ORM^O01|31|P|2.3.1\rORC|RF||||IP\r"))
    assert answer_for(request, [sample()]) is None
    assert lines(build_orr_o02(request, sample(), control_id="GW5", now=NOW))[1] == "MSA|AR|31"


def test_the_sample_asked_for_is_chosen() -> None:
    """Several tubes found: the one with the requested ID goes back, else the first."""
    request = parse_orm_o01(fixture_messages()[0])
    other, asked = sample(CBC, "OTHER"), sample(DIFF, "SampleID1")
    assert answer_for(request, [other, asked]) is asked
    assert answer_for(request, [other]) is other
    assert answer_for(request, []) is None


def test_building_without_a_control_id_or_tests_is_refused() -> None:
    """Local misuse raises: an empty MSH-10, a found sample without tests."""
    request = parse_orm_o01(fixture_messages()[0])
    with pytest.raises(BuildError):
        build_orr_o02(request, None, control_id="", now=NOW)
    with pytest.raises(BuildError):
        build_orr_o02(request, sample(()), control_id="GW6", now=NOW)


# ------------------------------------------------------------------ through the responder


def ids() -> object:
    """A control-ID source."""
    numbers = count(1)
    return lambda: f"GW{next(numbers)}"


def test_responder_looks_up_orc3_and_answers_one_orr() -> None:
    """read_query gives ORC-3 as the key; build_answers gives one ORR^O02 (AA or AR)."""
    pending = read_query(fixture_messages()[1])
    assert pending.keys == ("1905040011",) and pending.worklist is not None
    assert pending.mindray is None and pending.law is None
    (found,) = build_answers(pending, [sample(CBC, "1905040011")], control_ids=ids(), now=NOW)
    (none,) = build_answers(pending, [], control_ids=ids(), now=NOW)
    assert lines(found)[1] == "MSA|AA|389" and lines(found)[-1].endswith("||CBC||||||F")
    assert lines(none) == ["MSH|^~\\&|||||20261122091500||ORR^O02|GW1|P|2.3.1||||||UNICODE",
                           "MSA|AR|389"]


def test_responder_asks_nothing_for_an_unreadable_request() -> None:
    """No sample ID: no key to look up, and the answer is AR."""
    pending = read_query(parse_message(
        b"MSH|^~\\&|||||20240101||ORM^O01|31|P|2.3.1\rORC|RF||||IP\r"))
    assert pending.keys == ()
    (answer,) = build_answers(pending, [], control_ids=ids(), now=NOW)
    assert lines(answer)[1] == "MSA|AR|31"


# ------------------------------------------------------------------ hl7apy


def test_not_found_answer_passes_hl7apy_strict_v231() -> None:
    """MSH + MSA|AR is a valid ORR^O02 under hl7apy's STRICT v2.3.1 grammar."""
    request = parse_orm_o01(fixture_messages()[0])
    er7 = build_orr_o02(request, None, control_id="GW2", now=NOW).decode("utf-8")
    assert hl7apy_parse(er7, validation_level=VALIDATION_LEVEL.STRICT).validate() is True


def test_found_answer_against_hl7apy_strict_v231() -> None:
    """The found answer is checked segment by segment; where the dialect leaves v2.3.1 it
    is named here, so a change in either is noticed.

    * MSH, MSA, PID, ORC and OBR are valid v2.3.1 segments (STRICT).
    * PV1 (PV1-2 empty) and the OBX rows (OBX-4 empty) leave fields empty that v2.3.1
      requires, as the BC dialect does; and v2.3.1's ORR^O02 has no PV1 or OBX at all.
    * hl7apy models ORR_O02_CHOICE (OBR | RQD | RQ1 | RXO | ODS | ODT) as a sequence
      needing every member, so no real ORR^O02 with an OBR passes its message check.
    """
    request = parse_orm_o01(fixture_messages()[0])
    segments = lines(build_orr_o02(request, sample(), control_id="GW1", now=NOW))
    valid = {s[:3] for s in segments if s[:3] not in ("PV1", "OBX")}
    for text in segments:
        if text[:3] in valid:
            parsed = hl7apy_segment(text, version="2.3.1",
                                    validation_level=VALIDATION_LEVEL.STRICT)
            assert parsed.validate() is True, text
    assert valid == {"MSH", "MSA", "PID", "ORC", "OBR"}
    for text, missing in (("PV1|1", "PV1_2"), (segments[-1], "OBX_4")):
        with pytest.raises(ValidationError, match=missing):
            hl7apy_segment(text, version="2.3.1",
                           validation_level=VALIDATION_LEVEL.STRICT).validate()
    core = "\r".join(s for s in segments if s[:3] in valid) + "\r"
    with pytest.raises(ValidationError, match=r"ORR_O02_CHOICE\.RQD"):
        hl7apy_parse(core, validation_level=VALIDATION_LEVEL.STRICT).validate()
    with pytest.raises(MaxChildLimitReached):
        hl7apy_parse("\r".join(segments) + "\r", validation_level=VALIDATION_LEVEL.STRICT)
