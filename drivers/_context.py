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
