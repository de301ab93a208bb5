"""The analyzer end (AuSender) alone and wired to the host end (AuLink) over a lossy line."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lis_gateway.au_online import (
    AbortReason,
    AuConfig,
    AuLink,
    AuSender,
    Deviation,
    SenderConfig,
    TextFailed,
    TextReceived,
    TextSent,
    encode_block,
    encode_text,
)
from lis_gateway.au_online.sender import TRANSITIONS as SENDER_TRANSITIONS
from lis_gateway.au_online.sender import SenderInput, SenderState

ACK, NAK = b"\x06", b"\x15"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "astm" / "beckman-au"
TEXTS = [(FIXTURES / f"{name}.bin").read_bytes()[1:-1] for name in ("beckman_2", "beckman_3")]


def test_sender_table_is_complete() -> None:
    """Every (state, input) pair of the sender has a row."""
    assert {(s, i) for s in SenderState for i in SenderInput} == set(SENDER_TRANSITIONS)


def test_sender_resends_on_nak_and_gives_up_after_four_tries() -> None:
    """NAK: the same block again; the fourth NAK fails the text and the next one starts."""
    sender = AuSender()
    sender.send(b"D 1", 0.0)
    sender.send(b"DE", 0.0)
    first = sender.data_to_send()
    assert first == encode_block(b"D 1")
    for _ in range(3):
        sender.receive_data(NAK, 0.0)
        assert sender.data_to_send() == first
    sender.receive_data(NAK, 0.0)
    assert sender.events() == [TextFailed(b"D 1", AbortReason.RETRIES_EXHAUSTED)]
    assert sender.data_to_send() == encode_block(b"DE")
    sender.receive_data(ACK, 0.0)
    assert sender.events() == [TextSent(b"DE")] and sender.queued == 0


def test_sender_resends_after_the_reply_timeout() -> None:
    """No reply in time counts as a try: the block goes again."""
    sender = AuSender(SenderConfig(reply_timeout=2.0))
    sender.send(b"DB", 1.0)
    block = sender.data_to_send()
    assert sender.get_timer() == 3.0
    sender.handle_timer(3.0)
    assert sender.data_to_send() == block and sender.get_timer() == 5.0


def test_sender_stray_reply_and_connection_lost() -> None:
    """A stray byte is a deviation; a close hands back every text not acknowledged."""
    sender = AuSender()
    sender.receive_data(b"x", 0.0)
    assert [type(e) for e in sender.events()] == [Deviation]
    sender.send(b"D 1", 0.0)
    sender.send(b"D 2", 0.0)
    sender.connection_lost()
    assert [(e.text, e.reason) for e in sender.events() if isinstance(e, TextFailed)] == [
        (b"D 1", AbortReason.CONNECTION_LOST), (b"D 2", AbortReason.CONNECTION_LOST)]


def test_sender_splits_texts_into_etb_blocks() -> None:
    """max_block cuts a text into ETB blocks, each waiting for its ACK."""
    sender = AuSender(SenderConfig(max_block=30))
    sender.send(TEXTS[1], 0.0)
    blocks = encode_text(TEXTS[1], max_block=30)
    for block in blocks:
        assert sender.data_to_send() == block
        sender.receive_data(ACK, 0.0)
    assert sender.events() == [TextSent(TEXTS[1])]


class LossyLine:
    """Moves bytes between a sender and a host link, corrupting or dropping on request."""

    def __init__(self, rng: random.Random, corrupt: float, drop_ack: float,
                 max_block: int, slow: float = 0.0) -> None:
        self.sender = AuSender(SenderConfig(max_block=max_block, reply_timeout=5.0,
                                            max_attempts=1000))
        # both ends agree on the tries, as the host's give-up rule assumes
        self.host = AuLink(AuConfig(manual_ack=True, max_attempts=1000))
        self.rng, self.corrupt, self.drop_ack, self.slow = rng, corrupt, drop_ack, slow
        self.ack_at: float | None = None  # a slow store: when the held text is answered
        self.now = 0.0
        self.stored: list[bytes] = []  # raw messages, as a store keeps them (by content)
        self.sent: list[bytes] = []

    def run(self, texts: list[bytes]) -> None:
        for text in texts:
            self.sender.send(text, self.now)
        for _ in range(10_000):
            self.step()
            if not self.sender.queued:
                return
        raise AssertionError("the texts did not get through")

    def step(self) -> None:
        out = self.sender.data_to_send()
        if out:
            if self.rng.random() < self.corrupt:
                i = self.rng.randrange(1, len(out))
                out = out[:i] + bytes([out[i] ^ 0x40]) + out[i + 1:]
            self.host.receive_data(out, self.now)
        for event in self.host.events():
            if isinstance(event, TextReceived) and event.held:
                if event.message.raw not in self.stored:
                    self.stored.append(event.message.raw)
                # a slow commit outlasts two of the analyzer's reply timers
                self.ack_at = self.now + (12.0 if self.rng.random() < self.slow else 0.0)
        if self.ack_at is not None and self.now >= self.ack_at:
            self.ack_at = None
            self.host.acknowledge(self.now)
        reply = self.host.data_to_send()
        if reply and self.rng.random() >= self.drop_ack:
            self.sender.receive_data(reply, self.now)
        self.sent += [e.text for e in self.sender.events() if isinstance(e, TextSent)]
        timers = [t for t in (self.sender.get_timer(), self.ack_at) if t is not None]
        if not out and not reply and timers:  # quiet line: the next timer
            self.now = max(self.now, min(timers))
            self.sender.handle_timer(self.now)
            self.host.handle_timer(self.now)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=2**32), st.sampled_from([0, 25, 100]))
def test_texts_get_through_a_lossy_line_once_each(seed: int, max_block: int) -> None:
    """Corrupted blocks, lost ACKs, slow commits: every text stored once, nothing invented."""
    line = LossyLine(random.Random(seed), corrupt=0.2, drop_ack=0.2, max_block=max_block,
                     slow=0.3)
    texts = [b"DB", TEXTS[0], TEXTS[1], b"DE"]
    line.run(texts)
    assert line.sent == texts
    assert line.stored == [b"".join(encode_text(t, max_block=max_block)) for t in texts[1:3]]


def test_both_ends_give_up_a_text_after_four_naks_and_the_next_text_is_clean() -> None:
    """The fourth NAK of a middle block ends the text at both ends; the next text is whole."""
    sender = AuSender(SenderConfig(max_block=25))
    host = AuLink(AuConfig(manual_ack=True))
    sender.send(TEXTS[0], 0.0)
    sender.send(TEXTS[1], 0.0)
    host.receive_data(sender.data_to_send(), 0.0)
    sender.receive_data(host.data_to_send(), 0.0)
    for _ in range(4):  # the second block arrives corrupted every time
        block = sender.data_to_send()
        host.receive_data(block[:5] + bytes([block[5] ^ 1]) + block[6:], 0.0)
        sender.receive_data(host.data_to_send(), 0.0)
    assert [type(e) for e in sender.events()] == [TextFailed]
    assert [type(e).__name__ for e in host.events()].count("TextAborted") == 1
    for _ in range(3):
        host.receive_data(sender.data_to_send(), 0.0)
        for event in host.events():
            if isinstance(event, TextReceived):
                assert event.message.text == TEXTS[1]
                host.acknowledge(0.0)
        sender.receive_data(host.data_to_send(), 0.0)
    assert sender.events() == [TextSent(TEXTS[1])]


@pytest.mark.parametrize("module", ["lis_gateway.au_online"])
def test_core_imports_no_io_framework_and_reads_no_clock(module: str) -> None:
    """The AU core imports no I/O library and never reads a clock (time is an argument)."""
    code = (f"import sys, json, {module}\n"
            "print(json.dumps([m for m in ['twisted', 'sqlalchemy', 'structlog', "
            "'prometheus_client', 'serial', 'drivers'] if m in sys.modules]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
    package = Path(__file__).resolve().parents[2] / "lis_gateway" / "au_online"
    for path in package.glob("*.py"):
        source = path.read_text()
        assert "import time" not in source and "from time" not in source, path.name
        for clock_call in (".now(", ".utcnow(", ".today(", "time.time(", "monotonic("):
            assert clock_call not in source, (path.name, clock_call)
