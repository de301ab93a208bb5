"""The analyzer's messages in a wire recording, for replay (pure).

A gateway's recording (``--record-dir``) has the analyzer's bytes as ``rx``;
a simulator's recording (``simulate --record-dir``) has them as ``tx``. The
chosen direction is decoded with the driver, exactly as ``lis-gateway
parse`` decodes a capture (:func:`lis_gateway.capture.decode_capture`), so a
replay sends what the gateway would have read: whole messages, never the
text of a transmission that did not end (those are reported and skipped).
A raw capture (not a recording) is taken as the analyzer's bytes.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from drivers import DriverSpec
from drivers.extract import extract_hl7_results, extract_results
from lis_gateway.astm.assembler import AstmMessage
from lis_gateway.astm.host_query import host_queries
from lis_gateway.astm.records import QueryRecord
from lis_gateway.capture import CaptureReport, decode_capture
from lis_gateway.hl7.message import Hl7Message
from lis_gateway.hl7.responder import MessageRole, read_query, role_of
from lis_gateway.wire import FORMAT, is_recording, read_recording


def analyzer_side(data: bytes, direction: str) -> bytes:
    """``data`` with only the ``direction`` bytes of a recording, written as ``rx``.

    Args:
        data: a wire recording, or a raw capture (returned as it is for ``rx``).
        direction: ``rx`` (a gateway's recording) or ``tx`` (a simulator's).

    Raises:
        ValueError: ``tx`` asked of a raw capture, or a recording line that is not valid.
    """
    if not is_recording(data):
        if direction != "rx":
            raise ValueError("not a wire recording: a raw capture has only the analyzer's "
                             "bytes (use --direction rx)")
        return data
    if direction == "rx":
        return data
    compact = (",", ":")  # as the recorder writes it (is_recording looks for it)
    lines = [json.dumps({"format": FORMAT, "link": "replay", "t": 0.0}, separators=compact)]
    for chunk in read_recording(data):
        if chunk.direction == direction:
            lines.append(json.dumps({"t": chunk.t, "dir": "rx",
                                     "b64": base64.b64encode(chunk.data).decode()},
                                    separators=compact))
        elif chunk.direction == "note":
            lines.append(json.dumps({"t": chunk.t, "dir": "note", "text": chunk.text},
                                    separators=compact))
    return ("\n".join(lines) + "\n").encode()


@dataclass(frozen=True, slots=True)
class Recorded:
    """One message found in a recording.

    Attributes:
        number: its position among the messages of the file (1, 2, ...).
        data: the message: E1394 text (records ending in CR) or an HL7 message.
        kind: ``ORU^R01``, ``QRY^Q02`` ... for HL7; ``results``, ``query`` or
            ``query-cancel`` for ASTM.
        query: the gateway will answer it (a host query).
        sample_id: the first sample ID of its results ("" when none).
        control_id: MSH-10 (HL7).
    """

    number: int
    data: bytes
    kind: str
    query: bool
    sample_id: str = ""
    control_id: str = ""


def messages(data: bytes, driver: DriverSpec, direction: str = "rx"
             ) -> tuple[list[Recorded], CaptureReport]:
    """The analyzer's messages in one file, and the decoding report (its problems).

    Raises:
        ValueError: see :func:`analyzer_side`.
    """
    report = decode_capture(analyzer_side(data, direction), driver)
    found: list[Recorded] = []
    for number, msg in enumerate(report.messages, 1):
        if isinstance(msg, Hl7Message):
            query = role_of(msg) is MessageRole.QUERY  # QRY, QBP, ORM with ORC-1 RF
            keys = read_query(msg).keys if query else ()
            rows = extract_hl7_results(msg, driver)
            sample = keys[0] if keys else rows[0].sample_id if rows else ""
            found.append(Recorded(number, msg.raw, msg.message_type or "HL7", query, sample,
                                  msg.control_id))
        elif isinstance(msg, AstmMessage):
            asks = host_queries(msg)  # a cancel (Q-13 = A) asks for no answer
            rows = extract_results(msg, driver)
            cancel = any(isinstance(r, QueryRecord) for r in msg.decoded.records)
            kind = "query" if asks else "query-cancel" if cancel else "results"
            sample = asks[0].barcode if asks else rows[0].sample_id if rows else ""
            found.append(Recorded(number, msg.raw, kind, bool(asks), sample))
    return found, report
