"""The analyzer links' status board: what each link is doing, kept in memory for the web app.

One :class:`LinkStatusBoard` per gateway is the only owner of this state.
The edges tell it what happened, each with the time it happened (the board
never reads a clock):

* :class:`StatusRecorder`, a wire :class:`~lis_gateway.wire.Recorder` the
  composition root tees next to the file and store recorders of every
  connection: connected, connection lost (with Twisted's reason), bytes in
  and out, and the negative acknowledgements seen on the wire (E1381
  ``<NAK>`` bytes on ASTM links, ``MSA|AE`` / ``MSA|AR`` on HL7 links);
* the store sink (:class:`lis_gateway.ingest.StoreSink`): each message
  stored, repeated, not stored, or incomplete.

The web app's analyzers page reads :meth:`LinkStatusBoard.snapshot`. Every
call happens on the reactor thread. Errors hold technical words only (an
exception's class name, a Twisted reason, an abort reason), never record
text: nothing here is patient data. A restart starts the board afresh; the
counters are "since the gateway started".
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from drivers import Framing, Protocol
from lis_gateway.linkspec import LinkSpec

#: The most errors kept per link (the oldest go first).
MAX_ERRORS = 20
#: E1381 negative acknowledgement.
NAK = b"\x15"
#: An HL7 MSA segment saying "application error" or "application reject".
_HL7_NEGATIVE = re.compile(rb"MSA(.)A[ER]\1")
#: How Twisted words a connection that the peer or we closed normally.
_CLEAN = "closed cleanly"


@dataclass(frozen=True, slots=True)
class LinkError:
    """One thing that went wrong on a link, and when (clock seconds)."""

    at: float
    text: str


@dataclass(frozen=True, slots=True)
class LinkStatus:
    """One link as the board knows it (a snapshot: frozen).

    Attributes:
        name: the configured link name.
        transport: tcp-server, tcp-client or serial ("" when not configured).
        driver: the driver family.
        endpoint: where it listens or connects (address, port or device).
        connections: connections (or open serial ports) now.
        connected_since: when the oldest open connection began (None: none open).
        last_connected, last_disconnected: the latest such events (None: never).
        last_disconnect_reason: Twisted's words for the latest loss.
        last_traffic: the latest byte in or out (the link is idle since then).
        bytes_in, bytes_out: counted since the gateway started.
        messages: messages stored; ``repeats``: byte-identical resends recognised;
            ``failed``: messages the store refused (NAK/AE answered);
            ``incomplete``: text that never became a message.
        last_message: when the latest message was stored (or recognised as a repeat).
        naks_sent, naks_received: negative acknowledgements we sent and got.
        errors: the latest errors, oldest first; ``error_count``: all of them.
    """

    name: str
    transport: str = ""
    driver: str = ""
    endpoint: str = ""
    connections: int = 0
    connected_since: float | None = None
    last_connected: float | None = None
    last_disconnected: float | None = None
    last_disconnect_reason: str = ""
    last_traffic: float | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    messages: int = 0
    repeats: int = 0
    failed: int = 0
    incomplete: int = 0
    last_message: float | None = None
    naks_sent: int = 0
    naks_received: int = 0
    errors: tuple[LinkError, ...] = ()
    error_count: int = 0

    @property
    def connected(self) -> bool:
        """At least one connection is open."""
        return self.connections > 0


@dataclass
class _Link:
    """The mutable record behind one :class:`LinkStatus`."""

    name: str
    transport: str = ""
    driver: str = ""
    endpoint: str = ""
    opened: list[float] = field(default_factory=list)  #: start of each open connection
    last_connected: float | None = None
    last_disconnected: float | None = None
    last_disconnect_reason: str = ""
    last_traffic: float | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    last_message: float | None = None
    naks_sent: int = 0
    naks_received: int = 0
    errors: deque[LinkError] = field(default_factory=lambda: deque(maxlen=MAX_ERRORS))
    error_count: int = 0

    def snapshot(self) -> LinkStatus:
        return LinkStatus(
            self.name, self.transport, self.driver, self.endpoint, len(self.opened),
            min(self.opened) if self.opened else None, self.last_connected,
            self.last_disconnected, self.last_disconnect_reason, self.last_traffic,
            self.bytes_in, self.bytes_out, self.outcomes.get("stored", 0),
            self.outcomes.get("repeat", 0), self.outcomes.get("failed", 0),
            self.outcomes.get("incomplete", 0), self.last_message, self.naks_sent,
            self.naks_received, tuple(self.errors), self.error_count)


class LinkStatusBoard:
    """Every link's status (sans-IO: each call says when it happened)."""

    def __init__(self) -> None:
        self._links: dict[str, _Link] = {}

    def _link(self, name: str) -> _Link:
        link = self._links.get(name)
        if link is None:
            link = self._links[name] = _Link(name)
        return link

    def add_link(self, name: str, *, transport: str, driver: str, endpoint: str) -> None:
        """Declare a configured link (shown even before anything happens on it)."""
        link = self._link(name)
        link.transport, link.driver, link.endpoint = transport, driver, endpoint

    def connected(self, name: str, at: float) -> None:
        """A connection of ``name`` is up (or its serial port is open)."""
        link = self._link(name)
        link.opened.append(at)
        link.last_connected = at

    def disconnected(self, name: str, at: float, reason: str) -> None:
        """A connection of ``name`` is gone; an unclean loss counts as an error."""
        link = self._link(name)
        if link.opened:
            link.opened.remove(min(link.opened))
        link.last_disconnected = at
        link.last_disconnect_reason = reason
        if _CLEAN not in reason:
            self.error(name, f"connection lost: {reason}", at)

    def traffic(self, name: str, direction: str, size: int, at: float) -> None:
        """``size`` bytes went in (``rx``) or out (``tx``)."""
        link = self._link(name)
        if direction == "rx":
            link.bytes_in += size
        else:
            link.bytes_out += size
        link.last_traffic = at

    def negative_ack(self, name: str, direction: str, count: int, at: float) -> None:
        """``count`` negative acknowledgements we sent (``tx``) or received (``rx``)."""
        link = self._link(name)
        if direction == "tx":
            link.naks_sent += count
        else:
            link.naks_received += count

    def message(self, name: str, outcome: str, at: float) -> None:
        """A message's outcome: ``stored``, ``repeat``, ``failed`` or ``incomplete``."""
        link = self._link(name)
        link.outcomes[outcome] = link.outcomes.get(outcome, 0) + 1
        if outcome in ("stored", "repeat"):
            link.last_message = at

    def error(self, name: str, text: str, at: float) -> None:
        """Something went wrong on ``name`` (technical words only)."""
        link = self._link(name)
        link.errors.append(LinkError(at, text))
        link.error_count += 1

    def get(self, name: str) -> LinkStatus | None:
        """One link's status, or None for a name never seen."""
        link = self._links.get(name)
        return None if link is None else link.snapshot()

    def snapshot(self) -> tuple[LinkStatus, ...]:
        """Every link, in the order they were declared or first seen."""
        return tuple(link.snapshot() for link in self._links.values())


class StatusRecorder:
    """A wire recorder that tells the board about one connection of one link.

    Args:
        board: the gateway's board.
        name: the link.
        framing: ``astm`` (E1381: ``<NAK>`` bytes), ``mllp`` (HL7 ACKs with
            MSA-1 AE or AR) or anything else (no negative acknowledgements).
    """

    def __init__(self, board: LinkStatusBoard, name: str, framing: str) -> None:
        self._board, self._name, self._framing = board, name, framing
        #: the last bytes of each direction, so an MSA split across reads is seen once
        self._tail: dict[str, bytes] = {"rx": b"", "tx": b""}

    def record(self, direction: str, data: bytes, t: float) -> None:
        """Count the bytes and the negative acknowledgements among them."""
        if not data:
            return
        self._board.traffic(self._name, direction, len(data), t)
        count = self._negative_acks(direction, data)
        if count:
            self._board.negative_ack(self._name, direction, count, t)

    def _negative_acks(self, direction: str, data: bytes) -> int:
        if self._framing == "astm":
            return data.count(NAK)
        if self._framing != "mllp":
            return 0
        tail = self._tail.get(direction, b"")
        window = tail + data
        before = len(_HL7_NEGATIVE.findall(tail))
        self._tail[direction] = window[-16:]
        return len(_HL7_NEGATIVE.findall(window)) - before

    def note(self, text: str, t: float) -> None:
        """``connected`` and ``connection lost: <why>`` move the link's state."""
        if text == "connected":
            self._board.connected(self._name, t)
        elif text.startswith("connection lost"):
            self._board.disconnected(self._name, t, text.partition(": ")[2])

    def close(self) -> None:
        """Nothing to release."""


def link_framing(link: LinkSpec) -> str:
    """How a link's negative acknowledgements look: ``astm`` (E1381 ``<NAK>``),
    ``mllp`` (HL7 ACK with AE or AR) or ``bare`` (none)."""
    if link.driver.protocol is Protocol.HL7:
        return "mllp"
    return "bare" if link.driver.framing is Framing.BARE else "astm"


def declare_links(board: LinkStatusBoard, links: Sequence[LinkSpec]) -> LinkStatusBoard:
    """Put every configured link on the board (in configuration order)."""
    for link in links:
        endpoint = (link.device if link.transport == "serial"
                    else f"{link.host}:{link.port}")
        board.add_link(link.name, transport=link.transport, driver=link.driver.name,
                       endpoint=endpoint)
    return board


def status_recorder(board: LinkStatusBoard, link: LinkSpec) -> StatusRecorder:
    """The recorder that tells ``board`` about one connection of ``link``."""
    return StatusRecorder(board, link.name, link_framing(link))
