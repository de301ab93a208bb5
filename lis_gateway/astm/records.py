"""E1394 (CLSI LIS2-A2) records as frozen dataclasses.

Field values are kept exactly as received (raw, still escaped with the
message's delimiters) so that decode/encode round-trips byte for byte; read
them through :class:`~lis_gateway.astm.delimiters.Delimiters` (``components``,
``unescape``, ``text``). Field numbers count the record-type letter as field
1, so ``R-4`` is the result value. Fields past the last modelled one are kept
in ``extra``; ``field_count`` remembers how many fields were received so that
trailing empty fields are written back.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class HeaderRecord:
    """H: message header."""

    TYPE: ClassVar[str] = "H"
    delimiter_definition: str = ""  # H-2 repeat, component, escape (written from the message)
    message_control_id: str = ""  # H-3
    access_password: str = ""  # H-4
    sender_id: str = ""  # H-5 sender name or ID (vendors: model^version^serial)
    sender_address: str = ""  # H-6
    reserved: str = ""  # H-7
    sender_phone: str = ""  # H-8
    sender_characteristics: str = ""  # H-9
    receiver_id: str = ""  # H-10
    comment: str = ""  # H-11 comment / special instructions (Roche: RSUPL^REAL)
    processing_id: str = ""  # H-12 P production, T training, D debug, Q QC
    version: str = ""  # H-13 e.g. LIS2-A2, 1394-97
    timestamp: str = ""  # H-14 date and time of message
    extra: tuple[str, ...] = ()
    field_count: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class PatientRecord:
    """P: patient information."""

    TYPE: ClassVar[str] = "P"
    sequence: str = ""  # P-2
    practice_patient_id: str = ""  # P-3 practice-assigned patient ID
    laboratory_patient_id: str = ""  # P-4 laboratory-assigned patient ID
    patient_id_3: str = ""  # P-5 patient ID No. 3 (Sysmex)
    name: str = ""  # P-6 last^first^middle^suffix^title
    mothers_maiden_name: str = ""  # P-7
    birthdate: str = ""  # P-8
    sex: str = ""  # P-9 M/F/U
    race: str = ""  # P-10
    address: str = ""  # P-11
    reserved: str = ""  # P-12
    phone: str = ""  # P-13
    attending_physician: str = ""  # P-14
    special_1: str = ""  # P-15
    special_2: str = ""  # P-16
    height: str = ""  # P-17
    weight: str = ""  # P-18
    diagnosis: str = ""  # P-19 known or suspected diagnosis
    medications: str = ""  # P-20
    diet: str = ""  # P-21
    practice_field_1: str = ""  # P-22
    practice_field_2: str = ""  # P-23
    admission_dates: str = ""  # P-24 admission and discharge dates
    admission_status: str = ""  # P-25
    location: str = ""  # P-26 location (ward)
    alt_diagnostic_code: str = ""  # P-27
    alt_diagnostic_classification: str = ""  # P-28
    religion: str = ""  # P-29
    marital_status: str = ""  # P-30
    isolation_status: str = ""  # P-31
    language: str = ""  # P-32
    hospital_service: str = ""  # P-33
    hospital_institution: str = ""  # P-34
    dosage_category: str = ""  # P-35
    extra: tuple[str, ...] = ()
    field_count: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """O: test order."""

    TYPE: ClassVar[str] = "O"
    sequence: str = ""  # O-2
    specimen_id: str = ""  # O-3 specimen ID assigned by the LIS (often id^rack^position)
    instrument_specimen_id: str = ""  # O-4 instrument specimen ID
    universal_test_id: str = ""  # O-5 universal test ID (repeatable)
    priority: str = ""  # O-6 S stat, A ASAP, R routine, C callback, P preoperative
    requested_at: str = ""  # O-7 requested/ordered date-time
    collected_at: str = ""  # O-8 specimen collection date-time
    collection_end: str = ""  # O-9
    collection_volume: str = ""  # O-10
    collector_id: str = ""  # O-11
    action_code: str = ""  # O-12 N new, A add, C cancel, P pending, X in process, Q QC
    danger_code: str = ""  # O-13
    clinical_info: str = ""  # O-14
    received_at: str = ""  # O-15 date-time specimen received
    specimen_descriptor: str = ""  # O-16 type^source
    ordering_physician: str = ""  # O-17
    physician_phone: str = ""  # O-18
    user_field_1: str = ""  # O-19
    user_field_2: str = ""  # O-20
    lab_field_1: str = ""  # O-21
    lab_field_2: str = ""  # O-22
    reported_at: str = ""  # O-23 date-time results reported or last modified
    instrument_charge: str = ""  # O-24
    instrument_section: str = ""  # O-25
    report_type: str = ""  # O-26 O order, F final, Q query response, Y no order, Z no record
    reserved: str = ""  # O-27
    collection_location: str = ""  # O-28
    nosocomial_flag: str = ""  # O-29
    specimen_service: str = ""  # O-30
    specimen_institution: str = ""  # O-31
    extra: tuple[str, ...] = ()
    field_count: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class ResultRecord:
    """R: result."""

    TYPE: ClassVar[str] = "R"
    sequence: str = ""
    universal_test_id: str = ""  # R-3 ^^^local code (vendors differ, see drivers)
    value: str = ""  # R-4 data or measurement value
    units: str = ""
    reference_range: str = ""  # R-6 free text
    abnormal_flags: str = ""  # R-7 L H LL HH < > N A U D B W (repeatable)
    abnormality_nature: str = ""  # R-8 A age, S sex, R race, N none
    status: str = ""  # R-9 F final, C correction, P preliminary, R retransmitted, ...
    normatives_changed_at: str = ""  # R-10 (Mindray: raw value)
    operator_id: str = ""  # R-11 performed^verified
    started_at: str = ""  # R-12 date-time test started
    completed_at: str = ""  # R-13 date-time test completed
    instrument_id: str = ""  # R-14 instrument or module identification
    extra: tuple[str, ...] = ()
    field_count: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class CommentRecord:
    """C: comment, belonging to the record before it."""

    TYPE: ClassVar[str] = "C"
    sequence: str = ""  # C-2
    source: str = ""  # C-3 P practice, L LIS, I instrument
    text: str = ""  # C-4 comment text (may have components)
    comment_type: str = ""  # C-5 G generic, T test name, P/N test, I instrument flag
    extra: tuple[str, ...] = ()
    field_count: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class QueryRecord:
    """Q: request for information (host query)."""

    TYPE: ClassVar[str] = "Q"
    sequence: str = ""
    starting_range: str = ""  # Q-3 patientID^specimenID^... (usually ^SPECIMEN)
    ending_range: str = ""
    universal_test_id: str = ""  # Q-5 ALL, ^^^ALL or a list
    time_limits_nature: str = ""  # Q-6 S collection date, R result date
    begin_at: str = ""
    end_at: str = ""
    requesting_physician: str = ""
    physician_phone: str = ""
    user_field_1: str = ""
    user_field_2: str = ""
    status_code: str = ""  # Q-13 O orders, D demographics, A abort the last request, ...
    extra: tuple[str, ...] = ()
    field_count: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class ManufacturerRecord:
    """M: manufacturer information; everything after M-2 is vendor-defined."""

    TYPE: ClassVar[str] = "M"
    sequence: str = ""  # M-2
    extra: tuple[str, ...] = ()  # M-3 onward, as sent
    field_count: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class ScientificRecord:
    """S: scientific record; kept as sent."""

    TYPE: ClassVar[str] = "S"
    sequence: str = ""  # S-2
    extra: tuple[str, ...] = ()  # S-3 onward
    field_count: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class TerminatorRecord:
    """L: message terminator."""

    TYPE: ClassVar[str] = "L"
    sequence: str = ""  # L-2 (normally 1)
    termination_code: str = ""  # L-3 N normal, T/R/E abort, Q query error, I no info, F done
    extra: tuple[str, ...] = ()
    field_count: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class UnknownRecord:
    """A record whose type letter E1394 does not define; kept whole."""

    record_type: str = ""  # the text before the first field delimiter
    extra: tuple[str, ...] = ()  # field 2 onward
    field_count: int = field(default=0, compare=False)


Record = (HeaderRecord | PatientRecord | OrderRecord | ResultRecord | CommentRecord
          | QueryRecord | ManufacturerRecord | ScientificRecord | TerminatorRecord
          | UnknownRecord)

KnownRecord = (HeaderRecord | PatientRecord | OrderRecord | ResultRecord | CommentRecord
               | QueryRecord | ManufacturerRecord | ScientificRecord | TerminatorRecord)

#: Record type letter -> class.
RECORD_TYPES: dict[str, type[KnownRecord]] = {
    cls.TYPE: cls
    for cls in (HeaderRecord, PatientRecord, OrderRecord, ResultRecord, CommentRecord,
                QueryRecord, ManufacturerRecord, ScientificRecord, TerminatorRecord)
}

#: Record class -> names of its positional fields (field 2 onward), in order.
FIELD_NAMES: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls) if f.name not in ("extra", "field_count"))
    for cls in RECORD_TYPES.values()
}


def record_type(record: Record) -> str:
    """The record's type letter (for unknown records, the text as sent)."""
    if isinstance(record, UnknownRecord):
        return record.record_type
    return record.TYPE
