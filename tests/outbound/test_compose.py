"""The ORU^R01 of one outbox entry: value types, F/C status, hl7apy STRICT v2.5.1."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from lis_gateway.hl7.datatypes import HierarchicDesignator, MessageRoute
from lis_gateway.hl7.errors import BuildError
from lis_gateway.hl7.message import parse_message
from lis_gateway.hl7.oru import NumericValue, StructuredNumeric, TextValue
from lis_gateway.outbound.compose import compose_oru, observation_value
from lis_gateway.store.outbox import OutboundResult
from lis_gateway.store.repository import ResultContent

from ..hl7.test_oru import check_value_type, strict_251

NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
ROUTE = MessageRoute(sending_application=HierarchicDesignator("LIS_GATEWAY"),
                     receiving_application=HierarchicDesignator("HIS"))
CONTENT = ResultContent(
    value_raw="5.4", number=Decimal("5.40"), unit_raw="mmol/L", unit_ucum="mmol/L", code="GLU",
    loinc="2345-7", flags=("N",), instrument_flags=(), reference_range="3.9-6.1", status="F",
    critical="", problems=(), mapping_version="v1",
    result_time=datetime(2026, 11, 1, 8, 0, tzinfo=UTC))
ITEM = OutboundResult(control_id="LG17", accession="S1", analyzer="cobas", test_code="GLU",
                      content=CONTENT,
                      corrected=False, hospital_id="H42", national_id="079000000001",
                      responsible="dr_minh", responsible_name="Nguyen Minh",
                      placer_order="CD0001")


def segment(message: bytes, name: str) -> list[str]:
    """The fields of the first segment called ``name``."""
    return next(s for s in message.decode().split("\r") if s.startswith(name)).split("|")


@pytest.mark.parametrize(("raw", "number", "expected"), [
    ("5.4", Decimal("5.40"), NumericValue(Decimal("5.40"))),  # the exact converted number
    ("<0.5", Decimal("0.5"), StructuredNumeric("<", Decimal("0.5"))),
    ("1:128", None, StructuredNumeric("", Decimal("1"), ":", Decimal("128"))),
    ("2+", None, StructuredNumeric("", Decimal("2"), "+")),
    ("Positive", None, TextValue("Positive")),
])
def test_value_type_follows_the_stored_content(raw: str, number: Decimal | None,
                                               expected: object) -> None:
    """NM for numbers, SN for comparators, ratios and 2+, ST for text."""
    assert observation_value(dataclasses.replace(CONTENT, value_raw=raw,
                                                 number=number)) == expected


def test_final_and_corrected_messages_validate_strictly() -> None:
    """F for a first version, C (OBX-11 and OBR-25) for a correction; both STRICT-valid."""
    final = compose_oru(ITEM, ROUTE, NOW, HierarchicDesignator("BV_TEST"))
    corrected = compose_oru(dataclasses.replace(ITEM, corrected=True), ROUTE, NOW,
                            HierarchicDesignator("BV_TEST"))
    for message, status in ((final, "F"), (corrected, "C")):
        strict_251(message)
        obx = segment(message, "OBX")
        check_value_type(obx[2], obx[5])
        assert (obx[11], segment(message, "OBR")[25]) == (status, status)
        assert parse_message(message).control_id == "LG17"
        assert obx[16] == "dr_minh^Nguyen^Minh"
        assert segment(message, "ORC")[2] == segment(message, "OBR")[2] == "CD0001"


def test_what_cannot_make_a_message_says_why() -> None:
    """No patient identifier, not mapped, no value, an unknown flag: BuildError says why."""
    no_patient = dataclasses.replace(ITEM, hospital_id="", national_id="")
    with pytest.raises(BuildError, match="hospital ID, a national ID"):
        compose_oru(no_patient, ROUTE, NOW)
    unmapped = dataclasses.replace(ITEM, content=dataclasses.replace(CONTENT, code="", loinc=""))
    with pytest.raises(BuildError, match="test 'GLU' of analyzer 'cobas' is not mapped"):
        compose_oru(unmapped, ROUTE, NOW, HierarchicDesignator("BV_TEST"))
    with pytest.raises(BuildError, match="no value"):
        observation_value(dataclasses.replace(CONTENT, value_raw=" ", number=None))
    with pytest.raises(BuildError):
        compose_oru(dataclasses.replace(ITEM, content=dataclasses.replace(
            CONTENT, flags=("??",))), ROUTE, NOW, HierarchicDesignator("BV_TEST"))


def test_a_retraction_deletes_the_obx_under_its_own_control_id() -> None:
    """OBX-11 D with OBR-25 C (protocols.md 3.7); STRICT-valid; MSH-10 is the retraction's."""
    message = compose_oru(dataclasses.replace(ITEM, control_id="LG17X", retracts="LG17"),
                          ROUTE, NOW, HierarchicDesignator("BV_TEST"))
    strict_251(message)
    assert (segment(message, "OBX")[11], segment(message, "OBR")[25]) == ("D", "C")
    assert parse_message(message).control_id == "LG17X"
