"""ORU^R01 v2.5.1: validated results from the gateway to the HIS.

Structure written (HL7 v2.5.1 ORU_R01, one PATIENT_RESULT)::

    MSH PID [PV1] { ORC OBR {NTE} { OBX {NTE} } [SPM] }

following the HL7 Lab Results Interface (LRI, v2.5.1 IG) as far as a lab
gateway can fill it: timestamps with UTC offset, identifiers with an
assigning authority, LOINC first in OBX-3 with the local code as the
alternate, UCUM units, SN for censored values, table 0078 flags, OBX-14 =
specimen collection time, OBX-19 = analysis time, OBR-25 consistent with
every OBX-11 (:data:`ALLOWED_OBSERVATION_STATUSES`).

MSH-15/16 default to ``AL``/``NE`` as in the LRI test messages: the HIS
always returns an accept ACK, which is what the outbox waits for, and no
application ACK is asked for. MSH-21 is empty unless the caller declares
profiles: the LRI OIDs are below, but a message only claims LRI after it
passes the LRI validator for the chosen components.

Pure: the message time and control ID are arguments; the output is bytes
(UTF-8, segments ending CR, no MLLP framing).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from .datatypes import (
    Code,
    EntityIdentifier,
    MessageRoute,
    ObservationCode,
    Person,
    code_text,
    components,
    ei_text,
    encode_text,
    format_optional_ts,
    format_ts,
    join_components,
    msh_segment,
    observation_code_text,
    xcn_text,
)
from .delimiters import DEFAULT
from .errors import BuildError
from .message import write_message, write_segment
from .patient import PatientIdentity, Visit, pid_segment, pv1_segment

#: MSH-21 profile identifiers of LRI (OIDs as in the NIST LRI test messages).
LRI_COMMON_COMPONENT = EntityIdentifier("LRI_Common_Component", "",
                                        "2.16.840.1.113883.9.16", "ISO")
LRI_GU_COMPONENT = EntityIdentifier("LRI_GU_Component", "", "2.16.840.1.113883.9.12", "ISO")
LRI_NG_COMPONENT = EntityIdentifier("LRI_NG_Component", "", "2.16.840.1.113883.9.13", "ISO")
LRI_RU_COMPONENT = EntityIdentifier("LRI_RU_Component", "", "2.16.840.1.113883.9.14", "ISO")
LRI_RN_COMPONENT = EntityIdentifier("LRI_RN_Component", "", "2.16.840.1.113883.9.15", "ISO")


class ObservationStatus(enum.Enum):
    """OBX-11, HL7 table 0085 (the values the gateway sends)."""

    FINAL = "F"  #: final result
    CORRECTED = "C"  #: correction of a result already released as final
    PRELIMINARY = "P"  #: preliminary (not yet validated)
    CANNOT_OBTAIN = "X"  #: no result can be produced (OBX-5 stays empty)
    DELETED = "D"  #: deletes the OBX record sent before (a retracted result)


class ReportStatus(enum.Enum):
    """OBR-25, HL7 table 0123 (the values the gateway sends)."""

    FINAL = "F"
    CORRECTED = "C"
    PRELIMINARY = "P"
    CANCELLED = "X"  #: no results: the test was cancelled or cannot be done


_F, _C, _P, _X, _D = (ObservationStatus.FINAL, ObservationStatus.CORRECTED,
                      ObservationStatus.PRELIMINARY, ObservationStatus.CANNOT_OBTAIN,
                      ObservationStatus.DELETED)

#: OBX-11 values allowed under each OBR-25 (protocols.md §3.6-3.7): a corrected
#: or deleted OBX only in a corrected report, and a corrected report holds at
#: least one of them.
ALLOWED_OBSERVATION_STATUSES: dict[ReportStatus, frozenset[ObservationStatus]] = {
    ReportStatus.FINAL: frozenset({_F, _X}),
    ReportStatus.CORRECTED: frozenset({_C, _D, _F, _X}),
    ReportStatus.PRELIMINARY: frozenset({_P, _F, _X}),
    ReportStatus.CANCELLED: frozenset({_X}),
}

#: OBX-8 abnormal flags, HL7 table 0078 as of v2.5.1, plus the v2.6 additions
#: (POS ... WR) that LRI pre-adopts.
ABNORMAL_FLAGS: dict[str, str] = {
    "L": "below low normal", "H": "above high normal", "LL": "below lower panic limit",
    "HH": "above upper panic limit", "<": "below absolute low-off instrument scale",
    ">": "above absolute high-off instrument scale", "N": "normal", "A": "abnormal",
    "AA": "very abnormal", "U": "significant change up", "D": "significant change down",
    "B": "better", "W": "worse", "S": "susceptible", "R": "resistant", "I": "intermediate",
    "MS": "moderately susceptible", "VS": "very susceptible",
    "POS": "positive", "NEG": "negative", "IND": "indeterminate", "DET": "detected",
    "ND": "not detected", "AC": "anti-complementary substances present",
    "RR": "reactive", "WR": "weakly reactive", "TOX": "cytotoxic substance present",
    "QCF": "quality control failure",
}

#: SN.1 comparators (HL7 v2.5.1 §2.A.71).
SN_COMPARATORS = frozenset({"<", ">", "<=", ">=", "=", "<>"})
#: SN.3 separator/suffix values (HL7 v2.5.1 §2.A.71): "-" range, ":" and "/" ratio,
#: "+" categorical suffix ("2+", no second number), ".".
SN_SEPARATORS = frozenset({"-", "+", "/", ".", ":"})

#: ST is meant for short single-line strings; longer or multi-line text goes as FT.
ST_MAX_LENGTH = 199


@dataclass(frozen=True, slots=True)
class NumericValue:
    """OBX-2 ``NM``: a plain number (keep the Decimal's digits: 5.40 stays 5.40)."""

    value: Decimal


@dataclass(frozen=True, slots=True)
class StructuredNumeric:
    """OBX-2 ``SN``: ``comparator^num1[^separator^num2]`` (``<^10``, ``^1^:^128``)."""

    comparator: str  #: SN.1, one of :data:`SN_COMPARATORS` or ""
    number: Decimal  #: SN.2
    separator: str = ""  #: SN.3, one of :data:`SN_SEPARATORS` or ""
    number2: Decimal | None = None  #: SN.4


@dataclass(frozen=True, slots=True)
class TextValue:
    """OBX-2 ``ST`` (``FT`` when longer than 199 characters or multi-line)."""

    text: str


@dataclass(frozen=True, slots=True)
class CodedValue:
    """OBX-2 ``CWE``: ``code^text^system`` (SNOMED CT for LRI, e.g. 260385009^Negative^SCT)."""

    code: Code


ObservationValue = NumericValue | StructuredNumeric | TextValue | CodedValue

_NUMBER = r"[+-]?(?:\d+(?:\.\d+)?|\.\d+)"
_CENSORED = re.compile(rf"\s*(<=|>=|<>|<|>|=)?\s*({_NUMBER})\s*")
_PAIR = re.compile(rf"\s*({_NUMBER})\s*([-/:])\s*({_NUMBER})\s*")
_SUFFIX = re.compile(rf"\s*({_NUMBER})\s*\+\s*")


def value_from_text(text: str) -> NumericValue | StructuredNumeric:
    """Choose NM or SN for a number as an analyzer wrote it.

    ``"5.40"`` -> NM 5.40; ``"<10"``, ``">160"``, ``"<=0.5"`` -> SN with a
    comparator; ``"1:128"``, ``"10-20"`` -> SN ratio or range; ``"2+"`` -> SN
    categorical (``^2^+``).

    Raises:
        BuildError: the text is not a number of these forms.
    """
    censored = _CENSORED.fullmatch(text)
    if censored:
        comparator, number = censored.group(1) or "", Decimal(censored.group(2))
        return StructuredNumeric(comparator, number) if comparator else NumericValue(number)
    pair = _PAIR.fullmatch(text)
    if pair:
        return StructuredNumeric("", Decimal(pair.group(1)), pair.group(2),
                                 Decimal(pair.group(3)))
    suffix = _SUFFIX.fullmatch(text)
    if suffix:
        return StructuredNumeric("", Decimal(suffix.group(1)), "+")
    raise BuildError(f"not a numeric result: {text!r}")


@dataclass(frozen=True, slots=True)
class Observation:
    """One OBX (and the NTEs after it)."""

    code: ObservationCode  #: OBX-3
    value: ObservationValue | None  #: OBX-2 and OBX-5; None only with status X
    status: ObservationStatus  #: OBX-11
    unit: str = ""  #: OBX-6 UCUM code, written ``unit^unit^UCUM``
    reference_range: str = ""  #: OBX-7, e.g. "3.9-6.1"
    abnormal_flags: tuple[str, ...] = ()  #: OBX-8 repetitions, table 0078
    sub_id: str = ""  #: OBX-4, needed when the same OBX-3 repeats in one order
    observed_at: datetime | None = None  #: OBX-14; default: the order's collection time (LRI)
    validated_by: Person | None = None  #: OBX-16 responsible observer (the validator)
    equipment: tuple[EntityIdentifier, ...] = ()  #: OBX-18 repetitions (model, serial, MA_MAY)
    analyzed_at: datetime | None = None  #: OBX-19 date/time of the analysis
    comments: tuple[str, ...] = ()  #: one NTE each after the OBX (NTE-3)


@dataclass(frozen=True, slots=True)
class Order:
    """One ORDER_OBSERVATION: ORC + OBR + NTE + OBX... + SPM, per ordered test or panel."""

    filler_order_number: EntityIdentifier  #: ORC-3 / OBR-3: lab accession or sample ID
    service: ObservationCode  #: OBR-4 universal service ID
    status: ReportStatus  #: OBR-25
    observations: tuple[Observation, ...]  #: the OBX groups
    placer_order_number: EntityIdentifier | None = None  #: ORC-2 / OBR-2: the HIS order
    collected_at: datetime | None = None  #: OBR-7 and SPM-17: specimen collection
    received_at: datetime | None = None  #: OBR-14 and SPM-18: specimen received in the lab
    ordering_provider: Person | None = None  #: ORC-12 / OBR-16
    reported_at: datetime | None = None  #: OBR-22; default: the message time
    specimen_type: Code | None = None  #: SPM-4 (table 0487 / SNOMED CT); SPM sent when set
    comments: tuple[str, ...] = ()  #: one NTE each after the OBR


def _number(value: Decimal) -> str:
    if not value.is_finite():
        raise BuildError(f"not a finite number: {value}")
    return format(value, "f")


def _value_fields(value: ObservationValue | None) -> tuple[str, str]:
    """OBX-2 and OBX-5 for a value."""
    if value is None:
        return "", ""
    if isinstance(value, NumericValue):
        return "NM", _number(value.value)
    if isinstance(value, StructuredNumeric):
        if value.comparator not in SN_COMPARATORS | {""}:
            raise BuildError(f"SN comparator {value.comparator!r} is not one of "
                             f"{sorted(SN_COMPARATORS)}")
        if value.separator not in SN_SEPARATORS | {""}:
            raise BuildError(f"SN separator {value.separator!r} is not one of "
                             f"{sorted(SN_SEPARATORS)}")
        if (value.number2 is not None) != (value.separator not in ("", "+")):
            raise BuildError("an SN second number needs a separator, and only '+' stands alone")
        second = "" if value.number2 is None else _number(value.number2)
        return "SN", join_components([encode_text(value.comparator), _number(value.number),
                                      encode_text(value.separator), second])
    if isinstance(value, TextValue):
        if len(value.text) <= ST_MAX_LENGTH and not any(c in value.text for c in "\r\n"):
            return "ST", encode_text(value.text)
        return "FT", encode_text(value.text, formatted=True)
    return "CWE", code_text(value.code)


def _check_observations(order: Order) -> None:
    allowed = ALLOWED_OBSERVATION_STATUSES[order.status]
    statuses = [o.status for o in order.observations]
    bad = sorted({s.value for s in statuses if s not in allowed})
    if bad:
        raise BuildError(f"OBR-25 {order.status.value} does not allow OBX-11 {', '.join(bad)}"
                         + (" (a correction needs OBR-25 C)" if "C" in bad else ""))
    if order.status is ReportStatus.CORRECTED and not {_C, _D} & set(statuses):
        raise BuildError("OBR-25 C (corrected) needs at least one OBX-11 C or D")
    if not statuses and order.status is not ReportStatus.CANCELLED:
        raise BuildError(f"OBR-25 {order.status.value} needs at least one observation")
    seen: set[tuple[str, str]] = set()
    for obs in order.observations:
        if (obs.value is None) != (obs.status is _X):
            raise BuildError("OBX-5 is empty exactly when OBX-11 is X (cannot be obtained)")
        unknown = [f for f in obs.abnormal_flags if f not in ABNORMAL_FLAGS]
        if unknown:
            raise BuildError(f"OBX-8 flags {unknown} are not in HL7 table 0078")
        key = (observation_code_text(obs.code), obs.sub_id)
        if key in seen:
            raise BuildError(f"OBX-3 {key[0]} repeats without a distinct OBX-4 sub-ID")
        seen.add(key)


def _nte(set_id: int, comment: str) -> str:
    # NTE-2 "L": the filler (the lab) is the source of the comment (table 0105).
    return write_segment(["NTE", str(set_id), "L", encode_text(comment, formatted=True)])


def _obx(set_id: int, obs: Observation, order: Order) -> list[str]:
    value_type, value = _value_fields(obs.value)
    observed = obs.observed_at or order.collected_at
    fields = ["OBX", str(set_id), value_type, observation_code_text(obs.code),
              encode_text(obs.sub_id), value,
              components(obs.unit, obs.unit, "UCUM") if obs.unit else "",
              encode_text(obs.reference_range),
              DEFAULT.repetition.join(obs.abnormal_flags), "", "", obs.status.value, "", "",
              format_optional_ts(observed), "", xcn_text(obs.validated_by), "",
              DEFAULT.repetition.join(ei_text(e) for e in obs.equipment),
              format_optional_ts(obs.analyzed_at)]
    segments = [write_segment(fields)]
    segments += [_nte(i, c) for i, c in enumerate(obs.comments, 1)]
    return segments


def _spm(order: Order) -> str:
    # SPM-2 EIP: component 2 = the filler's specimen ID (EI as subcomponents).
    filler = order.filler_order_number
    specimen_id = DEFAULT.component + join_components(
        [encode_text(filler.identifier), encode_text(filler.namespace),
         encode_text(filler.universal_id), encode_text(filler.universal_id_type)],
        DEFAULT.subcomponent)
    fields = ["SPM", "1", specimen_id, "", code_text(order.specimen_type), *([""] * 12),
              format_optional_ts(order.collected_at), format_optional_ts(order.received_at)]
    return write_segment(fields)


def _order_segments(set_id: int, order: Order, message_time: datetime) -> list[str]:
    _check_observations(order)
    if not order.filler_order_number.identifier:
        raise BuildError("ORC-3/OBR-3 (filler order number) is empty")
    placer, filler = ei_text(order.placer_order_number), ei_text(order.filler_order_number)
    provider = xcn_text(order.ordering_provider)
    orc = ["ORC", "RE", placer, filler, *([""] * 8), provider]
    obr = ["OBR", str(set_id), placer, filler, observation_code_text(order.service), "", "",
           format_optional_ts(order.collected_at), *([""] * 6),
           format_optional_ts(order.received_at), "", provider, *([""] * 5),
           format_ts(order.reported_at or message_time), "", "", order.status.value]
    segments = [write_segment(orc), write_segment(obr)]
    segments += [_nte(i, c) for i, c in enumerate(order.comments, 1)]
    for i, obs in enumerate(order.observations, 1):
        segments += _obx(i, obs, order)
    if order.specimen_type is not None:
        segments.append(_spm(order))
    return segments


def build_oru_r01(route: MessageRoute, patient: PatientIdentity, orders: Sequence[Order], *,
                  control_id: str, now: datetime, visit: Visit | None = None,
                  accept_ack: str = "AL", application_ack: str = "NE",
                  profiles: Sequence[EntityIdentifier] = ()) -> bytes:
    """Build one ORU^R01 v2.5.1 for one patient.

    Args:
        route: MSH-3..6.
        patient: PID.
        orders: one ORC/OBR group each, in order.
        control_id: MSH-10, unique per message (from the injected generator).
        now: MSH-7 and the default OBR-22; must carry tzinfo.
        visit: PV1, or None to leave it out.
        accept_ack: MSH-15.
        application_ack: MSH-16.
        profiles: MSH-21, e.g. ``(LRI_COMMON_COMPONENT, LRI_NG_COMPONENT, ...)``.

    Returns:
        The message bytes: UTF-8, segments ending with CR, no MLLP framing.

    Raises:
        BuildError: the input cannot make a correct message (no patient
            identifier, no order, naive time, status mismatch, unknown flag...).
    """
    if not orders:
        raise BuildError("an ORU^R01 needs at least one order")
    segments = [msh_segment(route, "ORU^R01^ORU_R01", control_id=control_id,
                            timestamp=format_ts(now), accept_ack=accept_ack,
                            application_ack=application_ack, profiles=profiles),
                pid_segment(patient)]
    if visit is not None:
        segments.append(pv1_segment(visit))
    for set_id, order in enumerate(orders, 1):
        segments += _order_segments(set_id, order, now)
    return write_message(segments)

