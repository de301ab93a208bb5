"""The JSON order body of POST /api/orders (pure): the same OrderMessage as an ORM^O01."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest

from lis_gateway.hl7.orders_in import IncomingOrder, OrderControl, OrderPatient
from lis_gateway.orders_json import parse_json_orders

BODY: dict[str, Any] = {
    "message_id": "HIS-1",
    "patient": {"hospital_id": "BN0001", "national_id": "079123456789",
                "family_name": "Trần", "middle_name": "Thị", "given_name": "Bình",
                "birth_date": "1970-03-04", "sex": "f", "visit_number": "VV1"},
    "orders": [{"barcode": "C240001", "placer_order": "CD1", "tests": ["GLU", "K", "GLU"],
                "priority": "stat", "ordered_at": "2026-11-22T08:00:00+07:00",
                "collected_at": "2026-11-22T08:10:00"}],
}


def parse(document: Any) -> tuple[str, Any]:
    return parse_json_orders(json.dumps(document).encode())


def test_a_full_order_reads_like_an_orm() -> None:
    """Patient, tests (deduplicated), STAT, times to UTC (no offset: Asia/Ho_Chi_Minh)."""
    message_id, parsed = parse(BODY)
    assert message_id == "HIS-1" and parsed.problems == ()
    assert parsed.patient == OrderPatient(
        hospital_id="BN0001", national_id="079123456789", family_name="Trần",
        middle_name="Thị", given_name="Bình", birth_date=date(1970, 3, 4), sex="F",
        visit_number="VV1")
    assert parsed.orders == (IncomingOrder(
        control=OrderControl.NEW, barcode="C240001", placer_order="CD1", tests=("GLU", "K"),
        priority="S", ordered_at=datetime(2026, 11, 22, 1, 0, tzinfo=UTC),
        collected_at=datetime(2026, 11, 22, 1, 10, tzinfo=UTC)),)


def test_a_cancellation_needs_no_patient_and_no_tests() -> None:
    """Cancel by barcode alone, as ORC-1 CA does."""
    _, parsed = parse({"orders": [{"action": "cancel", "barcode": "C240001"}]})
    assert parsed.problems == ()
    assert parsed.orders[0].control is OrderControl.CANCEL and parsed.orders[0].tests == ()


def test_a_year_only_birth_date_is_unknown() -> None:
    """'1970' (day and month unknown) is stored as no birth date, not 1 January."""
    body = json.loads(json.dumps(BODY))
    body["patient"]["birth_date"] = "1970"
    assert parse(body)[1].patient.birth_date is None


def test_every_problem_is_named_by_its_path_without_values() -> None:
    """Bad ID, sex, times, tests, action, priority, unknown keys: all at once, no values."""
    _, parsed = parse({
        "patient": {"national_id": "12345", "sex": "X", "birth_date": "04/03/1970",
                    "colour": "red"},
        "orders": [{"action": "delete", "barcode": "", "tests": "GLU", "priority": "now",
                    "ordered_at": "yesterday"}, 7],
    })
    assert parsed.problems == (
        "patient.colour: unknown key (expected one of birth_date, family_name, given_name, "
        "hospital_id, insurance_card, middle_name, national_id, sex, visit_number)",
        "patient.national_id: must be the 12-digit personal identification number",
        "patient.sex: expected one of F, M, O, U, A, N",
        "patient.birth_date: expected YYYY-MM-DD or YYYY",
        "orders[0].action: expected new, cancel or change",
        "orders[0].barcode: missing (the sample's barcode)",
        "orders[0].tests: expected a list of local test codes",
        "orders[0].tests: no ordered test",
        "orders[0].priority: expected stat or routine",
        "orders[0].ordered_at: expected an ISO 8601 time (2026-11-22T08:00:00+07:00)",
        "orders[1]: expected an object",
    )
    assert "12345" not in " ".join(parsed.problems)


def test_a_new_order_without_patient_ids_is_refused() -> None:
    """No hospital ID, national ID or insurance card: refused (never guessed)."""
    _, parsed = parse({"patient": {"family_name": "Trần"},
                       "orders": [{"barcode": "C1", "tests": ["GLU"]}]})
    assert parsed.problems == ("patient: no hospital_id, national_id or insurance_card",)


@pytest.mark.parametrize(("body", "problem"), [
    (b"{not json", "the body is not JSON (Expecting property name enclosed in double quotes)"),
    (b"\xff\xfe", "the body is not UTF-8"),
    (b"[]", "the body must be a JSON object"),
    (b"{}", "orders: expected a non-empty list"),
])
def test_bodies_that_are_not_orders(body: bytes, problem: str) -> None:
    """Not JSON, not UTF-8, not an object, no orders: one clear problem."""
    assert parse_json_orders(body)[1].problems[0] == problem
