"""The Twisted protocol around the sans-IO Beckman AU online core.

:class:`AuLinkProtocol` drives one :class:`~lis_gateway.au_online.link.AuLink`
(a serial line or a TCP connection). It only feeds bytes in, routes events
out and writes bytes, like :class:`~lis_gateway.adapters.astm_protocol.AstmLinkProtocol`:

* Every byte goes to the wire recorder before anything else looks at it
  (:class:`~lis_gateway.adapters.recorded.RecordedProtocol`).
* Durable before acknowledged: the link runs in manual-ack mode. A complete
  result text (and any text whose distinction code is not ``DB``, ``DE``,
  ``DA`` or ``DR``) goes to the sink, and its last ACK waits for the sink's
  Deferred; a failure answers NAK and the analyzer sends the block again.
  A host query (``R``) is handed over the same way (kept, visible) and
  logged as ``host-query-not-supported``: nothing answers it.
* A text given up in the middle (timeout, too long, refused as often as the
  analyzer tries, connection lost) goes to ``sink.incomplete`` with its
  blocks' bytes and the reason.
* One ``IDelayedCall`` is re-armed after every turn at ``link.get_timer()``;
  time always comes from the injected clock.
* Logs carry distinction codes, offsets, lengths and reasons, never text;
  metrics are the link metrics of :mod:`lis_gateway.metrics` (blocks count
  as frames).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable

from structlog.typing import FilteringBoundLogger
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

from lis_gateway import metrics
from lis_gateway.astm.assembler import IncompleteTransmission
from lis_gateway.astm.frames import ChecksumMode
from lis_gateway.au_online import (
    AuConfig,
    AuLink,
    AuMessage,
    AuState,
    BlockAccepted,
    BlockRejected,
    Deviation,
    DuplicateBlock,
    Event,
    TextAborted,
    TextReceived,
    is_host_query,
)
from lis_gateway.wire import Recorder

from .astm_protocol import failure_kind
from .recorded import RecordedProtocol


class AuSink(typing.Protocol):
    """What an AU link hands its texts to (the store's sink, a printer, a test double)."""

    def message_received(self, msg: AuMessage) -> Deferred[object] | None:
        """Take a complete text; a Deferred holds its ACK until it fires (NAK if it fails)."""

    def incomplete(self, item: IncompleteTransmission) -> None:
        """Keep the bytes of a text given up in the middle (for the record)."""


class AuDialect(typing.Protocol):
    """The AU switches of a driver (``drivers.DriverSpec`` has them)."""

    @property
    def checksum_mode(self) -> ChecksumMode: ...
    @property
    def receive_timeout(self) -> float: ...


def au_config(dialect: AuDialect) -> AuConfig:
    """The host-end configuration of a driver: BCC unless its checksum mode is NONE.

    A log-only checksum mode is read as BCC on (checked): a bad block is NAKed
    and the analyzer sends it again, so nothing is accepted unchecked.
    """
    return AuConfig(with_bcc=dialect.checksum_mode is not ChecksumMode.NONE,
                    manual_ack=True, receive_timeout=dialect.receive_timeout)


class AuLinkProtocol(RecordedProtocol):
    """One AU online link around :class:`AuLink`.

    Args:
        config: the host end's settings; it always runs with ``manual_ack=True``.
        clock: the time source and timer scheduler.
        sink: where complete texts and given-up ones go.
        recorder: the wire recorder of this connection (closed on disconnect).
        log: a logger bound per link (analyzer, transport, session).
        analyzer: the link's configured name, the label of its metrics.
    """

    def __init__(self, config: AuConfig, clock: IReactorTime, sink: AuSink,
                 recorder: Recorder | None = None,
                 log: FilteringBoundLogger | None = None, analyzer: str = "") -> None:
        super().__init__(clock, recorder, log, "au")
        self.link = AuLink(dataclasses.replace(config, manual_ack=True))
        self._sink = sink
        self._analyzer = analyzer
        self._hold: object | None = None  # token of the text whose ACK waits for the sink
        self._held_at = 0.0

    # --------------------------------------------------------------- Twisted

    def connectionMade(self) -> None:
        """Count the connection, arm the timer."""
        super().connectionMade()
        metrics.LINKS_UP.labels(self._analyzer).inc()
        self._turn()

    def dataReceived(self, data: bytes) -> None:
        """Record the bytes, feed them to the link, then run one turn."""
        now = self._record_received(data)
        self.link.receive_data(data, now)
        self._turn()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Give up a text in progress (kept as incomplete), stop the timer."""
        self._closed = True
        self._hold = None
        metrics.LINKS_UP.labels(self._analyzer).dec()
        self.link.connection_lost(self._clock.seconds())
        self._turn()
        super().connectionLost(reason)

    # ------------------------------------------------------------------ turn

    def _turn(self) -> None:
        """Drain output and events until the link is quiet, then re-arm the timer."""
        self._run_turn(self.link, self._route)

    def _deadline(self) -> float | None:
        return self.link.get_timer()

    def _fire_timers(self, now: float) -> None:
        self.link.handle_timer(now)
        self._turn()

    def _at_rest(self) -> bool:
        return (self.link.state is AuState.IDLE and self.link.get_timer() is None
                and self._hold is None)

    # --------------------------------------------------------------- routing

    def _route(self, event: Event) -> None:
        match event:
            case TextReceived():
                metrics.FRAMES.labels(self._analyzer, "accepted").inc()
                self._on_text(event)
            case BlockAccepted():
                metrics.FRAMES.labels(self._analyzer, "accepted").inc()
                self._log.debug("block-accepted", offset=event.offset, length=event.length)
            case BlockRejected():
                metrics.FRAMES.labels(self._analyzer, "rejected").inc()
                metrics.FRAME_REJECTIONS.labels(self._analyzer, event.problem.value).inc()
                self._log.warning("block-rejected", problem=event.problem.value,
                                  offset=event.offset, detail=event.detail, answer="nak")
            case DuplicateBlock():
                metrics.FRAMES.labels(self._analyzer, "duplicate").inc()
                self._log.info("duplicate-block", offset=event.offset, answer="ack")
            case TextAborted():
                self._log.warning("text-aborted", reason=event.reason.value,
                                  offset=event.offset, length=len(event.raw),
                                  detail=event.detail)
                if event.raw:
                    self._sink.incomplete(IncompleteTransmission(
                        event.raw, f"{event.reason.value}: {event.detail}".rstrip(": "),
                        event.offset))
            case Deviation():
                self._log.info("deviation", kind=event.kind.value, detail=event.detail,
                               offset=event.offset)
            case _:  # sender events never come from the host end
                self._log.info("link-event", kind=type(event).__name__)

    def _on_text(self, event: TextReceived) -> None:
        msg = event.message
        self._log.info("text-received", kind=msg.kind, offset=msg.offset, length=len(msg.raw),
                       blocks=msg.blocks, ack_held=event.held)
        if not event.held:
            return  # DB, DE, DA, DR: acknowledged already, kept in the wire recording
        if is_host_query(msg.kind):
            self._log.warning("host-query-not-supported", kind=msg.kind, offset=msg.offset,
                              answer="ack, kept, not answered")
        token = object()
        self._hold = token
        self._held_at = self._clock.seconds()
        d = maybeDeferred(self._sink.message_received, msg)
        d.addCallbacks(self._release_ack, self._refuse_text,
                       callbackArgs=(token,), errbackArgs=(token,))

    def _release_ack(self, _result: object, token: object) -> None:
        if self._hold is not token:
            self._log.warning("ack-dropped", reason="connection lost before the sink finished")
            return
        self._hold = None
        now = self._clock.seconds()
        metrics.COMMIT_ACK.labels(self._analyzer).observe(max(0.0, now - self._held_at))
        self.link.acknowledge(now)
        self._turn()

    def _refuse_text(self, failure: Failure, token: object) -> None:
        if self._hold is not token:
            self._log.error("message-not-stored", error=failure_kind(failure),
                            acknowledged=False, reason="connection already lost")
            return
        self._log.error("message-not-stored", error=failure_kind(failure), answer="nak")
        self._hold = None
        self.link.reject(self._clock.seconds())
        self._turn()


AuProtocolBuilder = Callable[[Recorder | None, FilteringBoundLogger | None], AuLinkProtocol]


def au_protocol_factory(dialect: AuDialect, clock: IReactorTime, sink: AuSink,
                        analyzer: str = "") -> AuProtocolBuilder:
    """What ``service.py`` needs for an AU link: a builder of one protocol per connection."""
    config = au_config(dialect)

    def build(recorder: Recorder | None, log: FilteringBoundLogger | None) -> AuLinkProtocol:
        return AuLinkProtocol(config, clock, sink, recorder, log, analyzer)

    return build
