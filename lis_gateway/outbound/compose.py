"""The ORU^R01 carrying one released result version to a destination (pure).

One message per outbox entry: MSH, PID, one ORC/OBR (the sample's accession
as filler order number, the test as universal service ID) and one OBX.
A version that corrects an earlier one goes out with OBX-11 = C and
OBR-25 = C; a first version with F; a retraction (the version must never
have been reported: wrong patient, wrong sample) with OBX-11 = D ("deletes
the OBX record", table 0085) and OBR-25 = C, under its own control ID.
MSH-10 is the entry's stable control ID, so a resend after a lost ACK is
the same message apart from MSH-7.

The value type follows the stored content: the exact converted number as
NM, or SN when the analyzer wrote a comparator (``<0.5``), a ratio or a
``2+``; text as ST/FT. Anything that cannot make a correct message (no
patient identifier, an unknown flag) raises :class:`BuildError`; the outbox
keeps the entry and shows the reason.
"""

from __future__ import annotations

from datetime import datetime

from lis_gateway.hl7.datatypes import (
    EntityIdentifier,
    HierarchicDesignator,
    MessageRoute,
    ObservationCode,
    Person,
)
from lis_gateway.hl7.errors import BuildError
from lis_gateway.hl7.oru import (
    NumericValue,
    Observation,
    ObservationStatus,
    ObservationValue,
    Order,
    ReportStatus,
    StructuredNumeric,
    TextValue,
    build_oru_r01,
    value_from_text,
)
from lis_gateway.hl7.patient import PatientIdentity, Sex
from lis_gateway.store.outbox import OutboundResult
from lis_gateway.store.repository import ResultContent


def observation_value(content: ResultContent) -> ObservationValue:
    """OBX-2/OBX-5 from a stored version (the exact number wins over the raw text)."""
    raw = content.value_raw.strip()
    try:
        written: NumericValue | StructuredNumeric | None = value_from_text(raw)
    except BuildError:
        written = None
    if content.number is None:
        if written is not None:
            return written
        if not raw:
            raise BuildError("the result has no value")
        return TextValue(raw)
    if isinstance(written, StructuredNumeric) and written.comparator:
        return StructuredNumeric(written.comparator, content.number)
    return NumericValue(content.number)


def compose_oru(item: OutboundResult, route: MessageRoute, now: datetime,
                hospital: HierarchicDesignator | None = None) -> bytes:
    """The ORU^R01 v2.5.1 for one outbox entry (UTF-8, no MLLP framing).

    ``hospital`` is the assigning authority of hospital patient IDs (PID-3 CX.4).
    A patient taken from an analyzer's own record (``unsolicited``) is sent as
    that analyzer's ID: PID-3 CX.5 ``PT`` with the analyzer's name as CX.4.

    Raises:
        BuildError: the result cannot make a correct message; the text says why.
    """
    c = item.content
    if not c.code and not c.loinc:
        raise BuildError(f"test {item.test_code!r} of analyzer {item.analyzer!r} is not mapped "
                         "to a local code or LOINC: add it to the mapping table")
    code = ObservationCode(loinc=c.loinc, local=c.code, local_text=c.code)
    status = (ObservationStatus.DELETED if item.retracted
              else ObservationStatus.CORRECTED if item.corrected else ObservationStatus.FINAL)
    report = (ReportStatus.CORRECTED if item.corrected or item.retracted
              else ReportStatus.FINAL)
    person = None
    if item.responsible:
        family, _, given = item.responsible_name.partition(" ")
        person = Person(identifier=item.responsible, family_name=family, given_name=given)
    observation = Observation(
        code=code, value=observation_value(c), status=status, unit=c.unit_ucum,
        reference_range=c.reference_range, abnormal_flags=c.flags, validated_by=person,
        equipment=(EntityIdentifier(item.analyzer),) if item.analyzer else (),
        analyzed_at=c.result_time)
    placer = EntityIdentifier(item.placer_order) if item.placer_order else None
    order = Order(filler_order_number=EntityIdentifier(item.accession), service=code,
                  status=report, observations=(observation,), placer_order_number=placer)
    from_analyzer = bool(item.patient_analyzer)
    patient = PatientIdentity(hospital_id="" if from_analyzer else item.hospital_id,
                              hospital=hospital,
                              analyzer_patient_id=item.hospital_id if from_analyzer else "",
                              analyzer=(HierarchicDesignator(item.patient_analyzer)
                                        if from_analyzer else None),
                              national_id=item.national_id, family_name=item.family_name,
                              middle_name=item.middle_name, given_name=item.given_name,
                              birth_date=item.birth_date,
                              sex=Sex.from_code(item.sex),
                              insurance_card=item.insurance_card)
    return build_oru_r01(route, patient, (order,), control_id=item.control_id, now=now)
