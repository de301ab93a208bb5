"""HL7 v2 over MLLP, sans-IO: framing, a small strict parser and writer, acknowledgements.

Like :mod:`lis_gateway.astm`, this package imports no I/O library and reads
no clock: message times and control IDs are arguments.
"""

from .ack import AckResult, Outcome, build_ack, interpret_ack, plan_acks
from .delimiters import Hl7Delimiters
from .errors import AckError, BuildError, Hl7Error, MllpFramingError
from .message import Hl7Message, Hl7Problem, Segment, parse_message, write_message, write_segment
from .mllp import BlockIncomplete, BlockReceived, MllpFramer, StrayBytes, frame

__all__ = [
    "AckError", "AckResult", "BlockIncomplete", "BlockReceived", "BuildError", "Hl7Delimiters",
    "Hl7Error", "Hl7Message", "Hl7Problem", "MllpFramer", "MllpFramingError", "Outcome",
    "Segment", "StrayBytes", "build_ack", "frame", "interpret_ack", "parse_message",
    "plan_acks", "write_message", "write_segment",
]
