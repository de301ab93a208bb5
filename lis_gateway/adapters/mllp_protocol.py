"""Twisted protocols around the sans-IO MLLP framer and HL7 parser.

:class:`MllpAnalyzerProtocol` receives HL7 messages from an analyzer and
acknowledges them (whichever side opened the TCP connection). The sending
side (to the HIS) is :mod:`lis_gateway.outbound.sender`; what both share is
in :mod:`lis_gateway.adapters.mllp_common`.

Receiving, in order::

    bytes -> MllpFramer -> BlockReceived -> parse_message -> FIFO -> sink -> ACK(s)

* Durable before acknowledged: a message goes to ``sink.message_received``;
  its ACK (the codes :func:`~lis_gateway.hl7.ack.plan_acks` asks for) is sent
  only when the returned Deferred fires. A failure is answered AE with error
  207 (HL7 table 0357) so the analyzer sends the message again; a
  :class:`MessageRejectedError` failure is answered AR with its code.
* Strict order: one message is with the sink at a time; the next is handed
  over, and answered, only after the previous one's ACK went out. If more
  than :data:`MAX_QUEUED` messages wait, reading pauses until they drain.
* A block that is not an HL7 message (no MSH first) is answered AR: error
  100 (segment sequence error) when it holds segments but MSH is missing or
  not first, 200 (unsupported message type) when nothing in it looks like a
  segment. Its bytes go to ``sink.message_rejected`` when the sink has that
  method (:class:`RejectedMessageSink`), else to ``sink.incomplete``; the AR
  waits for the former's Deferred like an AA does.
* A block over the size limit (16 MiB) is not buffered (the framer keeps its
  head, normally the MSH segment, and counts the rest). When it ends, its
  turn in the queue is answered AR with error 207 and the text "message too
  large" (:data:`TOO_LARGE_ERROR`), built from that MSH as any ACK is
  (original or enhanced mode); the head, the size and the reason go to
  ``sink.incomplete``. If the head holds no usable MSH (no MSH first, or no
  segment end within 4 kB) there is nothing to address an ACK to: it is kept
  the same way and not answered. Either way the link then reads the next
  block: closing would lose the messages queued behind it, and an analyzer
  that got no answer would reconnect and send the same block again.
* Connection lost: a partial block and stray bytes go to ``sink.incomplete``.
  Complete messages still queued are still handed to the sink in order (they
  arrived whole), but their ACKs cannot be sent, so the analyzer will send
  them again: the store recognises repeats by MSH-10 and the raw bytes.
"""

from __future__ import annotations

import dataclasses
import typing
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from structlog.typing import FilteringBoundLogger
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import (
    IPushProducer,
    IReactorTime,
)
from twisted.python.failure import Failure

from lis_gateway.adapters.astm_protocol import failure_kind
from lis_gateway.adapters.mllp_common import (
    BLANK,
    INTERNAL_ERROR,
    MAX_QUEUED,
    SEGMENT_SEQUENCE_ERROR,
    TOO_LARGE_ERROR,
    UNSUPPORTED_MESSAGE_TYPE,
    ControlIds,
    Hl7Dialect,
    MllpConfig,
    MllpConnection,
    message_shape,
    mllp_config,
    utcnow_from,
)
from lis_gateway.adapters.sink import NO_ORDERS, OrderSource
from lis_gateway.astm.assembler import IncompleteTransmission
from lis_gateway.hl7.ack import Outcome, build_ack, plan_acks
from lis_gateway.hl7.errors import Hl7Error
from lis_gateway.hl7.message import Hl7Message, parse_message
from lis_gateway.hl7.mllp import (
    BlockReceived,
    BlockTooLarge,
    MllpEvent,
    MllpFramer,
    frame,
)
from lis_gateway.hl7.queries import OrderedSample
from lis_gateway.hl7.responder import MessageRole, build_answers, read_query, role_of
from lis_gateway.wire import Recorder

__all__ = ["ControlIds", "Hl7Dialect", "MllpConfig", "mllp_config", "utcnow_from"]

# ------------------------------------------------------------------ sink


class Hl7Sink(typing.Protocol):
    """What an HL7 analyzer link hands its messages to (one sink per link).

    :class:`lis_gateway.adapters.sink.Sink` satisfies it once its
    ``message_received`` accepts ``AstmMessage | Hl7Message``.
    """

    def message_received(self, msg: Hl7Message) -> Deferred[object] | None:
        """Take a complete message; the ACK waits for the returned Deferred (failure: AE)."""

    def incomplete(self, item: IncompleteTransmission) -> None:
        """Keep bytes that never became a complete message (for the record)."""


@dataclass(frozen=True, slots=True)
class RejectedMessage:
    """A block that is not an HL7 message; the analyzer is answered AR.

    Attributes:
        raw: the bytes between VT and FS, as received.
        offset: link offset of the block's first byte.
        reason: why it is not an HL7 message.
        error_code: the HL7 table 0357 code sent in the AR.
    """

    raw: bytes
    offset: int
    reason: str
    error_code: str


@typing.runtime_checkable
class RejectedMessageSink(typing.Protocol):
    """Optional sink method: keep a rejected block (else it goes to ``incomplete``)."""

    def message_rejected(self, item: RejectedMessage) -> Deferred[object] | None:
        """Keep the block; the AR waits for the returned Deferred (failure: AE)."""


class MessageRejectedError(Hl7Error):
    """Raised (or failed with) by a sink refusing a message for good: the answer is AR.

    Args:
        reason: short technical text for MSA-3 and ERR (no patient data).
        error_code: HL7 table 0357 code (200 unsupported message type, ...).
    """

    def __init__(self, reason: str, error_code: str = UNSUPPORTED_MESSAGE_TYPE) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_code = error_code


def _not_hl7(msg: Hl7Message) -> tuple[str, str] | None:
    """(0357 error code, reason) when the block is no HL7 message, else ``None``."""
    names = [seg.name for seg in msg.segments]
    if names and names[0] == "MSH":
        return None
    if "MSH" in names:
        return SEGMENT_SEQUENCE_ERROR, "MSH is not the first segment"
    if any(len(n) == 3 and n.isalnum() and n[0].isalpha() and n.isupper() for n in names):
        return SEGMENT_SEQUENCE_ERROR, "no MSH segment"
    return UNSUPPORTED_MESSAGE_TYPE, "not an HL7 v2 message"


# ------------------------------------------------------------------ analyzer side


@dataclass(frozen=True, slots=True)
class _Received:
    message: Hl7Message
    offset: int
    rejection: tuple[str, str] | None  # (error code, reason) for a block that is not HL7
    kept: IncompleteTransmission | None = None  # an oversized block's head, for the sink


@dataclass(frozen=True, slots=True)
class _Answer:
    outcome: Outcome
    text: str = ""
    error_code: str = ""
    replies: tuple[bytes, ...] | None = None  # a query's answers, sent instead of ACKs
    silent: bool = False  # the message was itself an answer: nothing to send




class MllpAnalyzerProtocol(MllpConnection):
    """One HL7 analyzer link over MLLP: receive, hand over in order, acknowledge.

    Args:
        config: the link's HL7 dialect (:func:`mllp_config` of its driver).
        clock: time source and timer scheduler.
        sink: where messages go (see :class:`Hl7Sink`, :class:`RejectedMessageSink`).
        control_ids: gives MSH-10 of every ACK.
        utcnow: gives MSH-7 of every ACK.
        recorder: the wire recorder of this connection (closed on disconnect).
        log: a logger bound per link (analyzer, transport, session).
    """

    def __init__(self, config: MllpConfig, clock: IReactorTime, sink: Hl7Sink, *,
                 control_ids: Callable[[], str], utcnow: Callable[[], datetime],
                 recorder: Recorder | None = None,
                 log: FilteringBoundLogger | None = None,
                 orders: OrderSource = NO_ORDERS) -> None:
        framer = MllpFramer(missing_fs_timeout=config.missing_fs_timeout,
                            max_message=config.max_message)
        super().__init__(clock, framer, recorder, log)
        self.config = config
        self._sink = sink
        self._orders = orders
        self._control_ids = control_ids
        self._utcnow = utcnow
        self._queue: deque[_Received] = deque()
        self._busy = False  # a message is with the sink or being answered
        self._draining = False
        self._paused = False

    def _at_rest(self) -> bool:
        # Between blocks, nothing queued for the sink, no answer still to send.
        return not self._framer.in_block and not self._queue and not self._busy

    def _route(self, events: Iterable[MllpEvent]) -> None:
        for event in events:
            if isinstance(event, BlockReceived):
                self._received(event)
            elif isinstance(event, BlockTooLarge):
                self._too_large(event)
            else:
                self._sink.incomplete(self._log_block_trouble(event))
        self._drain()

    def _received(self, block: BlockReceived) -> None:
        if not block.data.strip(BLANK):
            self._log.info("empty-block", offset=block.offset, deviations=block.deviations)
            return
        msg = parse_message(block.data, default_encoding=self.config.default_encoding,
                            encoding_override=self.config.encoding_override)
        rejection = _not_hl7(msg)
        if rejection is None:
            self._log.info("message-received", offset=block.offset, length=len(block.data),
                           encoding=msg.encoding, deviations=block.deviations, **message_shape(msg))
        else:
            self._log.warning("message-not-hl7", offset=block.offset, length=len(block.data),
                              segments=len(msg.segments), error_code=rejection[0],
                              reason=rejection[1], deviations=block.deviations)
        self._queue.append(_Received(msg, block.offset, rejection))
        producer = IPushProducer(self.transport, None)
        if len(self._queue) > MAX_QUEUED and not self._paused and producer is not None:
            self._paused = True
            self._log.warning("reading-paused", queued=len(self._queue))
            producer.pauseProducing()

    def _too_large(self, block: BlockTooLarge) -> None:
        """Queue the AR for an oversized block (or keep its head unanswered: no usable MSH)."""
        head = parse_message(block.data, default_encoding=self.config.default_encoding,
                             encoding_override=self.config.encoding_override)
        usable = block.data.rstrip(b"\r\n") != block.data and _not_hl7(head) is None
        kept = (f"{block.reason}: {block.size} bytes received, the first {len(block.data)} "
                f"kept; " + ("answered AR" if usable else "not answered (no usable MSH)"))
        item = IncompleteTransmission(block.data, kept, block.offset)
        self._log.error("message-too-large", offset=block.offset, size=block.size,
                        limit=block.limit, answer="AR" if usable else "none",
                        **(message_shape(head) if usable else {}))
        if not usable:
            self._sink.incomplete(item)
            return
        text = f"message too large: {block.size} bytes, limit {block.limit}"
        self._queue.append(_Received(head, block.offset, (TOO_LARGE_ERROR, text), kept=item))

    def _drain(self) -> None:
        """Hand the next message over while none is with the sink (a loop, not recursion)."""
        if self._draining:
            return
        self._draining = True
        try:
            while not self._busy and self._queue:
                self._busy = True
                item = self._queue.popleft()
                d = self._hand_over(item)
                d.addCallback(self._answer, item)
                d.addErrback(self._answer_failed, item)
                d.addBoth(self._done)
        finally:
            self._draining = False

    def _hand_over(self, item: _Received) -> Deferred[_Answer]:
        if item.kept is not None and item.rejection is not None:  # an oversized block
            self._sink.incomplete(item.kept)
            return succeed(_Answer(Outcome.REJECTED, item.rejection[1], item.rejection[0]))
        if item.rejection is None:
            stored: Deferred[object] = maybeDeferred(self._sink.message_received, item.message)
            answered: Deferred[_Answer] = stored.addCallback(self._after_stored, item)
            return answered.addErrback(self._sink_failed, item)
        code, reason = item.rejection
        rejected = RejectedMessage(item.message.raw, item.offset, reason, code)
        d = maybeDeferred(self._keep_rejected, rejected)
        return d.addCallbacks(lambda _: _Answer(Outcome.REJECTED, reason, code),
                              self._sink_failed, errbackArgs=(item,))

    def _after_stored(self, _stored: object, item: _Received) -> _Answer | Deferred[_Answer]:
        role = role_of(item.message)
        if role is MessageRole.QUERY:
            return self._answer_query(item)
        return _Answer(Outcome.ACCEPTED, silent=role is MessageRole.RESPONSE)

    def _answer_query(self, item: _Received) -> Deferred[_Answer]:
        pending = read_query(item.message)
        found = self._orders.find(pending.keys)
        d: Deferred[Sequence[OrderedSample]] = (
            found if isinstance(found, Deferred) else succeed(found))

        def answers(samples: Sequence[OrderedSample]) -> _Answer:
            replies = build_answers(pending, samples, control_ids=self._control_ids,
                                    now=self._utcnow())
            self._log.info("query-answered", offset=item.offset, keys=len(pending.keys),
                           found=len(samples), replies=len(replies))
            return _Answer(Outcome.ACCEPTED, replies=tuple(replies))

        return d.addCallback(answers)

    def _keep_rejected(self, item: RejectedMessage) -> Deferred[object] | None:
        if isinstance(self._sink, RejectedMessageSink):
            return self._sink.message_rejected(item)
        self._sink.incomplete(IncompleteTransmission(item.raw, f"rejected: {item.reason}",
                                                     item.offset))
        return None

    def _sink_failed(self, failure: Failure, item: _Received) -> _Answer:
        if isinstance(failure.value, MessageRejectedError):
            exc = failure.value
            self._log.warning("message-refused", offset=item.offset, error_code=exc.error_code)
            return _Answer(Outcome.REJECTED, exc.reason, exc.error_code)
        self._log.error("message-not-stored", offset=item.offset, error=failure_kind(failure),
                        answer="AE")
        return _Answer(Outcome.ERROR, "message not stored; please send it again",
                       INTERNAL_ERROR)

    def _answer(self, answer: _Answer, item: _Received) -> None:
        msg = item.message
        if answer.silent:
            self._log.info("response-received", offset=item.offset, **message_shape(msg))
            return
        if answer.replies is not None:
            if not self._write(b"".join(frame(r) for r in answer.replies)):
                self._log.warning("query-answer-not-sent", offset=item.offset,
                                  reason="connection closed")
            return
        codes = plan_acks(msg, answer.outcome, always_ack=self.config.always_ack)
        if not codes:
            self._log.info("ack-not-requested", offset=item.offset, outcome=answer.outcome.value)
            return
        acks, fallback = build_acks(msg, codes, control_ids=self._control_ids,
                                    now=self._utcnow(), text=answer.text,
                                    error_code=answer.error_code)
        if fallback:
            self._log.warning("ack-in-utf8", offset=item.offset, encoding=msg.encoding,
                              reason="echoed fields not encodable in the message's charset")
        if not self._write(b"".join(frame(ack) for ack in acks)):
            self._log.warning("ack-not-sent", offset=item.offset, codes=codes,
                              reason="connection closed")
            return
        self._log.info("ack-sent", offset=item.offset, codes=codes,
                       control_id_length=len(msg.control_id), error_code=answer.error_code)

    def _answer_failed(self, failure: Failure, item: _Received) -> None:
        # Building the ACK failed (a bug, or text the message's codec cannot encode):
        # log it and go on, so one bad message cannot stall the link.
        self._log.error("ack-failed", offset=item.offset, error=failure_kind(failure))

    def _done(self, _result: object) -> None:
        self._busy = False
        producer = IPushProducer(self.transport, None)
        if self._paused and not self._queue and producer is not None and not self._closed:
            self._paused = False
            self._log.info("reading-resumed")
            producer.resumeProducing()
        self._drain()


def build_acks(msg: Hl7Message, codes: Sequence[str], *, control_ids: Callable[[], str],
               now: datetime, text: str = "", error_code: str = "") -> tuple[list[bytes], bool]:
    """The ACKs answering ``msg`` (unframed), and whether they had to be written in UTF-8.

    A message that was not valid in its declared character set was read with a
    fallback (a warning on the message); the fields the ACK echoes (MSH-3/4,
    MSH-10...) may then have no encoding in that character set, and the ACK is
    written in UTF-8 instead of not at all (an analyzer without an answer sends
    the message again and again).
    """
    try:
        return [build_ack(msg, code, control_id=control_ids(), now=now, text=text,
                          error_code=error_code) for code in codes], False
    except UnicodeEncodeError:
        utf8 = dataclasses.replace(msg, encoding="utf-8")
        return [build_ack(utf8, code, control_id=control_ids(), now=now, text=text,
                          error_code=error_code) for code in codes], True


#: Builds one connection's protocol of an HL7 link from its recorder and session logger.
AnalyzerProtocolBuilder = Callable[[Recorder | None, FilteringBoundLogger | None],
                                   MllpAnalyzerProtocol]


def analyzer_protocol_factory(dialect: Hl7Dialect, clock: IReactorTime, sink: Hl7Sink,
                              orders: OrderSource = NO_ORDERS) -> AnalyzerProtocolBuilder:
    """What ``service.py`` needs for an HL7 link: one builder per link.

    Every connection of the link shares the control-ID sequence (so ACK IDs
    never repeat across reconnections) and reads MSH-7 from ``clock``.

    Args:
        dialect: the link's driver.
        clock: the reactor (time source, timers, wall-clock for MSH-7).
        sink: the link's sink.
        orders: where host queries look up work (default: none, answered NF).
    """
    config = mllp_config(dialect)
    control_ids = ControlIds.starting_at(clock.seconds())
    utcnow = utcnow_from(clock)

    def build(recorder: Recorder | None, log: FilteringBoundLogger | None
              ) -> MllpAnalyzerProtocol:
        return MllpAnalyzerProtocol(config, clock, sink, control_ids=control_ids,
                                    utcnow=utcnow, recorder=recorder, log=log, orders=orders)

    return build


