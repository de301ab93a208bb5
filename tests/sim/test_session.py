"""The simulator's sending state and its MLLP analyzer link, without a reactor."""

from __future__ import annotations

from lis_gateway.hl7.message import parse_message
from lis_gateway.hl7.mllp import frame
from lis_gateway.sim.astm_styles import QueryAnswer
from lis_gateway.sim.faults import FaultKind
from lis_gateway.sim.mllp_link import (
    Acknowledged,
    Answered,
    Ignored,
    MllpAnalyzerLink,
    NotAcknowledged,
    OrdersReceived,
)
from lis_gateway.sim.session import Item, ItemKind, Session


def _results(seq: int) -> Item:
    return Item(seq, ItemKind.RESULTS, f"results {seq}".encode(), f"S{seq}", ("GLU", "K"))


def test_one_item_at_a_time_and_only_while_the_link_is_up() -> None:
    """Nothing goes out before link_up; the next item waits for the previous outcome."""
    session = Session()
    session.add(_results(1))
    session.add(_results(2))
    assert session.next_to_send(0.0) is None
    session.link_up()
    first = session.next_to_send(0.0)
    assert first is not None and first.seq == 1
    assert session.next_to_send(0.1) is None
    session.acknowledged(0.4)
    (report,) = session.reports()
    assert (report.outcome, report.seconds) == ("acknowledged", 0.4)
    assert report.text() == "#1 S1 results (2 tests) acknowledged 0.40 s"
    second = session.next_to_send(0.5)
    assert second is not None and second.seq == 2


def test_refused_items_are_tried_again_then_reported_failed() -> None:
    """Up to ``retries`` more tries, with the reasons and faults in the one report."""
    session = Session(retries=2)
    session.link_up()
    session.add(_results(1))
    for t in (0.0, 1.0, 2.0):
        item = session.next_to_send(t)
        assert item is not None
        session.fault(FaultKind.LOST_ACK)
        session.refused(t + 0.5, "reply-timeout")
    (report,) = session.reports()
    assert (report.outcome, report.item.tries, report.ok) == ("failed", 3, False)
    assert report.item.notes == ["reply-timeout", "reply-timeout"]
    assert report.to_dict()["faults"] == {"lost-ack": 3}
    assert session.failed == 1 and session.idle


def test_a_rejection_is_not_tried_again() -> None:
    """``retry=False`` (HL7 AR) ends the item at once."""
    session = Session(retries=3)
    session.link_up()
    session.add(_results(1))
    assert session.next_to_send(0.0) is not None
    session.refused(0.1, "AR unsupported", retry=False)
    (report,) = session.reports()
    assert (report.outcome, report.detail, report.item.tries) == ("failed", "AR unsupported", 1)


def test_a_query_waits_for_its_answer_then_the_results_go() -> None:
    """ASTM: delivered, then answered by the reply message; the results follow."""
    session = Session(answer_timeout=5.0)
    session.link_up()
    query = Item(1, ItemKind.QUERY, b"Q", "S1")
    query.follow.append(_results(1))
    session.add(query)
    assert session.next_to_send(0.0) is query
    session.acknowledged(0.1)
    assert session.reports() == [] and session.next_to_send(0.2) is None
    assert session.get_timer() == 5.1
    session.answered(0.3, QueryAnswer(True, ("GLU",), "ordered: GLU"))
    (report,) = session.reports()
    assert report.text() == "#1 S1 query answered: ordered: GLU 0.30 s"
    follow = session.next_to_send(0.4)
    assert follow is not None and follow.kind is ItemKind.RESULTS


def test_an_unanswered_query_sends_its_cancel_before_the_results() -> None:
    """Past the deadline: reported unanswered; the cancel (cobas Q-13 = A) goes first."""
    session = Session(answer_timeout=2.0)
    session.link_up()
    query = Item(1, ItemKind.QUERY, b"Q", "S1")
    query.follow.append(_results(1))
    session.add(query, cancel=Item(1, ItemKind.CANCEL, b"Q-A", "S1"))
    session.next_to_send(0.0)
    session.acknowledged(0.0)
    session.handle_timer(1.0)
    assert session.reports() == []
    session.handle_timer(2.0)
    (report,) = session.reports()
    assert (report.outcome, report.detail) == ("unanswered", "no answer within 2 s")
    kinds = []
    for t in (3.0, 4.0):
        item = session.next_to_send(t)
        assert item is not None
        kinds.append(item.kind)
        session.acknowledged(t)
    assert kinds == [ItemKind.CANCEL, ItemKind.RESULTS]


def test_hl7_found_waits_for_the_download() -> None:
    """QCK OK is the acknowledgement; the report waits for the DSR's tests."""
    session = Session()
    session.link_up()
    query = Item(1, ItemKind.QUERY, b"QRY", "S1", control_id="7")
    session.add(query)
    session.next_to_send(0.0)
    session.answered(0.1, QueryAnswer(True, (), "orders follow"))
    assert session.reports() == [] and session.delivered == 1
    session.orders(0.2, ("5", "6"))
    (report,) = session.reports()
    assert (report.outcome, report.detail) == ("answered", "ordered: 5 6")
    session.orders(0.3, ("9",))  # pushed later, unasked
    (pushed,) = session.reports()
    assert (pushed.outcome, pushed.item.seq) == ("download", 0)


# ------------------------------------------------------------------ MLLP link

ORU = b"MSH|^~\\&|Mindray|BC|||20260304||ORU^R01|41|P|2.3.1\rOBR|1||S1\r"


def _ack(code: str, control_id: str) -> bytes:
    return frame(f"MSH|^~\\&|||||20260304||ACK^R01|G1|P|2.3.1\rMSA|{code}|{control_id}\r"
                 .encode())


def _link() -> MllpAnalyzerLink:
    return MllpAnalyzerLink(ack_timeout=10.0, frame=frame, reply_ids=lambda: "R1")


def test_mllp_link_matches_the_ack_to_the_message() -> None:
    """An ACK for another control ID is ignored; the right one ends the wait."""
    link = _link()
    link.send(ORU, "41", 0.0)
    assert link.data_to_send() == frame(ORU) and link.get_timer() == 10.0
    link.receive_data(_ack("AA", "40"), 1.0)
    link.receive_data(_ack("AE", "41")[:9], 1.1)
    assert [type(e) for e in link.events()] == [Ignored]
    link.receive_data(_ack("AE", "41")[9:], 1.2)
    (event,) = link.events()
    assert isinstance(event, Acknowledged) and event.ack.code == "AE"
    assert not link.busy and link.get_timer() is None


def test_mllp_link_times_out_and_notices_a_lost_connection() -> None:
    """No answer in time, or the connection gone: not acknowledged, with why."""
    link = _link()
    link.send(ORU, "41", 0.0)
    link.handle_timer(9.9)
    assert link.events() == []
    link.handle_timer(10.0)
    assert link.events() == [NotAcknowledged("41", "timeout")]
    link.send(ORU, "42", 11.0)
    link.connection_lost()
    assert link.events() == [NotAcknowledged("42", "connection lost")]


def test_mllp_link_reads_query_answers_and_answers_downloads() -> None:
    """QCK^Q02 answers the query; a DSR^Q03 is answered with ACK^Q03 at once."""
    link = _link()
    link.send(b"MSH|^~\\&|||||20260304||QRY^Q02|7|P|2.3.1\r", "7", 0.0)
    link.data_to_send()
    link.receive_data(frame(b"MSH|^~\\&|||||20260304||QCK^Q02|G1|P|2.3.1\rMSA|AA|7\r"
                            b"QAK|SR|OK\r"), 0.5)
    (answered,) = link.events()
    assert isinstance(answered, Answered) and answered.answer.found is True
    dsr = (b"MSH|^~\\&|||||20260304||DSR^Q03|G2|P|2.3.1\rMSA|AA|7\rDSP|29||5^^^||\r"
           b"DSP|30||6^^^||\r")
    link.receive_data(frame(dsr), 0.6)
    assert link.events() == [OrdersReceived(("5", "6"))]
    reply = parse_message(link.data_to_send()[1:-2])
    msa = reply.first("MSA")
    assert reply.message_type == "ACK^Q03" and msa is not None and msa[2] == "G2"
