"""ASTM E1381 (LIS1-A) link layer and E1394 (LIS2-A2) records, sans-IO.

This package imports nothing from twisted, sqlalchemy, structlog or
prometheus_client (a test checks it): bytes and time go in, events and
bytes come out.
"""

from .assembler import AstmMessage, IncompleteTransmission, MessageAssembler
from .codec import Decoded, Problem, decode_record, decode_records, encode_message, encode_record
from .delimiters import Delimiters
from .errors import AstmError, LocalProtocolError, RecordError, RecordOrderError
from .events import AbortReason, DeviationKind
from .frames import ChecksumMode, checksum, encode_frame, split_text
from .link import LinkConfig, LinkConnection, LinkInput, LinkState, Role
from .records import (
    CommentRecord,
    HeaderRecord,
    ManufacturerRecord,
    OrderRecord,
    PatientRecord,
    QueryRecord,
    ResultRecord,
    ScientificRecord,
    TerminatorRecord,
    UnknownRecord,
)

__all__ = [
    "AbortReason", "AstmError", "AstmMessage", "ChecksumMode", "CommentRecord", "Decoded",
    "Delimiters", "DeviationKind", "HeaderRecord", "IncompleteTransmission", "LinkConfig",
    "LinkConnection", "LinkInput", "LinkState", "LocalProtocolError", "ManufacturerRecord",
    "MessageAssembler", "OrderRecord", "PatientRecord", "Problem", "QueryRecord", "RecordError",
    "RecordOrderError", "ResultRecord", "Role", "ScientificRecord", "TerminatorRecord",
    "UnknownRecord", "checksum", "decode_record", "decode_records", "encode_frame",
    "encode_message", "encode_record", "split_text",
]
