"""What extraction hooks are given: the records (ASTM) or segments (HL7) around a result."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from lis_gateway.astm.delimiters import Delimiters
from lis_gateway.astm.records import CommentRecord, OrderRecord, PatientRecord, ResultRecord
from lis_gateway.hl7.message import Hl7Message, Segment


class ResultRole(enum.Enum):
    """What one result record (R or OBX) is."""

    REPORTABLE = "reportable"  #: the value that goes to the lab and the HIS
    SUPPLEMENTARY = "supplementary"  #: attached to the reportable result before it
    #: (interpretation, raw signal, Ct value, replicate)
    INSTRUMENT_FLAG = "instrument-flag"  #: a flag sent as a pseudo-result (Sysmex)
    IGNORED = "ignored"  #: not a result at all (Mindray run-mode rows)


@dataclass(frozen=True, slots=True)
class AnalyzerPatient:
    """The patient as the analyzer's own record gives it (ASTM P, HL7 PID).

    Patient data: stored, never logged. Only used for analyzers configured
    ``unsolicited = true``; the name is kept as the analyzer wrote it (a name
    typed into one field is not split into family and given names).
    """

    patient_id: str = ""  #: P-3 (else P-4, P-5); PID-3 CX.1 (else PID-2)
    family_name: str = ""
    given_name: str = ""
    middle_name: str = ""
    birth_date: str = ""  #: as sent (YYYYMMDD...)
    sex: str = ""  #: M, F or U (anything else is U)

    def __bool__(self) -> bool:
        return bool(self.patient_id or self.family_name or self.given_name)


@dataclass(frozen=True, slots=True)
class ResultContext:
    """An ASTM R record with the P and O records it belongs to and the C records after it."""

    delimiters: Delimiters
    patient: PatientRecord | None
    order: OrderRecord | None
    result: ResultRecord
    comments: tuple[CommentRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class Hl7ResultContext:
    """An HL7 OBX with the segments that precede it in its message."""

    message: Hl7Message
    obx: Segment
    obr: Segment | None
    spm: Segment | None
    pid: Segment | None
