"""E1381 link core: an instrument-role core wired to a computer-role core (no I/O)."""

from __future__ import annotations

import pytest

from lis_gateway.astm.errors import LocalProtocolError
from lis_gateway.astm.events import (
    AbortReason,
    BidDeferred,
    Deviation,
    DeviationKind,
    DuplicateFrame,
    FrameAccepted,
    FrameRejected,
    MessageSent,
    SendFailed,
    TransferAborted,
    TransferEnded,
    TransferStarted,
)
from lis_gateway.astm.frames import ChecksumMode, FrameProblem, checksum, encode_frame
from lis_gateway.astm.link import LinkConfig, LinkConnection, LinkState, Role
from tests.helpers import LinkPair, accepted_text, events_of

ENQ, ACK, NAK, EOT, STX, ETX = b"\x05", b"\x06", b"\x15", b"\x04", b"\x02", b"\x03"

SHORT = b"H|\\^&|||ANALYZER\rP|1\rO|1|S1001\rR|1|^^^GLU|5.5|mmol/L\rL|1|N\r"
LONG = (b"H|\\^&|||ANALYZER\rP|1\rO|1|S1002\r" + b"M|1|" + b"QUJD" * 150 + b"\r"
        + b"R|1|^^^NA|140|mmol/L\rL|1|N\r")


def frames_sent(chunks: list[bytes]) -> list[bytes]:
    """Split what one side wrote into its frames (STX … LF)."""
    data = b"".join(chunks)
    out, i = [], 0
    while (i := data.find(STX, i)) >= 0:
        j = data.index(b"\n", i)
        out.append(data[i:j + 1])
        i = j + 1
    return out


def test_multi_frame_message_is_delivered_whole() -> None:
    """A message with a record over 240 bytes arrives in ETB frames, joined exactly."""
    pair = LinkPair()
    pair.instrument.send(LONG, 0)
    pair.pump()
    assert events_of(pair.instrument_events, MessageSent) == [MessageSent(LONG)]
    assert accepted_text(pair.computer_events) == LONG
    finals = [e.final for e in events_of(pair.computer_events, FrameAccepted)]
    assert False in finals  # ETB frames were used
    assert isinstance(pair.computer_events[0], TransferStarted)
    assert isinstance(pair.computer_events[-1], TransferEnded)
    assert pair.instrument.state is pair.computer.state is LinkState.NEUTRAL


def test_frame_numbers_cycle_modulo_8() -> None:
    """Frame numbers go 1..7,0,1,… across a long transfer."""
    message = b"".join(b"R|%d|^^^T%d|1\r" % (i, i) for i in range(20))
    pair = LinkPair()
    pair.instrument.send(b"H|\\^&\r" + message + b"L|1|N\r", 0)
    pair.pump()
    fns = [e.fn for e in events_of(pair.computer_events, FrameAccepted)]
    assert fns == [(i + 1) % 8 for i in range(22)]


def test_several_messages_share_one_session() -> None:
    """Messages queued before the bid go out in one ENQ…EOT session."""
    pair = LinkPair()
    pair.instrument.send(SHORT, 0)
    pair.instrument.send(LONG, 0)
    pair.pump()
    sent = b"".join(pair.to_computer)
    assert sent.count(ENQ) == 1 and sent.count(EOT) == 1
    assert accepted_text(pair.computer_events) == SHORT + LONG


def test_contention_instrument_wins_computer_waits_20s() -> None:
    """Both bid at once: the instrument re-bids after 1 s and goes first; the computer at 20 s."""
    pair = LinkPair()
    pair.instrument.send(SHORT, 0)
    pair.computer.send(LONG, 0)
    pair.pump()
    assert [e.cause for e in events_of(pair.instrument_events, BidDeferred)] == ["contention"]
    assert events_of(pair.instrument_events, BidDeferred)[0].retry_at == 1.0
    assert events_of(pair.computer_events, BidDeferred)[0].retry_at == 20.0
    pair.advance(1.0)
    assert events_of(pair.instrument_events, MessageSent) == [MessageSent(SHORT)]
    assert events_of(pair.computer_events, MessageSent) == []
    pair.advance(18.5)  # t = 19.5: still inside the computer's 20 s
    assert events_of(pair.computer_events, MessageSent) == []
    pair.advance(1.0)
    assert events_of(pair.computer_events, MessageSent) == [MessageSent(LONG)]
    assert accepted_text(pair.instrument_events) == LONG


def test_nak_then_retransmission_of_the_same_frame() -> None:
    """A corrupted frame is NAKed and sent again with the same frame number."""
    pair = LinkPair()
    corrupted = []

    def corrupt_first_frame(chunk: bytes) -> bytes:
        if chunk.startswith(STX) and not corrupted:
            corrupted.append(chunk)
            return chunk[:3] + b"#" + chunk[4:]
        return chunk

    pair.tamper_to_computer = corrupt_first_frame
    pair.instrument.send(SHORT, 0)
    pair.pump()
    rejected = events_of(pair.computer_events, FrameRejected)
    assert [r.problem for r in rejected] == [FrameProblem.BAD_CHECKSUM]
    frames = frames_sent(pair.to_computer)
    assert frames[0] == frames[1]  # identical retransmission, same FN
    assert accepted_text(pair.computer_events) == SHORT
    assert events_of(pair.instrument_events, MessageSent) == [MessageSent(SHORT)]


def test_six_failed_tries_abort_the_transfer() -> None:
    """A frame refused six times ends the transfer with EOT and hands the message back."""
    pair = LinkPair()
    pair.tamper_to_computer = lambda c: c[:3] + b"#" + c[4:] if c.startswith(STX) else c
    pair.instrument.send(SHORT, 0)
    pair.pump()
    assert len(events_of(pair.computer_events, FrameRejected)) == 6
    assert len(frames_sent(pair.to_computer)) == 6
    assert pair.to_computer[-1] == EOT
    assert events_of(pair.instrument_events, TransferAborted) == [
        TransferAborted(AbortReason.RETRIES_EXHAUSTED)]
    assert events_of(pair.instrument_events, SendFailed) == [
        SendFailed((SHORT,), AbortReason.RETRIES_EXHAUSTED)]
    assert pair.instrument.queued == 0


def test_duplicate_frame_after_garbled_ack_is_acked_and_not_stored_twice() -> None:
    """When our ACK reaches the sender as NAK, its repeat is ACKed and its text discarded."""
    pair = LinkPair()
    garbled = []

    def garble_second_ack(chunk: bytes) -> bytes:
        if chunk == ACK:
            garbled.append(chunk)
            if len(garbled) == 2:
                return NAK
        return chunk

    pair.tamper_to_instrument = garble_second_ack
    pair.instrument.send(SHORT, 0)
    pair.pump()
    assert len(events_of(pair.computer_events, DuplicateFrame)) == 1
    assert accepted_text(pair.computer_events) == SHORT
    assert events_of(pair.instrument_events, MessageSent) == [MessageSent(SHORT)]


def test_sender_times_out_waiting_for_frame_reply() -> None:
    """No reply to a frame within 15 s: EOT, abort, the message handed back."""
    pair = LinkPair()
    pair.tamper_to_instrument = lambda c: None if c == ACK and pair.computer_events[1:] else c
    pair.instrument.send(SHORT, 0)
    pair.pump()
    assert pair.instrument.state is LinkState.AWAITING_FRAME_REPLY
    pair.advance(14.9)
    assert pair.instrument.state is LinkState.AWAITING_FRAME_REPLY
    pair.advance(0.2)
    assert pair.instrument.state is LinkState.NEUTRAL
    assert pair.to_computer[-1] == EOT
    assert events_of(pair.instrument_events, SendFailed) == [
        SendFailed((SHORT,), AbortReason.REPLY_TIMEOUT)]


def test_no_reply_to_enq_retries_then_gives_up() -> None:
    """Unanswered ENQ: EOT after 15 s, a new bid 10 s later, six bids in all, then failure."""
    pair = LinkPair()
    pair.tamper_to_computer = lambda c: None  # the line is dead
    pair.instrument.send(SHORT, 0)
    pair.advance(200)
    sent = b"".join(pair.to_computer)
    assert sent.count(ENQ) == 6 and sent.count(EOT) == 6
    deferred = events_of(pair.instrument_events, BidDeferred)
    assert [d.retry_at for d in deferred] == [25.0, 50.0, 75.0, 100.0, 125.0]
    assert events_of(pair.instrument_events, SendFailed) == [
        SendFailed((SHORT,), AbortReason.REPLY_TIMEOUT)]


def test_receiver_times_out_waiting_for_next_frame() -> None:
    """The receiver gives up 30 s after the last byte and returns to neutral."""
    link = LinkConnection()
    link.receive_data(ENQ + encode_frame(1, b"H|\\^&\r", final=True), 0)
    assert link.state is LinkState.RECEIVING
    assert link.get_timer() == 30.0
    link.handle_timer(29.9)
    assert link.state is LinkState.RECEIVING
    link.handle_timer(30.0)
    assert link.state is LinkState.NEUTRAL
    assert TransferAborted(AbortReason.RECEIVE_TIMEOUT) in link.events()


def test_receive_timeout_is_configurable_for_roche_15s() -> None:
    """Roche states 15 s for the receiver timer; the profile can say so."""
    link = LinkConnection(LinkConfig(receive_timeout=15))
    link.receive_data(ENQ, 100)
    assert link.get_timer() == 115


def test_receiver_interrupt_sender_finishes_message_then_yields() -> None:
    """EOT in reply to a frame: the sender completes the message, stops, and re-bids after 15 s."""
    pair = LinkPair()
    pair.computer.request_interrupt()
    pair.instrument.send(SHORT, 0)
    pair.instrument.send(LONG, 0)
    pair.pump()
    assert pair.to_instrument[1] == EOT  # reply to the first frame
    assert events_of(pair.instrument_events, MessageSent) == [MessageSent(SHORT)]
    assert accepted_text(pair.computer_events) == SHORT  # nothing lost, nothing partial
    assert events_of(pair.instrument_events, BidDeferred)[-1].cause == "interrupt"
    pair.advance(14.9)
    assert len(events_of(pair.instrument_events, MessageSent)) == 1
    pair.advance(0.2)
    assert events_of(pair.instrument_events, MessageSent)[-1] == MessageSent(LONG)


def test_interrupt_ignored_when_profile_says_so() -> None:
    """With honour_interrupt off, EOT in reply to a frame counts as ACK and sending goes on."""
    pair = LinkPair(instrument=LinkConfig(role=Role.INSTRUMENT, honour_interrupt=False))
    pair.computer.request_interrupt()
    pair.instrument.send(SHORT, 0)
    pair.instrument.send(LONG, 0)
    pair.pump()
    assert len(events_of(pair.instrument_events, MessageSent)) == 2


def test_busy_nak_then_retry_after_10s() -> None:
    """A busy receiver NAKs the ENQ; the sender bids again 10 s later."""
    pair = LinkPair()
    pair.computer.set_busy(True)
    pair.instrument.send(SHORT, 0)
    pair.pump()
    assert pair.to_instrument == [NAK]
    assert events_of(pair.instrument_events, BidDeferred)[0].retry_at == 10.0
    pair.computer.set_busy(False)
    pair.advance(9.9)
    assert events_of(pair.instrument_events, MessageSent) == []
    pair.advance(0.2)
    assert events_of(pair.instrument_events, MessageSent) == [MessageSent(SHORT)]


def test_six_busy_naks_give_up() -> None:
    """After six refused bids the message is handed back as not sent."""
    pair = LinkPair()
    pair.computer.set_busy(True)
    pair.instrument.send(SHORT, 0)
    pair.advance(100)
    assert pair.to_instrument.count(NAK) == 6
    assert events_of(pair.instrument_events, SendFailed) == [
        SendFailed((SHORT,), AbortReason.BID_REFUSED)]


def test_manual_ack_holds_the_ack_until_released() -> None:
    """In manual-ack mode no ACK leaves until the owner calls acknowledge()."""
    link = LinkConnection(LinkConfig(manual_ack=True))
    link.receive_data(ENQ, 0)
    assert link.data_to_send() == ACK
    link.events()
    frame = encode_frame(1, b"L|1|N\r", final=True)
    link.receive_data(frame + EOT, 1)  # the EOT waits behind the held frame
    assert link.data_to_send() == b""
    assert link.state is LinkState.HOLDING_ACK
    assert [type(e) for e in link.events()] == [FrameAccepted]
    link.acknowledge(2)
    assert link.data_to_send() == ACK
    assert [type(e) for e in link.events()] == [TransferEnded]
    assert link.state is LinkState.NEUTRAL


def test_manual_reject_makes_the_sender_resend() -> None:
    """reject() answers NAK; the same frame comes again and is accepted, not a duplicate."""
    pair = LinkPair(computer=LinkConfig(manual_ack=True))
    pair.instrument.send(SHORT, 0)
    pair.pump()
    assert pair.computer.state is LinkState.HOLDING_ACK
    pair.computer.reject(0)
    pair.pump()
    accepted = events_of(pair.computer_events, FrameAccepted)
    assert len(accepted) == 2 and accepted[0].text == accepted[1].text
    assert events_of(pair.computer_events, DuplicateFrame) == []
    for _ in range(10):
        if pair.computer.state is LinkState.HOLDING_ACK:
            pair.computer.acknowledge(0)
            pair.pump()
    assert events_of(pair.instrument_events, MessageSent) == [MessageSent(SHORT)]


def test_acknowledge_without_held_frame_is_local_misuse() -> None:
    """Calling acknowledge() with nothing held raises LocalProtocolError."""
    with pytest.raises(LocalProtocolError):
        LinkConnection().acknowledge(0)


def test_send_empty_message_is_local_misuse() -> None:
    """An empty message is refused locally."""
    with pytest.raises(LocalProtocolError):
        LinkConnection().send(b"", 0)


def test_wrong_frame_number_is_naked_in_strict_mode() -> None:
    """A frame with an unexpected number (not a repeat) gets NAK."""
    link = LinkConnection()
    link.receive_data(ENQ + encode_frame(3, b"H|\\^&\r", final=True), 0)
    assert link.data_to_send() == ACK + NAK
    rejected = events_of(link.events(), FrameRejected)
    assert rejected[0].problem is FrameProblem.BAD_FRAME_NUMBER


def test_wrong_frame_number_is_accepted_with_deviation_when_lenient() -> None:
    """Mindray numbers a frame 8; the lenient profile ACKs it and records a deviation."""
    link = LinkConnection(LinkConfig(lenient_frame_numbers=True))
    raw = STX + b"8L|1|N\r" + ETX
    link.receive_data(ENQ + raw + checksum(raw[1:]) + b"\r\n", 0)
    assert link.data_to_send() == ACK + ACK
    kinds = [e.kind for e in events_of(link.events(), Deviation)]
    assert DeviationKind.FRAME_NUMBER_IGNORED in kinds


def test_oversized_frame_is_accepted_and_reported() -> None:
    """A 26 kB frame is ACKed, with a frame-too-long deviation."""
    link = LinkConnection()
    text = b"M|1|" + b"A" * 26000 + b"\r"
    link.receive_data(ENQ + encode_frame(1, text, final=True), 0)
    assert link.data_to_send() == ACK + ACK
    events = link.events()
    assert events_of(events, FrameAccepted)[0].text == text
    assert events_of(events, Deviation)[0].kind is DeviationKind.FRAME_TOO_LONG


def test_lowercase_checksum_dialect_is_understood() -> None:
    """An instrument writing lower-case checksums is accepted by a strict receiver."""
    pair = LinkPair(instrument=LinkConfig(role=Role.INSTRUMENT, lowercase_checksum=True))
    pair.instrument.send(LONG, 0)
    pair.pump()
    assert accepted_text(pair.computer_events) == LONG
    assert events_of(pair.computer_events, FrameRejected) == []


def test_no_checksum_dialect_both_sides() -> None:
    """With checksum mode NONE on both ends, frames carry no checksum and still flow."""
    cfg = LinkConfig(checksum_mode=ChecksumMode.NONE)
    pair = LinkPair(instrument=LinkConfig(role=Role.INSTRUMENT,
                                          checksum_mode=ChecksumMode.NONE), computer=cfg)
    pair.instrument.send(LONG, 0)
    pair.pump()
    assert accepted_text(pair.computer_events) == LONG
    assert all(f.endswith((ETX + b"\r\n", b"\x17\r\n")) for f in frames_sent(pair.to_computer))


def test_log_only_checksum_accepts_with_deviation() -> None:
    """In log-only mode a bad checksum is ACKed and recorded as a deviation."""
    link = LinkConnection(LinkConfig(checksum_mode=ChecksumMode.LOG_ONLY))
    link.receive_data(ENQ + STX + b"1L|1\r" + ETX + b"00\r\n", 0)
    assert link.data_to_send() == ACK + ACK
    kinds = [e.kind for e in events_of(link.events(), Deviation)]
    assert kinds == [DeviationKind.CHECKSUM_IGNORED]


def test_frame_without_enq_needs_the_enq_optional_switch() -> None:
    """A frame without ENQ is ignored (with a deviation) unless the profile allows it."""
    frame = encode_frame(1, b"H|\\^&\r", final=True)
    strict = LinkConnection()
    strict.receive_data(frame, 0)
    assert strict.data_to_send() == b""
    assert [e.kind for e in strict.events()] == [DeviationKind.DATA_IGNORED]
    lenient = LinkConnection(LinkConfig(enq_optional=True))
    lenient.receive_data(frame, 0)
    assert lenient.data_to_send() == ACK
    events = lenient.events()
    assert events_of(events, FrameAccepted)[0].text == b"H|\\^&\r"
    assert events_of(events, Deviation)[0].kind is DeviationKind.NO_ENQ


def test_repeated_enq_while_receiving_restarts_the_transfer() -> None:
    """A second ENQ after frames voids the partial transfer and is ACKed."""
    link = LinkConnection()
    link.receive_data(ENQ + encode_frame(1, b"H|\\^&\r", final=False) + ENQ, 0)
    assert link.data_to_send() == ACK + ACK + ACK
    events = link.events()
    assert TransferAborted(AbortReason.PEER_RESTARTED) in events
    link.receive_data(encode_frame(1, b"H|\\^&\r", final=True), 1)
    assert link.data_to_send() == ACK


def test_connection_lost_hands_back_unsent_messages() -> None:
    """Losing the transport while sending returns every undelivered message."""
    link = LinkConnection(LinkConfig(role=Role.INSTRUMENT))
    link.send(SHORT, 0)
    link.send(LONG, 0)
    link.receive_data(ACK, 0)
    link.connection_lost(1)
    assert events_of(link.events(), SendFailed) == [
        SendFailed((SHORT, LONG), AbortReason.CONNECTION_LOST)]
    assert link.state is LinkState.NEUTRAL and link.get_timer() is None


def test_garbage_reply_is_ignored_and_the_timer_decides() -> None:
    """A non-reply byte after a frame does not count as NAK: no resend, abort after 15 s."""
    pair = LinkPair()
    pair.tamper_to_instrument = lambda c: b"?" if c == ACK and pair.computer_events[1:] else c
    pair.instrument.send(SHORT, 0)
    pair.pump()
    assert len(frames_sent(pair.to_computer)) == 1
    assert DeviationKind.DATA_IGNORED in [e.kind for e in events_of(pair.instrument_events,
                                                                    Deviation)]
    pair.advance(15)
    assert events_of(pair.instrument_events, SendFailed) == [
        SendFailed((SHORT,), AbortReason.REPLY_TIMEOUT)]


def test_stray_bytes_in_neutral_are_reported_not_answered() -> None:
    """Garbage between transfers is ignored with a data-ignored deviation; CR/LF silently."""
    link = LinkConnection()
    link.receive_data(b"\r\n\r\n", 0)
    assert link.events() == []
    link.receive_data(b"garbage", 0)
    assert link.data_to_send() == b""
    assert [e.kind for e in link.events()] == [DeviationKind.DATA_IGNORED]
