"""Patient identity and visit as the gateway writes them (PID, PV1; HL7 v2.5.1 §3.4).

Three identifiers are in use in Vietnamese hospitals (docs: shared/vietnam.md §3.2):

* the hospital's own patient code (``MA_BN``), stable across episodes;
* the 12-digit personal identification number (CCCD / VNeID), which Decree
  102/2025 Art. 6 makes the health identifier;
* the health-insurance (BHYT) card number, 15 characters on the card.

Each goes into one PID-3 repetition (CX) with its own identifier type
(table 0203) and assigning authority (CX.4), as LRI requires of every
identifier. The type codes are data in :data:`IDENTIFIER_TYPES`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date

from .datatypes import (
    HierarchicDesignator,
    encode_text,
    format_date,
    hd_text,
    join_components,
)
from .delimiters import DEFAULT
from .errors import BuildError
from .message import write_segment


class Sex(enum.Enum):
    """Administrative sex, HL7 table 0001 (PID-8)."""

    FEMALE = "F"
    MALE = "M"
    OTHER = "O"
    UNKNOWN = "U"
    AMBIGUOUS = "A"
    NOT_APPLICABLE = "N"

    @classmethod
    def from_code(cls, code: str) -> Sex:
        """The table 0001 value for ``code``; UNKNOWN for anything else ("" included)."""
        try:
            return cls(code)
        except ValueError:
            return cls.UNKNOWN


class PatientClass(enum.Enum):
    """Patient class, HL7 table 0004 (PV1-2)."""

    EMERGENCY = "E"
    INPATIENT = "I"
    OUTPATIENT = "O"
    PREADMIT = "P"
    RECURRING = "R"
    OBSTETRICS = "B"
    COMMERCIAL = "C"
    NOT_APPLICABLE = "N"
    UNKNOWN = "U"


#: PID-3 identifier type codes (HL7 table 0203) per Vietnamese identifier.
IDENTIFIER_TYPES: dict[str, str] = {
    # PI "Patient internal identifier": the number the hospital assigns to the
    # patient (MA_BN). Not MR: in Vietnam the medical-record number (so benh an)
    # is a per-admission number, a different identifier.
    "hospital": "PI",
    # NNxxx "National Person Identifier where xxx is the ISO 3166 3-letter
    # country code": exactly a country's personal ID, and it says which country.
    # NI ("national unique individual identifier") names no country, so a
    # foreign national ID could not be told apart from a Vietnamese one.
    "national": "NNVNM",
    # HC "Health Card Number": the number printed on the BHYT card.
    "insurance": "HC",
    # PT "Patient external identifier": an ID the hospital did not assign, here
    # the one typed into an analyzer (``unsolicited``), its CX.4 the analyzer.
    "analyzer": "PT",
}

#: Default CX.4 of the CCCD: the Ministry of Public Security (Bo Cong an) issues it.
#: A namespace, not an OID: no public OID is known for it; sites may set their own.
NATIONAL_ID_AUTHORITY = HierarchicDesignator("BCA")
#: Default CX.4 of the BHYT card number: Vietnam Social Security (Bao hiem xa hoi).
INSURANCE_AUTHORITY = HierarchicDesignator("BHXH")


@dataclass(frozen=True, slots=True)
class PatientIdentity:
    """Who the patient is: PID-3, PID-5, PID-7, PID-8.

    Each identifier is optional, but PID needs at least one (:class:`BuildError`).
    """

    hospital_id: str = ""  #: PID-3 rep, CX.5 "PI": the hospital patient code (MA_BN)
    hospital: HierarchicDesignator | None = None  #: CX.4 of ``hospital_id`` (the hospital)
    national_id: str = ""  #: PID-3 rep, CX.5 "NNVNM": the 12-digit CCCD number
    insurance_card: str = ""  #: PID-3 rep, CX.5 "HC": the BHYT card number
    family_name: str = ""  #: PID-5 XPN.1 (ho, e.g. "Nguyễn")
    given_name: str = ""  #: PID-5 XPN.2 (ten, e.g. "An")
    middle_name: str = ""  #: PID-5 XPN.3 (ten dem, e.g. "Văn")
    birth_date: date | None = None  #: PID-7
    sex: Sex = Sex.UNKNOWN  #: PID-8
    national_authority: HierarchicDesignator = NATIONAL_ID_AUTHORITY  #: CX.4 of national_id
    insurance_authority: HierarchicDesignator = INSURANCE_AUTHORITY  #: CX.4 of insurance_card
    #: PID-3 rep, CX.5 "PT": the patient ID typed into an analyzer (no HIS order)
    analyzer_patient_id: str = ""
    #: CX.4 of ``analyzer_patient_id``: the analyzer, so no one takes it for the HIS's ID
    analyzer: HierarchicDesignator | None = None

    @property
    def display_name(self) -> str:
        """The name in Vietnamese order: family, middle, given."""
        return " ".join(p for p in (self.family_name, self.middle_name, self.given_name) if p)


@dataclass(frozen=True, slots=True)
class Location:
    """PL (PV1-3): where the patient lies."""

    ward: str = ""  #: PL.1 point of care (khoa / buong)
    room: str = ""  #: PL.2
    bed: str = ""  #: PL.3


@dataclass(frozen=True, slots=True)
class Visit:
    """PV1: the episode (optional in ORU^R01)."""

    patient_class: PatientClass  #: PV1-2
    location: Location | None = None  #: PV1-3
    visit_number: str = ""  #: PV1-19 CX.1, e.g. the episode key MA_LK
    visit_authority: HierarchicDesignator | None = None  #: PV1-19 CX.4


def _cx(identifier: str, authority: HierarchicDesignator | None, id_type: str) -> str:
    return join_components([encode_text(identifier), "", "",
                            hd_text(authority, DEFAULT.subcomponent), id_type])


def patient_identifiers(patient: PatientIdentity) -> str:
    """PID-3: one CX repetition per identifier the patient has.

    Raises:
        BuildError: no identifier at all, a hospital ID without its hospital,
            or a national ID that is not 12 digits.
    """
    reps: list[str] = []
    if patient.hospital_id:
        if patient.hospital is None or not (patient.hospital.namespace
                                            or patient.hospital.universal_id):
            raise BuildError("the hospital patient ID needs the hospital as assigning authority")
        reps.append(_cx(patient.hospital_id, patient.hospital, IDENTIFIER_TYPES["hospital"]))
    if patient.national_id:
        if len(patient.national_id) != 12 or not patient.national_id.isdigit():
            raise BuildError("the national ID must be the 12-digit personal identification "
                             "number (CCCD)")
        reps.append(_cx(patient.national_id, patient.national_authority,
                        IDENTIFIER_TYPES["national"]))
    if patient.insurance_card:
        reps.append(_cx(patient.insurance_card, patient.insurance_authority,
                        IDENTIFIER_TYPES["insurance"]))
    if patient.analyzer_patient_id:
        if patient.analyzer is None or not patient.analyzer.namespace:
            raise BuildError("an analyzer's patient ID needs the analyzer as assigning "
                             "authority")
        reps.append(_cx(patient.analyzer_patient_id, patient.analyzer,
                        IDENTIFIER_TYPES["analyzer"]))
    if not reps:
        raise BuildError("the patient needs a hospital ID, a national ID or an insurance card "
                         "number")
    return DEFAULT.repetition.join(reps)


def patient_name(patient: PatientIdentity) -> str:
    """PID-5 XPN: ``family^given^middle^^^^L``; ``^^^^^^U`` when the name is unknown."""
    if not (patient.family_name or patient.given_name or patient.middle_name):
        return "^^^^^^U"
    return join_components([encode_text(patient.family_name), encode_text(patient.given_name),
                            encode_text(patient.middle_name), "", "", "", "L"])


def pid_segment(patient: PatientIdentity) -> str:
    """The PID segment (set ID 1).

    Raises:
        BuildError: see :func:`patient_identifiers`.
    """
    fields = ["PID", "1", "", patient_identifiers(patient), "", patient_name(patient), "",
              format_date(patient.birth_date), patient.sex.value]
    return write_segment(fields)


def pv1_segment(visit: Visit) -> str:
    """The PV1 segment (set ID 1): class, location, visit number."""
    loc = visit.location
    location = "" if loc is None else join_components(
        [encode_text(loc.ward), encode_text(loc.room), encode_text(loc.bed)])
    visit_number = "" if not visit.visit_number else _cx(
        visit.visit_number, visit.visit_authority, "VN")
    fields = ["PV1", "1", visit.patient_class.value, location, *([""] * 15), visit_number]
    return write_segment(fields)
