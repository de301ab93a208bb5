"""Test helpers: a link pair (h11's ConnectionPair idea) and frame builders."""

from __future__ import annotations

from collections.abc import Callable

from lis_gateway.astm.events import Event
from lis_gateway.astm.link import LinkConfig, LinkConnection, Role

Tamper = Callable[[bytes], bytes | None]


class LinkPair:
    """An instrument-role core wired to a computer-role core through a fake line.

    Bytes move only when :meth:`pump` is called. ``tamper_to_computer`` and
    ``tamper_to_instrument`` may rewrite or drop (return None) each chunk, to
    corrupt checksums or lose ACKs. Events of each side accumulate in lists.
    """

    def __init__(self, instrument: LinkConfig | None = None,
                 computer: LinkConfig | None = None) -> None:
        self.instrument = LinkConnection(instrument or LinkConfig(role=Role.INSTRUMENT))
        self.computer = LinkConnection(computer or LinkConfig(role=Role.COMPUTER))
        self.now = 0.0
        self.instrument_events: list[Event] = []
        self.computer_events: list[Event] = []
        self.to_computer: list[bytes] = []  # every chunk the instrument wrote
        self.to_instrument: list[bytes] = []  # every chunk the computer wrote
        self.tamper_to_computer: Tamper | None = None
        self.tamper_to_instrument: Tamper | None = None

    def _collect(self) -> None:
        self.instrument_events += self.instrument.events()
        self.computer_events += self.computer.events()

    def pump(self, max_rounds: int = 10_000) -> None:
        """Move bytes both ways until neither side has anything to send."""
        for _ in range(max_rounds):
            a = self.instrument.data_to_send()
            b = self.computer.data_to_send()
            if not a and not b:
                self._collect()
                return
            if a:
                self.to_computer.append(a)
                if self.tamper_to_computer is not None:
                    a = self.tamper_to_computer(a)  # type: ignore[assignment]
                if a:
                    self.computer.receive_data(a, self.now)
            if b:
                self.to_instrument.append(b)
                if self.tamper_to_instrument is not None:
                    b = self.tamper_to_instrument(b)  # type: ignore[assignment]
                if b:
                    self.instrument.receive_data(b, self.now)
            self._collect()
        raise AssertionError("the link pair did not settle")

    def advance(self, seconds: float) -> None:
        """Move time forward, firing both sides' timers in order, then pump."""
        end = self.now + seconds
        while True:
            timers = [t for t in (self.instrument.get_timer(), self.computer.get_timer())
                      if t is not None and t <= end]
            if not timers:
                break
            self.now = max(self.now, min(timers))
            self.instrument.handle_timer(self.now)
            self.computer.handle_timer(self.now)
            self.pump()
        self.now = end
        self.pump()


def events_of(events: list[Event], kind: type) -> list:
    """The events of one type, in order."""
    return [e for e in events if isinstance(e, kind)]


def accepted_text(events: list[Event]) -> bytes:
    """The joined text of every accepted frame."""
    from lis_gateway.astm.events import FrameAccepted

    return b"".join(e.text for e in events if isinstance(e, FrameAccepted))


