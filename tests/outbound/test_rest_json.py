"""The REST/JSON body template and the meaning of an HIS's HTTP answer (pure)."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal

import pytest

from lis_gateway.hl7.errors import BuildError
from lis_gateway.outbound.delivery import DeliveryStatus
from lis_gateway.outbound.rest_json import (
    DEFAULT,
    FIELDS,
    BodyTemplate,
    TemplateError,
    interpret_response,
)

from .test_compose import CONTENT, ITEM

VIETNAMESE = dataclasses.replace(ITEM, family_name="Nguyễn", middle_name="Thị",
                                 given_name="Hằng")


def test_the_default_body_carries_the_result_with_exact_numbers() -> None:
    """5.40 stays 5.40 in the JSON text; flags a list; status F; control ID for idempotency."""
    body = DEFAULT.render(ITEM)
    assert b'"number": 5.40' in body
    doc = json.loads(body, parse_float=Decimal)
    assert doc["control_id"] == "LG17"
    assert doc["number"] == Decimal("5.40") and doc["value"] == "5.40"
    assert doc["flags"] == ["N"] and doc["status"] == "F"
    assert doc["patient"] == {"hospital_id": "H42", "national_id": "079000000001",
                              "insurance_card": "", "source": "his",
                              "analyzer_patient_id": ""}
    assert doc["test"] == {"code": "GLU", "loinc": "2345-7", "analyzer_code": "GLU"}
    assert doc["result_time"] == "2026-11-01T08:00:00+00:00"
    assert doc["released_by"] == "dr_minh" and doc["order"] == "CD0001"


def test_a_site_template_keeps_types_and_fills_text() -> None:
    """Whole-string fields keep their JSON type; embedded ones become text; UTF-8 as is."""
    template = BodyTemplate.parse(json.dumps({
        "maPhieu": "{{accession}}", "ketQua": "{{number}}", "hoTen": "{{patient_name}}",
        "ghiChu": "KQ {{value}} {{unit}} ({{status}})", "sua": "{{corrected}}",
        "co": "{{flags}}", "ngaySinh": "{{birth_date}}", "hang": [1, "{{code}}", None],
    }))
    body = template.render(dataclasses.replace(VIETNAMESE, corrected=True))
    assert "Nguyễn Thị Hằng".encode() in body
    doc = json.loads(body, parse_float=Decimal)
    assert doc == {"maPhieu": "S1", "ketQua": Decimal("5.40"), "hoTen": "Nguyễn Thị Hằng",
                   "ghiChu": "KQ 5.40 mmol/L (C)", "sua": True, "co": ["N"],
                   "ngaySinh": None, "hang": [1, "GLU", None]}


def test_a_text_result_has_no_number() -> None:
    """A text result: number is null, value is the analyzer's text."""
    text = dataclasses.replace(ITEM, content=dataclasses.replace(
        CONTENT, value_raw="Positive", number=None, flags=()))
    doc = json.loads(DEFAULT.render(text))
    assert doc["number"] is None and doc["value"] == "Positive" and doc["flags"] == []


def test_an_unmapped_result_is_not_sent() -> None:
    """Neither local code nor LOINC: BuildError naming the mapping table."""
    unmapped = dataclasses.replace(ITEM, content=dataclasses.replace(CONTENT, code="", loinc=""))
    with pytest.raises(BuildError, match="mapping table"):
        DEFAULT.render(unmapped)


@pytest.mark.parametrize(("text", "message"), [
    ('{"a": "{{colour}}"}', r"\$\.a: unknown field \{\{colour\}\}"),
    ('{"a": ["x", {"b": "n={{nope}}"}]}', r"\$\.a\[1\]\.b: unknown field \{\{nope\}\}"),
    ('{"a": ', "not valid JSON"),
])
def test_bad_templates_are_refused_with_the_place(text: str, message: str) -> None:
    """Unknown fields and broken JSON are errors when the configuration loads."""
    with pytest.raises(TemplateError, match=message):
        BodyTemplate.parse(text, "body.json")


def test_every_field_reads_an_entry() -> None:
    """No field raises on a full entry (a template may use any of them)."""
    for read in FIELDS.values():
        read(VIETNAMESE)  # would raise on a wrong attribute
    doc = json.loads(BodyTemplate.parse(json.dumps({n: f"{{{{{n}}}}}" for n in FIELDS}))
                     .render(VIETNAMESE))
    assert doc["patient_name"] == "Nguyễn Thị Hằng" and doc["critical"] == ""


@pytest.mark.parametrize(("status", "body", "expected", "text"), [
    (200, b"{}", DeliveryStatus.DELIVERED, "HTTP 200"),
    (201, b"", DeliveryStatus.DELIVERED, "HTTP 201"),
    (503, b"maintenance", DeliveryStatus.RETRY, "HTTP 503: maintenance"),
    (429, b"", DeliveryStatus.RETRY, "HTTP 429"),
    (408, b"", DeliveryStatus.RETRY, "HTTP 408"),
    (422, '{"loi": "Mã phiếu không tồn tại"}'.encode(), DeliveryStatus.REJECTED,
     'HTTP 422: {"loi": "Mã phiếu không tồn tại"}'),
    (401, b"bad token", DeliveryStatus.REJECTED, "HTTP 401: bad token"),
    (302, b"", DeliveryStatus.REJECTED,
     "HTTP 302: redirect not followed; configure the final URL"),
])
def test_http_answers(status: int, body: bytes, expected: DeliveryStatus, text: str) -> None:
    """2xx delivered; 408/429/5xx retried; other codes dead-lettered with the HIS's text."""
    assert interpret_response(status, body) == (expected, text)


def test_long_error_bodies_are_cut() -> None:
    """The reason kept is at most 500 characters of the body."""
    status, text = interpret_response(400, b"x" * 5000)
    assert status is DeliveryStatus.REJECTED and len(text) == len("HTTP 400: ") + 501


def test_a_retraction_says_status_d_and_what_it_retracts() -> None:
    """status D, retracted true, retracts = the control ID sent before."""
    doc = json.loads(BodyTemplate.parse('{"s": "{{status}}", "r": "{{retracted}}", '
                                        '"of": "{{retracts}}"}').render(
        dataclasses.replace(ITEM, control_id="LG17X", retracts="LG17")))
    assert doc == {"s": "D", "r": True, "of": "LG17"}
    assert json.loads(DEFAULT.render(ITEM))["retracts"] == ""


def test_a_patient_from_the_analyzer_is_not_sent_as_the_hospital_id() -> None:
    """unsolicited: the analyzer's patient ID has its own field and the source says so."""
    item = dataclasses.replace(ITEM, hospital_id="P-77", national_id="",
                               patient_analyzer="xn1")
    doc = json.loads(DEFAULT.render(item))
    assert doc["patient"] == {"hospital_id": "", "national_id": "", "insurance_card": "",
                              "source": "analyzer", "analyzer_patient_id": "P-77"}
