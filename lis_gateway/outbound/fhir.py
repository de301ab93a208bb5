"""The FHIR R4 transaction Bundle carrying one released result version (pure).

For EMRs that take results as FHIR rather than HL7 v2: the same input as
:func:`lis_gateway.outbound.compose.compose_oru` (one outbox entry) becomes
one ``transaction`` Bundle of four entries, in this order:

* Patient: conditional create (``ifNoneExist``) on the hospital patient ID,
  else the national ID (CCCD), else the insurance card: a known patient is
  reused, never duplicated nor overwritten (the HIS owns demographics).
* Specimen: conditional create on its accession (the sample's barcode), so
  the results of one sample share one Specimen.
* Observation: the result. Its identifier is the entry's control ID, and it
  is a conditional create on that identifier, so a resend after a lost
  answer does not make a second Observation.
* DiagnosticReport: the report of that one result, conditional on the same
  control ID.

The resources refer to each other by ``urn:uuid`` fullUrls that are derived
from the control ID (UUID v5), so the same entry always gives the same
Bundle apart from ``timestamp`` and ``issued``. A corrected version has its
own control ID: it is a new Observation with status ``corrected`` (the entry
does not know the control ID of the version it corrects).

Values follow :func:`~lis_gateway.outbound.compose.observation_value`: the
exact stored number is written as a JSON number with its digits (``5.20``
stays ``5.20``; no float on the way), a comparator (``<0.5``) as
``valueQuantity.comparator``, a ratio (``1:128``) as ``valueRatio``, a range
as ``valueRange`` and anything else as ``valueString``. Whatever cannot make
a correct Bundle (no patient identifier, an unmapped test, an unknown flag)
raises :class:`BuildError`, as for HL7.

Identifier systems are the site's (:class:`FhirIdentity`). The defaults of
the national ID and the BHYT card are the URIs of the HL7 Vietnam "VN Core"
FHIR IG (a draft); the other defaults are placeholders local to this
gateway, which a site replaces with URIs under its own domain or OID so that
identifiers from two sites never collide.

:func:`interpret_response` reads the server's HTTP answer to the POST.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from lis_gateway.hl7.errors import BuildError
from lis_gateway.hl7.oru import ABNORMAL_FLAGS, NumericValue, StructuredNumeric, TextValue
from lis_gateway.hl7.patient import Sex
from lis_gateway.outbound.compose import observation_value
from lis_gateway.outbound.delivery import DeliveryStatus
from lis_gateway.store.outbox import OutboundResult
from lis_gateway.store.repository import ResultContent

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
#: HL7 table 0074 (diagnostic service section): LAB.
SERVICE_SECTION = "http://terminology.hl7.org/CodeSystem/v2-0074"
#: Holds every HL7 table 0078 flag the gateway accepts (:data:`ABNORMAL_FLAGS`).
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"

#: Table 0001 -> FHIR AdministrativeGender, as the HL7 v2-to-FHIR IG maps it
#: (ConceptMap table-hl70001-to-administrative-gender: A and N are "other").
GENDER: dict[Sex, str] = {
    Sex.MALE: "male", Sex.FEMALE: "female", Sex.OTHER: "other", Sex.UNKNOWN: "unknown",
    Sex.AMBIGUOUS: "other", Sex.NOT_APPLICABLE: "other",
}

#: SN.1 comparators a Quantity can carry (``=`` as none; ``<>`` has no FHIR form).
_COMPARATORS = frozenset({"", "=", "<", "<=", ">=", ">"})

#: The Bundle's entries in order (names the failing entry of an answer).
_KINDS = ("Patient", "Specimen", "Observation", "DiagnosticReport")

#: Namespace of the fullUrl UUIDs (v5, so they are the same on every run).
_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:lis-gateway:fhir:bundle")

#: HTTP statuses after which the same Bundle may succeed later.
RETRY_STATUSES = frozenset({408, 425, 429})
#: How much of a server's text is kept as the reason.
MAX_TEXT = 500

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class FhirIdentity:
    """Identifier systems (URIs) of this site; every one is site-configurable.

    Attributes:
        hospital_patient_system: the hospital patient ID (MA_BN), e.g.
            ``urn:oid:...`` or ``https://bv.example/fhir/sid/patient-id``.
        national_id_system: the 12-digit CCCD (VN Core ``sid/cccd``).
        insurance_system: the BHYT card number (VN Core ``sid/bhyt``).
        accession_system: the sample's barcode (Specimen.accessionIdentifier,
            DiagnosticReport.identifier).
        result_system: the control ID of a result version (Observation and
            DiagnosticReport identifier, Bundle.identifier).
        local_code_system: the lab's local test codes.
        practitioner_system: usernames of the lab's users (performer, resultsInterpreter).
        device_system: the analyzers' configured names.
        order_system: the HIS's placer order numbers (DiagnosticReport.basedOn).
    """

    hospital_patient_system: str
    national_id_system: str = "http://fhir.hl7.org.vn/core/sid/cccd"
    insurance_system: str = "http://fhir.hl7.org.vn/core/sid/bhyt"
    accession_system: str = "urn:lis-gateway:accession"
    result_system: str = "urn:lis-gateway:result"
    local_code_system: str = "urn:lis-gateway:test-code"
    practitioner_system: str = "urn:lis-gateway:user"
    device_system: str = "urn:lis-gateway:analyzer"
    order_system: str = "urn:lis-gateway:placer-order"

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*:\S+", value):
                raise ValueError(f"{f.name} must be an absolute URI, not {value!r}")


def compose_bundle(item: OutboundResult, now: datetime, identity: FhirIdentity) -> bytes:
    """The transaction Bundle for one outbox entry (UTF-8 JSON).

    Raises:
        BuildError: the result cannot make a correct Bundle; the text says why.
    """
    c = item.content
    if not c.code and not c.loinc:
        raise BuildError(f"test {item.test_code!r} of analyzer {item.analyzer!r} is not mapped "
                         "to a local code or LOINC: add it to the mapping table")
    unknown = [f for f in c.flags if f not in ABNORMAL_FLAGS]
    if unknown:
        raise BuildError(f"flags {unknown} are not in HL7 table 0078")
    issued = _instant(now)
    patient_ids = _patient_identifiers(item, identity)

    def url(kind: str) -> str:
        name = f"{identity.result_system}|{item.control_id}|{kind}"
        return f"urn:uuid:{uuid.uuid5(_UUID_NAMESPACE, name)}"

    patient_url, specimen_url, observation_url, report_url = (url(k) for k in _KINDS)
    # a retraction marks the resources made by the retracted entry (found by its
    # control ID) entered-in-error, by conditional update
    key = item.retracts or item.control_id
    result_id = {"system": identity.result_system, "value": key}
    status = ("entered-in-error" if item.retracted
              else "corrected" if item.corrected else "final")
    code = _code(c, identity)
    subject = {"reference": patient_url}
    interpreter = _reference("Practitioner", identity.practitioner_system, item.responsible,
                             item.responsible_name or item.responsible)
    effective = {"effectiveDateTime": _instant(c.result_time)} if c.result_time else {}

    observation: Json = {
        "resourceType": "Observation", "identifier": [result_id], "status": status,
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory",
                                  "display": "Laboratory"}]}],
        "code": code, "subject": subject, **effective, "issued": issued}
    if item.responsible:
        observation["performer"] = [interpreter]
    observation.update(_value(c))
    if c.flags:
        observation["interpretation"] = [
            {"coding": [{"system": INTERPRETATION, "code": f}]} for f in c.flags]
    observation["specimen"] = {"reference": specimen_url}
    if item.analyzer:
        observation["device"] = _reference("Device", identity.device_system, item.analyzer,
                                           item.analyzer)
    if c.reference_range:
        observation["referenceRange"] = [{"text": c.reference_range}]

    report: Json = {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": identity.accession_system, "value": item.accession},
                       result_id]}
    if item.placer_order:
        report["basedOn"] = [_reference("ServiceRequest", identity.order_system,
                                        item.placer_order)]
    report.update({
        "status": status,
        "category": [{"coding": [{"system": SERVICE_SECTION, "code": "LAB",
                                  "display": "Laboratory"}]}],
        "code": code, "subject": subject, **effective, "issued": issued})
    if item.responsible:
        report["resultsInterpreter"] = [interpreter]
    report["specimen"] = [{"reference": specimen_url}]
    report["result"] = [{"reference": observation_url}]

    specimen: Json = {
        "resourceType": "Specimen",
        "accessionIdentifier": {"system": identity.accession_system, "value": item.accession},
        "subject": subject}
    by_result = "identifier=" + _token(identity.result_system, key)
    put = _update if item.retracted else _entry
    bundle: Json = {
        "resourceType": "Bundle", "type": "transaction",
        "identifier": {"system": identity.result_system, "value": item.control_id},
        "timestamp": issued,
        "entry": [
            _entry(patient_url, _patient(item, patient_ids),
                   "identifier=" + _token(patient_ids[0]["system"], patient_ids[0]["value"])),
            _entry(specimen_url, specimen,
                   "accession=" + _token(identity.accession_system, item.accession)),
            put(observation_url, observation, by_result),
            put(report_url, report, by_result),
        ]}
    return _dump(bundle).encode("utf-8")


def interpret_response(status: int, body: bytes) -> tuple[DeliveryStatus, str]:
    """What the server's answer to the transaction POST means, and a plain text of it.

    A 2xx answer must be a ``transaction-response`` Bundle whose every entry
    answered 2xx; anything else in a 2xx is refused with the reason. 408,
    429, 500, 502, 503 and 504 are retried; any other status is refused with
    the server's OperationOutcome text (``HTTP 422: <diagnostics>``).
    """
    if 200 <= status < 300:
        return _transaction_answer(status, body)
    detail = _problem_text(body)
    text = _clip(f"HTTP {status}: {detail}" if detail else f"HTTP {status}")
    if status in RETRY_STATUSES or status >= 500:  # as rest_json: the server may recover
        return DeliveryStatus.RETRY, text
    return DeliveryStatus.REJECTED, text


# -- the Bundle ---------------------------------------------------------------------------


def _instant(moment: datetime) -> str:
    if moment.utcoffset() is None:
        raise BuildError(f"timestamp {moment.isoformat()} has no UTC offset")
    return moment.isoformat()


def _token(system: str, value: str) -> str:
    """``system|value`` as a token search value: FHIR-escaped, then URL-encoded."""
    def escape(text: str) -> str:
        return re.sub(r"([\\|,$])", r"\\\1", text)
    return quote(f"{escape(system)}|{escape(value)}", safe=":/|")


def _entry(full_url: str, resource: Json, if_none_exist: str) -> Json:
    return {"fullUrl": full_url, "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"],
                        "ifNoneExist": if_none_exist}}


def _update(full_url: str, resource: Json, search: str) -> Json:
    """A conditional update: the resource found by ``search`` is replaced."""
    return {"fullUrl": full_url, "resource": resource,
            "request": {"method": "PUT", "url": f"{resource['resourceType']}?{search}"}}


def _reference(kind: str, system: str, value: str, display: str = "") -> Json:
    """A logical reference: the server resolves the identifier, or keeps it as written."""
    ref: Json = {"type": kind, "identifier": {"system": system, "value": value}}
    if display:
        ref["display"] = display
    return ref


def _patient_identifiers(item: OutboundResult, identity: FhirIdentity) -> list[Json]:
    ids: list[Json] = []
    if item.patient_analyzer and item.hospital_id:
        # typed into the analyzer (no HIS order): its own system, type PT (external)
        ids.append({"system": f"{identity.device_system}:{item.patient_analyzer}:patient",
                    "value": item.hospital_id,
                    "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                         "code": "PT"}],
                             "text": f"patient ID from analyzer {item.patient_analyzer}"}})
    elif item.hospital_id:
        ids.append({"system": identity.hospital_patient_system, "value": item.hospital_id})
    if item.national_id:
        if len(item.national_id) != 12 or not item.national_id.isdigit():
            raise BuildError("the national ID must be the 12-digit personal identification "
                             "number (CCCD)")
        ids.append({"system": identity.national_id_system, "value": item.national_id})
    if item.insurance_card:
        ids.append({"system": identity.insurance_system, "value": item.insurance_card})
    if not ids:
        raise BuildError("the patient needs a hospital ID, a national ID or an insurance card "
                         "number")
    return ids


def _patient(item: OutboundResult, identifiers: list[Json]) -> Json:
    patient: Json = {"resourceType": "Patient", "identifier": identifiers}
    parts = [p for p in (item.family_name, item.middle_name, item.given_name) if p]
    if parts:
        name: Json = {"text": " ".join(parts)}
        if item.family_name:
            name["family"] = item.family_name
        given = [p for p in (item.middle_name, item.given_name) if p]
        if given:
            name["given"] = given
        patient["name"] = [name]
    patient["gender"] = GENDER[Sex.from_code(item.sex)]
    if item.birth_date is not None:
        patient["birthDate"] = item.birth_date.isoformat()
    return patient


def _code(content: ResultContent, identity: FhirIdentity) -> Json:
    coding: list[Json] = []
    if content.loinc:
        coding.append({"system": LOINC, "code": content.loinc})
    if content.code:
        coding.append({"system": identity.local_code_system, "code": content.code})
    return {"coding": coding}


def _quantity(number: Decimal, content: ResultContent, comparator: str = "") -> Json:
    quantity: Json = {"value": number}
    if comparator:
        quantity["comparator"] = comparator
    if content.unit_ucum:
        quantity.update(unit=content.unit_ucum, system=UCUM, code=content.unit_ucum)
    elif content.unit_raw:
        quantity["unit"] = content.unit_raw
    return quantity


def _value(content: ResultContent) -> Json:
    """``value[x]`` of the Observation (see the module docstring)."""
    value = observation_value(content)
    if isinstance(value, NumericValue):
        return {"valueQuantity": _quantity(value.value, content)}
    if isinstance(value, StructuredNumeric):
        first, second, separator = value.number, value.number2, value.separator
        if second is None and not separator and value.comparator in _COMPARATORS:
            comparator = "" if value.comparator == "=" else value.comparator
            return {"valueQuantity": _quantity(first, content, comparator)}
        if second is not None and separator in (":", "/"):
            return {"valueRatio": {"numerator": {"value": first},
                                   "denominator": {"value": second}}}
        if second is not None and separator == "-":
            return {"valueRange": {"low": _quantity(first, content),
                                   "high": _quantity(second, content)}}
        return {"valueString": content.value_raw.strip()}
    assert isinstance(value, TextValue)
    return {"valueString": value.text}


def _dump(node: object) -> str:
    """Compact JSON; a Decimal is written with its digits, never through a float."""
    if isinstance(node, dict):
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_dump(v)}"
                              for k, v in node.items()) + "}"
    if isinstance(node, list):
        return "[" + ",".join(_dump(v) for v in node) + "]"
    if isinstance(node, Decimal):
        if not node.is_finite():
            raise BuildError(f"the value {node} is not a finite number")
        return format(node, "f")
    if isinstance(node, str | bool | int) or node is None:
        return json.dumps(node, ensure_ascii=False)
    raise TypeError(f"cannot write {type(node).__name__} into the Bundle")


# -- the answer ---------------------------------------------------------------------------


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…"


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:  # not UTF-8 or not JSON
        return None


def _object(value: Any) -> Json:
    """``value`` if it is a JSON object, else an empty one (answers are read defensively)."""
    return value if isinstance(value, dict) else {}


def _outcome_text(value: Any) -> str:
    """The issues of an OperationOutcome, ``; ``-joined ("" if it is none)."""
    outcome = _object(value)
    issues = outcome.get("issue")
    if outcome.get("resourceType") != "OperationOutcome" or not isinstance(issues, list):
        return ""
    texts: list[str] = []
    for issue in map(_object, issues):
        text = (issue.get("diagnostics") or _object(issue.get("details")).get("text")
                or issue.get("code"))
        if isinstance(text, str) and text:
            texts.append(text)
    return "; ".join(texts)


def _problem_text(body: bytes) -> str:
    """An error body as a reason: its OperationOutcome, else its text."""
    document = _json(body)
    if document is not None:
        return _outcome_text(document)
    return " ".join(body.decode("utf-8", "replace").split())


def _transaction_answer(status: int, body: bytes) -> tuple[DeliveryStatus, str]:
    document = _object(_json(body))
    entries = document.get("entry")
    if (document.get("resourceType") != "Bundle"
            or document.get("type") != "transaction-response"
            or not isinstance(entries, list) or not entries):
        return DeliveryStatus.REJECTED, (f"HTTP {status}: the answer is not a FHIR "
                                         "transaction-response Bundle with entries")
    done: list[str] = []
    for index, entry in enumerate(entries):
        response = _object(_object(entry).get("response"))
        answer, location = response.get("status"), response.get("location")
        kind = _KINDS[index] if index < len(_KINDS) else f"entry {index + 1}"
        if not isinstance(answer, str) or not answer.startswith("2"):
            reason = f"HTTP {status}: {kind} answered {answer or 'no status'}"
            outcome = _outcome_text(response.get("outcome"))
            return DeliveryStatus.REJECTED, _clip(f"{reason}: {outcome}" if outcome else reason)
        done.append(f"{kind} {answer}" + (f" ({location})" if isinstance(location, str) else ""))
    return DeliveryStatus.DELIVERED, _clip(f"HTTP {status}: " + "; ".join(done))
