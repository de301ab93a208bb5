"""MllpAnalyzerProtocol answers a block over the size limit AR (built from its MSH), keeps
its head with the size and reason, and goes on with the next block."""

from __future__ import annotations

from structlog.testing import capture_logs
from twisted.internet.task import Clock

from lis_gateway.adapters.mllp_common import MllpConfig

from .test_mllp_protocol import CR, FS, VT, FakeSink, acks, gateway

LIMIT = 300
MSH = b"MSH|^~\\&|AN|LAB|LIS||20240506070809||ORU^R01|BIG1|P|2.5.1\r"
BIG = MSH + b"PID|1||SECRET-PATIENT\rOBX|1|ED|IMG||" + b"A" * 1000 + b"\r"
NEXT = b"MSH|^~\\&|AN|LAB|LIS||20240506070809||ORU^R01|OK1|P|2.5.1\r"
CONFIG = MllpConfig(max_message=LIMIT)


def test_oversized_block_is_answered_ar_and_the_next_one_aa_in_order() -> None:
    """AR with 0357 code 207 and "message too large" for BIG1, then AA for OK1; the head
    (MSH only) is kept with the size; the log has neither the dropped text nor MSH fields."""
    sink = FakeSink()
    proto, transport = gateway(sink, Clock(), CONFIG)
    with capture_logs() as logs:
        proto.dataReceived(VT + BIG + FS + CR + VT + NEXT + FS + CR)
    assert acks(transport.value()) == [("AR", "BIG1", "207"), ("AA", "OK1", "")]
    assert b"message too large: %d bytes, limit %d" % (len(BIG), LIMIT) in transport.value()
    [kept] = sink.incompletes
    assert (kept.raw, kept.offset) == (MSH, 0)
    assert kept.reason == (f"message longer than {LIMIT} bytes: {len(BIG)} bytes received, "
                           f"the first {len(MSH)} kept; answered AR")
    assert [m.control_id for m in sink.messages] == ["OK1"]
    [logged] = [e for e in logs if e["event"] == "message-too-large"]
    assert (logged["size"], logged["answer"]) == (len(BIG), "AR")
    assert "SECRET" not in repr(logs) and "BIG1" not in repr(logs)


def test_enhanced_mode_gets_a_commit_reject_and_an_application_reject() -> None:
    """MSH-15/16 AL|AL: the refusal is CR then AR, as for any refused message."""
    msh = MSH.replace(b"|2.5.1\r", b"|2.5.1|||AL|AL\r")
    proto, transport = gateway(FakeSink(), Clock(), CONFIG)
    proto.dataReceived(VT + msh + b"OBX|1|ED|IMG||" + b"A" * 1000 + b"\r" + FS + CR)
    assert [code for code, _id, _err in acks(transport.value())] == ["CR", "AR"]


def test_oversized_block_without_a_usable_msh_is_kept_and_not_answered() -> None:
    """No MSH at the start: there is nothing to address an ACK to; the head is kept, the
    link goes on."""
    sink = FakeSink()
    proto, transport = gateway(sink, Clock(), CONFIG)
    proto.dataReceived(VT + b"OBX|1|ED|IMG||" + b"A" * 1000 + b"\r" + FS + CR
                       + VT + NEXT + FS + CR)
    assert acks(transport.value()) == [("AA", "OK1", "")]
    [kept] = sink.incompletes
    assert kept.raw == b"OBX|1|ED|IMG||" + b"A" * 1000 + b"\r"  # through its first CR
    assert kept.reason.endswith("not answered (no usable MSH)")
