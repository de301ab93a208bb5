"""Orders from the HIS: ORM^O01 and OML^O21 read into plain data (sans-IO).

What is read, per ORC/OBR group (HL7 v2.5.1 ch. 4; ORM^O01 is withdrawn in
v2.5.1 but still what most HIS send):

* the patient, PID (required unless every ORC cancels): PID-3 repetitions
  by identifier type (CX.5): ``PI``/``MR`` hospital patient code,
  ``NNVNM``/``NI``/``NN*`` national ID number (12 digits), ``HC`` insurance
  card; PID-5 name (family, given, middle); PID-7 birth date (a year or year-month only is taken as
  unknown); PID-8 sex (table 0001, else unknown); PV1-19 visit number;
* the order control, ORC-1: ``NW`` new, ``CA``/``OC``/``DC`` cancel,
  ``XO``/``RP`` change (the tests of the group replace the earlier ones);
* the placer order number ORC-2 (else OBR-2);
* the **sample barcode**: SPM-2 (OML), else the filler number OBR-3/ORC-3,
  else the placer order number, since Vietnamese HIS often print the order
  code on the tube (vietnam.md §3.2);
* the ordered test, OBR-4: CWE.1 (the local code) unless CWE.3 is ``LN``
  and CWE.4 holds the local alternate;
* priority (TQ1-9, else OBR-5, else ORC-7.6): ``S`` stat, otherwise routine;
* order time ORC-9; collection time SPM-17 or OBR-7 (kept in UTC).

Problems are collected, never raised: an order without a barcode, patient
identifier or test is refused as a whole (the ACK carries the reason).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from lis_gateway.timestamps import parse_timestamp

from .message import Hl7Message, Segment

#: ORC-1 values and what they do.
_NEW = frozenset({"NW", "SN"})
_CANCEL = frozenset({"CA", "OC", "DC", "OD"})
_CHANGE = frozenset({"XO", "RP", "XX"})
_NATIONAL = frozenset({"NNVNM", "NI", "NN"})


class OrderControl(enum.Enum):
    """What an ORC asks for."""

    NEW = "new"
    CANCEL = "cancel"
    CHANGE = "change"


@dataclass(frozen=True, slots=True)
class OrderPatient:
    """The patient of an order (patient data: stored, never logged)."""

    hospital_id: str = ""
    national_id: str = ""
    insurance_card: str = ""
    family_name: str = ""
    given_name: str = ""
    middle_name: str = ""
    birth_date: date | None = None
    sex: str = ""  #: PID-8 as sent (table 0001: F, M, O, U, A, N)
    visit_number: str = ""  #: PV1-19 CX.1


@dataclass(frozen=True, slots=True)
class IncomingOrder:
    """One ORC/OBR group of an order message."""

    control: OrderControl
    barcode: str
    placer_order: str
    tests: tuple[str, ...]
    priority: str = "R"  #: "S" stat, "R" routine
    ordered_at: datetime | None = None
    collected_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class OrderMessage:
    """What an ORM^O01 / OML^O21 asked for."""

    patient: OrderPatient
    orders: tuple[IncomingOrder, ...]
    problems: tuple[str, ...] = field(default=())

    @property
    def acceptable(self) -> bool:
        """No problem: every order can be stored."""
        return not self.problems


ORDER_MESSAGE_TYPES = frozenset({"ORM^O01", "OML^O21"})


def _comp(message: Hl7Message, value: str, n: int) -> str:
    return message.delimiters.component_at(value, n)


def _patient(message: Hl7Message, zone: str, problems: list[str], need_ids: bool
             ) -> OrderPatient:
    pid = message.first("PID")
    if pid is None:
        if need_ids:
            problems.append("no PID segment")
        return OrderPatient()
    ids: dict[str, str] = {}
    for rep in message.delimiters.repeats(pid[3]):
        value, kind = _comp(message, rep, 1), _comp(message, rep, 5).upper()
        if not value:
            continue
        if kind in ("PI", "MR", "PT", ""):
            ids.setdefault("hospital_id", value)
        elif kind in _NATIONAL or kind.startswith("NN"):
            ids.setdefault("national_id", value)
        elif kind == "HC":
            ids.setdefault("insurance_card", value)
    if not ids and need_ids:
        problems.append("PID-3 carries no hospital ID (PI), national ID (NNVNM) or "
                        "insurance card (HC)")
    national = ids.get("national_id", "")
    if national and not (len(national) == 12 and national.isdigit()):
        problems.append("PID-3 national ID (NNVNM) must be the 12-digit personal "
                        "identification number")
    birth = None
    raw_birth = _comp(message, pid[7], 1)
    if len(raw_birth.split(".")[0].split("+")[0].split("-")[0]) >= 8:  # year-only: unknown day
        moment, _reason = parse_timestamp(raw_birth, zone)
        if moment is None:  # the value itself stays out of the text (patient data)
            problems.append("PID-7 birth date is not a valid date")
        else:
            birth = moment.date()
    pv1 = message.first("PV1")
    name = message.delimiters.repeats(pid[5])[0] if pid[5] else ""
    return OrderPatient(
        hospital_id=ids.get("hospital_id", ""), national_id=ids.get("national_id", ""),
        insurance_card=ids.get("insurance_card", ""),
        family_name=_comp(message, name, 1), given_name=_comp(message, name, 2),
        middle_name=_comp(message, name, 3), birth_date=birth,
        sex=_sex(_comp(message, pid[8], 1)),
        visit_number=_comp(message, pv1[19], 1) if pv1 is not None else "")


def _sex(raw: str) -> str:
    """PID-8 as HL7 table 0001 (F, M, O, U, A, N); anything else is unknown ("")."""
    value = raw.strip().upper()
    return value if value in ("F", "M", "O", "U", "A", "N") else ""


def _time(message: Hl7Message, raw: str, where: str, zone: str,
          problems: list[str]) -> datetime | None:
    moment, reason = parse_timestamp(_comp(message, raw, 1), zone)
    if reason:
        problems.append(f"{where}: {reason}")
    return moment


def _test_code(message: Hl7Message, value: str) -> str:
    if _comp(message, value, 3).upper() == "LN" and _comp(message, value, 4):
        return _comp(message, value, 4)
    return _comp(message, value, 1)


def _groups(message: Hl7Message) -> list[tuple[Segment, list[Segment]]]:
    """Each ORC with the segments after it up to the next ORC."""
    groups: list[tuple[Segment, list[Segment]]] = []
    for segment in message.segments:
        if segment.name == "ORC":
            groups.append((segment, []))
        elif groups:
            groups[-1][1].append(segment)
    return groups


def parse_order_message(message: Hl7Message, zone: str = "Asia/Ho_Chi_Minh") -> OrderMessage:
    """Read an ORM^O01 or OML^O21 (times without offset are in ``zone``)."""
    problems: list[str] = []
    if message.message_type not in ORDER_MESSAGE_TYPES:
        return OrderMessage(OrderPatient(), (), (f"{message.message_type or 'no type'} is not "
                                                 "an order message (ORM^O01, OML^O21)",))
    controls = {orc[1].upper() for orc in message.named("ORC")}
    patient = _patient(message, zone, problems, need_ids=not controls <= _CANCEL)
    orders: list[IncomingOrder] = []
    specimen = message.first("SPM")  # OML^O21 may put SPM before or after the ORC groups
    for number, (orc, rest) in enumerate(_groups(message), 1):
        where = f"order {number}"
        code = orc[1].upper()
        if code in _NEW:
            control = OrderControl.NEW
        elif code in _CANCEL:
            control = OrderControl.CANCEL
        elif code in _CHANGE:
            control = OrderControl.CHANGE
        else:
            problems.append(f"{where}: ORC-1 {orc[1]!r} is not NW, CA/OC/DC or XO/RP")
            continue
        obrs = [s for s in rest if s.name == "OBR"]
        spm = next((s for s in rest if s.name == "SPM"), specimen)
        obr = obrs[0] if obrs else Segment(("OBR",))
        placer = _comp(message, orc[2], 1) or _comp(message, obr[2], 1)
        barcode = (_comp(message, spm[2], 1) if spm is not None else "") \
            or _comp(message, obr[3], 1) or _comp(message, orc[3], 1) or placer
        tests = tuple(t for t in (_test_code(message, s[4]) for s in obrs) if t)
        if not barcode:
            problems.append(f"{where}: no sample barcode (SPM-2, OBR-3, ORC-3 or ORC-2)")
        if not tests and control is not OrderControl.CANCEL:
            problems.append(f"{where}: no ordered test (OBR-4)")
        tq1 = next((s for s in rest if s.name == "TQ1"), None)
        priority_raw = (tq1[9] if tq1 is not None else "") or obr[5] or \
            _comp(message, orc[7], 6)
        priority = "S" if _comp(message, priority_raw, 1).upper() in ("S", "STAT") else "R"
        collected_raw = (spm[17] if spm is not None else "") or obr[7]
        orders.append(IncomingOrder(
            control=control, barcode=barcode, placer_order=placer, tests=tests,
            priority=priority,
            ordered_at=_utc(_time(message, orc[9], f"{where} ORC-9", zone, problems)),
            collected_at=_utc(_time(message, collected_raw, f"{where} collection time", zone,
                                    problems))))
    if not orders and not problems:
        problems.append("no ORC segment")
    return OrderMessage(patient, tuple(orders), tuple(problems))


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC)
