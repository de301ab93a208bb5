"""The FHIR transaction Bundle of one outbox entry, checked by fhir.resources (R4B models)."""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle

from lis_gateway.hl7.errors import BuildError
from lis_gateway.outbound.delivery import DeliveryStatus
from lis_gateway.outbound.fhir import (
    INTERPRETATION,
    LOINC,
    UCUM,
    FhirIdentity,
    compose_bundle,
    interpret_response,
)
from lis_gateway.store.outbox import OutboundResult
from lis_gateway.store.repository import ResultContent

ICT = timezone(timedelta(hours=7))
NOW = datetime(2026, 11, 1, 9, 0, tzinfo=ICT)
IDENTITY = FhirIdentity("https://bv.example/fhir/sid/patient-id",
                        accession_system="https://bv.example/fhir/sid/accession",
                        result_system="https://bv.example/fhir/sid/lis-result",
                        local_code_system="https://bv.example/fhir/CodeSystem/lab-test")
CONTENT = ResultContent(
    value_raw="5.2", number=Decimal("5.20"), unit_raw="mmol/l", unit_ucum="mmol/L", code="GLU",
    loinc="2345-7", flags=("H",), instrument_flags=(), reference_range="3.9-6.1", status="F",
    critical="", problems=(), mapping_version="v1",
    result_time=datetime(2026, 11, 1, 8, 0, tzinfo=ICT))
ITEM = OutboundResult(control_id="LG17", accession="S1", analyzer="cobas", test_code="GLU",
                      content=CONTENT, corrected=False, hospital_id="H42",
                      national_id="079000000001", insurance_card="GD4797908000123",
                      responsible="dr_minh", responsible_name="Trần Bình",
                      family_name="Nguyễn", middle_name="Thị", given_name="Hương",
                      birth_date=date(1980, 2, 29), sex="F", placer_order="CD0001")


def compose(item: OutboundResult = ITEM, now: datetime = NOW) -> tuple[bytes, dict[str, Any]]:
    """The Bundle's bytes, and the Bundle read back with exact decimals."""
    data = compose_bundle(item, now, IDENTITY)
    return data, json.loads(data, parse_float=Decimal)


def resource(bundle: dict[str, Any], kind: str) -> dict[str, Any]:
    """The one resource of ``kind`` in the Bundle."""
    [found] = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]
    return found


def with_content(**changes: Any) -> OutboundResult:
    return dataclasses.replace(ITEM, content=dataclasses.replace(CONTENT, **changes))


@pytest.mark.parametrize("item", [
    ITEM,
    dataclasses.replace(ITEM, corrected=True),
    dataclasses.replace(ITEM, hospital_id="", responsible="", placer_order="", analyzer="",
                        family_name="", middle_name="", given_name="", birth_date=None),
    with_content(value_raw="<0.5", number=Decimal("0.5"), flags=(), result_time=None),
    with_content(value_raw="Dương tính", number=None, unit_ucum="", unit_raw=""),
    with_content(value_raw="1:128", number=None, unit_ucum="", unit_raw=""),
    with_content(value_raw="10-20", number=None),
    dataclasses.replace(ITEM, hospital_id="P-77", national_id="", patient_analyzer="xn1"),
], ids=["final", "corrected", "minimal", "comparator", "text", "ratio", "range",
       "analyzer-patient"])
def test_bundle_validates_against_the_fhir_models(item: OutboundResult) -> None:
    """The Bundle and each resource in it parse as FHIR R4B models (no extra or wrong fields)."""
    data, bundle = compose(item)
    parsed = Bundle.model_validate_json(data)
    assert parsed.type == "transaction"
    assert [e.resource.get_resource_type() for e in parsed.entry] == [
        "Patient", "Specimen", "Observation", "DiagnosticReport"]
    for entry in bundle["entry"]:
        res = entry["resource"]
        get_fhir_model_class(res["resourceType"]).model_validate(res)
        assert entry["request"]["method"] == "POST"
        assert entry["request"]["url"] == res["resourceType"]
        assert entry["fullUrl"].startswith("urn:uuid:")


def test_bundle_header_and_conditional_creates() -> None:
    """Bundle identifier = control ID; each entry is created only if it is not there yet."""
    _, bundle = compose()
    assert bundle["identifier"] == {"system": "https://bv.example/fhir/sid/lis-result",
                                    "value": "LG17"}
    assert bundle["timestamp"] == "2026-11-01T09:00:00+07:00"
    assert [e["request"]["ifNoneExist"] for e in bundle["entry"]] == [
        "identifier=https://bv.example/fhir/sid/patient-id|H42",
        "accession=https://bv.example/fhir/sid/accession|S1",
        "identifier=https://bv.example/fhir/sid/lis-result|LG17",
        "identifier=https://bv.example/fhir/sid/lis-result|LG17",
    ]


def test_search_values_in_if_none_exist_are_escaped() -> None:
    """FHIR escapes ``| , $ \\`` in a token; then anything unsafe in a URL is encoded."""
    _, bundle = compose(dataclasses.replace(ITEM, hospital_id="A|B,C $D&E"))
    assert bundle["entry"][0]["request"]["ifNoneExist"] == (
        "identifier=https://bv.example/fhir/sid/patient-id|A%5C|B%5C%2CC%20%5C%24D%26E")


def test_references_point_inside_the_bundle() -> None:
    """subject, specimen and result refer to the fullUrls of the Bundle's entries."""
    _, bundle = compose()
    url = {e["resource"]["resourceType"]: e["fullUrl"] for e in bundle["entry"]}
    observation, report = resource(bundle, "Observation"), resource(bundle, "DiagnosticReport")
    specimen = resource(bundle, "Specimen")
    for res in (observation, report, specimen):
        assert res["subject"] == {"reference": url["Patient"]}
    assert observation["specimen"] == {"reference": url["Specimen"]}
    assert report["specimen"] == [{"reference": url["Specimen"]}]
    assert report["result"] == [{"reference": url["Observation"]}]
    assert specimen["accessionIdentifier"] == {
        "system": "https://bv.example/fhir/sid/accession", "value": "S1"}


def test_observation_carries_the_result() -> None:
    """LOINC and local code, the exact value in UCUM, flag, range, times, who and what."""
    data, bundle = compose()
    obs = resource(bundle, "Observation")
    assert obs["identifier"] == [{"system": "https://bv.example/fhir/sid/lis-result",
                                  "value": "LG17"}]
    assert obs["status"] == "final"
    assert obs["category"][0]["coding"][0]["code"] == "laboratory"
    assert obs["code"] == {"coding": [
        {"system": LOINC, "code": "2345-7"},
        {"system": "https://bv.example/fhir/CodeSystem/lab-test", "code": "GLU"}]}
    assert obs["valueQuantity"] == {"value": Decimal("5.20"), "unit": "mmol/L",
                                    "system": UCUM, "code": "mmol/L"}
    assert b'"value":5.20,' in data  # the stored digits, not a float's
    assert obs["interpretation"] == [{"coding": [{"system": INTERPRETATION, "code": "H"}]}]
    assert obs["referenceRange"] == [{"text": "3.9-6.1"}]
    assert obs["effectiveDateTime"] == "2026-11-01T08:00:00+07:00"
    assert obs["issued"] == "2026-11-01T09:00:00+07:00"
    assert obs["performer"] == [{"type": "Practitioner", "display": "Trần Bình", "identifier": {
        "system": IDENTITY.practitioner_system, "value": "dr_minh"}}]
    assert obs["device"]["identifier"] == {"system": IDENTITY.device_system, "value": "cobas"}


def test_diagnostic_report() -> None:
    """Accession and control ID, LAB category, same code, interpreter, the HIS order."""
    _, bundle = compose()
    report = resource(bundle, "DiagnosticReport")
    assert report["identifier"] == [
        {"system": "https://bv.example/fhir/sid/accession", "value": "S1"},
        {"system": "https://bv.example/fhir/sid/lis-result", "value": "LG17"}]
    assert report["status"] == "final"
    assert report["category"][0]["coding"][0]["system"] == (
        "http://terminology.hl7.org/CodeSystem/v2-0074")
    assert report["category"][0]["coding"][0]["code"] == "LAB"
    assert report["code"] == resource(bundle, "Observation")["code"]
    assert report["issued"] == "2026-11-01T09:00:00+07:00"
    assert report["resultsInterpreter"][0]["identifier"]["value"] == "dr_minh"
    assert report["basedOn"] == [{"type": "ServiceRequest", "identifier": {
        "system": IDENTITY.order_system, "value": "CD0001"}}]


def test_what_is_absent_is_left_out() -> None:
    """No analysis time, releasing user, HIS order, LOINC or flags: those elements are absent."""
    item = dataclasses.replace(
        with_content(result_time=None, loinc="", flags=()), responsible="", placer_order="")
    _, bundle = compose(item)
    obs, report = resource(bundle, "Observation"), resource(bundle, "DiagnosticReport")
    for absent in ("effectiveDateTime", "performer", "interpretation"):
        assert absent not in obs
    for absent in ("effectiveDateTime", "resultsInterpreter", "basedOn"):
        assert absent not in report
    assert obs["issued"] == "2026-11-01T09:00:00+07:00"
    assert obs["code"]["coding"] == [{"system": IDENTITY.local_code_system, "code": "GLU"}]


def test_corrected_version_says_so_in_both_resources() -> None:
    """A version that supersedes a released one is ``corrected`` in Observation and report."""
    _, bundle = compose(dataclasses.replace(ITEM, corrected=True))
    assert resource(bundle, "Observation")["status"] == "corrected"
    assert resource(bundle, "DiagnosticReport")["status"] == "corrected"


@pytest.mark.parametrize(("raw", "number", "value"), [
    ("<0.5", Decimal("0.5"), {"valueQuantity": {
        "value": Decimal("0.5"), "comparator": "<", "unit": "mmol/L", "system": UCUM,
        "code": "mmol/L"}}),
    (">=160", None, {"valueQuantity": {
        "value": Decimal("160"), "comparator": ">=", "unit": "mmol/L", "system": UCUM,
        "code": "mmol/L"}}),
    ("Âm tính", None, {"valueString": "Âm tính"}),
    ("2+", None, {"valueString": "2+"}),
    ("1:128", None, {"valueRatio": {"numerator": {"value": Decimal("1")},
                                    "denominator": {"value": Decimal("128")}}}),
    ("10-20", None, {"valueRange": {
        "low": {"value": Decimal("10"), "unit": "mmol/L", "system": UCUM, "code": "mmol/L"},
        "high": {"value": Decimal("20"), "unit": "mmol/L", "system": UCUM, "code": "mmol/L"}}}),
])
def test_value_follows_the_stored_content(raw: str, number: Decimal | None,
                                          value: dict[str, Any]) -> None:
    """Quantity (with comparator), string, ratio or range: one ``value[x]`` only."""
    _, bundle = compose(with_content(value_raw=raw, number=number))
    obs = resource(bundle, "Observation")
    assert {k: v for k, v in obs.items() if k.startswith("value")} == value


def test_unit_without_ucum_code_is_text_only() -> None:
    """A unit with no UCUM mapping is shown, but claims no UCUM code."""
    _, bundle = compose(with_content(unit_ucum=""))
    assert resource(bundle, "Observation")["valueQuantity"] == {
        "value": Decimal("5.20"), "unit": "mmol/l"}


def test_numbers_keep_their_digits_and_are_never_floats() -> None:
    """Trailing zeros stay; no exponent and no float rounding on the way."""
    data, _ = compose(with_content(value_raw="0.10", number=Decimal("0.100")))
    assert b'"value":0.100,' in data
    data, _ = compose(with_content(value_raw="1E+3", number=Decimal("1E+3")))
    assert b'"value":1000,' in data
    with pytest.raises(BuildError, match="not a finite number"):
        compose(with_content(number=Decimal("NaN")))


def test_patient_identity_and_vietnamese_name() -> None:
    """Three identifiers, the name in Vietnamese order, diacritics as UTF-8."""
    data, bundle = compose()
    patient = resource(bundle, "Patient")
    assert patient["identifier"] == [
        {"system": "https://bv.example/fhir/sid/patient-id", "value": "H42"},
        {"system": "http://fhir.hl7.org.vn/core/sid/cccd", "value": "079000000001"},
        {"system": "http://fhir.hl7.org.vn/core/sid/bhyt", "value": "GD4797908000123"}]
    assert patient["name"] == [{"text": "Nguyễn Thị Hương", "family": "Nguyễn",
                                "given": ["Thị", "Hương"]}]
    assert patient["birthDate"] == "1980-02-29"
    assert "Nguyễn Thị Hương".encode() in data
    assert b"\\u" not in data  # not ASCII-escaped


@pytest.mark.parametrize(("sex", "gender"), [
    ("M", "male"), ("F", "female"), ("O", "other"), ("A", "other"), ("N", "other"),
    ("U", "unknown"), ("", "unknown"), ("X", "unknown"),
])
def test_gender_from_table_0001(sex: str, gender: str) -> None:
    """Table 0001 as the v2-to-FHIR IG maps it; anything else is unknown."""
    _, bundle = compose(dataclasses.replace(ITEM, sex=sex))
    assert resource(bundle, "Patient")["gender"] == gender


@pytest.mark.parametrize(("ids", "condition"), [
    ({"hospital_id": ""}, "identifier=http://fhir.hl7.org.vn/core/sid/cccd|079000000001"),
    ({"hospital_id": "", "national_id": ""},
     "identifier=http://fhir.hl7.org.vn/core/sid/bhyt|GD4797908000123"),
])
def test_patient_is_matched_on_the_best_identifier_present(ids: dict[str, str],
                                                           condition: str) -> None:
    """Hospital ID first, then the national ID, then the BHYT card."""
    _, bundle = compose(dataclasses.replace(ITEM, **ids))
    assert bundle["entry"][0]["request"]["ifNoneExist"] == condition


def test_same_entry_same_bundle_apart_from_times() -> None:
    """fullUrls come from the control ID: a resend is the same Bundle but for its times."""
    first, _ = compose()
    again, _ = compose(now=NOW + timedelta(hours=3))
    assert first.replace(b"T09:00:00", b"T12:00:00") == again
    _, other = compose(dataclasses.replace(ITEM, control_id="LG18"))
    urls = {e["fullUrl"] for e in json.loads(first)["entry"]}
    assert len(urls) == 4
    assert urls.isdisjoint(e["fullUrl"] for e in other["entry"])


@pytest.mark.parametrize(("item", "now", "message"), [
    (dataclasses.replace(ITEM, hospital_id="", national_id="", insurance_card=""), NOW,
     "hospital ID, a national ID or an insurance card"),
    (dataclasses.replace(ITEM, national_id="79000000001"), NOW, "12-digit"),
    (with_content(code="", loinc=""), NOW, "test 'GLU' of analyzer 'cobas' is not mapped"),
    (with_content(flags=("H", "??")), NOW, r"flags \['\?\?'\] are not in HL7 table 0078"),
    (with_content(value_raw=" ", number=None), NOW, "no value"),
    (ITEM, NOW.replace(tzinfo=None), "no UTC offset"),
    (with_content(result_time=datetime(2026, 11, 1, 8, 0)), NOW, "no UTC offset"),
])
def test_what_cannot_make_a_bundle_says_why(item: OutboundResult, now: datetime,
                                             message: str) -> None:
    """Like the ORU: BuildError with the reason, for the outbox to show."""
    with pytest.raises(BuildError, match=message):
        compose_bundle(item, now, IDENTITY)


def test_identity_systems_must_be_uris() -> None:
    """A system that is not an absolute URI is refused when the site is configured."""
    with pytest.raises(ValueError, match="hospital_patient_system"):
        FhirIdentity("BV_TEST")
    with pytest.raises(ValueError, match="device_system"):
        FhirIdentity("urn:oid:1.2.3", device_system="")


def _answer(*statuses: str) -> bytes:
    return json.dumps({"resourceType": "Bundle", "type": "transaction-response", "entry": [
        {"response": {"status": s, "location": f"X/{i}/_history/1"}}
        for i, s in enumerate(statuses, 1)]}).encode()


def _outcome(*diagnostics: str) -> bytes:
    return json.dumps({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "processing", "diagnostics": d} for d in diagnostics]
    }).encode()


_BAD_ENTRY = json.dumps({"resourceType": "Bundle", "type": "transaction-response", "entry": [
    {"response": {"status": "201 Created"}},
    {"response": {"status": "201 Created"}},
    {"response": {"status": "422 Unprocessable Entity", "outcome": {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "invalid",
                   "details": {"text": "Unknown code system"}}]}}}]}).encode()


@pytest.mark.parametrize(("status", "body", "expected", "text"), [
    (200, _answer("201 Created", "200 OK", "201 Created", "201 Created"),
     DeliveryStatus.DELIVERED,
     "HTTP 200: Patient 201 Created (X/1/_history/1); Specimen 200 OK (X/2/_history/1); "
     "Observation 201 Created (X/3/_history/1); DiagnosticReport 201 Created (X/4/_history/1)"),
    (201, _answer("200 OK"), DeliveryStatus.DELIVERED,
     "HTTP 201: Patient 200 OK (X/1/_history/1)"),
    (200, _BAD_ENTRY, DeliveryStatus.REJECTED,
     "HTTP 200: Observation answered 422 Unprocessable Entity: Unknown code system"),
    (200, _answer("201 Created", "404"), DeliveryStatus.REJECTED,
     "HTTP 200: Specimen answered 404"),
    (200, b"<html>ok</html>", DeliveryStatus.REJECTED,
     "HTTP 200: the answer is not a FHIR transaction-response Bundle with entries"),
    (204, b"", DeliveryStatus.REJECTED,
     "HTTP 204: the answer is not a FHIR transaction-response Bundle with entries"),
    (200, json.dumps({"resourceType": "Bundle", "type": "batch-response",
                      "entry": []}).encode(), DeliveryStatus.REJECTED,
     "HTTP 200: the answer is not a FHIR transaction-response Bundle with entries"),
    (422, _outcome("Observation.code: unknown LOINC 9999-9"), DeliveryStatus.REJECTED,
     "HTTP 422: Observation.code: unknown LOINC 9999-9"),
    (400, _outcome("first", "second"), DeliveryStatus.REJECTED, "HTTP 400: first; second"),
    (401, b"", DeliveryStatus.REJECTED, "HTTP 401"),
    (403, b"Forbidden\n", DeliveryStatus.REJECTED, "HTTP 403: Forbidden"),
    (404, b"{}", DeliveryStatus.REJECTED, "HTTP 404"),
    (409, _outcome("version conflict"), DeliveryStatus.REJECTED, "HTTP 409: version conflict"),
    (412, _outcome("multiple matches"), DeliveryStatus.REJECTED, "HTTP 412: multiple matches"),
    (408, b"", DeliveryStatus.RETRY, "HTTP 408"),
    (429, _outcome("slow down"), DeliveryStatus.RETRY, "HTTP 429: slow down"),
    (500, _outcome("database unavailable"), DeliveryStatus.RETRY,
     "HTTP 500: database unavailable"),
    (502, b"<html> Bad   Gateway </html>", DeliveryStatus.RETRY,
     "HTTP 502: <html> Bad Gateway </html>"),
    (503, b"", DeliveryStatus.RETRY, "HTTP 503"),
    (504, b"", DeliveryStatus.RETRY, "HTTP 504"),
    (501, b"", DeliveryStatus.RETRY, "HTTP 501"),
    (301, b"", DeliveryStatus.REJECTED, "HTTP 301"),
])
def test_interpret_response(status: int, body: bytes, expected: DeliveryStatus,
                            text: str) -> None:
    """Delivered only when every entry was stored; retried when the server is busy or down."""
    assert interpret_response(status, body) == (expected, text)


def test_long_reasons_are_clipped() -> None:
    """The reason kept for the dead-letter list is at most 500 characters."""
    status, text = interpret_response(422, _outcome("x" * 2000))
    assert status is DeliveryStatus.REJECTED
    assert len(text) == 500
    assert text.startswith("HTTP 422: xxx") and text.endswith("…")


def test_a_retraction_marks_the_earlier_resources_entered_in_error() -> None:
    """Conditional PUT on the retracted entry's identifier; status entered-in-error; valid."""
    retraction = dataclasses.replace(ITEM, control_id="LG17X", retracts="LG17")
    data, bundle = compose(retraction)
    Bundle.model_validate_json(data)
    assert bundle["identifier"]["value"] == "LG17X"
    observation, report = bundle["entry"][2], bundle["entry"][3]
    for entry in (observation, report):
        assert entry["request"] == {
            "method": "PUT", "url": f"{entry['resource']['resourceType']}?identifier="
            "https://bv.example/fhir/sid/lis-result|LG17"}
        assert entry["resource"]["status"] == "entered-in-error"
    assert observation["resource"]["identifier"] == [
        {"system": "https://bv.example/fhir/sid/lis-result", "value": "LG17"}]
    assert [e["request"]["method"] for e in bundle["entry"][:2]] == ["POST", "POST"]


def test_a_patient_from_the_analyzer_has_its_own_identifier_system() -> None:
    """unsolicited: the analyzer's patient ID is type PT in the analyzer's system, never the
    hospital's, and the conditional create looks it up there."""
    item = dataclasses.replace(ITEM, hospital_id="P-77", national_id="", patient_analyzer="xn1")
    _, bundle = compose(item)
    patient = bundle["entry"][0]["resource"]
    ident = patient["identifier"][0]
    assert ident["value"] == "P-77" and ident["system"].endswith(":xn1:patient")
    assert "P-77" not in [i["value"] for i in patient["identifier"][1:]]
    assert ident["type"]["coding"][0]["code"] == "PT"
    assert bundle["entry"][0]["request"]["ifNoneExist"] == (
        "identifier=" + ident["system"] + "|P-77")
