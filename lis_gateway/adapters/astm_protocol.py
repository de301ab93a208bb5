"""Twisted protocols around the sans-IO ASTM core.

:class:`AstmLinkProtocol` drives one :class:`~lis_gateway.astm.link.LinkConnection`
(E1381 framing) and :class:`BareRecordProtocol` reads E1394 records with no
link layer. Both only feed bytes in, route events out and write bytes:

* Every byte is given to the wire recorder *before* anything else looks at it
  (received bytes first thing in ``dataReceived``, sent bytes just before
  ``transport.write``), so a recording replays exactly what crossed the wire.
* Durable before acknowledged: the link always runs in manual-ack mode. A
  frame that completes no message is ACKed at once; the frame that completes
  one is ACKed only after the sink's Deferred fires, and NAKed if it fails
  (the analyzer then sends the same frame again and nothing is lost).
* Not ready, say so: the link runs in manual-enq mode too. At each ENQ the
  sink's optional ``accepting()`` (:class:`~lis_gateway.adapters.sink.AcceptingSink`)
  is asked; when it says no (the store failed and has not recovered) the ENQ
  is answered NAK (busy, E1381 8.2.5: the analyzer bids again 10 s or more
  later) instead of taking a message that could not be kept.
* Bounded memory: text received since the last complete message is limited
  to :data:`MAX_MESSAGE` bytes. An E1381 frame that would go beyond it is
  answered NAK (the sender retries, then gives up; what came before is kept
  as an incomplete transmission with the reason); a bare-record link that
  goes beyond it is closed.
* One ``IDelayedCall`` is re-armed after every turn at ``link.get_timer()``
  (aioquic's ``transmit``/``_handle_timer``); time always comes from the
  injected clock.
* Logs carry event kinds, offsets, lengths and reasons, never record text.

Each protocol owns the recorder it is given and closes it when the
connection is lost.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from structlog.typing import FilteringBoundLogger
from twisted.internet.defer import Deferred, FirstError, gatherResults, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

from lis_gateway import metrics
from lis_gateway.astm.assembler import (
    AssemblerEvent,
    AstmMessage,
    Checkpoint,
    MessageAssembler,
)
from lis_gateway.astm.events import (
    AbortReason,
    BidDeferred,
    Deviation,
    DuplicateFrame,
    Event,
    FrameAccepted,
    FrameRejected,
    MessageSent,
    SendFailed,
    TransferAborted,
    TransferEnded,
    TransferRefused,
    TransferRequested,
    TransferStarted,
    UnexpectedInput,
)
from lis_gateway.astm.host_query import (
    LIS2_A2,
    HostQuery,
    ReplySample,
    ReplyStyle,
    build_error_reply,
    build_reply,
    host_queries,
)
from lis_gateway.astm.link import LinkConfig, LinkConnection, LinkState
from lis_gateway.astm.records import HeaderRecord
from lis_gateway.hl7.queries import OrderedSample, Priority
from lis_gateway.wire import Recorder

from .recorded import RecordedProtocol
from .sink import AcceptingSink, OrderSource, Sink


class SendError(Exception):
    """A tracked message was not delivered (the analyzer refused it or the link dropped)."""

    def __init__(self, reason: AbortReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


class LinkPresence(typing.Protocol):
    """Told when a connection of a link comes up and goes away."""

    def connected(self, protocol: AstmLinkProtocol) -> None: ...

    def disconnected(self, protocol: AstmLinkProtocol) -> None: ...


def reply_sample(sample: OrderedSample) -> ReplySample:
    """An order found for a host query, as the ASTM reply writes it."""
    p = sample.patient
    sex = p.sex.value if p.sex.value in ("M", "F") else "U"
    return ReplySample(sample.sample_id, tuple(code for code, _name in sample.tests),
                       stat=sample.priority is Priority.STAT, patient_id=p.hospital_id,
                       family_name=p.family_name, given_name=p.given_name,
                       middle_name=p.middle_name,
                       birth_date=p.birth_date.strftime("%Y%m%d") if p.birth_date else "",
                       sex=sex)

#: Events that are only logged: (log event name, level). Their fields hold
#: numbers, enums and short technical details, never record text.
_LOGGED_EVENTS: dict[type, tuple[str, str]] = {
    TransferStarted: ("transfer-started", "debug"),
    FrameRejected: ("frame-rejected", "warning"),
    DuplicateFrame: ("duplicate-frame", "info"),
    BidDeferred: ("bid-deferred", "info"),
    Deviation: ("deviation", "info"),
    UnexpectedInput: ("unexpected-input", "warning"),
}

#: Bare-record links: a "record" longer than this without a line break is garbage.
MAX_BARE_RECORD = 1 << 20
#: Most text bytes received since the last complete message (what the assembler holds).
MAX_MESSAGE = 16 << 20


def too_long(limit: int) -> str:
    """Why the text of an over-long message was refused (kept with it as the reason)."""
    return f"message longer than {limit} bytes"


def failure_kind(failure: Failure) -> str:
    """The exception class name behind a failure (its message may hold patient data)."""
    if isinstance(failure.value, FirstError):
        failure = failure.value.subFailure
    return failure.type.__qualname__ if failure.type is not None else "unknown"


class _RecordedLinkProtocol(RecordedProtocol):
    """What both ASTM link protocols share: the recorded shell plus the sink."""

    def __init__(self, clock: IReactorTime, sink: Sink, recorder: Recorder | None,
                 log: FilteringBoundLogger | None, kind: str) -> None:
        super().__init__(clock, recorder, log, kind)
        self._sink = sink

    def _finish(self, items: Iterable[AssemblerEvent]) -> None:
        """Hand over what no held ACK depends on (end of transfer, bare records)."""
        for item in items:
            if isinstance(item, AstmMessage):
                self._log_message(item, acked=False)
                d = maybeDeferred(self._sink.message_received, item)
                d.addErrback(self._log_unacked_failure, item.offset)
            else:
                self._log.warning("incomplete-transmission", offset=item.offset,
                                  length=len(item.raw), reason=item.reason)
                self._sink.incomplete(item)

    def _log_message(self, msg: AstmMessage, *, acked: bool) -> None:
        self._log.info("message-received", offset=msg.offset, length=len(msg.raw),
                       records=len(msg.decoded.records), problems=len(msg.problems),
                       terminated=msg.terminated, ack_held=acked)

    def _log_unacked_failure(self, failure: Failure, offset: int) -> None:
        # Nothing can be NAKed any more: the bytes are in the wire recording.
        self._log.error("message-not-stored", offset=offset, error=failure_kind(failure),
                        acknowledged=False)


class AstmLinkProtocol(_RecordedLinkProtocol):
    """One E1381 link (a TCP connection or a serial line) around ``LinkConnection``.

    Args:
        config: the link dialect; it always runs with ``manual_ack=True``.
        clock: the time source and timer scheduler.
        encoding: character encoding of record text.
        sink: where messages and send outcomes go.
        recorder: the wire recorder for this connection (closed on disconnect).
        log: a logger bound per link (analyzer, transport, session).
        orders: where host queries (Q records) look up orders; None leaves them
            unanswered. The reply is queued once the query is stored and goes
            out when the analyzer has ended its session.
        presence: told when this connection is up and when it is gone (what
            pushes work to the analyzer uses the connection that is up).
        analyzer: the link's configured name, the label of its metrics.
        max_message: most text bytes since the last complete message; a frame
            beyond it is answered NAK.
        reply_style: the form of host-query answers, chosen per query message
            (the driver's ``astm_reply``; LIS2-A2 by default).
        timezone: the analyzer clock's IANA zone: ASTM timestamps carry no
            offset, so the times written in answers are its wall time.
    """

    def __init__(self, config: LinkConfig, clock: IReactorTime, encoding: str, sink: Sink,
                 recorder: Recorder | None = None,
                 log: FilteringBoundLogger | None = None,
                 orders: OrderSource | None = None,
                 presence: LinkPresence | None = None, analyzer: str = "",
                 max_message: int = MAX_MESSAGE,
                 reply_style: Callable[[AstmMessage], ReplyStyle] = lambda _m: LIS2_A2,
                 timezone: str = "UTC") -> None:
        super().__init__(clock, sink, recorder, log, "astm")
        self._reply_style = reply_style
        self._zone = ZoneInfo(timezone)
        self.max_message = max_message
        self._pending_text = 0  # text bytes received since the last complete message
        self._too_long = False  # the text was refused for its length
        self._analyzer = analyzer  # the metrics label (the configured link name)
        self._held_at = 0.0  # when the ACK of the completing frame started waiting
        self._orders = orders
        self._presence = presence
        #: messages queued with send_tracked, oldest first, with who waits for them
        self._tracked: list[tuple[bytes, Deferred[None]]] = []
        self._encoding = encoding
        self.link = LinkConnection(dataclasses.replace(config, manual_ack=True, manual_enq=True))
        self._assembler = MessageAssembler(encoding)
        self._hold: object | None = None  # token of the frame whose ACK waits for the sink
        self._refused = False  # we NAKed a frame that has not come again yet

    # --------------------------------------------------------------- Twisted

    def connectionMade(self) -> None:
        """Write anything queued before the connection existed, arm the timer."""
        super().connectionMade()
        metrics.LINKS_UP.labels(self._analyzer).inc()
        self._turn()
        if self._presence is not None:
            self._presence.connected(self)

    def dataReceived(self, data: bytes) -> None:
        """Record the bytes, feed them to the link, then run one turn."""
        now = self._record_received(data)
        self.link.receive_data(data, now)
        self._turn()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Void any transfer, hand back unsent messages, stop the timer."""
        self._closed = True
        self._hold = None
        metrics.LINKS_UP.labels(self._analyzer).dec()
        self.link.connection_lost(self._clock.seconds())
        self._turn()
        if self._presence is not None:
            self._presence.disconnected(self)
        super().connectionLost(reason)

    # ------------------------------------------------------------------- API

    def send_message(self, message: bytes) -> None:
        """Queue E1394 text (records ending in CR) for sending to the peer.

        The outcome arrives later as ``sink.message_sent`` or ``sink.send_failed``.
        """
        if self._closed:
            self._log.warning("send-failed", reason=AbortReason.CONNECTION_LOST.value,
                              messages=1)
            self._sink.send_failed((message,), AbortReason.CONNECTION_LOST)
            self._settle(message, AbortReason.CONNECTION_LOST)
            return
        self.link.send(message, self._clock.seconds())
        self._turn()

    def send_tracked(self, message: bytes) -> Deferred[None]:
        """Queue E1394 text like :meth:`send_message`; the Deferred fires when the
        analyzer has acknowledged its last frame, or fails with :class:`SendError`."""
        d: Deferred[None] = Deferred()
        self._tracked.append((message, d))
        self.send_message(message)
        return d

    def _settle(self, message: bytes, reason: AbortReason | None) -> None:
        for i, (queued, d) in enumerate(self._tracked):
            if queued == message:
                del self._tracked[i]
                if reason is None:
                    d.callback(None)
                else:
                    d.errback(SendError(reason))
                return

    # ------------------------------------------------------------------ turn

    def _turn(self) -> None:
        """Drain output and events until the link is quiet, then re-arm the timer."""
        self._run_turn(self.link, self._route)

    def _deadline(self) -> float | None:
        return self.link.get_timer()

    def _at_rest(self) -> bool:
        # Neutral link, nothing to send, no ACK waiting for the sink.
        return (self.link.state is LinkState.NEUTRAL and self.link.queued == 0
                and self._hold is None)

    def _fire_timers(self, now: float) -> None:
        self.link.handle_timer(now)
        self._turn()

    # --------------------------------------------------------------- routing

    def _route(self, event: Event) -> None:
        match event:
            case TransferRequested():
                self._answer_bid(event)
            case TransferRefused():
                self._log.warning("enq-refused", offset=event.offset, cause=event.cause,
                                  answer="nak")
                metrics.FRAME_REJECTIONS.labels(self._analyzer, "enq-busy").inc()
            case FrameAccepted():
                self._on_frame(event)
            case TransferEnded():
                self._log.debug("transfer-ended", offset=event.offset)
                reason = "sender ended after a refused frame" if self._refused else None
                if self._too_long:
                    reason = f"{too_long(self.max_message)}: refused"
                self._refused = False
                self._end_text()
                self._finish(self._assembler.end_transfer(aborted=reason))
            case TransferAborted():
                self._log.warning("transfer-aborted", reason=event.reason.value,
                                  detail=event.detail)
                self._hold = None
                self._refused = False
                reason = (f"{too_long(self.max_message)}: refused" if self._too_long
                          else event.reason.value)
                self._end_text()
                self._finish(self._assembler.end_transfer(aborted=reason))
            case MessageSent():
                self._log.info("message-sent", length=len(event.message))
                self._sink.message_sent(event.message)
                self._settle(event.message, None)
            case SendFailed():
                self._log.warning("send-failed", reason=event.reason.value,
                                  messages=len(event.messages))
                self._sink.send_failed(event.messages, event.reason)
                for message in event.messages:
                    self._settle(message, event.reason)
            case _:
                self._log_event(event)

    def _log_event(self, event: Event) -> None:
        if isinstance(event, FrameRejected):
            metrics.FRAMES.labels(self._analyzer, "rejected").inc()
            metrics.FRAME_REJECTIONS.labels(self._analyzer,
                                            event.problem.value).inc()
        elif isinstance(event, DuplicateFrame):
            metrics.FRAMES.labels(self._analyzer, "duplicate").inc()
        known = _LOGGED_EVENTS.get(type(event))
        if known is None:  # a newer core event: its fields are unknown, so log only its kind
            self._log.info("link-event", kind=type(event).__name__)
            return
        name, level = known
        fields = {k: getattr(v, "value", v) for k, v in dataclasses.asdict(event).items()}
        getattr(self._log, level)(name, **fields)

    def _answer_bid(self, event: TransferRequested) -> None:
        """ACK the analyzer's ENQ, or NAK it while the sink says it cannot keep a message."""
        now = self._clock.seconds()
        if isinstance(self._sink, AcceptingSink) and not self._sink.accepting():
            self.link.refuse_transfer(now)
        else:
            self.link.accept_transfer(now)

    def _on_frame(self, event: FrameAccepted) -> None:
        metrics.FRAMES.labels(self._analyzer, "accepted").inc()
        self._log.debug("frame-accepted", fn=event.fn, offset=event.offset,
                        length=len(event.text), final=event.final)
        self._refused = False
        if event.held and self._pending_text + len(event.text) > self.max_message:
            self._refuse_too_long(event)
            return
        # The frame may be refused later (NAK) and then sent again: remember the
        # assembler as it was before this frame so the resent text is not doubled.
        before = self._assembler.checkpoint() if event.held else None
        items = self._assembler.add_text(event.text, block_end=event.final,
                                         offset=event.offset)
        messages = [item for item in items if isinstance(item, AstmMessage)]
        self._pending_text = 0 if messages else self._pending_text + len(event.text)
        self._finish(item for item in items if not isinstance(item, AstmMessage))
        if before is None:  # not held: nothing waits for the sink
            self._finish(messages)
            return
        if not messages:
            self.link.acknowledge(self._clock.seconds())
            return
        token = object()
        self._hold = token
        self._held_at = self._clock.seconds()
        for msg in messages:
            self._log_message(msg, acked=True)
        d = gatherResults(
            [maybeDeferred(self._sink.message_received, msg) for msg in messages],
            consumeErrors=True)
        d.addCallbacks(self._release_ack, self._refuse_frame,
                       callbackArgs=(token, messages), errbackArgs=(token, before))

    def _refuse_too_long(self, event: FrameAccepted) -> None:
        """NAK a frame that would make the message too long (E1381: the sender retries
        the frame, then gives up with EOT; the text before it is kept as incomplete)."""
        if not self._too_long:
            self._log.error("message-too-long", offset=event.offset, limit=self.max_message,
                            length=self._pending_text + len(event.text), answer="nak")
        self._too_long = True
        self._refused = True
        self.link.reject(self._clock.seconds())

    def _end_text(self) -> None:
        self._pending_text = 0
        self._too_long = False

    def _release_ack(self, _result: object, token: object,
                     messages: list[AstmMessage] | None = None) -> None:
        if self._hold is not token:
            self._log.warning("ack-dropped", reason="transfer ended before the sink finished")
            return
        self._hold = None
        now = self._clock.seconds()
        metrics.COMMIT_ACK.labels(self._analyzer).observe(max(0.0, now - self._held_at))
        self.link.acknowledge(now)
        self._turn()
        for msg in messages or ():
            self._answer_queries(msg)

    # ------------------------------------------------------------ host queries

    def _answer_queries(self, msg: AstmMessage) -> None:
        queries = host_queries(msg)
        if not queries or self._orders is None:
            return
        style = self._reply_style(msg)
        head = msg.decoded.records[0] if msg.decoded.records else None
        header = head if isinstance(head, HeaderRecord) else None
        try:
            found = self._orders.find(tuple(q.barcode for q in queries))
        except Exception:  # a synchronous source failing: answered like a failed lookup
            self._lookup_failed(Failure(), style, header, queries)
            return
        d: Deferred[Sequence[OrderedSample]] = (
            found if isinstance(found, Deferred) else succeed(found))
        d.addCallback(self._reply, style, header, queries)
        d.addErrback(self._lookup_failed, style, header, queries)

    def _reply(self, samples: Sequence[OrderedSample], style: ReplyStyle,
               header: HeaderRecord | None, queries: list[HostQuery]) -> None:
        found = {s.sample_id: reply_sample(s) for s in samples}
        now = datetime.fromtimestamp(self._clock.seconds(), self._zone)
        reply = build_reply(queries, found, now=now, encoding=self._encoding, style=style,
                            query_header=header)
        self._log.info("query-answered", keys=len(queries), found=len(found), form=style.name)
        self.send_message(reply)

    def _lookup_failed(self, failure: Failure, style: ReplyStyle, header: HeaderRecord | None,
                       queries: list[HostQuery]) -> None:
        # L|1|Q: "error in last request for information"; the analyzer may ask again
        self._log.error("query-lookup-failed", error=failure_kind(failure), keys=len(queries))
        now = datetime.fromtimestamp(self._clock.seconds(), self._zone)
        self.send_message(build_error_reply(now=now, encoding=self._encoding, style=style,
                                            query_header=header))

    def _refuse_frame(self, failure: Failure, token: object, before: Checkpoint) -> None:
        if self._hold is not token:
            self._log.error("message-not-stored", error=failure_kind(failure),
                            acknowledged=False, reason="transfer already ended")
            return
        self._log.error("message-not-stored", error=failure_kind(failure), answer="nak")
        self._hold = None
        self._assembler.rollback(before)
        self._refused = True
        self.link.reject(self._clock.seconds())
        self._turn()


class BareRecordProtocol(_RecordedLinkProtocol):
    """E1394 records with no E1381 link layer (``Framing.BARE``, TCP only).

    Records end with CR, LF or CR LF; a message ends at its L record; what is
    left when the connection closes is handed over by ``end_transfer()``.
    There is no acknowledgement to hold: a sink failure is logged and the
    bytes stay in the wire recording.

    Args:
        clock: the time source (for recording timestamps).
        encoding: character encoding of record text.
        sink: where messages go.
        recorder: the wire recorder for this connection (closed on disconnect).
        log: a logger bound per link (analyzer, transport, session).
    """

    def __init__(self, clock: IReactorTime, encoding: str, sink: Sink,
                 recorder: Recorder | None = None,
                 log: FilteringBoundLogger | None = None,
                 max_message: int = MAX_MESSAGE) -> None:
        super().__init__(clock, sink, recorder, log, "bare")
        self.max_message = max_message
        self._pending_text = 0  # bytes fed since the last complete message
        self._assembler = MessageAssembler(encoding, any_newline=True)
        self._buffer = bytearray()
        self._offset = 0  # link offset of the first byte in the buffer

    def dataReceived(self, data: bytes) -> None:
        """Record the bytes and feed every complete line to the assembler."""
        self._record_received(data)
        self._buffer += data
        cut = max(self._buffer.rfind(b"\r"), self._buffer.rfind(b"\n")) + 1
        if cut:
            self._feed(cut, block_end=True)
        if len(self._buffer) > MAX_BARE_RECORD and self.transport is not None:
            self._log.error("record-too-long", offset=self._offset, length=len(self._buffer))
            self.transport.loseConnection()
        elif self._pending_text > self.max_message and self.transport is not None:
            self._log.error("message-too-long", offset=self._offset, limit=self.max_message,
                            length=self._pending_text)
            self._finish(self._assembler.end_transfer(aborted=too_long(self.max_message)))
            self._pending_text = 0
            self.transport.loseConnection()

    def _at_rest(self) -> bool:
        return not self._buffer and self._pending_text == 0  # between messages

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """The sender is done: deliver what is complete, keep the rest as incomplete."""
        self._closed = True
        if self._buffer:
            self._feed(len(self._buffer), block_end=True)
        self._finish(self._assembler.end_transfer())
        super().connectionLost(reason)

    def _feed(self, cut: int, *, block_end: bool) -> None:
        text = bytes(self._buffer[:cut])
        del self._buffer[:cut]
        items = self._assembler.add_text(text, block_end=block_end, offset=self._offset)
        self._offset += cut
        done = any(isinstance(item, AstmMessage) for item in items)
        self._pending_text = 0 if done else self._pending_text + cut
        self._finish(items)
