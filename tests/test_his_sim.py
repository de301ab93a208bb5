"""The simulated HIS: answer plans, what it reports, its answers on the wire, its orders.

No reactor: the receiving protocol runs on a StringTransport and a Clock.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

import drivers
from lis_gateway.config import SHIPPED_MAPPINGS
from lis_gateway.demo_lab import what_it_measures
from lis_gateway.demo_setup import DEMO_DATA
from lis_gateway.his_sim import (
    Answer,
    AnswerPlan,
    HisReceiverFactory,
    OrderRequest,
    Received,
    order_message,
)
from lis_gateway.hl7.ack import interpret_ack
from lis_gateway.hl7.message import parse_message
from lis_gateway.hl7.mllp import frame
from lis_gateway.hl7.orders_in import OrderControl, parse_order_message
from lis_gateway.hl7_sim import blood_count_message
from lis_gateway.ingest import load_tables
from lis_gateway.simulator import chemistry_message

NOW = datetime(2026, 11, 22, 1, 30, tzinfo=UTC)
ORU = (b"MSH|^~\\&|LIS-GATEWAY|LAB|HIS|BV|20261122083000+0700||ORU^R01^ORU_R01|R42|P|2.5.1\r"
       b"PID|1||BN1^^^BV^PI||Tran^Binh\r"
       b"OBR|1|S1|C240001|GLU\r"
       b"OBX|1|NM|GLU^Glucose^L||5.4|mmol/L|||||C\r")


def test_plans_in_turn_weighted_and_refused() -> None:
    """A sequence repeats; weights draw reproducibly with a seed; bad plans say why."""
    plan = AnswerPlan.parse("aa,ae,none")
    assert [plan.next() for _ in range(5)] == [Answer.AA, Answer.AE, Answer.NONE, Answer.AA,
                                                Answer.AE]
    draws = [AnswerPlan.parse("aa=50,drop=50", seed=7) for _ in range(2)]
    first, second = ([p.next() for _ in range(40)] for p in draws)
    assert first == second and set(first) == {Answer.AA, Answer.DROP}
    assert {AnswerPlan.parse("ar=1,aa=0").next() for _ in range(10)} == {Answer.AR}
    for bad, why in (("ok", "'ok' is not an answer"), ("aa=1,ae", "every answer a weight"),
                     ("aa=x", "not a number"), ("aa=0", "add up to nothing"), (" ,", "no answer")):
        with pytest.raises(ValueError, match=why):
            AnswerPlan.parse(bad)


def connection(plan: str) -> tuple[StringTransport, list[Received], object]:
    got: list[Received] = []
    factory = HisReceiverFactory(AnswerPlan.parse(plan), Clock(), lambda: NOW, got.append)
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return transport, got, protocol


@pytest.mark.parametrize("plan", ["aa", "ae", "ar"])
def test_answers_acknowledge_the_control_id(plan: str) -> None:
    """AA/AE/AR go back framed, echoing MSH-10; what came is summarized without patients."""
    transport, got, protocol = connection(plan)
    protocol.dataReceived(frame(ORU)[:30])  # byte boundaries do not matter
    protocol.dataReceived(frame(ORU)[30:])
    data = transport.value()
    assert data.startswith(b"\x0b") and data.endswith(b"\x1c\r")
    ack = interpret_ack(parse_message(data[1:-2]))
    assert (ack.code, ack.acknowledges) == (plan.upper(), "R42")
    assert got == [Received("R42", "ORU^R01", ("C240001",), 1, ("C",),
                            Answer(plan))]
    assert "Tran" not in repr(got[0].to_dict())


def test_silence_and_dropped_connections() -> None:
    """``none`` answers nothing and keeps the connection; ``drop`` closes it unanswered."""
    transport, got, protocol = connection("none,drop")
    protocol.dataReceived(frame(ORU))
    assert transport.value() == b"" and transport.connected
    protocol.dataReceived(frame(ORU) + frame(ORU))  # the second is never looked at
    assert transport.value() == b"" and transport.disconnecting
    assert [g.answer for g in got] == [Answer.NONE, Answer.DROP]


def test_orders_are_read_by_the_gateway_as_sent() -> None:
    """The ORM^O01 the simulated HIS sends is what the order link reads: a patient with a
    hospital code and a Vietnamese name, one test per OBR, STAT, and cancellations."""
    raw = order_message(OrderRequest("C240001", ("GLU", "CREA"), patient=1, stat=True),
                        control_id="ORM1", now=NOW)
    read = parse_order_message(parse_message(raw))
    assert read.problems == ()
    assert (read.patient.hospital_id, read.patient.family_name, read.patient.given_name,
            read.patient.middle_name) == ("BN240002", "Trần", "Bình", "Văn")
    assert [(o.barcode, o.tests, o.priority, o.control) for o in read.orders] == [
        ("C240001", ("GLU",), "S", OrderControl.NEW), ("C240001", ("CREA",), "S",
                                                      OrderControl.NEW)]
    assert read.orders[0].ordered_at == NOW
    cancel = parse_order_message(parse_message(order_message(
        OrderRequest("C240001", ("GLU",)), control_id="ORM2", now=NOW, cancel=True)))
    assert [o.control for o in cancel.orders] == [OrderControl.CANCEL]


def test_the_demo_orders_what_the_analyzer_will_report() -> None:
    """The demo's order asks for the local codes the analyzer's message maps to."""
    generic, mindray = drivers.get("generic-astm"), drivers.get("mindray-bc")
    tables = load_tables([generic, mindray], [DEMO_DATA, SHIPPED_MAPPINGS])
    chem = what_it_measures(chemistry_message(7, NOW), generic, tables["generic-astm"])
    assert chem.barcode == "C240007"
    assert chem.tests == ("GLU", "CREA", "UREA", "ALT", "NA", "K")
    count = what_it_measures(blood_count_message(8, NOW), mindray, tables["mindray-bc"])
    assert count.barcode == "B260008"
    assert count.tests[:3] == ("WBC", "NEU#", "LYM#") and "MONO#" in count.tests
    with pytest.raises(ValueError, match="no mapped result"):
        what_it_measures(chemistry_message(7, NOW), generic, None)

