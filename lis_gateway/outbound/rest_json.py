"""The JSON body pushed to an HIS with a REST API, and what its HTTP answer means (pure).

Most Vietnamese HIS take results through their own REST API rather than
HL7, each with its own field names. The body is therefore a **template**: a
JSON document written by the site, in which a string that is exactly
``"{{field}}"`` is replaced by the field's value with its JSON type (a
number stays a number, flags a list, an absent value ``null``), and a
``{{field}}`` inside a longer string is replaced by its text. Templates are
checked when the configuration loads (:meth:`BodyTemplate.parse`): a JSON
error or an unknown field name is reported then, not at 3 a.m.

Numbers are written exactly as stored (``5.20`` stays ``5.20``; no float
on the way). The fields are listed in :data:`FIELDS`; :data:`DEFAULT_TEMPLATE`
is used when a destination names no template.

Answers (:func:`interpret_response`): 2xx is delivered; 408, 425, 429 and
5xx are retried (the HIS is busy or down); any other status is refused as
is and goes to the dead-letter list with the HIS's text. Redirects are not
followed: the configured URL should be the final one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from lis_gateway.hl7.errors import BuildError
from lis_gateway.outbound.delivery import DeliveryStatus
from lis_gateway.store.outbox import OutboundResult

#: How much of an error body is kept as the reason.
MAX_REASON = 500

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")

Value = str | Decimal | bool | list[str] | None


def _iso(value: datetime | date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _value_text(item: OutboundResult) -> str:
    number = item.content.number
    return format(number, "f") if number is not None else item.content.value_raw.strip()


def _patient_name(item: OutboundResult) -> str:
    return " ".join(p for p in (item.family_name, item.middle_name, item.given_name) if p)


def _patient_source(item: OutboundResult) -> str:
    if item.patient_analyzer:
        return "analyzer"  # from the analyzer's own record (unsolicited)
    return "his" if item.hospital_id or item.national_id or item.insurance_card else ""


#: Every field a template may use, with how it is read from an outbox entry.
FIELDS: Mapping[str, Callable[[OutboundResult], Value]] = {
    "control_id": lambda i: i.control_id,
    "accession": lambda i: i.accession,
    "placer_order": lambda i: i.placer_order,
    "hospital_id": lambda i: "" if i.patient_analyzer else i.hospital_id,
    "analyzer_patient_id": lambda i: i.hospital_id if i.patient_analyzer else "",
    "patient_source": _patient_source,
    "national_id": lambda i: i.national_id,
    "insurance_card": lambda i: i.insurance_card,
    "patient_name": _patient_name,
    "family_name": lambda i: i.family_name,
    "middle_name": lambda i: i.middle_name,
    "given_name": lambda i: i.given_name,
    "birth_date": lambda i: _iso(i.birth_date),
    "sex": lambda i: i.sex,
    "analyzer": lambda i: i.analyzer,
    "analyzer_code": lambda i: i.test_code,
    "code": lambda i: i.content.code,
    "loinc": lambda i: i.content.loinc,
    "value": _value_text,
    "number": lambda i: i.content.number,
    "value_raw": lambda i: i.content.value_raw,
    "unit": lambda i: i.content.unit_ucum,
    "unit_raw": lambda i: i.content.unit_raw,
    "reference_range": lambda i: i.content.reference_range,
    "flags": lambda i: list(i.content.flags),
    "instrument_flags": lambda i: list(i.content.instrument_flags),
    "critical": lambda i: i.content.critical,
    "status": lambda i: "D" if i.retracted else "C" if i.corrected else "F",
    "corrected": lambda i: i.corrected,
    "retracted": lambda i: i.retracted,
    "retracts": lambda i: i.retracts,
    "result_time": lambda i: _iso(i.content.result_time),
    "released_by": lambda i: i.responsible,
    "released_by_name": lambda i: i.responsible_name,
}

#: The body sent when a destination names no template.
DEFAULT_TEMPLATE = """{
  "control_id": "{{control_id}}",
  "sample": "{{accession}}",
  "order": "{{placer_order}}",
  "patient": {"hospital_id": "{{hospital_id}}", "national_id": "{{national_id}}",
              "insurance_card": "{{insurance_card}}", "source": "{{patient_source}}",
              "analyzer_patient_id": "{{analyzer_patient_id}}"},
  "test": {"code": "{{code}}", "loinc": "{{loinc}}", "analyzer_code": "{{analyzer_code}}"},
  "value": "{{value}}",
  "number": "{{number}}",
  "unit": "{{unit}}",
  "reference_range": "{{reference_range}}",
  "flags": "{{flags}}",
  "status": "{{status}}",
  "retracts": "{{retracts}}",
  "result_time": "{{result_time}}",
  "released_by": "{{released_by}}",
  "analyzer": "{{analyzer}}"
}
"""


class TemplateError(ValueError):
    """A body template is not valid JSON or names an unknown field."""


def _check(node: Any, where: str, problems: list[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _check(value, f"{where}.{key}", problems)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _check(value, f"{where}[{index}]", problems)
    elif isinstance(node, str):
        for name in _PLACEHOLDER.findall(node):
            if name not in FIELDS:
                problems.append(f"{where}: unknown field {{{{{name}}}}} "
                                f"(known: {', '.join(sorted(FIELDS))})")


def _json_scalar(value: Value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    return json.dumps(value, ensure_ascii=False)


def _as_text(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, list):
        return "~".join(value)
    return value


@dataclass(frozen=True, slots=True)
class BodyTemplate:
    """A checked JSON body template."""

    document: Any

    @classmethod
    def parse(cls, text: str, source: str = "template") -> BodyTemplate:
        """Check a template.

        Raises:
            TemplateError: not JSON, or an unknown field; the message says where.
        """
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TemplateError(f"{source}: not valid JSON: {exc}") from None
        problems: list[str] = []
        _check(document, "$", problems)
        if problems:
            raise TemplateError(f"{source}: " + "; ".join(problems))
        return cls(document)

    def render(self, item: OutboundResult) -> bytes:
        """The body for one outbox entry (UTF-8 JSON).

        Raises:
            BuildError: the result is not mapped to a local code or LOINC.
        """
        if not item.content.code and not item.content.loinc:
            raise BuildError(f"test {item.test_code!r} of analyzer {item.analyzer!r} is not "
                             "mapped to a local code or LOINC: add it to the mapping table")
        return self._emit(self.document, item).encode("utf-8")

    def _emit(self, node: Any, item: OutboundResult) -> str:
        if isinstance(node, dict):
            return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {self._emit(v, item)}"
                                   for k, v in node.items()) + "}"
        if isinstance(node, list):
            return "[" + ", ".join(self._emit(v, item) for v in node) + "]"
        if isinstance(node, str):
            whole = _PLACEHOLDER.fullmatch(node)
            if whole is not None:
                value = FIELDS[whole.group(1)](item)
                if isinstance(value, list):
                    return "[" + ", ".join(_json_scalar(v) for v in value) + "]"
                return _json_scalar(value)
            text = _PLACEHOLDER.sub(lambda m: _as_text(FIELDS[m.group(1)](item)), node)
            return json.dumps(text, ensure_ascii=False)
        return json.dumps(node, ensure_ascii=False)


DEFAULT = BodyTemplate.parse(DEFAULT_TEMPLATE, "default template")

#: Statuses that mean "not now": the same request may succeed later.
RETRY_STATUSES = frozenset({408, 425, 429})


def reason_text(status: int, body: bytes) -> str:
    """``HTTP <status>: <body text>`` with the body cut to :data:`MAX_REASON` characters."""
    text = body.decode("utf-8", "replace").strip()
    text = " ".join(text.split())
    if len(text) > MAX_REASON:
        text = text[:MAX_REASON] + "…"
    return f"HTTP {status}: {text}" if text else f"HTTP {status}"


def interpret_response(status: int, body: bytes) -> tuple[DeliveryStatus, str]:
    """What an HIS's HTTP answer to a pushed result means."""
    if 200 <= status < 300:
        return DeliveryStatus.DELIVERED, reason_text(status, b"")
    if status in RETRY_STATUSES or status >= 500:
        return DeliveryStatus.RETRY, reason_text(status, body)
    if 300 <= status < 400:
        return DeliveryStatus.REJECTED, reason_text(
            status, b"redirect not followed; configure the final URL")
    return DeliveryStatus.REJECTED, reason_text(status, body)
