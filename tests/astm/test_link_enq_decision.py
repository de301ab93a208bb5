"""E1381 manual-enq mode: the owner answers the peer's ENQ (ACK, or NAK when not ready)."""

from __future__ import annotations

import pytest

from lis_gateway.astm.errors import LocalProtocolError
from lis_gateway.astm.events import (
    BidDeferred,
    FrameAccepted,
    MessageSent,
    TransferEnded,
    TransferRefused,
    TransferRequested,
    TransferStarted,
)
from lis_gateway.astm.frames import encode_frame
from lis_gateway.astm.link import LinkConfig, LinkConnection, LinkState
from tests.helpers import LinkPair, accepted_text, events_of

ENQ, ACK, NAK, EOT = b"\x05", b"\x06", b"\x15", b"\x04"
SHORT = b"H|\\^&|||ANALYZER\rP|1\rO|1|S1001\rR|1|^^^GLU|5.5|mmol/L\rL|1|N\r"
MANUAL = LinkConfig(manual_enq=True)


def test_enq_waits_for_the_owner_and_accept_answers_ack() -> None:
    """In manual-enq mode an ENQ is reported and unanswered until accept_transfer()."""
    link = LinkConnection(MANUAL)
    link.receive_data(b"\x00" * 3 + ENQ, 5.0)
    assert link.data_to_send() == b""
    assert link.events() == [TransferRequested(3)]
    assert link.state is LinkState.HOLDING_ENQ
    link.accept_transfer(6.0)
    assert link.data_to_send() == ACK
    assert link.events() == [TransferStarted(3)]
    assert link.state is LinkState.RECEIVING
    assert link.get_timer() == 6.0 + link.config.receive_timeout


def test_refuse_answers_nak_and_goes_neutral() -> None:
    """refuse_transfer() answers NAK (busy), reports it, and leaves no timer running."""
    link = LinkConnection(MANUAL)
    link.receive_data(ENQ, 0.0)
    link.events()
    link.refuse_transfer(0.5)
    assert link.data_to_send() == NAK
    assert link.events() == [TransferRefused(0, "busy")]
    assert link.state is LinkState.NEUTRAL
    assert link.get_timer() is None


def test_refused_sender_bids_again_after_10_s_and_is_then_served() -> None:
    """E1381 8.2.5 end to end: NAK to ENQ, the instrument waits 10 s, the next ENQ is taken."""
    pair = LinkPair(computer=MANUAL)
    pair.instrument.send(SHORT, 0)
    pair.pump()
    assert events_of(pair.computer_events, TransferRequested) == [TransferRequested(0)]
    pair.computer.refuse_transfer(pair.now)
    pair.pump()
    assert pair.to_instrument == [NAK]
    assert events_of(pair.instrument_events, BidDeferred)[0].retry_at == 10.0
    pair.advance(9.9)
    assert len(events_of(pair.computer_events, TransferRequested)) == 1  # no ENQ yet
    pair.advance(0.2)
    assert len(events_of(pair.computer_events, TransferRequested)) == 2
    pair.computer.accept_transfer(pair.now)
    pair.pump()
    assert events_of(pair.instrument_events, MessageSent) == [MessageSent(SHORT)]
    assert accepted_text(pair.computer_events) == SHORT


def test_input_after_a_held_enq_waits_for_the_decision() -> None:
    """Frames and EOT that arrive in the same read as the ENQ are processed after the ACK."""
    link = LinkConnection(MANUAL)
    frame = encode_frame(1, b"L|1|N\r", final=True)
    link.receive_data(ENQ + frame + EOT, 0.0)
    assert link.data_to_send() == b""
    assert [type(e) for e in link.events()] == [TransferRequested]
    link.accept_transfer(0.1)
    assert link.data_to_send() == ACK + ACK
    assert [type(e) for e in link.events()] == [TransferStarted, FrameAccepted, TransferEnded]
    assert link.state is LinkState.NEUTRAL


def test_no_decision_within_the_reply_timer_answers_nak() -> None:
    """An owner that never decides: after the 15 s reply timer the ENQ is answered NAK."""
    link = LinkConnection(MANUAL)
    link.receive_data(ENQ, 100.0)
    link.events()
    assert link.get_timer() == 100.0 + link.config.reply_timeout
    link.handle_timer(100.0 + link.config.reply_timeout)
    assert link.data_to_send() == NAK
    assert link.events() == [TransferRefused(0, "no-decision")]
    assert link.state is LinkState.NEUTRAL


@pytest.mark.parametrize("call", ["accept_transfer", "refuse_transfer"])
def test_deciding_without_a_held_enq_is_local_misuse(call: str) -> None:
    """accept_transfer()/refuse_transfer() with no ENQ waiting raise LocalProtocolError."""
    link = LinkConnection(MANUAL)
    with pytest.raises(LocalProtocolError):
        getattr(link, call)(0.0)
    assert link.state is LinkState.NEUTRAL


def test_busy_flag_refusal_is_reported_too() -> None:
    """set_busy(True) answers NAK at once (no hold) and emits TransferRefused."""
    link = LinkConnection(MANUAL)
    link.set_busy(True)
    link.receive_data(ENQ, 0.0)
    assert link.data_to_send() == NAK
    assert link.events() == [TransferRefused(0, "busy")]
