"""Acknowledgements: built for analyzers (checked by hl7apy and python-hl7), read from the HIS."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import hl7
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message as hl7apy_parse

from lis_gateway.hl7.ack import Outcome, build_ack, interpret_ack, plan_acks
from lis_gateway.hl7.errors import AckError
from lis_gateway.hl7.message import parse_message

NOW = datetime(2026, 11, 22, 9, 30, 5, tzinfo=timezone(timedelta(hours=7)))

LAW_OUL = (b"MSH|^~\\&|BA400|Biosystems|Host|Host provider|20230511165533||OUL^R22^OUL_R22|"
           b"f7c9b548|P|2.5.1|||ER|AL||UNICODE UTF-8|||LAB-29^IHE\r"
           b"SPM|1|S0001||SER|||||||P\rOBR||\"\"||CHOL^CHOL^A400\rORC|OK||||CM\r"
           b"OBX|1|NM|CHOL^CHOL^A400||177.7|mg/dL^mg/dL^A400||NONE|||F\r")
MINDRAY_ORU = (b"MSH|^~\\&|Mindray|CL-2000i|||20240101||ORU^R01|42|P|2.3.1||||0||ASCII\r"
               b"OBR|1|1234||||||||||||||||||\rOBX|1|NM|2|TSH|1.2|uIU/mL|0.3-4.5|N|||F\r")
SNIBE_NE = (b"MSH|^~\\&|Maglumi User||Lis||20240829150108||OUL^R22|990|P|2.5|||NE|NE||UTF-8\r"
            b"OBX|1||TSH||4.53^|uIU/mL\r")


def strict_251(er7: bytes) -> None:
    """Parse with hl7apy STRICT v2.5.1 and validate; raises on any violation."""
    message = hl7apy_parse(er7.decode(), validation_level=VALIDATION_LEVEL.STRICT,
                           find_groups=True)
    assert message.validate() is True


def test_original_mode_ack_for_v251_validates_strictly() -> None:
    """An AA for an IHE LAW OUL^R22 is a valid v2.5.1 ACK echoing the control ID."""
    msg = parse_message(LAW_OUL)
    ack = build_ack(msg, "AA", control_id="GW1", now=NOW)
    strict_251(ack)
    parsed = hl7.parse(ack.decode())
    assert str(parsed.segment("MSA")[1]) == "AA"
    assert str(parsed.segment("MSA")[2]) == "f7c9b548"
    assert str(parsed.segment("MSH")[9]) == "ACK^R22^ACK"
    assert str(parsed.segment("MSH")[3]) == "Host"  # sender and receiver swapped
    assert str(parsed.segment("MSH")[5]) == "BA400"
    assert str(parsed.segment("MSH")[7]) == "20261122093005+0700"


def test_error_ack_carries_err_in_v25_form() -> None:
    """AE with an error code: ERR-3 holds code^text^HL70357 and ERR-4 the severity."""
    msg = parse_message(LAW_OUL)
    ack = build_ack(msg, "AE", control_id="GW2", now=NOW, text="database unavailable",
                    error_code="207")
    strict_251(ack)
    err = parse_message(ack).first("ERR")
    assert err is not None
    assert (err[3], err[4]) == ("207^database unavailable^HL70357", "E")


def test_v231_ack_uses_the_senders_version_and_err1() -> None:
    """Mindray's 2.3.1 gets ACK^R01 (no structure component) and an ERR-1 on error."""
    msg = parse_message(MINDRAY_ORU)
    ack = parse_message(build_ack(msg, "AR", control_id="9", now=NOW, error_code="200",
                                  text="unsupported"))
    assert ack.message_type == "ACK^R01" and ack.msh[12] == "2.3.1"
    assert ack.msh[18] == "ASCII"
    err = ack.first("ERR")
    assert err is not None and err[1] == "^^^200"
    parsed = hl7.parse(ack.raw.decode())
    assert str(parsed.segment("MSA")[2]) == "42"


def test_text_is_escaped() -> None:
    """A reason containing delimiters is escaped and reads back equal."""
    msg = parse_message(LAW_OUL)
    ack = parse_message(build_ack(msg, "AE", control_id="3", now=NOW, text="a|b^c"))
    assert ack.text(ack.first("MSA")[3]) == "a|b^c"  # type: ignore[index]


@pytest.mark.parametrize(("accept", "application", "outcome", "codes"), [
    ("", "", Outcome.ACCEPTED, ["AA"]),
    ("", "", Outcome.ERROR, ["AE"]),
    ("AL", "AL", Outcome.ACCEPTED, ["CA", "AA"]),
    ("ER", "AL", Outcome.ACCEPTED, ["AA"]),
    ("ER", "AL", Outcome.REJECTED, ["CR", "AR"]),
    ("AL", "NE", Outcome.ACCEPTED, ["CA"]),
    ("AL", "SU", Outcome.ERROR, ["CE"]),
    ("NE", "NE", Outcome.ACCEPTED, ["AA"]),  # always_ack: Snibe waits anyway
])
def test_ack_plan_original_and_enhanced(accept: str, application: str, outcome: Outcome,
                                        codes: list[str]) -> None:
    """MSH-15/16 decide which acknowledgements go out."""
    raw = MINDRAY_ORU.replace(b"2.3.1||||0||ASCII",
                              b"2.3.1|||" + accept.encode() + b"|" + application.encode()
                              + b"||ASCII")
    assert plan_acks(parse_message(raw), outcome) == codes


def test_ne_ne_without_always_ack_sends_nothing() -> None:
    """A profile that honours NE sends no acknowledgement."""
    assert plan_acks(parse_message(SNIBE_NE), Outcome.ACCEPTED, always_ack=False) == []


def test_interpret_his_acks() -> None:
    """AA delivered, AE retried, AR rejected with the HIS's error text."""
    aa = interpret_ack(parse_message(b"MSH|^~\\&|HIS||LIS||20260101||ACK|1|P|2.5.1\r"
                                     b"MSA|AA|GW-00000017\r"))
    assert aa.accepted and aa.acknowledges == "GW-00000017"
    ae = interpret_ack(parse_message(b"MSH|^~\\&|HIS||LIS||20260101||ACK|2|P|2.5.1\r"
                                     b"MSA|AE|GW-18\rERR|||207^Database locked^HL70357|E\r"))
    assert ae.retry and ae.error_code == "207" and "Database locked" in ae.text
    ar = interpret_ack(parse_message(b"MSH|^~\\&|HIS||LIS||20260101||ACK|3|P|2.5.1\r"
                                     b"MSA|AR|GW-19|Unknown patient\r"))
    assert ar.rejected and ar.text == "Unknown patient"


def test_interpret_mindray_error_code_in_msa6() -> None:
    """Mindray writes its error code in MSA-6."""
    result = interpret_ack(parse_message(
        b"MSH|^~\\&|||||20240101||ACK^Q03|1|P|2.3.1\r"
        b"MSA|AR|1|Application query error|||206\r"))
    assert result.rejected and result.error_code == "206"


def test_message_without_msa_is_not_an_ack() -> None:
    """Reading an ORU as an ACK is local misuse."""
    with pytest.raises(AckError):
        interpret_ack(parse_message(MINDRAY_ORU))


def test_unknown_code_is_refused() -> None:
    """build_ack accepts only the six HL7 codes."""
    with pytest.raises(AckError):
        build_ack(parse_message(LAW_OUL), "OK", control_id="1", now=NOW)
