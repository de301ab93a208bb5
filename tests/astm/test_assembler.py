"""Frame texts joined into E1394 messages; incomplete transmissions kept aside."""

from __future__ import annotations

import pytest

from lis_gateway.astm.assembler import AstmMessage, IncompleteTransmission, MessageAssembler
from lis_gateway.astm.records import ManufacturerRecord, PatientRecord, ResultRecord


def only_messages(items: list) -> list[AstmMessage]:
    """The AstmMessage items, asserting there is nothing else."""
    assert all(isinstance(i, AstmMessage) for i in items), items
    return items


def test_record_cut_inside_a_field_across_etb_frames() -> None:
    """`^DEFA` + `ULT` (erba_2) is joined before splitting on CR and '|'."""
    asm = MessageAssembler()
    assert asm.add_text(b"H|`^&\rP|1\rO|1|S1\rR|1|^^^NA|140||^DEFA", block_end=False) == []
    (msg,) = only_messages(asm.add_text(b"ULT|N\rL|1|N\r", block_end=True))
    result = msg.decoded.records[3]
    assert isinstance(result, ResultRecord) and result.reference_range == "^DEFAULT"
    assert msg.terminated and msg.problems == ()


def test_several_messages_in_one_transfer() -> None:
    """Five H…L messages (ARCHITECT) come out as five messages."""
    asm = MessageAssembler()
    out = []
    for i in range(5):
        for rec in (b"H|\\^&", b"P|1", b"O|1|S%d" % i, b"R|1|^^^A|%d" % i, b"L|1"):
            out += asm.add_text(rec + b"\r", block_end=True)
    out += asm.end_transfer()
    messages = only_messages(out)
    assert len(messages) == 5
    assert [m.decoded.records[3].value for m in messages] == ["0", "1", "2", "3", "4"]


def test_message_is_delivered_only_when_its_block_ends() -> None:
    """An L record inside an ETB frame waits for the ETX (E1381: only ETX completes)."""
    asm = MessageAssembler()
    assert asm.add_text(b"H|\\^&\rL|1|N\r", block_end=False) == []
    assert len(only_messages(asm.add_text(b"", block_end=True))) == 1


def test_missing_terminator_at_eot_is_delivered_with_a_warning() -> None:
    """No L record but a normal EOT after ETX: delivered, marked unterminated."""
    asm = MessageAssembler()
    assert asm.add_text(b"H|\\^&\rP|1\rO|1|S1\rR|1|^^^A|1\r", block_end=True) == []
    (msg,) = only_messages(asm.end_transfer())
    assert not msg.terminated
    assert "no L (terminator) record before EOT" in [p.message for p in msg.problems]


def test_abort_keeps_the_text_as_incomplete() -> None:
    """A receive timeout mid-message yields an IncompleteTransmission with the raw text."""
    asm = MessageAssembler()
    asm.add_text(b"H|\\^&\rP|1\rO|1|S1\rR|1|^^^A|1", block_end=False)
    (item,) = asm.end_transfer(aborted="receive-timeout")
    assert isinstance(item, IncompleteTransmission)
    assert item.raw == b"H|\\^&\rP|1\rO|1|S1\rR|1|^^^A|1"
    assert item.reason == "receive-timeout"


def test_eot_after_etb_frame_is_incomplete() -> None:
    """EOT right after an ETB frame voids the unfinished low-level message."""
    asm = MessageAssembler()
    asm.add_text(b"H|\\^&\rR|1|^^^A|1\r", block_end=False)
    (item,) = asm.end_transfer()
    assert isinstance(item, IncompleteTransmission)


def test_complete_message_survives_a_later_abort() -> None:
    """A message finished before the abort is delivered; only the rest is incomplete."""
    asm = MessageAssembler()
    done = asm.add_text(b"H|\\^&\rL|1|N\r", block_end=True)
    asm.add_text(b"H|\\^&\rP|1", block_end=False)
    rest = asm.end_transfer(aborted="connection-lost")
    assert len(only_messages(done)) == 1
    assert [type(i) for i in rest] == [IncompleteTransmission]


def test_new_header_without_terminator_closes_the_previous_message() -> None:
    """H after H without L: the first message is delivered as unterminated."""
    asm = MessageAssembler()
    out = asm.add_text(b"H|\\^&\rP|1\rH|\\^&\rL|1\r", block_end=True)
    first, second = only_messages(out)
    assert not first.terminated and second.terminated


def test_record_not_ended_by_cr_before_etx_is_kept() -> None:
    """`L|1|N<ETX>` without its CR still ends the record (with a warning)."""
    asm = MessageAssembler()
    (msg,) = only_messages(asm.add_text(b"H|\\^&\rL|1|N", block_end=True))
    assert msg.terminated
    assert any("not ended by CR" in p.message for p in msg.problems)


@pytest.mark.parametrize(("encoding", "name"), [
    ("latin-1", "MÜLLER^JÖRG"),
    ("cp1252", "BESTÄTIGUNG^€"),
    ("utf-8", "NGUYỄN^VĂN ĐỨC"),
    ("cp1258", "NGUYÊN^VĂN Đ"),
])
def test_per_link_encoding(encoding: str, name: str) -> None:
    """Text is decoded with the link's encoding; raw bytes are kept as received."""
    raw = b"H|\\^&\rP|1||||" + name.encode(encoding) + b"\rL|1\r"
    (msg,) = only_messages(MessageAssembler(encoding).add_text(raw, block_end=True))
    patient = msg.decoded.records[1]
    assert isinstance(patient, PatientRecord) and patient.name == name
    assert msg.raw == raw


def test_undecodable_bytes_are_replaced_and_reported() -> None:
    """Latin-1 bytes on a UTF-8 link do not stop decoding; the record says so."""
    raw = b"H|\\^&\rP|1|||M\xdcLLER\rL|1\r"
    (msg,) = only_messages(MessageAssembler("utf-8").add_text(raw, block_end=True))
    assert any("not valid in utf-8" in p.message for p in msg.problems)
    assert msg.raw == raw


def test_bare_records_with_any_newline() -> None:
    """Bare-record links split on CR, LF or CR LF."""
    asm = MessageAssembler(any_newline=True)
    (msg,) = only_messages(asm.add_text(b"H|\\^&\r\nP|1\nM|1|x\rL|1\n", block_end=True))
    assert [type(r) for r in msg.decoded.records][2] is ManufacturerRecord


def test_unknown_encoding_is_refused_at_construction() -> None:
    """A misspelt encoding fails when the link is configured, not on the first message."""
    with pytest.raises(LookupError):
        MessageAssembler("latin-9x")


def test_rollback_undoes_the_frame_that_completed_a_message() -> None:
    """After a rollback the same frame text can be added again without doubling."""
    asm = MessageAssembler()
    asm.add_text(b"H|\\^&\rP|1\rO|1|S1\rR|1|^^^A|", block_end=False)
    cp = asm.checkpoint()
    (first,) = only_messages(asm.add_text(b"1\rL|1|N\r", block_end=True))
    asm.rollback(cp)
    (again,) = only_messages(asm.add_text(b"1\rL|1|N\r", block_end=True))
    assert again.raw == first.raw == b"H|\\^&\rP|1\rO|1|S1\rR|1|^^^A|1\rL|1|N\r"


def test_rollback_of_a_frame_that_started_a_new_message() -> None:
    """Rolling back restores an open message whose records were being added."""
    asm = MessageAssembler()
    asm.add_text(b"H|\\^&\rP|1\r", block_end=True)
    cp = asm.checkpoint()
    asm.add_text(b"O|1|S1\rR|1|^^^A|1\r", block_end=True)
    asm.rollback(cp)
    asm.add_text(b"O|1|S2\r", block_end=True)
    (msg,) = only_messages(asm.add_text(b"L|1\r", block_end=True))
    assert msg.raw == b"H|\\^&\rP|1\rO|1|S2\rL|1\r"
