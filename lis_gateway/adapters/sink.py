"""What an analyzer link hands its results to.

The adapters know nothing about storage: a :class:`Sink` is whatever the
composition root plugs in (the store, a printer, a test double). Returning a
Deferred from :meth:`Sink.message_received` is how a sink says "not durable
yet": the link holds the ACK of the frame that completed the message until it
fires, and answers NAK if it fails (the analyzer then sends the frame again).
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.defer import Deferred

from lis_gateway.astm.assembler import AstmMessage, IncompleteTransmission
from lis_gateway.astm.events import AbortReason


class Sink(Protocol):
    """Receives what one analyzer link produces (one sink per link)."""

    def message_received(self, msg: AstmMessage) -> Deferred[object] | None:
        """Take a complete E1394 message.

        Args:
            msg: the assembled message with its raw bytes and decoded records.

        Returns:
            ``None`` when the message is already safe, or a Deferred that fires
            once it is (the frame's ACK waits for it; a failure becomes NAK).
        """

    def incomplete(self, item: IncompleteTransmission) -> None:
        """Keep text that never became a complete message (for the record)."""

    def message_sent(self, message: bytes) -> None:
        """The peer acknowledged the last frame of a message we queued."""

    def send_failed(self, messages: tuple[bytes, ...], reason: AbortReason) -> None:
        """Messages we queued were not delivered; they are handed back, never dropped."""
