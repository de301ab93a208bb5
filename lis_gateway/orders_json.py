"""Orders from an HIS without HL7: the JSON body of ``POST /api/orders`` (pure).

The body says the same as an ORM^O01 and becomes the same
:class:`~lis_gateway.hl7.orders_in.OrderMessage`, so the store applies REST
and HL7 orders by one code path::

    {
      "message_id": "HIS-20261122-0001",          // optional: the HIS's own id
      "patient": {
        "hospital_id": "BN0001",                  // at least one of the three IDs
        "national_id": "079123456789",            // 12 digits (CCCD)
        "insurance_card": "DN4797912345678",
        "family_name": "Trần", "middle_name": "Thị", "given_name": "Bình",
        "birth_date": "1970-03-04",               // or "1970" when only the year is known
        "sex": "F",                               // HL7 table 0001: F M O U A N
        "visit_number": "VV2026-001"              // the episode (MA_LK)
      },
      "orders": [
        {"action": "new",                         // new | cancel | change
         "barcode": "C240001", "placer_order": "CD0001",
         "tests": ["GLU", "K"],                   // the lab's local codes
         "priority": "stat",                      // stat | routine
         "ordered_at": "2026-11-22T08:00:00+07:00",
         "collected_at": "2026-11-22T08:10:00"}   // no offset: the [orders] time zone
      ]
    }

A cancellation without ``placer_order`` cancels every order of the barcode
(those of ``tests`` only, when given). Every problem is collected with its
JSON path (``orders[1].tests``) and none quotes a value (values are patient
data). A patient is needed unless every order is a cancellation, as for HL7.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from lis_gateway.hl7.orders_in import IncomingOrder, OrderControl, OrderMessage, OrderPatient

_ACTIONS = {"new": OrderControl.NEW, "cancel": OrderControl.CANCEL,
            "change": OrderControl.CHANGE}
_SEXES = ("F", "M", "O", "U", "A", "N")
_PATIENT_KEYS = frozenset({"hospital_id", "national_id", "insurance_card", "family_name",
                           "middle_name", "given_name", "birth_date", "sex", "visit_number"})
_ORDER_KEYS = frozenset({"action", "barcode", "placer_order", "tests", "priority",
                         "ordered_at", "collected_at"})
#: Longest text field accepted (the store's columns hold 100 characters).
MAX_TEXT = 100


class _Reader:
    def __init__(self, zone: str) -> None:
        self.zone = ZoneInfo(zone)
        self.problems: list[str] = []

    def text(self, table: dict[str, Any], key: str, where: str) -> str:
        value = table.get(key, "")
        if value is None:
            return ""
        if not isinstance(value, str):
            self.problems.append(f"{where}.{key}: expected a string")
            return ""
        if len(value) > MAX_TEXT:
            self.problems.append(f"{where}.{key}: longer than {MAX_TEXT} characters")
            return ""
        return value.strip()

    def unknown(self, table: dict[str, Any], known: frozenset[str], where: str) -> None:
        for key in table:
            if key not in known:
                self.problems.append(f"{where}.{key}: unknown key (expected one of "
                                     f"{', '.join(sorted(known))})")

    def time(self, table: dict[str, Any], key: str, where: str) -> datetime | None:
        raw = self.text(table, key, where)
        if not raw:
            return None
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            self.problems.append(f"{where}.{key}: expected an ISO 8601 time "
                                 "(2026-11-22T08:00:00+07:00)")
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.zone)
        return moment.astimezone(UTC)

    def birth_date(self, table: dict[str, Any], where: str) -> date | None:
        raw = self.text(table, "birth_date", where)
        if not raw or (len(raw) == 4 and raw.isdigit()):  # year only: day unknown
            return None
        try:
            return date.fromisoformat(raw)
        except ValueError:
            self.problems.append(f"{where}.birth_date: expected YYYY-MM-DD or YYYY")
            return None

    def patient(self, table: Any, need_ids: bool) -> OrderPatient:
        if table is None:
            if need_ids:
                self.problems.append("patient: missing")
            return OrderPatient()
        if not isinstance(table, dict):
            self.problems.append("patient: expected an object")
            return OrderPatient()
        self.unknown(table, _PATIENT_KEYS, "patient")
        values = {k: self.text(table, k, "patient") for k in _PATIENT_KEYS - {"birth_date"}}
        if need_ids and not (values["hospital_id"] or values["national_id"]
                             or values["insurance_card"]):
            self.problems.append("patient: no hospital_id, national_id or insurance_card")
        national = values["national_id"]
        if national and not (len(national) == 12 and national.isdigit()):
            self.problems.append("patient.national_id: must be the 12-digit personal "
                                 "identification number")
        sex = values.pop("sex").upper()
        if sex and sex not in _SEXES:
            self.problems.append(f"patient.sex: expected one of {', '.join(_SEXES)}")
            sex = ""
        return OrderPatient(sex=sex, birth_date=self.birth_date(table, "patient"), **values)

    def order(self, item: Any, where: str) -> IncomingOrder | None:
        if not isinstance(item, dict):
            self.problems.append(f"{where}: expected an object")
            return None
        self.unknown(item, _ORDER_KEYS, where)
        action = self.text(item, "action", where).lower() or "new"
        control = _ACTIONS.get(action)
        if control is None:
            self.problems.append(f"{where}.action: expected new, cancel or change")
        barcode = self.text(item, "barcode", where)
        if not barcode:
            self.problems.append(f"{where}.barcode: missing (the sample's barcode)")
        tests_raw = item.get("tests", [])
        if not isinstance(tests_raw, list) or not all(isinstance(t, str) for t in tests_raw):
            self.problems.append(f"{where}.tests: expected a list of local test codes")
            tests_raw = []
        tests = tuple(dict.fromkeys(t.strip() for t in tests_raw if t.strip()))
        if not tests and control is not OrderControl.CANCEL:
            self.problems.append(f"{where}.tests: no ordered test")
        priority = self.text(item, "priority", where).lower() or "routine"
        if priority not in ("stat", "routine"):
            self.problems.append(f"{where}.priority: expected stat or routine")
        ordered, collected = (self.time(item, "ordered_at", where),
                              self.time(item, "collected_at", where))
        if control is None:
            return None
        return IncomingOrder(control=control, barcode=barcode,
                             placer_order=self.text(item, "placer_order", where),
                             tests=tests, priority="S" if priority == "stat" else "R",
                             ordered_at=ordered, collected_at=collected)


def parse_json_orders(body: bytes, zone: str = "Asia/Ho_Chi_Minh") -> tuple[str, OrderMessage]:
    """The HIS's message id ("" if none) and what the body orders, with every problem."""
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = "not UTF-8" if isinstance(exc, UnicodeDecodeError) else f"not JSON ({exc.msg})"
        return "", OrderMessage(OrderPatient(), (), (f"the body is {reason}",))
    if not isinstance(document, dict):
        return "", OrderMessage(OrderPatient(), (), ("the body must be a JSON object",))
    r = _Reader(zone)
    r.unknown(document, frozenset({"message_id", "patient", "orders"}), "$")
    message_id = r.text(document, "message_id", "$")
    raw_orders = document.get("orders")
    if not isinstance(raw_orders, list) or not raw_orders:
        r.problems.append("orders: expected a non-empty list")
        raw_orders = []
    actions = {str(o.get("action", "new")).lower() for o in raw_orders if isinstance(o, dict)}
    patient = r.patient(document.get("patient"), need_ids=actions != {"cancel"})
    orders = [o for i, item in enumerate(raw_orders)
              if (o := r.order(item, f"orders[{i}]")) is not None]
    return message_id, OrderMessage(patient, tuple(orders), tuple(r.problems))
