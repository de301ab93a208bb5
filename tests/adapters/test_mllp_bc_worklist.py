"""The Mindray BC worklist request on a live MLLP link: stored first, then answered ORR^O02
instead of an ACK; any other ORM^O01 is acknowledged as data."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

import drivers
from lis_gateway.adapters.mllp_common import ControlIds, mllp_config
from lis_gateway.adapters.mllp_protocol import MllpAnalyzerProtocol
from lis_gateway.adapters.sink import NoOrders, OrderSource
from lis_gateway.hl7.datatypes import HierarchicDesignator
from lis_gateway.hl7.message import Hl7Message, parse_message
from lis_gateway.hl7.patient import PatientIdentity, Sex
from lis_gateway.hl7.queries import OrderedSample

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "hl7"
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=timezone(timedelta(hours=7)))
VT, FS, CR = b"\x0b", b"\x1c", b"\r"
TUBE = OrderedSample("SampleID1", (("WBC", "Leukocytes"), ("NEU#", "Neutrophils")),
                     PatientIdentity(hospital_id="BN1", hospital=HierarchicDesignator("BV1"),
                                     family_name="Nguyễn", given_name="An", sex=Sex.MALE))


class Sink:
    """Keeps every message; optionally delays "stored" with a Deferred."""

    def __init__(self) -> None:
        self.messages: list[Hl7Message] = []
        self.pending: Deferred[object] | None = None

    def message_received(self, msg: Hl7Message) -> Deferred[object] | None:
        self.messages.append(msg)
        return self.pending

    def incomplete(self, item: object) -> None:
        raise AssertionError(f"unexpected incomplete: {item}")


class Orders:
    """An order source answering later; records what was asked and when."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.asked: list[tuple[tuple[str, ...], int]] = []  # keys, messages stored by then
        self.answer: Deferred[list[OrderedSample]] = Deferred()

    def find(self, sample_ids: tuple[str, ...]) -> Deferred[list[OrderedSample]]:
        self.asked.append((sample_ids, len(self.sink.messages)))
        return self.answer


def link(sink: Sink, orders: OrderSource | None = None
         ) -> tuple[MllpAnalyzerProtocol, StringTransport]:
    """A mindray-bc analyzer link on a StringTransport."""
    proto = MllpAnalyzerProtocol(mllp_config(drivers.get("mindray-bc")), Clock(), sink,
                                 control_ids=ControlIds("GW"), utcnow=lambda: NOW,
                                 orders=orders or NoOrders())
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def requests() -> list[bytes]:
    """The two framed ORM^O01 requests of mindray_bc_orm."""
    data = (FIXTURES / "mindray_bc_orm.bin").read_bytes()
    return [block + FS + CR for block in data.split(FS + CR) if block]


def test_request_without_order_is_stored_then_answered_ar_not_acked() -> None:
    """No order: the ORM is stored, then exactly one ORR^O02 MSA|AR goes out (no ACK)."""
    sink = Sink()
    proto, transport = link(sink)
    proto.dataReceived(requests()[0])
    assert [m.message_type for m in sink.messages] == ["ORM^O01"]
    assert transport.value() == (
        VT + b"MSH|^~\\&|||||20261122090000||ORR^O02|GW1|P|2.3.1||||||UNICODE\r"
        b"MSA|AR|9\r" + FS + CR)


def test_request_is_looked_up_after_it_is_stored_and_answered_with_the_order() -> None:
    """The order source is asked for ORC-3 only once the ORM is stored; the ORR carries it."""
    sink = Sink()
    sink.pending = Deferred()
    orders = Orders(sink)
    proto, transport = link(sink, orders)
    proto.dataReceived(requests()[0])
    assert orders.asked == [] and transport.value() == b""
    sink.pending.callback(None)
    assert orders.asked == [(("SampleID1",), 1)] and transport.value() == b""
    orders.answer.callback([TUBE])
    (block,) = transport.value().split(FS + CR)[:-1]
    assert block.startswith(VT)
    assert block[1:].decode("utf-8").split("\r")[:-1] == [
        "MSH|^~\\&|||||20261122090000||ORR^O02|GW1|P|2.3.1||||||UNICODE",
        "MSA|AA|9",
        "PID|1||BN1^^^^MR||Nguyễn^An|||Male",
        "PV1|1",
        "ORC|AF|SampleID1",
        "OBR|1|SampleID1||00001^Automated Count^99MRC||||||||||||||||||||HM",
        "OBX|1|IS|08002^Blood Mode^99MRC||W||||||F",
        "OBX|2|IS|08003^Test Mode^99MRC||CBC+DIFF||||||F",
    ]


def test_two_requests_are_answered_in_order() -> None:
    """Both fixture requests in one read: two ORRs, MSA-2 9 then 389, with new MSH-10s."""
    sink = Sink()
    proto, transport = link(sink)
    proto.dataReceived(b"".join(requests()))
    answers = [parse_message(b[1:]) for b in transport.value().split(FS + CR) if b]
    assert [(m.message_type, m.control_id, m.first("MSA").fields[1:3])  # type: ignore[union-attr]
            for m in answers] == [("ORR^O02", "GW1", ("AR", "9")),
                                  ("ORR^O02", "GW2", ("AR", "389"))]


def test_an_orm_that_is_not_a_request_is_acknowledged_as_data() -> None:
    """ORC-1 NW on the BC link: stored and ACKed AA, and no order lookup is made."""
    sink = Sink()
    orders = Orders(sink)
    proto, transport = link(sink, orders)
    proto.dataReceived(VT + b"MSH|^~\\&|X||||20261122||ORM^O01|44|P|2.3.1\r"
                            b"ORC|NW|CD1\rOBR|1|CD1||WBC\r" + FS + CR)
    (ack,) = [parse_message(b[1:]) for b in transport.value().split(FS + CR) if b]
    assert ack.message_type.startswith("ACK")
    assert ack.first("MSA").fields[1:3] == ("AA", "44")  # type: ignore[union-attr]
    assert orders.asked == []


def test_failed_lookup_is_answered_ae_as_for_the_other_queries() -> None:
    """The order store failing gets the link's usual AE acknowledgement, not silence."""
    sink = Sink()
    orders = Orders(sink)
    proto, transport = link(sink, orders)
    proto.dataReceived(requests()[0])
    orders.answer.errback(RuntimeError("order store down"))
    (answer,) = [parse_message(b[1:]) for b in transport.value().split(FS + CR) if b]
    assert answer.first("MSA").fields[1:3] == ("AE", "9")  # type: ignore[union-attr]
