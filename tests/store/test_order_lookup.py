"""Host queries answered from stored orders, in the analyzer's codes (SQLite, PostgreSQL).

The lookup runs through ``NonThreadPool`` on the real store; the MLLP link is
the real ``MllpAnalyzerProtocol`` on a StringTransport answering a Mindray
QRY^Q02 (tests/fixtures/hl7/mindray_2_qry.bin, whose sample is ordered here).
"""

from __future__ import annotations

from sqlalchemy import Engine

from lis_gateway.hl7.datatypes import HierarchicDesignator
from lis_gateway.hl7.queries import Priority
from lis_gateway.mapping import parse_table
from lis_gateway.order_lookup import StoreOrderSource
from lis_gateway.store.pool import NonThreadPool

from ..adapters.test_mllp_queries import Sink, fixture, link, replies
from ..hl7.test_orders_in import ORM
from .test_orders import receive

TABLE = parse_table("bs", (
    b"analyzer_code,local_code,national_code,appendix11_code,loinc,name_vi,name_en,"
    b"analyzer_unit,unit_ucum,factor,offset,decimals,critical_low,critical_high,"
    b"autoverify_low,autoverify_high\n"
    b"1,GLU,,,2345-7,Glucose,Glucose,mmol/L,mmol/L,1,0,1,,,,\n"
    b"7,K,,,2823-3,Kali,Potassium,mmol/L,mmol/L,1,0,1,,,,\n"))


def found(engine: Engine, *barcodes: str) -> list[object]:
    """What the source answers, synchronously (NonThreadPool)."""
    got: list[object] = []
    source = StoreOrderSource(NonThreadPool(engine), TABLE, HierarchicDesignator("BV_TEST"))
    source.find(barcodes).addCallback(got.extend)
    return got


def test_ordered_tests_come_back_in_the_analyzers_codes(engine: Engine) -> None:
    """GLU is this analyzer's test 1; CREA is not on its table and is left out."""
    receive(engine, ORM)
    [sample] = found(engine, "CD0001", "UNKNOWN")
    assert sample.sample_id == "CD0001"  # type: ignore[attr-defined]
    assert sample.tests == (("1", "Glucose"),)  # type: ignore[attr-defined]
    assert sample.priority is Priority.ROUTINE  # type: ignore[attr-defined]
    patient = sample.patient  # type: ignore[attr-defined]
    assert (patient.hospital_id, patient.family_name, patient.given_name) == (
        "BN0001", "Nguyễn", "An")


def test_a_sample_with_none_of_the_analyzers_tests_is_not_found(engine: Engine) -> None:
    """Ordered, but only tests another analyzer runs: NF, never an empty worklist."""
    receive(engine, ORM.replace(b"GLU^Glucose^L", b"UREA^Urea^L"))
    assert found(engine, "CD0001") == []


def test_a_mindray_query_gets_the_stored_order(engine: Engine) -> None:
    """QRY^Q02 for an ordered barcode: QCK^Q02 OK, DSR^Q03 with test 1, name unaccented."""
    query = fixture("mindray_2_qry")
    barcode = next(seg.split(b"|")[8] for seg in query.split(b"\r") if seg.startswith(b"QRD"))
    receive(engine, ORM.replace(b"CD0001", barcode.split(b"^")[0]))
    source = StoreOrderSource(NonThreadPool(engine), TABLE, HierarchicDesignator("BV_TEST"))
    proto, transport = link(Sink(), source)
    proto.dataReceived(query)
    answers = replies(transport.value())
    assert [a.message_type for a in answers] == ["QCK^Q02", "DSR^Q03"]
    assert answers[0].first("QAK")[2] == "OK"  # type: ignore[index]
    dsr = answers[1].raw.decode("ascii")  # 7-bit: the diacritics are folded for the analyzer
    assert "\rDSP|29||1^^^|||\r" in dsr
    assert "Nguyen" in dsr


def test_a_test_ordered_twice_is_asked_for_once(engine: Engine) -> None:
    """Two placer orders for GLU on one tube: the worklist names test 1 once."""
    receive(engine, ORM.replace(b"2160-0^Creatinine^LN^CREA^Creatinin^L", b"GLU")
            .replace(b"OBR|2|CD0001", b"OBR|2|CD0002").replace(b"ORC|NW|CD0001||||||^^^^^S",
                                                                b"ORC|NW|CD0002|CD0001|||||^^^^^S"))
    [sample] = found(engine, "CD0001")
    assert sample.tests == (("1", "Glucose"),)  # type: ignore[attr-defined]
