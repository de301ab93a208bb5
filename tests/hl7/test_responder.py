"""Host-query answers (sans-IO): what is looked up and what goes back."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from itertools import count
from pathlib import Path

from lis_gateway.hl7.datatypes import HierarchicDesignator
from lis_gateway.hl7.message import parse_message
from lis_gateway.hl7.mllp import BlockReceived, MllpFramer
from lis_gateway.hl7.patient import PatientIdentity
from lis_gateway.hl7.queries import OrderedSample
from lis_gateway.hl7.responder import MessageRole, build_answers, read_query, role_of

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "hl7"
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=timezone(timedelta(hours=7)))


def fixture_message(name: str):
    """The first message of an HL7 fixture."""
    framer = MllpFramer()
    events = framer.receive_data((FIXTURES / f"{name}.bin").read_bytes(), 0.0)
    events += framer.handle_timer(10.0) + framer.connection_lost()
    block = next(e for e in events if isinstance(e, BlockReceived))
    return parse_message(block.data)


def ids() -> object:
    """A control-ID source."""
    numbers = count(1)
    return lambda: f"GW{next(numbers)}"


SAMPLE = OrderedSample("1234567", (("1", "TSH"), ("2", "FT4")),
                       PatientIdentity(hospital_id="BN1", hospital=HierarchicDesignator("BV1"),
                                       family_name="DOE", given_name="JANE"))


def test_roles() -> None:
    """Queries are answered, answers are not acknowledged, the rest is data."""
    assert role_of(fixture_message("mindray_2_qry")) is MessageRole.QUERY
    assert role_of(fixture_message("biosystems_3")) is MessageRole.QUERY
    assert role_of(fixture_message("biosystems_2")) is MessageRole.RESPONSE  # the LIS ACK
    assert role_of(fixture_message("mindray_4")) is MessageRole.DATA


def test_mindray_query_not_found_gets_qck_nf_only() -> None:
    """No order for the barcode: one QCK^Q02 with QAK|SR|NF echoing the query's ID."""
    msg = fixture_message("mindray_2_qry")
    pending = read_query(msg)
    assert pending.keys and pending.mindray is not None
    (qck,) = build_answers(pending, [], control_ids=ids(), now=NOW)
    answer = parse_message(qck)
    assert answer.message_type == "QCK^Q02"
    assert answer.first("MSA")[2] == msg.control_id  # type: ignore[index]
    qak = answer.first("QAK")
    assert qak is not None and (qak[1], qak[2]) == ("SR", "NF")


def test_mindray_query_found_gets_qck_ok_then_dsr() -> None:
    """An order exists: QCK^Q02 OK, then a DSR^Q03 carrying the barcode and the tests."""
    pending = read_query(fixture_message("mindray_2_qry"))
    qck, dsr = build_answers(pending, [SAMPLE], control_ids=ids(), now=NOW)
    assert parse_message(qck).first("QAK")[2] == "OK"  # type: ignore[index]
    dsr_msg = parse_message(dsr)
    assert dsr_msg.message_type == "DSR^Q03"
    dsp = [seg[3] for seg in dsr_msg.named("DSP")]
    assert "1234567" in dsp and any(v.startswith("1^") for v in dsp)


def test_law_query_not_found_gets_rsp_nf() -> None:
    """The BA400's QBP^Q11 with no order: RSP^K11 with QAK|<tag>|NF and the QPD echoed."""
    msg = fixture_message("biosystems_3")
    pending = read_query(msg)
    assert pending.law is not None and pending.keys == (pending.law.specimen_id,)
    (rsp,) = build_answers(pending, [], control_ids=ids(), now=NOW)
    answer = parse_message(rsp)
    assert answer.message_type == "RSP^K11"
    qak = answer.first("QAK")
    assert qak is not None and (qak[1], qak[2]) == (pending.law.query_tag, "NF")


def test_law_query_found_gets_rsp_ok_then_oml() -> None:
    """An order exists: RSP^K11 OK, then an OML^O33 per sample."""
    pending = read_query(fixture_message("biosystems_3"))
    rsp, oml = build_answers(pending, [SAMPLE], control_ids=ids(), now=NOW)
    assert parse_message(rsp).first("QAK")[2] == "OK"  # type: ignore[index]
    assert parse_message(oml).message_type == "OML^O33"


def test_unusable_query_is_answered_not_ignored() -> None:
    """A Mindray query without barcode or ranges still gets a QCK (NF or AE), never silence."""
    raw = (b"MSH|^~\\&|||||20240101||QRY^Q02|77|P|2.3.1\r"
           b"QRD|20240101|R|D|1|||RD||OTH|||T\rQRF||||||RCT|COR|ALL||\r")
    pending = read_query(parse_message(raw))
    assert pending.keys == ()
    (qck,) = build_answers(pending, [], control_ids=ids(), now=NOW)
    assert parse_message(qck).message_type == "QCK^Q02"
