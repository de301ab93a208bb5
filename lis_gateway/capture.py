"""Decode a wire capture offline: the engine behind ``lis-gateway parse``.

A capture is either a wire recording (:mod:`lis_gateway.wire`), raw E1381
bytes as they came off the line (ENQ, frames, EOT; only the analyzer's
direction is needed), or bare E1394 records one per line. The same link
core and assembler as the live gateway do the work, in the computer role,
with the replies thrown away.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from drivers import DriverSpec, Framing, Protocol
from drivers.extract import ResultRow, extract_hl7_results, extract_results
from lis_gateway.astm.assembler import AstmMessage, IncompleteTransmission, MessageAssembler
from lis_gateway.astm.events import (
    Deviation,
    Event,
    FrameAccepted,
    FrameRejected,
    TransferAborted,
    TransferEnded,
)
from lis_gateway.astm.frames import ChecksumMode
from lis_gateway.astm.link import LinkConnection
from lis_gateway.hl7.message import Hl7Message, parse_message
from lis_gateway.hl7.mllp import BlockIncomplete, BlockReceived, MllpEvent, MllpFramer, StrayBytes
from lis_gateway.mapping import MappingTable
from lis_gateway.normalize import NormalizedResult, RowView, normalize
from lis_gateway.wire import WireChunk, is_recording, read_recording


@dataclass
class CaptureReport:
    """What a capture held: messages with their rows, and every problem found."""

    messages: list[AstmMessage | Hl7Message] = field(default_factory=list)
    rows: list[tuple[int, ResultRow]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    incomplete: list[IncompleteTransmission] = field(default_factory=list)
    custom_messages: int = 0  #: messages read by a vendor-protocol decoder

    @property
    def parsed_anything(self) -> bool:
        """At least one message was read."""
        return bool(self.messages) or self.custom_messages > 0


class _Decoder:
    def __init__(self, spec: DriverSpec, encoding: str, accept_bad_checksums: bool,
                 repair_line_endings: bool = False) -> None:
        self.spec = spec
        config = spec.link_config(enq_optional=True, lenient_frame_numbers=True)
        if repair_line_endings:
            config = replace(config, repair_line_endings=True)
        if accept_bad_checksums and config.checksum_mode is ChecksumMode.STRICT:
            config = replace(config, checksum_mode=ChecksumMode.LOG_ONLY)
        self.link = LinkConnection(config)
        self.assembler = MessageAssembler(encoding)
        self.report = CaptureReport()

    def feed(self, data: bytes, t: float) -> None:
        self.link.handle_timer(t)
        self._route(self.link.events())
        self.link.receive_data(data, t)
        self.link.data_to_send()  # replies go nowhere: this is a capture
        self._route(self.link.events())

    def close(self, t: float, reason: str) -> None:
        self.link.connection_lost(t)
        for event in self.link.events():
            if isinstance(event, TransferAborted):
                self._collect(self.assembler.end_transfer(aborted=reason))
            else:
                self._route([event])

    def _route(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, FrameAccepted):
                self._collect(self.assembler.add_text(event.text, block_end=event.final,
                                                      offset=event.offset))
            elif isinstance(event, TransferEnded):
                self._collect(self.assembler.end_transfer())
            elif isinstance(event, TransferAborted):
                self._collect(self.assembler.end_transfer(aborted=event.reason.value))
            elif isinstance(event, FrameRejected):
                which = f"frame {event.fn}" if event.fn >= 0 else \
                    "a frame with no frame-number digit (not E1381 framing?)"
                self.report.problems.append(
                    f"error: offset {event.offset}: {which} rejected: "
                    f"{event.problem.value} ({event.detail}); its text is missing")
            elif isinstance(event, Deviation):
                detail = f": {event.detail}" if event.detail else ""
                self.report.problems.append(
                    f"warning: offset {event.offset}: {event.kind.value}{detail}")

    def _collect(self, items: list[AstmMessage | IncompleteTransmission]) -> None:
        _collect(self.report, self.spec, items)


def _collect(report: CaptureReport, spec: DriverSpec,
             items: list[AstmMessage | IncompleteTransmission]) -> None:
    for item in items:
        if isinstance(item, IncompleteTransmission):
            report.incomplete.append(item)
            report.problems.append(
                f"error: offset {item.offset}: incomplete transmission "
                f"({item.reason}, {len(item.raw)} bytes kept, no results taken)")
            continue
        report.messages.append(item)
        number = len(report.messages)
        for problem in item.problems:
            report.problems.append(f"message {number} (offset {item.offset}): {problem}")
        report.rows += [(number, row) for row in extract_results(item, spec)]


def decode_capture(data: bytes, spec: DriverSpec, *, encoding: str | None = None,
                   accept_bad_checksums: bool = False,
                   repair_line_endings: bool = False) -> CaptureReport:
    """Decode one capture.

    Args:
        data: the file's bytes.
        spec: the analyzer driver (framing, dialect switches, extraction hooks).
        encoding: overrides the driver's character encoding (for HL7: wins over MSH-18).
        accept_bad_checksums: accept frames whose checksum fails (reported as warnings).
        repair_line_endings: undo CR/LF damage (terminal servers, capture tools) when
            a checksum fails; the driver may switch this on for its family too.

    Returns:
        Messages, result rows and problems; never raises for bad input.
    """
    if spec.protocol is Protocol.HL7:
        return _decode_hl7(data, spec, encoding)
    if spec.framing is Framing.CUSTOM and spec.custom_decoder is not None:
        problems: list[str] = []
        if is_recording(data):
            data = _received(data, problems)
        custom = spec.custom_decoder(data)
        return CaptureReport(rows=[(1, row) for row in custom.rows],
                             problems=problems + list(custom.problems),
                             custom_messages=custom.messages)
    enc = encoding or spec.encoding
    if is_recording(data):
        return _decode_recording(data, spec, enc, accept_bad_checksums, repair_line_endings)
    if spec.framing is Framing.BARE or not any(c in data for c in (b"\x02", b"\x05")):
        return _decode_bare(data, spec, enc)
    dec = _Decoder(spec, enc, accept_bad_checksums, repair_line_endings)
    dec.feed(data, 0.0)
    dec.close(0.0, "capture ended in the middle of a transfer")
    return dec.report


def _received(recording: bytes, problems: list[str]) -> bytes:
    """The analyzer's bytes of a wire recording (a vendor-protocol link's), in order.

    A recording that cannot be read further adds a problem; what came before is kept.
    """
    received = bytearray()
    try:
        for chunk in read_recording(recording):
            if chunk.direction == "rx":
                received += chunk.data
    except ValueError as exc:
        problems.append(f"error: recording: {exc}")
    return bytes(received)


def _decode_bare(data: bytes, spec: DriverSpec, encoding: str) -> CaptureReport:
    assembler = MessageAssembler(encoding, any_newline=True)
    report = CaptureReport()
    _collect(report, spec, assembler.add_text(data, block_end=True))
    _collect(report, spec, assembler.end_transfer())
    return report


def _decode_recording(data: bytes, spec: DriverSpec, encoding: str,
                      accept_bad_checksums: bool, repair_line_endings: bool) -> CaptureReport:
    dec = _Decoder(spec, encoding, accept_bad_checksums, repair_line_endings)
    t = 0.0
    try:
        for chunk in read_recording(data):
            t = chunk.t
            if chunk.direction == "rx":
                dec.feed(chunk.data, t)
            elif chunk.direction == "note" and "lost" in chunk.text:
                dec.close(t, "connection lost during the transfer")
                dec.link = LinkConnection(dec.link.config)
    except ValueError as exc:
        dec.report.problems.append(f"error: recording: {exc}")
    dec.close(t, "recording ended in the middle of a transfer")
    return dec.report


def _decode_hl7(data: bytes, spec: DriverSpec, encoding: str | None) -> CaptureReport:
    report = CaptureReport()
    framer = MllpFramer(missing_fs_timeout=spec.missing_fs_timeout)
    override = encoding or spec.hl7_encoding

    def collect(events: list[MllpEvent]) -> None:
        for event in events:
            if isinstance(event, BlockReceived):
                msg = parse_message(event.data, default_encoding=spec.hl7_default_encoding,
                                    encoding_override=override)
                report.messages.append(msg)
                number = len(report.messages)
                where = f"message {number} (offset {event.offset})"
                report.problems += [f"{where}: warning: {d}" for d in event.deviations]
                report.problems += [f"{where}: {p}" for p in msg.problems]
                report.rows += [(number, row) for row in extract_hl7_results(msg, spec)]
            elif isinstance(event, BlockIncomplete):
                report.problems.append(
                    f"error: offset {event.offset}: incomplete message ({event.reason}, "
                    f"{len(event.data)} bytes kept, no results taken)")
            elif isinstance(event, StrayBytes):
                report.problems.append(
                    f"warning: offset {event.offset}: {len(event.data)} stray bytes")

    chunks: list[WireChunk]
    if is_recording(data):
        try:
            chunks = list(read_recording(data))
        except ValueError as exc:
            report.problems.append(f"error: recording: {exc}")
            chunks = []
    else:
        chunks = [WireChunk(0.0, "rx", data)]
    t = 0.0
    for chunk in chunks:
        t = chunk.t
        collect(framer.handle_timer(t))
        if chunk.direction == "rx":
            collect(framer.receive_data(chunk.data, t))
        elif chunk.direction == "note" and "lost" in chunk.text:
            collect(framer.connection_lost())
            framer = MllpFramer(missing_fs_timeout=spec.missing_fs_timeout)
    # the end of a capture is silence: a message that ended with LF and no FS is complete
    collect(framer.handle_timer(t + spec.missing_fs_timeout))
    collect(framer.connection_lost())
    return report


def normalize_report(report: CaptureReport, spec: DriverSpec, table: MappingTable | None
                     ) -> list[tuple[int, NormalizedResult]]:
    """Normalize every message's rows (roles, flags, mapping), message by message."""
    out: list[tuple[int, NormalizedResult]] = []
    by_message: dict[int, list[RowView]] = {}
    for number, row in report.rows:
        by_message.setdefault(number, []).append(RowView(
            row.sample_id, row.test, row.value, row.unit, row.reference_range, row.flags,
            row.status, row.role.value, row.qc, row.completed_at, row.instrument))
    for number, rows in by_message.items():
        out += [(number, result) for result in normalize(
            rows, table, flag_map=spec.flag_map, default_status=spec.default_status,
            status_map=spec.status_map, zone=spec.timezone,
            timestamp_formats=spec.timestamp_formats)]
    return out
