"""Host queries on a live MLLP link: stored first, then answered; answers are not acknowledged."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

import drivers
from lis_gateway.adapters.mllp_common import ControlIds, mllp_config
from lis_gateway.adapters.mllp_protocol import MllpAnalyzerProtocol
from lis_gateway.adapters.sink import NoOrders
from lis_gateway.hl7.datatypes import HierarchicDesignator
from lis_gateway.hl7.message import Hl7Message, parse_message
from lis_gateway.hl7.patient import PatientIdentity
from lis_gateway.hl7.queries import OrderedSample

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "hl7"
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=timezone(timedelta(hours=7)))
VT, FS, CR = b"\x0b", b"\x1c", b"\r"
SAMPLE = OrderedSample("1234567", (("1", "TSH"),),
                       PatientIdentity(hospital_id="BN1", hospital=HierarchicDesignator("BV1"),
                                       family_name="DOE", given_name="JANE"))


class Sink:
    """Keeps every message; optionally delays the answer with a Deferred."""

    def __init__(self) -> None:
        self.messages: list[Hl7Message] = []
        self.pending: Deferred[object] | None = None

    def message_received(self, msg: Hl7Message) -> Deferred[object] | None:
        self.messages.append(msg)
        return self.pending

    def incomplete(self, item: object) -> None:
        raise AssertionError(f"unexpected incomplete: {item}")


class Orders:
    """An order source that answers later, with a Deferred."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, ...]] = []
        self.answer: Deferred[list[OrderedSample]] = Deferred()

    def find(self, sample_ids: tuple[str, ...]) -> Deferred[list[OrderedSample]]:
        self.asked.append(sample_ids)
        return self.answer


def link(sink: Sink, orders: object = None) -> tuple[MllpAnalyzerProtocol, StringTransport]:
    """A generic-hl7 analyzer link on a StringTransport."""
    proto = MllpAnalyzerProtocol(mllp_config(drivers.get("generic-hl7")), Clock(), sink,
                                 control_ids=ControlIds("GW"), utcnow=lambda: NOW,
                                 orders=orders or NoOrders())  # type: ignore[arg-type]
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def replies(data: bytes) -> list[Hl7Message]:
    """Every MLLP block written, parsed."""
    return [parse_message(b[1:]) for b in data.split(FS + CR) if b]


def fixture(name: str) -> bytes:
    """A fixture's bytes, framed properly (its own framing quirks are not the point here)."""
    raw = (FIXTURES / f"{name}.bin").read_bytes()
    body = raw[raw.index(b"MSH"):].split(FS)[0].rstrip(b"\r\n") + b"\r"
    return VT + body + FS + CR


def test_mindray_query_without_orders_is_answered_nf_not_acked() -> None:
    """QRY^Q02 with no order: stored, then QCK^Q02 NF goes out instead of an ACK."""
    sink = Sink()
    proto, transport = link(sink)
    proto.dataReceived(fixture("mindray_2_qry"))
    assert [m.message_type for m in sink.messages] == ["QRY^Q02"]
    (answer,) = replies(transport.value())
    assert answer.message_type == "QCK^Q02"
    assert answer.first("QAK")[2] == "NF"  # type: ignore[index]


def test_law_query_waits_for_the_order_lookup_then_sends_rsp_and_oml() -> None:
    """QBP^Q11: nothing goes out until the lookup answers; then RSP^K11 OK and OML^O33."""
    sink, orders = Sink(), Orders()
    proto, transport = link(sink, orders)
    proto.dataReceived(fixture("biosystems_3"))
    assert transport.value() == b""
    assert len(orders.asked) == 1 and orders.asked[0][0]
    orders.answer.callback([SAMPLE])
    kinds = [m.message_type for m in replies(transport.value())]
    assert kinds == ["RSP^K11", "OML^O33"]


def test_query_is_answered_only_after_it_is_stored() -> None:
    """The sink's Deferred gates the answer, as it gates ACKs."""
    sink = Sink()
    sink.pending = Deferred()
    proto, transport = link(sink)
    proto.dataReceived(fixture("mindray_2_qry"))
    assert transport.value() == b""
    sink.pending.callback(None)
    assert [m.message_type for m in replies(transport.value())] == ["QCK^Q02"]


def test_acknowledgements_from_the_analyzer_are_not_acknowledged() -> None:
    """An ACK^Q03 (the analyzer confirming a DSR) is stored and nothing is sent back."""
    sink = Sink()
    proto, transport = link(sink)
    proto.dataReceived(VT + b"MSH|^~\\&|||||20240101||ACK^Q03|5|P|2.3.1\rMSA|AA|GW1\r" + FS + CR)
    assert [m.message_type for m in sink.messages] == ["ACK^Q03"]
    assert transport.value() == b""


def test_failed_order_lookup_is_answered_ae() -> None:
    """If the lookup fails the analyzer gets CE and AE (enhanced mode), not silence."""
    sink, orders = Sink(), Orders()
    proto, transport = link(sink, orders)
    proto.dataReceived(fixture("biosystems_3"))
    orders.answer.errback(RuntimeError("order store down"))
    codes = [m.first("MSA")[1] for m in replies(transport.value())]  # type: ignore[index]
    assert codes == ["CE", "AE"]  # the BA400 asks ER|AL
