"""Orders from the HIS in the store (SQL only here).

:func:`store_order_message` keeps every order message as received (refused
ones too, with their problems) and, when it is acceptable, applies it:
the patient's identifiers and name go on each sample (the HIS is the
authority: given values replace stored ones, and the change is audited),
new orders are added, a change replaces the tests of its placer order, a
cancellation marks them cancelled. All in the caller's transaction, so the
HIS's ACK can wait for the commit.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Connection, and_, insert, select, update

from lis_gateway.hl7.orders_in import IncomingOrder, OrderControl, OrderMessage, OrderPatient
from lis_gateway.store import downloads
from lis_gateway.store import schema as s
from lis_gateway.store._common import as_utc, canonical_json, primary_key, require_aware
from lis_gateway.store.audit import append_audit
from lis_gateway.store.patients import ANALYZER, ANALYZER_FIELDS
from lis_gateway.store.repository import ensure_sample

ORDERED, CANCELLED = "ordered", "cancelled"


@dataclass(frozen=True, slots=True)
class StoredOrders:
    """What :func:`store_order_message` did.

    Attributes:
        message_id: the ``order_messages`` row (kept whether accepted or not).
        accepted: the orders were applied.
        problems: why not (empty when accepted).
        samples: the barcodes the message touched.
    """

    message_id: int
    accepted: bool
    problems: tuple[str, ...]
    samples: tuple[str, ...] = ()


def store_order_message(conn: Connection, *, raw: bytes, control_id: str,
                        parsed: OrderMessage, source: str, at: datetime,
                        download_to: Mapping[str, Collection[str]] | None = None
                        ) -> StoredOrders:
    """Keep the message, then apply its orders if it has no problem.

    ``download_to`` (analyzer -> the local codes its mapping table has) names
    the analyzers that take pushed work: the tests this message adds or
    cancels on a sample are queued for each of them that does the test
    (:mod:`lis_gateway.store.downloads`), in this same transaction.
    """
    when = require_aware(at, "at")
    message_id = int(primary_key(conn.execute(insert(s.order_messages).values(
        raw=raw, control_id=control_id, accepted=parsed.acceptable,
        problems=canonical_json(list(parsed.problems)), source=source,
        received_at=when)))[0])
    if not parsed.acceptable:
        append_audit(conn, actor="his", action="orders.refused",
                     target=f"order-message:{message_id}",
                     detail={"control_id": control_id, "problems": list(parsed.problems)},
                     source=source, at=when)
        return StoredOrders(message_id, False, parsed.problems)
    touched: list[str] = []
    before: dict[str, list[str]] = {}
    for order in parsed.orders:
        if order.barcode not in before:
            before[order.barcode] = _active(conn, order.barcode)
        sample_id = _sample_with_patient(conn, order.barcode, parsed.patient, when)
        _apply(conn, sample_id, order, message_id, when)
        if order.barcode not in touched:
            touched.append(order.barcode)
    if download_to:
        for barcode, was in before.items():
            now = _active(conn, barcode)
            downloads.enqueue_order_changes(conn, download_to, barcode,
                                            added=[t for t in now if t not in was],
                                            cancelled=[t for t in was if t not in now],
                                            at=when)
    append_audit(conn, actor="his", action="orders.received",
                 target=f"order-message:{message_id}",
                 detail={"control_id": control_id, "samples": touched,
                         "orders": [{"control": o.control.value, "sample": o.barcode,
                                     "placer": o.placer_order, "tests": list(o.tests)}
                                    for o in parsed.orders]},
                 source=source, at=when)
    return StoredOrders(message_id, True, (), tuple(touched))


def _active(conn: Connection, barcode: str) -> list[str]:
    """The tests ordered and not cancelled on a sample, each once, in order."""
    return list(dict.fromkeys(t.test_code for t in ordered_tests(conn, barcode)
                              if t.status == ORDERED))


def _sample_with_patient(conn: Connection, barcode: str, patient: OrderPatient,
                         at: datetime) -> int:
    sample_id = ensure_sample(conn, barcode, at)
    given: dict[str, object] = {k: v for k, v in (
        ("hospital_id", patient.hospital_id), ("national_id", patient.national_id),
        ("insurance_card", patient.insurance_card), ("family_name", patient.family_name),
        ("middle_name", patient.middle_name), ("given_name", patient.given_name),
        ("birth_date", patient.birth_date), ("sex", patient.sex),
        ("visit_number", patient.visit_number)) if v}
    row = conn.execute(select(s.samples).where(s.samples.c.id == sample_id)).one()
    if row.patient_source == ANALYZER:
        # the analyzer's record was a stand-in: the HIS's patient replaces all of it
        cleared: dict[str, object] = {"hospital_id": None, "birth_date": None}
        cleared.update({k: "" for k in ANALYZER_FIELDS if k not in cleared})
        given = {**cleared, **given}
        append_audit(conn, actor="his", action="sample.patient-replaced",
                     target=f"sample:{barcode}",
                     detail={"was": ANALYZER, "analyzer": row.patient_analyzer},
                     source="orders", at=at)
        changed = []
    else:
        changed = sorted(k for k, v in given.items()
                         if getattr(row, k) not in (None, "") and getattr(row, k) != v)
    conn.execute(update(s.samples).where(s.samples.c.id == sample_id).values(
        patient_source="his", **given))
    if changed:  # which fields, not their values: the audit log holds no patient data
        append_audit(conn, actor="his", action="sample.patient-changed",
                     target=f"sample:{barcode}", detail={"fields": changed}, source="orders",
                     at=at)
    return sample_id


def _apply(conn: Connection, sample_id: int, order: IncomingOrder, message_id: int,
           at: datetime) -> None:
    o = s.orders
    mine = and_(o.c.sample_id == sample_id, o.c.placer_order == order.placer_order)
    if order.control is OrderControl.CANCEL:
        # without a placer number the cancellation is by barcode: the sample's every order
        scope = mine if order.placer_order else o.c.sample_id == sample_id
        cancel = scope if not order.tests else and_(scope, o.c.test_code.in_(order.tests))
        conn.execute(update(o).where(cancel).values(status=CANCELLED,
                                                    order_message_id=message_id))
        return
    if order.control is OrderControl.CHANGE:
        conn.execute(update(o).where(and_(mine, o.c.test_code.not_in(order.tests))).values(
            status=CANCELLED, order_message_id=message_id))
    for test in order.tests:
        values = {"status": ORDERED, "priority": order.priority,
                  "collected_at": order.collected_at, "order_message_id": message_id,
                  "ordered_at": order.ordered_at or at}
        existing = conn.execute(select(o.c.id).where(
            and_(mine, o.c.test_code == test))).scalar_one_or_none()
        if existing is None:
            conn.execute(insert(o).values(sample_id=sample_id, test_code=test,
                                          placer_order=order.placer_order, **values))
        else:
            conn.execute(update(o).where(o.c.id == existing).values(**values))


@dataclass(frozen=True, slots=True)
class OrderedTest:
    """One test ordered on a sample."""

    test_code: str
    placer_order: str
    status: str
    priority: str


def ordered_tests(conn: Connection, accession: str) -> tuple[OrderedTest, ...]:
    """The tests ordered on a sample (cancelled ones included, with their status)."""
    o = s.orders
    rows = conn.execute(select(o.c.test_code, o.c.placer_order, o.c.status, o.c.priority)
                        .join(s.samples, s.samples.c.id == o.c.sample_id)
                        .where(s.samples.c.accession == accession).order_by(o.c.id)).all()
    return tuple(OrderedTest(r.test_code, r.placer_order, r.status, r.priority) for r in rows)


def order_problems(conn: Connection, message_id: int) -> tuple[str, ...]:
    """The problems a refused order message was refused for."""
    import json

    raw = conn.execute(select(s.order_messages.c.problems).where(
        s.order_messages.c.id == message_id)).scalar_one()
    return tuple(json.loads(raw))


def hold_reason(ordered: Sequence[OrderedTest], accession: str, test_code: str) -> str:
    """Why a result of ``test_code`` on ``accession`` has no order ("" when it has one).

    ``ordered`` is the sample's :func:`ordered_tests`; ``test_code`` is the local
    code (what the HIS orders); a result that is not mapped has none, and only
    the sample's order is checked.
    """
    tests = [t for t in ordered if t.status == ORDERED]
    if not tests:
        return f"no order: sample {accession} has no order from the HIS"
    if test_code and test_code not in {t.test_code for t in tests}:
        return f"not ordered: {test_code} is not among the tests ordered on sample {accession}"
    return ""


@dataclass(frozen=True, slots=True)
class SampleOrder:
    """A sample's patient and its active orders, as host queries need them."""

    accession: str
    hospital_id: str
    national_id: str
    insurance_card: str
    family_name: str
    middle_name: str
    given_name: str
    birth_date: date | None
    sex: str
    tests: tuple[OrderedTest, ...]
    collected_at: datetime | None


def sample_orders(conn: Connection, accessions: Sequence[str]) -> list[SampleOrder]:
    """The barcodes that have active orders, with their patient (unknown ones left out)."""
    found = (sample_for_download(conn, accession) for accession in accessions)
    return [order for order in found if order is not None and order.tests]


def sample_for_download(conn: Connection, accession: str) -> SampleOrder | None:
    """A sample's patient and active orders, also when none is active (a cancellation)."""
    row = conn.execute(select(s.samples).where(s.samples.c.accession == accession)).first()
    if row is None:
        return None
    o = s.orders
    active = conn.execute(select(o).where(o.c.sample_id == row.id, o.c.status == ORDERED)
                          .order_by(o.c.id)).all()
    collected = [as_utc(r.collected_at) for r in active if r.collected_at is not None]
    return SampleOrder(
        accession, row.hospital_id or "", row.national_id or "", row.insurance_card or "",
        row.family_name, row.middle_name, row.given_name, row.birth_date, row.sex,
        tuple(OrderedTest(r.test_code, r.placer_order, r.status, r.priority) for r in active),
        min(collected) if collected else None)
