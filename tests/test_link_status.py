"""The links' status board and the recorder that feeds it (no reactor: times are given)."""

from __future__ import annotations

from lis_gateway.link_status import MAX_ERRORS, LinkStatusBoard, StatusRecorder

CLEAN = "Connection was closed cleanly."
LOST = "Connection to the other side was lost in a non-clean fashion."


def test_a_link_is_listed_before_anything_happens() -> None:
    """A declared link shows its configuration and no activity."""
    board = LinkStatusBoard()
    board.add_link("chem1", transport="tcp-server", driver="roche-cobas", endpoint=":5000")
    (status,) = board.snapshot()
    assert (status.name, status.transport, status.endpoint) == ("chem1", "tcp-server", ":5000")
    assert not status.connected and status.last_traffic is None and status.errors == ()
    assert board.get("nope") is None


def test_connections_traffic_and_messages() -> None:
    """Two connections, bytes both ways, messages stored and repeated; a clean close is no
    error, a lost connection is."""
    board = LinkStatusBoard()
    first, second = StatusRecorder(board, "chem1", "astm"), StatusRecorder(board, "chem1", "astm")
    first.note("connected", 10.0)
    second.note("connected", 20.0)
    first.record("rx", b"\x05", 21.0)
    first.record("tx", b"\x06", 21.5)
    board.message("chem1", "stored", 22.0)
    board.message("chem1", "repeat", 23.0)
    status = board.get("chem1")
    assert status is not None
    assert (status.connections, status.connected_since, status.last_traffic) == (2, 10.0, 21.5)
    assert (status.bytes_in, status.bytes_out, status.messages, status.repeats) == (1, 1, 1, 1)
    assert status.last_message == 23.0
    first.note(f"connection lost: {CLEAN}", 30.0)
    second.note(f"connection lost: {LOST}", 31.0)
    status = board.get("chem1")
    assert status is not None and not status.connected and status.connected_since is None
    assert (status.last_disconnected, status.last_disconnect_reason) == (31.0, LOST)
    assert [(e.at, e.text) for e in status.errors] == [(31.0, f"connection lost: {LOST}")]


def test_nak_bytes_on_an_astm_link_are_counted_each_way() -> None:
    """Every <NAK> we send and every one the analyzer sends is counted."""
    board = LinkStatusBoard()
    rec = StatusRecorder(board, "chem1", "astm")
    rec.record("tx", b"\x15", 1.0)
    rec.record("rx", b"\x15\x15", 2.0)
    rec.record("rx", b"\x021R|1|^^^GLU|5.0\r\x0312\r\n", 3.0)
    status = board.get("chem1")
    assert status is not None and (status.naks_sent, status.naks_received) == (1, 2)


def test_hl7_negative_acks_are_counted_once_even_when_split() -> None:
    """MSA|AE and MSA|AR count, MSA|AA does not; one cut across two reads counts once."""
    board = LinkStatusBoard()
    rec = StatusRecorder(board, "hl7a", "mllp")
    rec.record("tx", b"\x0bMSH|^~\\&|LIS\rMSA|AE|9\r\x1c\r", 1.0)
    rec.record("tx", b"\x0bMSH|^~\\&|LIS\rMSA|AA|10\r\x1c\r", 2.0)
    rec.record("rx", b"\x0bMSH|^~\\&|HIS\rMS", 3.0)
    rec.record("rx", b"A|AR|11\r\x1c\r", 3.1)
    rec.record("rx", b"\x0bMSH|^~\\&|HIS\rMSA|AA|12\r\x1c\r", 3.2)
    status = board.get("hl7a")
    assert status is not None and (status.naks_sent, status.naks_received) == (1, 1)
    bare = StatusRecorder(board, "bare", "bare")
    bare.record("rx", b"\x15", 4.0)
    bare_status = board.get("bare")
    assert bare_status is not None and bare_status.naks_received == 0


def test_errors_are_bounded_but_counted() -> None:
    """Only the latest errors are kept; the count says how many there were."""
    board = LinkStatusBoard()
    for i in range(MAX_ERRORS + 5):
        board.error("chem1", f"message not stored: E{i}", float(i))
    status = board.get("chem1")
    assert status is not None and status.error_count == MAX_ERRORS + 5
    assert len(status.errors) == MAX_ERRORS and status.errors[0].text.endswith("E5")
