"""Errors of the ASTM core.

Peer faults (bad checksum, wrong frame number, timeouts) are *events*, never
exceptions: see :mod:`lis_gateway.astm.events`. Exceptions here are for local
misuse of the API and for building records the gateway must not send.
"""

from __future__ import annotations


class AstmError(Exception):
    """Base class of every error raised by :mod:`lis_gateway.astm`."""


class LocalProtocolError(AstmError):
    """The caller used the link API out of order (for example, acknowledged
    a frame that is not waiting for an acknowledgement)."""


class RecordError(AstmError):
    """A record cannot be encoded or decoded.

    Attributes:
        record_index: 0-based index of the record in its message, or -1.
        field_index: E1394 field number (record type = 1), or -1.
        reason: what is wrong, in words a technician can act on.
    """

    def __init__(self, record_index: int, field_index: int, reason: str) -> None:
        super().__init__(f"record {record_index}, field {field_index}: {reason}")
        self.record_index = record_index
        self.field_index = field_index
        self.reason = reason


class RecordOrderError(RecordError):
    """Records given to the encoder are not in a legal E1394 order."""
