"""Orders from the HIS in the store, and results judged against them (SQLite, PostgreSQL)."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

from sqlalchemy import Engine, select

from lis_gateway.autoverify import Autoverification
from lis_gateway.hl7.message import parse_message
from lis_gateway.hl7.orders_in import parse_order_message
from lis_gateway.ingest import store_for_analyzer
from lis_gateway.lifecycle import Policy, ResultState
from lis_gateway.rules_file import load_rules
from lis_gateway.store import orders, outbox
from lis_gateway.store import schema as s
from lis_gateway.store.audit import verify_audit
from lis_gateway.store.outbox import payload
from lis_gateway.validation import validate_sample

from ..hl7.test_orders_in import OML, ORM
from .test_lifecycle_store import RULES, status, users
from .test_outbox import enqueue
from .test_repository import RAW, T0, result


def receive(engine: Engine, raw: bytes) -> orders.StoredOrders:
    """Store one order message as the order link does."""
    parsed = parse_order_message(parse_message(raw))
    with engine.begin() as conn:
        return orders.store_order_message(conn, raw=raw, control_id="C1", parsed=parsed,
                                          source="test", at=T0)


def ordered(engine: Engine, accession: str) -> list[tuple[str, str, str]]:
    """(test, status, priority) of each order on the sample."""
    with engine.begin() as conn:
        return [(t.test_code, t.status, t.priority)
                for t in orders.ordered_tests(conn, accession)]


def test_an_order_puts_the_patient_on_the_sample_and_records_the_tests(engine: Engine) -> None:
    """ORM^O01: hospital, national and insurance IDs, name, birth date, sex, visit; two tests."""
    stored = receive(engine, ORM)
    assert (stored.accepted, stored.samples) == (True, ("CD0001",))
    assert ordered(engine, "CD0001") == [("GLU", "ordered", "R"), ("CREA", "ordered", "S")]
    with engine.begin() as conn:
        row = conn.execute(select(s.samples).where(s.samples.c.accession == "CD0001")).one()
    assert (row.hospital_id, row.national_id, row.insurance_card, row.family_name,
            row.middle_name, row.given_name, row.birth_date, row.sex, row.visit_number,
            row.patient_source) == ("BN0001", "079000000001", "DN4797912345678", "Nguyễn",
                                    "Văn", "An", date(1980, 1, 2), "M", "LK2026-0001", "his")


def test_changes_and_cancellations_are_honoured(engine: Engine) -> None:
    """XO replaces the tests of its placer order; CA cancels them; nothing is deleted."""
    receive(engine, ORM)
    change = ORM.replace(b"ORC|NW|CD0001||||||^^^^^R", b"ORC|XO|CD0001||||||^^^^^R").replace(
        b"OBR|1|CD0001||GLU^Glucose^L", b"OBR|1|CD0001||UREA^Urea^L")
    change = b"\r".join(line for line in change.split(b"\r") if b"|S||2026" not in line
                        and not line.startswith(b"ORC|NW"))
    assert receive(engine, change).accepted
    assert ordered(engine, "CD0001") == [
        ("GLU", "cancelled", "R"), ("CREA", "cancelled", "S"), ("UREA", "ordered", "R")]
    cancel = (b"MSH|^~\\&|HIS||LIS||20261122||ORM^O01|C9|P|2.3.1\r"
              b"PID|1||BN0001^^^BV_TEST^PI\rORC|CA|CD0001\r")
    assert receive(engine, cancel).accepted
    assert [t[1] for t in ordered(engine, "CD0001")] == ["cancelled"] * 3


def test_a_refused_order_message_is_kept_with_its_problems(engine: Engine) -> None:
    """No patient identifier: nothing applied, the raw message and the reason kept, audited."""
    bad = OML.replace(b"PID|1||BN0002^^^BV_TEST^PI", b"PID|1")
    stored = receive(engine, bad)
    assert (stored.accepted, stored.problems) == (False, (
        "PID-3 carries no hospital ID (PI), national ID (NNVNM) or insurance card (HC)",))
    assert ordered(engine, "TUBE0002") == []
    with engine.begin() as conn:
        raw = conn.execute(select(s.order_messages.c.raw).where(
            s.order_messages.c.id == stored.message_id)).scalar_one()
        assert orders.order_problems(conn, stored.message_id) == stored.problems
        assert verify_audit(conn) == []
    assert raw == bad


def test_a_correction_of_the_patient_by_the_his_is_audited_without_the_values(
        engine: Engine) -> None:
    """The HIS is the authority: a new ID replaces the old; the audit names the field only."""
    receive(engine, ORM)
    receive(engine, ORM.replace(b"BN0001^^^BV_TEST^PI", b"BN0009^^^BV_TEST^PI"))
    with engine.begin() as conn:
        row = conn.execute(select(s.samples.c.hospital_id).where(
            s.samples.c.accession == "CD0001")).scalar_one()
        details = conn.execute(select(s.audit_log.c.detail).where(
            s.audit_log.c.action == "sample.patient-changed")).scalars().all()
    assert row == "BN0009" and details == ['{"fields":["hospital_id"]}']


def ingest_requiring_order(engine: Engine, sample: str, test: str = "GLU",
                           raw: bytes = RAW) -> int:
    """Store one result as a link of a gateway with [orders] configured does."""
    av = Autoverification(load_rules(RULES), Policy(), driver="generic-astm",
                          require_order=True)
    with engine.begin() as conn:
        stored = store_for_analyzer(conn, analyzer="cobas", family="roche_cobas",
                                    protocol="astm", raw=raw, received_at=T0,
                                    results=[result(sample=sample, test=test)],
                                    autoverification=av)
    return stored.result_ids[0]


def test_results_without_an_order_are_held_never_guessed(engine: Engine) -> None:
    """No order: held "no order"; a test not ordered: held "not ordered"; ordered: autoverified."""
    receive(engine, ORM)
    lost = ingest_requiring_order(engine, "UNKNOWN1")
    extra = ingest_requiring_order(engine, "CD0001", test="K", raw=RAW + b"1")
    fine = ingest_requiring_order(engine, "CD0001", raw=RAW + b"2")
    assert (status(engine, lost).state, status(engine, lost).reasons) == (
        ResultState.HELD, ("no order: sample UNKNOWN1 has no order from the HIS",))
    assert status(engine, extra).reasons == (
        "not ordered: K is not among the tests ordered on sample CD0001",)
    assert status(engine, fine).state is ResultState.AUTOVERIFIED


def test_the_oru_payload_carries_the_ordered_patient(engine: Engine) -> None:
    """The name, birth date and sex from the order reach the outbox payload."""
    users(engine)
    receive(engine, ORM)
    ingest_requiring_order(engine, "CD0001")
    with engine.begin() as conn:
        validate_sample(conn, "CD0001", "lan", Policy(require_approval=False), approve=False,
                        at=T0 + timedelta(minutes=1))
    enqueue(engine)
    with engine.begin() as conn:
        [entry] = outbox.entries(conn)
        item = payload(conn, entry.id)
    assert (item.hospital_id, item.family_name, item.middle_name, item.given_name,
            item.birth_date, item.sex) == ("BN0001", "Nguyễn", "Văn", "An", date(1980, 1, 2),
                                           "M")
    assert dataclasses.asdict(item)["national_id"] == "079000000001"
    assert item.placer_order == "CD0001"
