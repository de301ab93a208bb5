"""Twisted adapters: the only package besides ``service.py`` that touches the reactor.

They do three things only: feed bytes into a sans-IO core, route its events
out (to a :class:`~lis_gateway.adapters.sink.Sink`, the log and the wire
recorder), and write its bytes. Every adapter takes its clock as an argument.
"""

from __future__ import annotations

from .astm_protocol import AstmLinkProtocol, BareRecordProtocol
from .sink import Sink

__all__ = ["AstmLinkProtocol", "BareRecordProtocol", "Sink"]
