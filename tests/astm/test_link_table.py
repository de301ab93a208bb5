"""The link state table, checked exhaustively and under random line faults."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lis_gateway.astm.errors import LocalProtocolError
from lis_gateway.astm.events import MessageSent, SendFailed, UnexpectedInput
from lis_gateway.astm.frames import ChecksumMode, Token, TokenKind, check_frame, encode_frame
from lis_gateway.astm.link import (
    LOCAL_INPUTS,
    TRANSITIONS,
    LinkConfig,
    LinkConnection,
    LinkInput,
    LinkState,
    Role,
)
from tests.helpers import LinkPair, accepted_text, events_of

ENQ, ACK = b"\x05", b"\x06"
MESSAGE = b"H|\\^&\rP|1\rO|1|S1\rR|1|^^^GLU|" + b"5" * 300 + b"\rL|1|N\r"


def link_in(state: LinkState) -> LinkConnection:
    """A link driven through real transitions into ``state``."""
    link = LinkConnection(LinkConfig(manual_ack=state is LinkState.HOLDING_ACK,
                                     manual_enq=state is LinkState.HOLDING_ENQ))
    if state is LinkState.AWAITING_ENQ_REPLY:
        link.send(MESSAGE, 0)
    elif state is LinkState.AWAITING_FRAME_REPLY:
        link.send(MESSAGE, 0)
        link.receive_data(ACK, 0)
    elif state in (LinkState.RECEIVING, LinkState.HOLDING_ENQ):
        link.receive_data(ENQ, 0)
    elif state is LinkState.HOLDING_ACK:
        link.receive_data(ENQ + encode_frame(1, b"H|\\^&\r", final=True), 0)
    link.data_to_send()
    link.events()
    assert link.state is state
    return link


def token_for(inp: LinkInput) -> Token | None:
    """A plausible received token for a peer input."""
    controls = {LinkInput.RECV_ENQ: b"\x05", LinkInput.RECV_ACK: b"\x06",
                LinkInput.RECV_NAK: b"\x15", LinkInput.RECV_EOT: b"\x04"}
    if inp in controls:
        return Token(TokenKind.CONTROL, controls[inp], 0)
    if inp is LinkInput.RECV_OTHER:
        return Token(TokenKind.NOISE, b"?", 0)
    if inp.name.startswith("FRAME"):
        return Token(TokenKind.FRAME, encode_frame(1, b"R|1\r", final=True)[:-2], 0)
    return None


@pytest.mark.parametrize("state", list(LinkState))
@pytest.mark.parametrize("inp", list(LinkInput))
def test_every_state_input_pair_transitions_or_reports(state: LinkState, inp: LinkInput) -> None:
    """Each (state, input) either follows its table row or yields a documented error."""
    link = link_in(state)
    token = token_for(inp)
    if token is not None and token.kind is TokenKind.FRAME:
        link._checked = check_frame(token.data, ChecksumMode.STRICT)
    row = TRANSITIONS.get((state, inp))
    if row is None and inp in LOCAL_INPUTS:
        with pytest.raises(LocalProtocolError):
            link._dispatch(inp, 1.0, token)
        assert link.state is state
        return
    link._dispatch(inp, 1.0, token)
    if row is None:
        assert UnexpectedInput(state.value, inp.value) in link.events()
        assert link.state is LinkState.NEUTRAL
    else:
        assert link.state in row[1]
    if link.state is LinkState.NEUTRAL:  # never half-open
        assert link.get_timer() is None or link.queued > 0
        assert not link._scanner.in_frame


def test_table_names_real_methods() -> None:
    """Every action named in the table exists on LinkConnection."""
    for method, _ in TRANSITIONS.values():
        assert callable(getattr(LinkConnection, method))


def test_every_peer_input_has_a_row_in_every_reachable_state() -> None:
    """Peer bytes that can arrive in a state are all handled by a row (no surprises in use)."""
    peer = [LinkInput.RECV_ENQ, LinkInput.RECV_ACK, LinkInput.RECV_NAK, LinkInput.RECV_EOT,
            LinkInput.RECV_OTHER]
    for state in LinkState:
        for inp in peer:
            assert (state, inp) in TRANSITIONS, (state, inp)


faults = st.lists(st.sampled_from(["ok", "ok", "ok", "drop", "corrupt", "noise"]),
                  min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(to_computer=faults, to_instrument=faults)
def test_lossy_line_delivers_exactly_or_hands_back(to_computer: list[str],
                                                  to_instrument: list[str]) -> None:
    """Whatever the line drops or corrupts, the sender ends with the message sent or returned."""
    pair = LinkPair(instrument=LinkConfig(role=Role.INSTRUMENT))

    def tamper(plan: list[str]):
        it = iter(plan)

        def apply(chunk: bytes) -> bytes | None:
            action = next(it, "ok")
            if action == "drop":
                return None
            if action == "corrupt":
                return bytes([chunk[0] ^ 0x40]) + chunk[1:]
            if action == "noise":
                return b"\xff" + chunk
            return chunk
        return apply

    pair.tamper_to_computer = tamper(to_computer)
    pair.tamper_to_instrument = tamper(to_instrument)
    pair.instrument.send(MESSAGE, 0)
    pair.advance(600)
    sent = events_of(pair.instrument_events, MessageSent)
    failed = events_of(pair.instrument_events, SendFailed)
    assert len(sent) + len(failed) == 1
    if sent:
        assert MESSAGE in accepted_text(pair.computer_events)
    else:
        assert failed[0].messages == (MESSAGE,)
    assert pair.instrument.state is LinkState.NEUTRAL
    assert pair.computer.state is LinkState.NEUTRAL
    assert pair.instrument.queued == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=40), st.floats(0, 50)), max_size=30))
def test_arbitrary_bytes_and_times_never_raise(chunks: list[tuple[bytes, float]]) -> None:
    """A computer-role link survives any byte stream and timing without raising."""
    link = LinkConnection(LinkConfig(enq_optional=True))
    now = 0.0
    for data, dt in chunks:
        now += dt
        link.handle_timer(now)
        link.receive_data(data, now)
        link.data_to_send()
        link.events()
    assert link.state in LinkState
