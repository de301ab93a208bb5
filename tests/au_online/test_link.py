"""The host end of the AU online link: byte tables, holds, duplicates, faults and timers."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lis_gateway.au_online import (
    AbortReason,
    AuConfig,
    AuInput,
    AuLink,
    AuMessage,
    AuState,
    BlockAccepted,
    BlockProblem,
    BlockRejected,
    Deviation,
    DeviationKind,
    DuplicateBlock,
    Event,
    LocalProtocolError,
    TextAborted,
    TextReceived,
    encode_block,
    encode_text,
)
from lis_gateway.au_online.blocks import BlockScanner, TokenKind
from lis_gateway.au_online.link import LOCAL_INPUTS, TRANSITIONS

ACK, NAK, STX, ETX, ENQ, EOT = b"\x06", b"\x15", b"\x02", b"\x03", b"\x05", b"\x04"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "astm" / "beckman-au"
#: The AU480 capture beckman_3's text (between its ENQ and EOT).
TEXT = (FIXTURES / "beckman_3.bin").read_bytes()[1:-1]
HELD = AuConfig(manual_ack=True)


def feed(link: AuLink, data: bytes, now: float = 0.0) -> tuple[bytes, list[Event]]:
    link.receive_data(data, now)
    return link.data_to_send(), link.events()


def received(events: list[Event]) -> list[AuMessage]:
    return [e.message for e in events if isinstance(e, TextReceived)]


# ---------------------------------------------------------------- the table


def test_every_peer_input_has_a_row_in_every_state() -> None:
    """Only local inputs may lack a row, and they have rows only in HOLDING_ACK."""
    for state in AuState:
        for inp in AuInput:
            if inp in LOCAL_INPUTS:
                assert ((state, inp) in TRANSITIONS) == (state is AuState.HOLDING_ACK)
            else:
                assert (state, inp) in TRANSITIONS, (state, inp)


@pytest.mark.parametrize("state", [AuState.IDLE, AuState.CONTINUING])
def test_local_answers_without_a_held_text_raise(state: AuState) -> None:
    """acknowledge() or reject() with nothing held is local misuse."""
    link = AuLink(HELD)
    if state is AuState.CONTINUING:
        feed(link, encode_text(TEXT, max_block=20)[0])
    assert link.state is state
    with pytest.raises(LocalProtocolError):
        link.acknowledge(0.0)
    with pytest.raises(LocalProtocolError):
        link.reject(0.0)


# ------------------------------------------------------------ byte tables

#: (bytes in, bytes out, distinction codes of the texts received)
AUTO_ACK_TABLE = [
    (encode_block(TEXT), ACK, ["D "]),
    (encode_block(b"DB") + encode_block(TEXT) + encode_block(b"DE"), ACK * 3, ["DB", "D ", "DE"]),
    (b"".join(encode_text(TEXT, max_block=16)), ACK * 5, ["D "]),
    (STX + TEXT + ETX + b"\x00", NAK, []),
    (ENQ + b"noise" + encode_block(TEXT) + EOT, ACK, ["D "]),
    (STX + b"D 00" + STX + b"DB" + ETX + b"\x05", ACK, ["DB"]),
]


@pytest.mark.parametrize(("data", "out", "codes"), AUTO_ACK_TABLE)
def test_byte_table_whole_and_byte_by_byte(data: bytes, out: bytes, codes: list[str]) -> None:
    """The same replies and texts whether the bytes come in one read or one at a time."""
    whole = AuLink()
    sent, events = feed(whole, data)
    assert sent == out and [m.kind for m in received(events)] == codes
    single = AuLink()
    replies, texts = b"", []
    for i in range(len(data)):
        r, e = feed(single, data[i:i + 1])
        replies += r
        texts += received(e)
    assert replies == out and texts == received(events)


def test_a_text_is_received_with_its_raw_bytes() -> None:
    """The message keeps the block as received and the text without framing."""
    block = encode_block(TEXT)
    _, events = feed(AuLink(), b"xx" + block)
    (msg,) = received(events)
    assert msg == AuMessage("D ", block, TEXT, 2, 1)


def test_without_bcc_etx_ends_the_text() -> None:
    """BCC off: ACK right after ETX."""
    link = AuLink(AuConfig(with_bcc=False))
    sent, events = feed(link, STX + TEXT + ETX)
    assert sent == ACK and received(events)[0].raw == STX + TEXT + ETX


# ------------------------------------------------------------ held ACK


def test_result_text_ack_waits_for_acknowledge() -> None:
    """Manual ack: nothing goes out until the owner says the text is safe."""
    link = AuLink(HELD)
    sent, events = feed(link, encode_block(TEXT))
    assert sent == b"" and link.state is AuState.HOLDING_ACK
    assert [e.held for e in events if isinstance(e, TextReceived)] == [True]
    assert link.get_timer() is None
    link.acknowledge(1.0)
    assert link.data_to_send() == ACK and link.state is AuState.IDLE


@pytest.mark.parametrize("code", [b"DB", b"DE", b"DA", b"DR"])
def test_markers_and_ignored_kinds_are_acked_at_once(code: bytes) -> None:
    """DB/DE and DA/DR texts are acknowledged at once even in manual-ack mode."""
    sent, events = feed(AuLink(HELD), encode_block(code + b" 0001"))
    assert sent == ACK and [e.held for e in events if isinstance(e, TextReceived)] == [False]


@pytest.mark.parametrize("code", [b"D ", b"d ", b"DH", b"dH", b"DQ", b"R ", b"ZZ"])
def test_results_queries_and_unknown_texts_are_held(code: bytes) -> None:
    """Result, QC, request and unknown texts go to the owner before their ACK."""
    sent, events = feed(AuLink(HELD), encode_block(code + b"0001"))
    assert sent == b"" and received(events)[0].kind == code.decode()


def test_store_failure_naks_and_the_retransmission_is_taken() -> None:
    """reject() answers NAK; the same text again is received again and can be ACKed."""
    link = AuLink(HELD)
    block = encode_block(TEXT)
    feed(link, block)
    link.reject(0.5)
    assert link.data_to_send() == NAK and link.state is AuState.IDLE
    sent, events = feed(link, block, 1.0)
    assert sent == b"" and received(events)[0].raw == block
    link.acknowledge(1.5)
    assert link.data_to_send() == ACK


def test_reject_of_a_multi_block_text_waits_for_its_last_block_again() -> None:
    """Only the last block is sent again after NAK: the text continues from before it."""
    blocks = encode_text(TEXT, max_block=30)
    link = AuLink(HELD)
    sent, _ = feed(link, b"".join(blocks))
    assert sent == ACK * 2
    link.reject(0.0)
    assert link.data_to_send() == NAK and link.state is AuState.CONTINUING
    sent, events = feed(link, blocks[-1])
    (msg,) = received(events)
    assert msg.text == TEXT and msg.raw == b"".join(blocks) and msg.blocks == 3


def test_input_while_holding_waits_for_the_answer() -> None:
    """A text arriving while one is held is processed after the held ACK went out."""
    link = AuLink(HELD)
    feed(link, encode_block(TEXT))
    sent, events = feed(link, encode_block(b"DE"))
    assert sent == b"" and events == []
    link.acknowledge(0.0)
    assert link.data_to_send() == ACK + ACK
    assert [m.kind for m in received(link.events())] == ["DE"]


# ------------------------------------------------------------ faults


def test_bad_bcc_is_naked_then_the_retransmission_accepted() -> None:
    """A corrupted block gets NAK with the reason; the good copy gets ACK."""
    link = AuLink()
    good = encode_block(TEXT)
    bad = good[:-1] + bytes([good[-1] ^ 0x01])
    sent, events = feed(link, bad)
    assert sent == NAK and received(events) == []
    (rejected,) = [e for e in events if isinstance(e, BlockRejected)]
    assert rejected.problem is BlockProblem.BAD_BCC and rejected.offset == 0
    sent, events = feed(link, good)
    assert sent == ACK and received(events)[0].text == TEXT


def test_etb_blocks_are_acked_one_by_one_and_joined() -> None:
    """Each ETB block is ACKed on arrival; the text is handed over once, at ETX."""
    blocks = encode_text(TEXT, max_block=25)
    link = AuLink()
    for block in blocks[:-1]:
        sent, events = feed(link, block)
        assert sent == ACK and received(events) == []
        assert any(isinstance(e, BlockAccepted) for e in events)
        assert link.state is AuState.CONTINUING
    sent, events = feed(link, blocks[-1])
    (msg,) = received(events)
    assert sent == ACK and msg.text == TEXT and msg.blocks == len(blocks)


def test_bad_bcc_in_a_continuation_block_keeps_the_text() -> None:
    """NAK of a middle block; its resend continues the same text."""
    blocks = encode_text(TEXT, max_block=25)
    link = AuLink()
    feed(link, blocks[0])
    bad = blocks[1][:-1] + bytes([blocks[1][-1] ^ 0xFF])
    assert feed(link, bad)[0] == NAK and link.state is AuState.CONTINUING
    _, events = feed(link, b"".join(blocks[1:]))
    assert received(events)[0].text == TEXT


def test_a_block_naked_as_often_as_the_analyzer_tries_gives_up_the_text() -> None:
    """After 4 NAKs in a row (1 + 3 retries) the partial text is handed out to be kept."""
    blocks = encode_text(TEXT, max_block=25)
    link = AuLink()
    feed(link, blocks[0])
    bad = blocks[1][:-1] + bytes([blocks[1][-1] ^ 0xFF])
    for _ in range(3):
        assert feed(link, bad)[0] == NAK and link.state is AuState.CONTINUING
    sent, events = feed(link, bad)
    assert sent == NAK and link.state is AuState.IDLE
    (aborted,) = [e for e in events if isinstance(e, TextAborted)]
    assert aborted.reason is AbortReason.RETRIES_EXHAUSTED and aborted.raw == blocks[0]


def test_lost_ack_of_an_etb_block_is_a_duplicate() -> None:
    """The same ETB block again (our ACK was lost) is ACKed and not joined twice."""
    blocks = encode_text(TEXT, max_block=25)
    link = AuLink()
    feed(link, blocks[0])
    sent, events = feed(link, blocks[0])
    assert sent == ACK and events == [DuplicateBlock(len(blocks[0]))]
    _, events = feed(link, b"".join(blocks[1:]))
    assert received(events)[0].text == TEXT


def test_lost_ack_of_the_last_block_of_a_multi_block_text_is_a_duplicate() -> None:
    """After a multi-block text, its last block again is ACKed and dropped."""
    blocks = encode_text(TEXT, max_block=25)
    link = AuLink()
    feed(link, b"".join(blocks))
    sent, events = feed(link, blocks[-1])
    assert sent == ACK and [type(e) for e in events] == [DuplicateBlock]


def test_a_one_block_text_resent_is_handed_over_again() -> None:
    """A whole text again is a text: the owner (the store) recognises the repeat."""
    link = AuLink()
    block = encode_block(TEXT)
    feed(link, block)
    sent, events = feed(link, block)
    assert sent == ACK and received(events)[0].raw == block


def test_control_bytes_and_garbage_are_deviations() -> None:
    """ENQ, EOT and stray bytes are recorded and answered with nothing."""
    sent, events = feed(AuLink(), ENQ + b"\xff\xfe" + EOT)
    assert sent == b""
    assert [(e.kind, e.detail) for e in events if isinstance(e, Deviation)] == [
        (DeviationKind.LINK_CONTROL, "0x05"), (DeviationKind.STRAY_BYTES, "2 bytes"),
        (DeviationKind.LINK_CONTROL, "0x04")]


def test_a_block_that_never_ends_is_dropped_after_the_receive_timeout() -> None:
    """A partial block arms the timer at the last byte + 30 s; firing drops it."""
    link = AuLink()
    feed(link, STX + b"D 0006", now=10.0)
    assert link.get_timer() == 40.0
    link.handle_timer(39.9)
    assert link.events() == []
    link.handle_timer(40.0)
    (deviation,) = link.events()
    assert isinstance(deviation, Deviation) and deviation.kind is DeviationKind.BROKEN_BLOCK
    assert link.get_timer() is None and link.data_to_send() == b""


def test_a_text_that_never_ends_is_given_up_and_handed_out() -> None:
    """CONTINUING with no byte for the timeout: TextAborted with the accepted blocks."""
    blocks = encode_text(TEXT, max_block=25)
    link = AuLink(AuConfig(receive_timeout=15.0))
    feed(link, blocks[0], now=1.0)
    assert link.get_timer() == 16.0
    link.handle_timer(16.0)
    (aborted,) = link.events()
    assert aborted == TextAborted(AbortReason.RECEIVE_TIMEOUT, blocks[0], 0)
    assert link.state is AuState.IDLE and link.get_timer() is None


def test_a_text_over_the_limit_is_naked_and_kept() -> None:
    """The block that would pass max_text is NAKed; the text is given up with its bytes."""
    blocks = encode_text(TEXT, max_block=30)
    link = AuLink(AuConfig(max_text=50))
    assert feed(link, blocks[0])[0] == ACK
    sent, events = feed(link, blocks[1])
    assert sent == NAK
    aborted = [e for e in events if isinstance(e, TextAborted)]
    assert aborted[0].reason is AbortReason.TOO_LONG and aborted[0].raw == blocks[0] + blocks[1]
    sent, events = feed(AuLink(AuConfig(max_text=50)), encode_block(TEXT))
    assert sent == NAK and [e.reason for e in events if isinstance(e, TextAborted)] == [
        AbortReason.TOO_LONG]


def test_connection_lost_in_mid_text_hands_out_the_blocks() -> None:
    """A close while continuing gives up the text; a partial block is a deviation."""
    blocks = encode_text(TEXT, max_block=25)
    link = AuLink()
    feed(link, blocks[0] + STX + b"D")
    link.connection_lost(5.0)
    events = link.events()
    assert [type(e) for e in events] == [Deviation, TextAborted]
    assert link.state is AuState.IDLE


@settings(max_examples=200)
@given(st.lists(st.sampled_from([encode_block(TEXT), encode_block(b"DB"), encode_block(b"DE"),
                                 *encode_text(TEXT, max_block=25), STX, ETX, ENQ, b"x",
                                 encode_block(TEXT)[:-1] + b"\x00"]), max_size=12),
       st.lists(st.booleans(), max_size=12))
def test_any_input_gets_one_reply_per_block_and_never_raises(pieces: list[bytes],
                                                             store_ok: list[bool]) -> None:
    """Whatever arrives, with the owner answering at once, each block gets one ACK or NAK."""
    link = AuLink(HELD)
    answers = iter(store_ok)
    replies = b""
    for piece in pieces:
        link.receive_data(piece, 0.0)
        while link.state is AuState.HOLDING_ACK:
            if next(answers, True):
                link.acknowledge(0.0)
            else:
                link.reject(0.0)
        replies += link.data_to_send()
        link.events()
    link.handle_timer(1e9)
    complete = [t for t in BlockScanner().feed(b"".join(pieces))
                if t.kind in (TokenKind.BLOCK, TokenKind.OVERSIZE)]
    assert len(replies) == len(complete) and set(replies) <= {ACK[0], NAK[0]}


def test_a_copy_of_the_held_block_is_answered_once() -> None:
    """The analyzer resends while the store works: one ACK answers both, none is stale."""
    link = AuLink(HELD)
    block = encode_block(TEXT)
    feed(link, block)
    sent, events = feed(link, block, 5.0)
    assert sent == b"" and events == [DuplicateBlock(len(block))]
    link.acknowledge(6.0)
    assert link.data_to_send() == ACK and link.events() == []


def test_a_damaged_copy_of_the_held_block_is_dropped_without_an_answer() -> None:
    """A bad BCC while the answer is held: no NAK (it would answer the held block)."""
    link = AuLink(HELD)
    block = encode_block(TEXT)
    feed(link, block)
    sent, events = feed(link, block[:-1] + bytes([block[-1] ^ 0x01]), 5.0)
    assert sent == b""
    assert [(type(e), getattr(e, "kind", None)) for e in events] == [
        (Deviation, DeviationKind.BLOCK_WHILE_HELD)]
    link.reject(6.0)
    assert link.data_to_send() == NAK and link.events() == []
