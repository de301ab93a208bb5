"""Fault cores: what each fault does to the bytes, and an E1381 link that survives them all.

No reactor, no socket: the pair test runs the instrument and computer link
cores back to back through :class:`AstmFaults`, with time as a number.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from datetime import datetime

import pytest

from lis_gateway.astm import constants as C
from lis_gateway.astm.assembler import AstmMessage, MessageAssembler
from lis_gateway.astm.events import (
    FrameAccepted,
    MessageSent,
    SendFailed,
    TransferAborted,
    TransferEnded,
)
from lis_gateway.astm.frames import ChecksumMode, check_frame, encode_frame
from lis_gateway.astm.link import LinkConfig, LinkConnection, Role
from lis_gateway.hl7.mllp import frame
from lis_gateway.sim.astm_styles import ROCHE
from lis_gateway.sim.content import make_sample
from lis_gateway.sim.faults import (
    DEFAULT_PROBABILITY,
    AstmFaults,
    Decider,
    FaultKind,
    MllpFaults,
    parse_fault,
)

WHEN = datetime(2026, 3, 4, 9, 30)
FRAME = encode_frame(1, b"R|1|^^^989/|140|mmol/l\r", final=True)
CONTROL = frozenset(range(0x20)) | {ord("M")}


def _decider(**probabilities: float) -> Decider:
    return Decider({FaultKind(k.replace("_", "-")): p for k, p in probabilities.items()},
                   random.Random(1))


def test_fault_options() -> None:
    """``KIND[:PROB]``; a missing probability is the default; bad input says why."""
    assert parse_fault("garbage") == (FaultKind.GARBAGE, DEFAULT_PROBABILITY)
    assert parse_fault("lost-ack:0.5") == (FaultKind.LOST_ACK, 0.5)
    for bad, why in (("noise", "unknown fault"), ("drop:2", "between 0 and 1"),
                     ("drop:often", "not a number")):
        with pytest.raises(argparse.ArgumentTypeError, match=why):
            parse_fault(bad)


def test_bad_checksum_is_refused_by_the_receiver() -> None:
    """Only the two checksum characters change; E1381 verification then fails."""
    faults = AstmFaults(_decider(bad_checksum=1.0), can_close=True)
    out = faults.outgoing(C.ENQ).data + faults.outgoing(FRAME).data
    assert out[:1] == C.ENQ and out[1:-4] == FRAME[:-4] and out[-4:-2] != FRAME[-4:-2]
    assert not check_frame(out[1:-2], ChecksumMode.STRICT).checksum_ok
    assert faults.injected == [FaultKind.BAD_CHECKSUM]


def test_garbage_is_printable_noise_before_enq_and_frames() -> None:
    """Noise carries no control character (and no M), the frame after it is intact."""
    faults = AstmFaults(_decider(garbage=1.0), can_close=True)
    enq = faults.outgoing(C.ENQ).data
    framed = faults.outgoing(FRAME).data
    assert enq.endswith(C.ENQ) and len(enq) > 3
    assert framed.endswith(FRAME) and len(framed) > len(FRAME) + 2
    noise = enq[:-1] + framed[:-len(FRAME)]
    assert not set(noise) & CONTROL
    assert faults.injected == [FaultKind.GARBAGE, FaultKind.GARBAGE]


def test_drop_cuts_the_frame_and_closes_tcp_but_not_a_serial_line() -> None:
    """Half a frame goes out; TCP closes and writes nothing more; serial carries on."""
    tcp = AstmFaults(_decider(drop=1.0), can_close=True)
    cut = tcp.outgoing(FRAME)
    assert cut.close and FRAME.startswith(cut.data) and len(cut.data) < len(FRAME)
    assert tcp.outgoing(C.EOT).data == b""
    serial = AstmFaults(_decider(drop=1.0), can_close=False)
    assert not serial.outgoing(FRAME).close
    assert serial.outgoing(C.EOT).data == C.EOT


def test_lost_ack_drops_only_the_acknowledgement_of_a_frame() -> None:
    """The ACK of an ENQ passes; the ACK of a frame is lost; a NAK always passes."""
    faults = AstmFaults(_decider(lost_ack=1.0), can_close=True)
    faults.outgoing(C.ENQ)
    assert faults.incoming(C.ACK) == C.ACK
    faults.outgoing(FRAME)
    assert faults.incoming(C.ACK) == b""
    faults.outgoing(FRAME)
    assert faults.incoming(C.NAK) == C.NAK
    assert faults.injected == [FaultKind.LOST_ACK]


def test_mllp_lost_ack_drops_a_whole_block_even_split_over_reads() -> None:
    """An answer cut over three reads is dropped whole; bytes outside blocks pass."""
    faults = MllpFaults(_decider(lost_ack=1.0))
    ack = frame(b"MSH|^~\\&|||||20260304||ACK|1|P|2.3.1\rMSA|AA|1\r")
    got = faults.incoming(b"\r\n" + ack[:5]) + faults.incoming(ack[5:20]) + \
        faults.incoming(ack[20:])
    assert got == b"\r\n"
    assert faults.injected == [FaultKind.LOST_ACK]
    keep = MllpFaults(_decider())
    assert keep.incoming(ack[:7]) + keep.incoming(ack[7:]) == ack


def test_mllp_drop_and_garbage() -> None:
    """Garbage goes before VT; a drop writes half a message and closes."""
    message = frame(b"MSH|^~\\&|||||20260304||ORU^R01|1|P|2.3.1\r")
    noisy = MllpFaults(_decider(garbage=1.0)).outgoing(message)
    assert noisy.data.endswith(message) and not set(noisy.data[:-len(message)]) & CONTROL
    cut = MllpFaults(_decider(drop=1.0)).outgoing(message)
    assert cut.close and message.startswith(cut.data) and len(cut.data) < len(message)


# ------------------------------------------------------------------ the pair


def _pair_run(messages: list[bytes], decider: Decider) -> tuple[list[bytes], Counter[bytes]]:
    """Send ``messages`` from an instrument core to a computer core through the faults.

    A message the instrument gives up on (six NAKs, no reply, connection
    dropped) is sent again on the next connection, as the simulator does.

    Returns:
        the messages the instrument saw acknowledged, and how often the
        computer assembled each message.
    """
    now = 0.0
    acked: list[bytes] = []
    received: Counter[bytes] = Counter()
    waiting = list(messages)

    def connect() -> tuple[LinkConnection, LinkConnection, MessageAssembler, AstmFaults]:
        inst = LinkConnection(LinkConfig(role=Role.INSTRUMENT, reply_timeout=1.0,
                                         busy_retry_delay=0.5, per_record_frames=False))
        comp = LinkConnection(LinkConfig(role=Role.COMPUTER, receive_timeout=3.0))
        for message in waiting:
            inst.send(message, now)
        waiting.clear()
        return inst, comp, MessageAssembler("latin-1"), AstmFaults(decider, can_close=True)

    def collect(items: list[object]) -> None:
        for item in items:
            if isinstance(item, AstmMessage):
                received[item.raw] += 1

    inst, comp, assembler, faults = connect()
    dropped = False
    for _step in range(20000):
        if len(acked) == len(messages):
            return acked, received
        moved = False
        out = inst.data_to_send()
        if out:
            moved = True
            wire = faults.outgoing(out)
            comp.receive_data(wire.data, now)
            if wire.close:
                inst.connection_lost(now)
                comp.connection_lost(now)
                dropped = True
        back = comp.data_to_send()
        if back:
            moved = True
            inst.receive_data(faults.incoming(back), now)
        for event in comp.events():
            if isinstance(event, FrameAccepted):
                collect(assembler.add_text(event.text, block_end=event.final,
                                           offset=event.offset))
            elif isinstance(event, TransferEnded):
                collect(assembler.end_transfer())
            elif isinstance(event, TransferAborted):
                collect(assembler.end_transfer(aborted=event.reason.value))
        for event in inst.events():
            moved = True
            if isinstance(event, MessageSent):
                acked.append(event.message)
            elif isinstance(event, SendFailed):
                waiting.extend(event.messages)
        if waiting and dropped:  # given back after a drop: a new connection
            collect(assembler.end_transfer(aborted="connection lost"))
            inst, comp, assembler, faults = connect()
            dropped = False
        elif waiting:  # given back after an abort: a new session on this connection
            for message in waiting:
                inst.send(message, now)
            waiting.clear()
        if not moved:
            timers = [t for t in (inst.get_timer(), comp.get_timer()) if t is not None]
            now = max(now, min(timers)) if timers else now + 0.5
            inst.handle_timer(now)
            comp.handle_timer(now)
    raise AssertionError("the pair did not finish")


def test_the_link_recovers_from_every_fault_and_nothing_is_lost() -> None:
    """Six multi-frame cobas messages through all four faults: each is acknowledged once,
    each reaches the computer whole, and only a lost ACK of a last frame makes a repeat."""
    rng = random.Random(4)
    messages = [ROCHE.message(make_sample(seq, "R0001", ROCHE.panel(seq), WHEN, rng))
                for seq in range(1, 7)]
    decider = Decider({FaultKind.BAD_CHECKSUM: 0.15, FaultKind.LOST_ACK: 0.1,
                       FaultKind.DROP: 0.08, FaultKind.GARBAGE: 0.2}, random.Random(9))
    acked, received = _pair_run(messages, decider)
    assert sorted(acked) == sorted(messages)
    assert set(received) == set(messages)
    assert set(decider.counts) == set(FaultKind), decider.counts
    repeats = sum(n - 1 for n in received.values())
    assert repeats <= decider.counts[FaultKind.LOST_ACK]

