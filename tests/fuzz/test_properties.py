"""Hypothesis properties over hostile input: nothing crashes, raw bytes are kept, every
problem says why (issue 9).

What already exists elsewhere and is not repeated here: the link's state
table walked pair by pair and arbitrary bytes into a bare link core
(``tests/astm/test_link_table.py``), lossy lines between two cores, frame
split/join round trips (``test_frames.py``), codec round trips of generated
records (``test_codec.py``), MLLP framing of well-formed blocks at any read
size (``tests/hl7/test_mllp.py``) and exact decimals (``test_values.py``).

Added here, with inputs built from the protocols' own pieces (valid, broken
and corrupted frames, control characters, MLLP characters, segment names)
so that Hypothesis reaches the deep states and not only the first byte:

* the E1381 core in every dialect: every refusal and deviation has a reason;
* the ASTM link *adapter* with a sink that stores or fails at random: the
  wire recording holds exactly the bytes received, every incomplete text
  says why, every decoding problem has a message;
* the E1394 codec on arbitrary record text: never raises, every record
  other than the header is written back byte for byte;
* the MLLP framer: any bytes at any read size and time never raise, every
  byte that is not framing reaches exactly one event, and the events do not
  depend on how the bytes were cut;
* the HL7 parser and the MLLP analyzer adapter: any bytes parse, the raw
  bytes are kept, each complete block gets exactly one answer;
* the value parser: any text, raw kept.

These are unit tests of sans-IO cores and of adapters on ``StringTransport``
and ``task.Clock``: no reactor, no sockets, no timing assertions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

import drivers
from lis_gateway.adapters.astm_protocol import AstmLinkProtocol
from lis_gateway.adapters.mllp_protocol import MllpAnalyzerProtocol, build_acks, mllp_config
from lis_gateway.astm import constants as C
from lis_gateway.astm.assembler import AstmMessage, IncompleteTransmission
from lis_gateway.astm.codec import decode_records, encode_record
from lis_gateway.astm.events import (
    AbortReason,
    Deviation,
    DeviationKind,
    FrameRejected,
    TransferAborted,
    UnexpectedInput,
)
from lis_gateway.astm.frames import encode_frame
from lis_gateway.astm.link import ChecksumMode, LinkConfig, LinkConnection, LinkState
from lis_gateway.hl7.message import Hl7Message, parse_message
from lis_gateway.hl7.mllp import FS, VT, BlockIncomplete, BlockReceived, MllpFramer, StrayBytes
from lis_gateway.timestamps import parse_timestamp
from lis_gateway.values import parse_value

GENERIC = drivers.get("generic-astm")
GENERIC_HL7 = drivers.get("generic-hl7")
WHEN = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)

# ------------------------------------------------------------------ strategies

#: Record-like text: delimiters, record letters, digits, Latin and Vietnamese letters.
record_text = st.text(alphabet=st.sampled_from(list("HPORCLQMS|\\^&!`~@0123456789.,<>-+ aÀệ")),
                      max_size=60).map(lambda t: t.encode("utf-8"))


@st.composite
def astm_token(draw: st.DrawFn) -> bytes:
    """One piece of an E1381 stream: a control character, a frame (good, corrupted or
    cut short), or noise."""
    kind = draw(st.sampled_from(["ctl", "frame", "bad-frame", "cut-frame", "noise"]))
    if kind == "ctl":
        return draw(st.sampled_from([C.ENQ, C.EOT, C.ACK, C.NAK, C.STX, C.ETX, C.ETB,
                                     b"\r", b"\n"]))
    if kind == "noise":
        return draw(st.binary(max_size=20))
    frame = encode_frame(draw(st.integers(0, 7)), draw(record_text) + b"\r",
                         final=draw(st.booleans()))
    if kind == "bad-frame":
        i = draw(st.integers(0, len(frame) - 1))
        return frame[:i] + bytes([frame[i] ^ draw(st.integers(1, 255))]) + frame[i + 1:]
    if kind == "cut-frame":
        return frame[:draw(st.integers(0, len(frame) - 1))]
    return frame


astm_stream = st.lists(st.tuples(astm_token(), st.floats(0, 40)), max_size=40)

dialects = st.builds(LinkConfig, checksum_mode=st.sampled_from(list(ChecksumMode)),
                     repair_line_endings=st.booleans(), lenient_frame_numbers=st.booleans(),
                     enq_optional=st.booleans(), manual_ack=st.just(False))


@st.composite
def mllp_token(draw: st.DrawFn) -> bytes:
    """One piece of an MLLP stream: block characters, segments, blank lines, noise."""
    kind = draw(st.sampled_from(["vt", "fs", "fscr", "segment", "blank", "noise"]))
    if kind == "vt":
        return VT
    if kind == "fs":
        return FS
    if kind == "fscr":
        return FS + b"\r"
    if kind == "blank":
        return draw(st.sampled_from([b"\r", b"\n", b"\r\n", b"\x00", b" "]))
    if kind == "noise":
        return draw(st.binary(max_size=20))
    name = draw(st.sampled_from([b"MSH", b"PID", b"OBR", b"OBX", b"MSA", b"QRD", b"ZZZ"]))
    body = draw(st.text(alphabet=st.sampled_from(list("|^~\\&0123456789ABC.-+ é")),
                        max_size=40)).encode("utf-8")
    end = draw(st.sampled_from([b"\r", b"\n", b"\r\n", b""]))
    if name == b"MSH":
        body = b"|^~\\&|" + body
    return name + body + end


mllp_stream = st.lists(mllp_token(), max_size=30).map(b"".join)


class MemoryRecorder:
    """A wire recorder keeping the chunks in memory."""

    def __init__(self) -> None:
        self.chunks: list[tuple[str, bytes]] = []
        self.closed = False

    def record(self, direction: str, data: bytes, t: float) -> None:
        self.chunks.append((direction, data))

    def note(self, text: str, t: float) -> None:
        assert text  # every transport event says what happened

    def close(self) -> None:
        self.closed = True

    def received(self) -> bytes:
        return b"".join(data for direction, data in self.chunks if direction == "rx")


# ------------------------------------------------------------------ ASTM


@settings(max_examples=400, deadline=None)
@given(dialects, astm_stream)
def test_link_core_reports_every_refusal_and_deviation_with_a_reason(
        config: LinkConfig, stream: list[tuple[bytes, float]]) -> None:
    """In any dialect and for any stream, the core never raises and every NAK, abort,
    tolerated deviation and unexpected input carries what it was about."""
    link = LinkConnection(config)
    now = 0.0
    for data, dt in stream:
        now += dt
        link.handle_timer(now)
        link.receive_data(data, now)
        link.data_to_send()
        for event in link.events():
            if isinstance(event, FrameRejected):
                assert event.problem is not None and event.detail
            elif isinstance(event, TransferAborted):
                assert isinstance(event.reason, AbortReason)
            elif isinstance(event, Deviation):  # the kind names it; details are optional
                assert isinstance(event.kind, DeviationKind)
            elif isinstance(event, UnexpectedInput):
                assert event.state and event.input
    link.connection_lost(now + 1)
    link.events()
    assert link.state is LinkState.NEUTRAL  # never left half-open


class RandomSink:
    """Stores or fails each message as told; keeps what it is handed."""

    def __init__(self, outcomes: list[bool]) -> None:
        self.outcomes = outcomes
        self.messages: list[AstmMessage] = []
        self.incompletes: list[IncompleteTransmission] = []

    def message_received(self, msg: AstmMessage) -> Deferred[object]:
        self.messages.append(msg)
        ok = self.outcomes.pop(0) if self.outcomes else True
        return succeed(None) if ok else fail(Failure(OSError("database is locked")))

    def incomplete(self, item: IncompleteTransmission) -> None:
        self.incompletes.append(item)

    def message_sent(self, message: bytes) -> None:
        """Nothing is sent in these tests."""

    def send_failed(self, messages: tuple[bytes, ...], reason: AbortReason) -> None:
        """Nothing is sent in these tests."""


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(astm_stream, st.lists(st.booleans(), max_size=10), st.integers(1, 64))
def test_astm_adapter_keeps_every_byte_and_says_why_text_is_incomplete(
        stream: list[tuple[bytes, float]], outcomes: list[bool], read_size: int) -> None:
    """The ASTM link adapter with a store that fails at random: nothing escapes, the wire
    recording is exactly what was received, incomplete text always has a reason, and
    decoding problems always have a message."""
    clock, sink, recorder = Clock(), RandomSink(outcomes), MemoryRecorder()
    proto = AstmLinkProtocol(GENERIC.link_config(), clock, "latin-1", sink, recorder)
    proto.makeConnection(StringTransport())
    received = b""
    for data, dt in stream:
        for i in range(0, len(data), read_size):
            proto.dataReceived(data[i:i + read_size])
        received += data
        clock.advance(dt)
    proto.connectionLost(Failure(ConnectionError("closed")))
    assert recorder.received() == received
    assert recorder.closed
    assert all(item.reason for item in sink.incompletes)
    assert all(p.message and p.severity in ("error", "warning")
               for msg in sink.messages for p in msg.problems)
    assert all(msg.raw for msg in sink.messages)
    assert clock.getDelayedCalls() == []


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(["|\\^&", "|`^&", "|@^\\", "!\\^&"]),
       st.lists(st.text(alphabet=st.characters(blacklist_characters="\r\n"), max_size=50)
                .filter(lambda line: not line.startswith("H")), max_size=8))
def test_codec_never_raises_and_writes_every_record_back_byte_for_byte(
        delimiters: str, lines: list[str]) -> None:
    """Any record text after a header decodes (problems, never exceptions), each problem
    says what, and each record is written back exactly as it came (raw fields kept)."""
    header = "H" + delimiters + delimiters[0] + "SENDER"
    decoded = decode_records([header, *lines])
    assert len(decoded.records) == 1 + len(lines)
    assert all(p.message and p.severity in ("error", "warning") for p in decoded.problems)
    # leading white space is dropped from the record, with a warning (the message's raw
    # bytes keep it); everything else comes back exactly
    assert [encode_record(r, decoded.delimiters) for r in decoded.records[1:]] == [
        line.lstrip(" \t") for line in lines]
    warned = {p.record_index for p in decoded.problems if "white space" in p.message}
    assert warned == {i for i, line in enumerate(lines, 1) if line != line.lstrip(" \t")}


# ------------------------------------------------------------------ MLLP and HL7


def _feed(framer: MllpFramer, data: bytes, size: int, now: float = 0.0
          ) -> list[BlockReceived | BlockIncomplete | StrayBytes]:
    out: list[BlockReceived | BlockIncomplete | StrayBytes] = []
    for i in range(0, len(data), size):
        out += framer.receive_data(data[i:i + size], now)
    out += framer.connection_lost()
    return out


def _kept_everything_inside_blocks(data: bytes, events: list[BlockReceived | BlockIncomplete
                                                            | StrayBytes]) -> None:
    """Every message start (``MSH``) reaches an event, and what no event holds is
    framing, blanks or text outside any block."""
    kept = b"\x00".join(e.data for e in events)
    assert kept.count(b"MSH") == data.count(b"MSH"), (data, events)
    assert len(b"".join(e.data for e in events)) <= len(data)


@settings(max_examples=500, deadline=None)
@given(mllp_stream, st.integers(1, 50))
def test_mllp_framer_any_bytes_any_read_size_same_events_nothing_lost(
        data: bytes, size: int) -> None:
    """Any bytes at any read size give the same events as one read, every message start
    reaches an event, and incomplete blocks say why."""
    whole = _feed(MllpFramer(), data, max(1, len(data)))
    cut = _feed(MllpFramer(), data, size)
    # the same blocks and bytes (the "no CR after FS" note depends on where a read ends)
    assert [(type(e), e.data, e.offset) for e in cut] == [
        (type(e), e.data, e.offset) for e in whole]
    _kept_everything_inside_blocks(data, whole)
    assert all(e.reason for e in whole if isinstance(e, BlockIncomplete))


@settings(max_examples=300, deadline=None)
@given(mllp_stream, st.lists(st.floats(0, 3), min_size=1, max_size=6))
def test_mllp_framer_silence_timer_never_loses_a_message(data: bytes,
                                                        gaps: list[float]) -> None:
    """With pauses (the missing-FS silence timer firing in between) every message start
    still reaches an event."""
    framer = MllpFramer(missing_fs_timeout=1.0)
    events: list[BlockReceived | BlockIncomplete | StrayBytes] = []
    now, step = 0.0, max(1, len(data) // len(gaps))
    for n, gap in enumerate(gaps):
        end = (n + 1) * step if n + 1 < len(gaps) else len(data)
        events += framer.receive_data(data[n * step:end], now)
        now += gap
        deadline = framer.get_timer()
        if deadline is not None and deadline <= now:
            events += framer.handle_timer(now)
    events += framer.connection_lost()
    _kept_everything_inside_blocks(data, events)


@settings(max_examples=500, deadline=None)
@given(st.one_of(mllp_stream, st.binary(max_size=300)),
       st.sampled_from(["utf-8", "latin-1", "cp1258", "ascii"]),
       st.sampled_from([None, "utf-8", "latin-1"]))
def test_hl7_parser_any_bytes_keeps_them_and_explains_each_problem(
        data: bytes, default: str, override: str | None) -> None:
    """Any bytes parse without an exception; the message keeps them exactly; every
    problem has a severity and a message."""
    msg = parse_message(data, default_encoding=default, encoding_override=override)
    assert msg.raw == data
    assert all(p.message and p.severity in ("error", "warning") for p in msg.problems)
    assert msg.message_type == msg.message_type  # reading the header never raises
    assert isinstance(msg.control_id, str)


class Hl7Sink:
    """Stores or fails each HL7 message as told."""

    def __init__(self, outcomes: list[bool]) -> None:
        self.outcomes = outcomes
        self.messages: list[Hl7Message] = []
        self.incompletes: list[IncompleteTransmission] = []

    def message_received(self, msg: Hl7Message) -> Deferred[object]:
        self.messages.append(msg)
        ok = self.outcomes.pop(0) if self.outcomes else True
        return succeed(None) if ok else fail(Failure(OSError("database is locked")))

    def incomplete(self, item: IncompleteTransmission) -> None:
        self.incompletes.append(item)


@settings(max_examples=300, deadline=None)
@given(mllp_stream, st.lists(st.booleans(), max_size=10), st.integers(1, 40))
def test_mllp_adapter_answers_each_block_once_and_keeps_every_byte(
        data: bytes, outcomes: list[bool], size: int) -> None:
    """The HL7 analyzer adapter: any bytes, any read size, a store failing at random:
    nothing escapes, the recording is exact, every HL7 message handed over is answered
    (AA, or AE when it was not stored), blocks that are not HL7 get AR, incomplete
    text says why."""
    clock, sink, recorder = Clock(), Hl7Sink(outcomes), MemoryRecorder()
    counter = iter(range(1, 10_000))
    proto = MllpAnalyzerProtocol(mllp_config(GENERIC_HL7), clock, sink,
                                 control_ids=lambda: f"A{next(counter)}",
                                 utcnow=lambda: WHEN, recorder=recorder)
    transport = StringTransport()
    proto.makeConnection(transport)
    for i in range(0, len(data), size):
        proto.dataReceived(data[i:i + size])
    clock.advance(5)  # the missing-FS silence timer
    proto.connectionLost(Failure(ConnectionError("closed")))
    assert recorder.received() == data
    assert all(item.reason for item in sink.incompletes)
    reference = MllpFramer(missing_fs_timeout=GENERIC_HL7.missing_fs_timeout)
    blocks = reference.receive_data(data, 0.0) + reference.handle_timer(5.0)
    complete = [b for b in blocks if isinstance(b, BlockReceived) and b.data.strip(
        b"\r\n\x00 \t")]
    answers = [block for block in transport.value().split(FS) if block.strip()]
    assert len(answers) == len(complete)  # one answer per complete block, in order
    codes = [parse_message(block.strip(b"\r").lstrip(VT)).first("MSA") for block in answers]
    assert all(c is not None and c[1] in ("AA", "AE", "AR") for c in codes)
    stored = sum(1 for c in codes if c is not None and c[1] in ("AA", "AE"))
    assert stored <= len(sink.messages)  # only messages handed to the store are AA/AE


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=40), st.sampled_from(["^", "", "&"]))
def test_value_parser_any_text_keeps_it_and_numbers_are_finite_decimals(
        raw: str, separator: str) -> None:
    """Any analyzer value parses; the raw text is kept; a number is a finite Decimal."""
    value = parse_value(raw, component_separator=separator)
    assert value.raw == raw
    if value.number is not None:
        assert isinstance(value.number, Decimal) and value.number.is_finite()
        assert value.comparator in ("", "<", ">", "<=", ">=")
    else:
        assert value.comparator == ""


# ------------------------------------------------------------------ found by the fuzzers


@settings(max_examples=1000, deadline=None)
@given(st.from_regex(r"\A\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2})?)?)?)?)?(\.\d{1,4})?([+-]\d{4})?\Z"),
       st.sampled_from(["Asia/Ho_Chi_Minh", "UTC", "America/New_York"]))
def test_timestamp_parser_never_raises_and_says_why_it_cannot_read(raw: str,
                                                                   zone: str) -> None:
    """Any HL7-shaped timestamp (any digits, any offset) is read or refused with a
    reason, never raised (atheris found ``-9100`` raising ValueError)."""
    when, reason = parse_timestamp(raw, zone)
    assert (when is None) == bool(reason)
    if when is not None:
        assert when.tzinfo is not None


def test_impossible_utc_offsets_are_refused_with_a_reason() -> None:
    """Offsets of a day or more, or with 60 minutes or more, are not time zones."""
    for raw in ("20240506070809-9100", "20240506070809+2400", "20240506070809+0560"):
        assert parse_timestamp(raw, "UTC") == (None, f"{raw!r} has an impossible UTC offset")
    assert parse_timestamp("20240506070809+1400", "UTC")[0] is not None


def test_ack_of_a_version_written_with_non_ascii_digits() -> None:
    """MSH-12 ``2.³.1`` (a Latin-1 byte 0xB3) is answered, not an exception
    (atheris: ``str.isdigit`` accepts superscripts that ``int`` refuses)."""
    msg = parse_message(b"MSH|^~\\&|AN|LAB|LIS||20240506070809||ORU^R01|C1|P|2.\xb3.1\r",
                        default_encoding="latin-1")
    acks, utf8 = build_acks(msg, ["AA"], control_ids=lambda: "G1", now=WHEN)
    assert not utf8
    assert b"MSA|AA|C1" in acks[0]


def test_mllp_link_answers_in_utf8_when_echoed_fields_have_no_code_in_the_charset() -> None:
    """A message declared CP1258 but sent in UTF-8 (``ọ`` is E1 BB 8D; 0x8D is not a
    CP1258 character) was read with a fallback; its ACK echoes the sending facility,
    which CP1258 cannot encode: the link answers in UTF-8 instead of never."""
    facility = "Bệnh viện Phú Thọ"
    raw = (f"MSH|^~\\&|AN|{facility}|LIS||20240506070809||ORU^R01|C1|P|2.5.1"
           f"||||||CP1258|CP1258\rOBX|1|NM|GLU||5.5|mmol/L|||||F\r").encode()
    assert parse_message(raw).problems  # the fallback is reported on the message
    sink = Hl7Sink([True])
    proto = MllpAnalyzerProtocol(mllp_config(GENERIC_HL7), Clock(), sink,
                                 control_ids=lambda: "G1", utcnow=lambda: WHEN)
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(VT + raw + FS + b"\r")
    answer = parse_message(transport.value().strip(b"\r").lstrip(VT).rstrip(FS))
    msa = answer.first("MSA")
    assert msa is not None and (msa[1], msa[2]) == ("AA", "C1")
    assert facility in transport.value().decode("utf-8")
