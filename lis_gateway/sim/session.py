"""What the simulated analyzer sends next, and what became of it (sans-IO).

One item (a result message, a host query, a replayed message) is on the
link at a time. An item the link could not deliver (refused six times, no
acknowledgement, connection lost) is tried again, up to ``retries`` more
times; each item ends with one :class:`Report`, which the command prints as
one line. A query's report waits for the gateway's answer (or for
``answer_timeout``); the sample's result message follows it, as a real
analyzer runs the tube either way. Time is an argument.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .astm_styles import QueryAnswer
from .faults import FaultKind


class ItemKind(enum.Enum):
    """What an item is."""

    RESULTS = "results"
    QUERY = "query"
    CANCEL = "query-cancel"  #: Roche: Q-13 = A after the answer did not come in time
    MESSAGE = "message"  #: a replayed message


@dataclass
class Item:
    """One message to deliver.

    Attributes:
        seq: the sample's number (replay: the message's number).
        kind: what it is.
        data: the message (E1394 records, or an HL7 message without its MLLP frame).
        sample_id: the barcode it is about ("" when unknown).
        codes: the test codes it carries (results).
        control_id: MSH-10 (HL7).
        label: a short description for the report (replay: the message type).
        follow: items to queue once this one is settled.
        tries: how many times it went to the link.
        faults: faults injected while it was on the link, by kind.
        notes: why earlier tries failed.
        started: when it first went to the link.
    """

    seq: int
    kind: ItemKind
    data: bytes
    sample_id: str = ""
    codes: tuple[str, ...] = ()
    control_id: str = ""
    label: str = ""
    follow: list[Item] = field(default_factory=list)
    tries: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    started: float | None = None


@dataclass(frozen=True, slots=True)
class Report:
    """The outcome of one item (one printed line).

    Attributes:
        item: the item.
        outcome: ``acknowledged``, ``failed``, ``answered``, ``unanswered``, or
            ``download`` (work the gateway sent unasked).
        detail: the gateway's answer or why it failed.
        seconds: from the first try to the outcome.
    """

    item: Item
    outcome: str
    detail: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Did the link deliver the item (an unanswered query is delivered)?"""
        return self.outcome != "failed"

    def text(self) -> str:
        """The line for people."""
        i = self.item
        what = i.kind.value if i.kind is not ItemKind.MESSAGE else (i.label or "message")
        head = f"#{i.seq} {i.sample_id or '-'} {what}"
        if i.kind is ItemKind.RESULTS:
            head += f" ({len(i.codes)} tests)"
        words = [head, self.outcome]
        if self.detail:
            words[-1] += f": {self.detail}"
        if i.tries > 1:
            words.append(f"after {i.tries} tries ({'; '.join(i.notes)})")
        if i.faults:
            words.append("[faults: " + ", ".join(f"{k} x{n}" for k, n in sorted(i.faults.items()))
                         + "]")
        words.append(f"{self.seconds:.2f} s")
        return " ".join(words)

    def to_dict(self) -> dict[str, Any]:
        """The line as JSON."""
        i = self.item
        return {"seq": i.seq, "kind": i.kind.value, "label": i.label, "sample_id": i.sample_id,
                "codes": list(i.codes), "outcome": self.outcome, "detail": self.detail,
                "tries": i.tries, "retry_reasons": list(i.notes), "faults": dict(i.faults),
                "seconds": round(self.seconds, 3)}


class Session:
    """The simulator's sending state.

    Args:
        retries: tries after the first for an item the link could not deliver.
        answer_timeout: seconds to wait for a query's answer after it was delivered.
    """

    def __init__(self, *, retries: int = 3, answer_timeout: float = 15.0) -> None:
        self.retries = retries
        self.answer_timeout = answer_timeout
        self._queue: deque[Item] = deque()
        self._current: Item | None = None  # on the link
        self._waiting: tuple[Item, float] | None = None  # a delivered query and its deadline
        self._waiting_orders = False  # the answer said "orders follow"
        self._cancels: dict[int, Item] = {}  # query id -> its cancel item
        self._up = False
        self._reports: list[Report] = []
        self.delivered = 0
        self.failed = 0

    # ------------------------------------------------------------------ inputs

    def add(self, item: Item, *, cancel: Item | None = None) -> None:
        """Queue ``item``; ``cancel`` is sent if it is a query left unanswered."""
        if cancel is not None:
            self._cancels[id(item)] = cancel
        self._queue.append(item)

    def link_up(self) -> None:
        """A connection (or the serial line) is ready."""
        self._up = True

    def link_down(self) -> None:
        """The connection is gone (the item on it is refused separately)."""
        self._up = False

    def next_to_send(self, now: float) -> Item | None:
        """The item to put on the link now, if the link is free and up."""
        if not self._up or self._current is not None or self._waiting is not None \
                or not self._queue:
            return None
        item = self._queue.popleft()
        item.tries += 1
        if item.started is None:
            item.started = now
        self._current = item
        return item

    def acknowledged(self, now: float) -> None:
        """The link delivered the current item (last frame ACKed, or HL7 AA/CA)."""
        item = self._take_current()
        if item is None:
            return
        self.delivered += 1
        if item.kind is ItemKind.QUERY:
            self._waiting = (item, now + self.answer_timeout)
            self._waiting_orders = False
            return
        self._report(item, "acknowledged", "", now)
        self._release(item)

    def refused(self, now: float, reason: str, *, retry: bool = True) -> None:
        """The link could not deliver the current item (``retry``: worth another try)."""
        item = self._take_current()
        if item is None:
            return
        if retry and item.tries <= self.retries:
            item.notes.append(reason)
            self._queue.appendleft(item)
            return
        self.failed += 1
        self._report(item, "failed", reason, now)
        self._release(item)

    def answered(self, now: float, answer: QueryAnswer) -> None:
        """The gateway answered a query (ASTM reply message, QCK^Q02, RSP^K11)."""
        item = self._current if self._current is not None and \
            self._current.kind is ItemKind.QUERY else None
        if item is not None:  # HL7: the answer is also the acknowledgement
            self._current = None
            self.delivered += 1
        elif self._waiting is not None:
            item = self._waiting[0]
        else:
            self._reports.append(Report(Item(0, ItemKind.MESSAGE, b"", label="reply"),
                                        "download", answer.detail))
            return
        if answer.found and not answer.tests:  # HL7: DSR^Q03 / OML^O33 follow
            self._waiting = (item, self._waiting[1] if self._waiting
                             else now + self.answer_timeout)
            self._waiting_orders = True
            return
        self._waiting = None
        self._report(item, "answered", answer.detail, now)
        self._release(item)

    def orders(self, now: float, tests: tuple[str, ...]) -> None:
        """The gateway sent work (DSR^Q03, OML^O33, an ASTM download)."""
        detail = f"ordered: {' '.join(tests)}" if tests else "no tests"
        if self._waiting is not None:
            item = self._waiting[0]
            self._waiting = None
            self._report(item, "answered", detail, now)
            self._release(item)
            return
        self._reports.append(Report(Item(0, ItemKind.MESSAGE, b"", label="order download"),
                                    "download", detail))

    def fault(self, kind: FaultKind) -> None:
        """A fault was injected while the current item was on the link."""
        item = self._current or (self._waiting[0] if self._waiting else None)
        if item is not None:
            item.faults[kind.value] = item.faults.get(kind.value, 0) + 1

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` is next due."""
        return self._waiting[1] if self._waiting is not None else None

    def handle_timer(self, now: float) -> None:
        """A query left unanswered past its deadline is reported; its cancel goes first."""
        if self._waiting is None or now < self._waiting[1]:
            return
        item = self._waiting[0]
        self._waiting = None
        what = "no orders within" if self._waiting_orders else "no answer within"
        self._report(item, "unanswered", f"{what} {self.answer_timeout:g} s", now)
        cancel = self._cancels.pop(id(item), None)
        if cancel is not None:
            self._queue.appendleft(cancel)
            cancel.follow = item.follow + cancel.follow
            item.follow = []
        self._release(item)

    # ----------------------------------------------------------------- outputs

    def reports(self) -> list[Report]:
        """Reports since the last call."""
        out, self._reports = self._reports, []
        return out

    @property
    def idle(self) -> bool:
        """Nothing queued, on the link or waiting for an answer."""
        return not self._queue and self._current is None and self._waiting is None

    @property
    def awaiting_answer(self) -> bool:
        """A delivered query waits for the gateway's answer."""
        return self._waiting is not None

    @property
    def current(self) -> Item | None:
        """The item on the link."""
        return self._current

    # ---------------------------------------------------------------- internal

    def _take_current(self) -> Item | None:
        item, self._current = self._current, None
        return item

    def _release(self, item: Item) -> None:
        self._cancels.pop(id(item), None)
        for follow in reversed(item.follow):
            self._queue.appendleft(follow)
        item.follow = []

    def _report(self, item: Item, outcome: str, detail: str, now: float) -> None:
        started = item.started if item.started is not None else now
        self._reports.append(Report(item, outcome, detail, max(0.0, now - started)))
