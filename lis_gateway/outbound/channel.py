"""What the outbox worker needs of a destination: build a payload, send it, get a report.

One :class:`Channel` per ``[[destinations]]`` entry. The worker
(:mod:`lis_gateway.outbound.worker`) owns the order, the retries and the
records; a channel owns only the wire format and the transport:

* :meth:`Channel.build` turns one released result version into the bytes
  that go out (pure; raises :class:`~lis_gateway.hl7.errors.BuildError`
  with the reason when no correct payload can be made);
* :meth:`Channel.send` sends them and fires with a
  :class:`~lis_gateway.outbound.sender.DeliveryReport`; the destination's
  trouble (a refusal, silence, a dropped connection) is a report, never an
  exception.

:class:`MllpChannel` is the HL7 v2.5.1 ORU^R01 over MLLP one; the HTTP
channels (REST/JSON, FHIR) are in :mod:`lis_gateway.outbound.http_push`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred

from lis_gateway.hl7.datatypes import HierarchicDesignator, MessageRoute
from lis_gateway.outbound.compose import compose_oru
from lis_gateway.outbound.sender import DeliveryReport, HisClient
from lis_gateway.store.outbox import OutboundResult


class Channel(Protocol):
    """A destination's wire format and transport (started and stopped with its worker)."""

    def build(self, item: OutboundResult, now: datetime) -> bytes:
        """The payload for one outbox entry.

        Raises:
            BuildError: no correct payload can be made; the text says why.
        """

    def send(self, payload: bytes, control_id: str) -> Deferred[DeliveryReport]:
        """Send one payload; fires with what became of it (cancellable)."""

    def reachable(self) -> Deferred[None] | None:
        """Fires when the destination is seen reachable (a connection is up), or None
        when the channel cannot tell (no standing connection: HTTP, files)."""

    def startService(self) -> None:
        """Start connecting."""

    def stopService(self) -> Deferred[None]:
        """Stop; an unanswered payload is reported NOT_SENT or cancelled."""


class MllpChannel(Service):
    """ORU^R01 v2.5.1 over MLLP through :class:`HisClient`.

    Args:
        client: the HIS connection.
        route: MSH-3..6.
        hospital: assigning authority of hospital patient IDs (PID-3 CX.4).
    """

    def __init__(self, client: HisClient, route: MessageRoute,
                 hospital: HierarchicDesignator | None = None) -> None:
        self.client, self._route, self._hospital = client, route, hospital

    def build(self, item: OutboundResult, now: datetime) -> bytes:
        """The ORU^R01 (MSH-10 is the entry's control ID)."""
        return compose_oru(item, self._route, now, self._hospital)

    def send(self, payload: bytes, control_id: str) -> Deferred[DeliveryReport]:
        """Send and wait for the ACK whose MSA-2 is the message's MSH-10."""
        return self.client.send(payload)

    def reachable(self) -> Deferred[None]:
        """Fires when the connection to the HIS is up (the client reconnects by itself)."""
        return self.client.connected()

    def startService(self) -> None:
        """Connect (and reconnect by itself)."""
        super().startService()
        self.client.startService()

    def stopService(self) -> Deferred[None]:
        """Disconnect."""
        super().stopService()
        return self.client.stopService()
