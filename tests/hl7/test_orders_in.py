"""ORM^O01 / OML^O21 from the HIS read into orders (no reactor, no sockets).

The messages are written here after HL7 v2.5.1 chapter 4 and the shapes in
vietnam.md §3 (hospital code PI, 12-digit national ID, insurance card HC,
the order code printed on the tube); no HIS capture was available.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from lis_gateway.hl7.message import parse_message
from lis_gateway.hl7.orders_in import OrderControl, parse_order_message

VN = ZoneInfo("Asia/Ho_Chi_Minh")
ORM = ("MSH|^~\\&|HIS|BV_TEST|LIS||20261122080000||ORM^O01|ORD0001|P|2.3.1||||||UNICODE UTF-8\r"
       "PID|1||BN0001^^^BV_TEST^PI~079000000001^^^BCA^NNVNM~DN4797912345678^^^BHXH^HC||"
       "Nguyễn^An^Văn||19800102|M\r"
       "PV1|1|O|||||||||||||||||LK2026-0001\r"
       "ORC|NW|CD0001||||||^^^^^R|20261122075500\r"
       "OBR|1|CD0001||GLU^Glucose^L\r"
       "ORC|NW|CD0001||||||^^^^^S|20261122075500\r"
       "OBR|2|CD0001||2160-0^Creatinine^LN^CREA^Creatinin^L|S||20261122075000\r").encode()
OML = (b"MSH|^~\\&|HIS|BV_TEST|LIS||20261122080000||OML^O21^OML_O21|ORD0002|P|2.5.1\r"
       b"PID|1||BN0002^^^BV_TEST^PI\r"
       b"ORC|NW|CD0002|\r"
       b"TQ1|||||||||S\r"
       b"OBR|1|CD0002||K^Potassium^L\r"
       b"SPM|1|TUBE0002||SER^Serum^HL70487|||||||||||||20261122074500+0700\r"
       b"ORC|CA|CD0003\r"
       b"OBR|2|CD0003||NA\r")


def test_orm_o01_gives_patient_barcode_tests_priority_and_times() -> None:
    """The order code is the barcode without filler or SPM; LN codes give their local alternate."""
    got = parse_order_message(parse_message(ORM))
    assert got.acceptable, got.problems
    p = got.patient
    assert (p.hospital_id, p.national_id, p.insurance_card) == (
        "BN0001", "079000000001", "DN4797912345678")
    assert (p.family_name, p.middle_name, p.given_name, p.birth_date, p.sex, p.visit_number) == (
        "Nguyễn", "Văn", "An", date(1980, 1, 2), "M", "LK2026-0001")
    first, second = got.orders
    assert (first.control, first.barcode, first.placer_order, first.tests, first.priority) == (
        OrderControl.NEW, "CD0001", "CD0001", ("GLU",), "R")
    assert first.ordered_at == datetime(2026, 11, 22, 7, 55, tzinfo=VN)
    assert (second.tests, second.priority, second.collected_at) == (
        ("CREA",), "S", datetime(2026, 11, 22, 7, 50, tzinfo=VN))


def test_oml_o21_takes_the_specimen_id_and_reads_cancellations() -> None:
    """SPM-2 is the barcode; TQ1-9 gives the priority; ORC-1 CA cancels."""
    got = parse_order_message(parse_message(OML))
    assert got.acceptable, got.problems
    new, cancel = got.orders
    assert (new.barcode, new.tests, new.priority, new.collected_at) == (
        "TUBE0002", ("K",), "S", datetime(2026, 11, 22, 7, 45, tzinfo=VN))
    assert (cancel.control, cancel.placer_order, cancel.tests) == (
        OrderControl.CANCEL, "CD0003", ("NA",))


def test_what_cannot_be_stored_is_named() -> None:
    """No patient identifier, unknown ORC-1, no test, a bad time, not an order at all."""
    bad = (b"MSH|^~\\&|HIS||LIS||20261122||ORM^O01|X|P|2.3.1\r"
           b"PID|1||^^^^PI||||99999999\r"
           b"ORC|ZZ|CD1\r"
           b"ORC|NW|CD2|||||||notatime\r"
           b"OBR|1|CD2||\r")
    got = parse_order_message(parse_message(bad))
    assert not got.acceptable
    assert got.problems == (
        "PID-3 carries no hospital ID (PI), national ID (NNVNM) or insurance card (HC)",
        "PID-7 birth date is not a valid date",
        "order 1: ORC-1 'ZZ' is not NW, CA/OC/DC or XO/RP",
        "order 2: no ordered test (OBR-4)",
        "order 2 ORC-9: 'notatime' is not a timestamp this driver can read",
    )
    oru = b"MSH|^~\\&|A||B||20261122||ORU^R01|1|P|2.5.1\rPID|1\r"
    assert parse_order_message(parse_message(oru)).problems == (
        "ORU^R01 is not an order message (ORM^O01, OML^O21)",)


def test_partial_birth_dates_odd_sex_and_cancels_without_patient_are_accepted() -> None:
    """A year-only birth date is unknown, not an error; PID-8 outside table 0001 is unknown;
    a cancel needs no patient; a national ID that is not 12 digits is refused."""
    got = parse_order_message(parse_message(ORM.replace(b"||19800102|M", b"||1980|Nam")))
    assert got.acceptable, got.problems
    assert (got.patient.birth_date, got.patient.sex) == (None, "")
    cancel = parse_order_message(parse_message(
        b"MSH|^~\\&|HIS||LIS||20261122||ORM^O01|C1|P|2.3.1\rORC|CA|CD0001\r"))
    assert cancel.acceptable and cancel.orders[0].control is OrderControl.CANCEL
    old_id = parse_order_message(parse_message(ORM.replace(b"079000000001", b"123456789")))
    assert old_id.problems == (
        "PID-3 national ID (NNVNM) must be the 12-digit personal identification number",)
