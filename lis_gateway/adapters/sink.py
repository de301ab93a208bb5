"""What an analyzer link hands its results to.

The adapters know nothing about storage: a :class:`Sink` is whatever the
composition root plugs in (the store, a printer, a test double). Returning a
Deferred from :meth:`Sink.message_received` is how a sink says "not durable
yet": the link holds the acknowledgement until it fires. On an ASTM link that
is the ACK of the frame that completed the message (NAK if it fails, and the
analyzer sends the frame again); on an HL7 link it is the AA (AE if it fails).
HL7 links also look for an optional ``message_rejected`` method
(:class:`lis_gateway.adapters.mllp_protocol.RejectedMessageSink`) for blocks
that are not HL7 at all; without it those bytes go to :meth:`Sink.incomplete`.
ASTM links ask an optional ``accepting`` method (:class:`AcceptingSink`) when
the analyzer bids with ENQ, and answer NAK ("busy", E1381 8.2.5) when it says
no; without it every ENQ is answered ACK.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from twisted.internet.defer import Deferred

from lis_gateway.astm.assembler import AstmMessage, IncompleteTransmission
from lis_gateway.astm.events import AbortReason
from lis_gateway.hl7.message import Hl7Message
from lis_gateway.hl7.queries import OrderedSample


class Sink(Protocol):
    """Receives what one analyzer link produces (one sink per link)."""

    def message_received(self, msg: AstmMessage | Hl7Message) -> Deferred[object] | None:
        """Take a complete E1394 message (ASTM links) or HL7 message (HL7 links).

        Args:
            msg: the message with its raw bytes and decoded records or segments.

        Returns:
            ``None`` when the message is already safe, or a Deferred that fires
            once it is (the acknowledgement waits for it; a failure becomes NAK
            or AE).
        """

    def incomplete(self, item: IncompleteTransmission) -> None:
        """Keep text that never became a complete message (for the record)."""

    def message_sent(self, message: bytes) -> None:
        """The peer acknowledged the last frame of a message we queued."""

    def send_failed(self, messages: tuple[bytes, ...], reason: AbortReason) -> None:
        """Messages we queued were not delivered; they are handed back, never dropped."""


@runtime_checkable
class AcceptingSink(Protocol):
    """Optional sink method: whether a new message could be kept now."""

    def accepting(self) -> bool:
        """``False`` while the sink cannot store (the link then answers ENQ with NAK).

        Called on the reactor thread at every ENQ; must not block.
        """


class OrderSource(Protocol):
    """Where host queries look up work: the HIS orders (issue 6), a test double."""

    def find(self, sample_ids: tuple[str, ...]
             ) -> Deferred[Sequence[OrderedSample]] | Sequence[OrderedSample]:
        """The ordered samples for these barcodes (empty when none is known)."""


class NoOrders:
    """An order source that knows no orders: every query is answered "not found"."""

    def find(self, sample_ids: tuple[str, ...]) -> Sequence[OrderedSample]:
        """Nothing is ordered."""
        return ()


NO_ORDERS = NoOrders()
