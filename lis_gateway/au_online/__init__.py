"""Beckman AU online protocol, sans-IO: blocks with a BCC, answered ACK or NAK.

Imports nothing but the standard library (no Twisted, SQLAlchemy, structlog
or Prometheus); time is an argument. :class:`AuLink` is the host end the
gateway runs; :class:`AuSender` the analyzer end the tests and the simulator
play. See :mod:`lis_gateway.au_online.link` for what is known of the
handshake and where it comes from.
"""

from __future__ import annotations

from .blocks import bcc, encode_block, encode_text
from .codes import IGNORED, IMMEDIATE, MARKERS, is_host_query, kind_of
from .events import (
    AbortReason,
    AuMessage,
    BlockAccepted,
    BlockProblem,
    BlockRejected,
    Deviation,
    DeviationKind,
    DuplicateBlock,
    Event,
    LocalProtocolError,
    TextAborted,
    TextFailed,
    TextReceived,
    TextSent,
)
from .link import AuConfig, AuInput, AuLink, AuState
from .sender import AuSender, SenderConfig

__all__ = [
    "IGNORED", "IMMEDIATE", "MARKERS", "AbortReason", "AuConfig", "AuInput", "AuLink",
    "AuMessage", "AuSender", "AuState", "BlockAccepted", "BlockProblem", "BlockRejected",
    "Deviation", "DeviationKind", "DuplicateBlock", "Event", "LocalProtocolError",
    "SenderConfig", "TextAborted", "TextFailed", "TextReceived", "TextSent", "bcc",
    "encode_block", "encode_text", "is_host_query", "kind_of",
]
