"""Retracting a released result: lifecycle in the store, a retraction entry per destination
after the result's own, its payload, and the reconciliation (SQLite, PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from lis_gateway.lifecycle import ResultState
from lis_gateway.outbound.delivery import DeliveryStatus, EntryState, control_id_for
from lis_gateway.store import judgements, outbox
from lis_gateway.store.reconcile import reconcile
from lis_gateway.validation import retract_result

from .test_lifecycle_store import ingest, users
from .test_outbox import LATER, ONE_STEP, answer, due, enqueue, release
from .test_repository import T0, result

AT = T0 + timedelta(minutes=20)


def retract(engine: Engine, user: str = "dr_minh", reason: str = "sample of another patient"
            ) -> tuple[ResultState, str]:
    with engine.begin() as conn:
        out = retract_result(conn, "S1", "GLU", user, reason, at=AT, source="test")
    return out.after, out.refused


def test_only_a_doctor_retracts_a_released_result_with_a_reason(engine: Engine) -> None:
    """A technician is refused; a held result cannot be retracted; the doctor's works."""
    users(engine)
    ingest(engine, [result(sample="S1", value="5.0")], policy=ONE_STEP)
    assert retract(engine) == (ResultState.AUTOVERIFIED,
                               "retract is not allowed from this state: autoverified")
    release(engine, "S1")
    assert "lan" in retract(engine, user="lan")[1]
    assert "reason" in retract(engine, reason=" ")[1]
    assert retract(engine) == (ResultState.RETRACTED, "")
    assert retract(engine)[1] == "retract is not allowed from this state: retracted"


def test_the_retraction_follows_the_result_and_reconciles(engine: Engine) -> None:
    """Entry LG<n> then LG<n>X; the payload names what it retracts and who; reconcile says
    retracted once the destination acknowledged the deletion."""
    users(engine)
    ingest(engine, [result(sample="S1", value="5.0")], policy=ONE_STEP)
    release(engine, "S1")
    assert enqueue(engine) == 1
    [first] = due(engine)
    answer(engine, first, DeliveryStatus.DELIVERED)
    assert retract(engine) == (ResultState.RETRACTED, "")
    assert (enqueue(engine), enqueue(engine)) == (1, 0)
    [second] = due(engine, LATER + timedelta(minutes=30))
    assert (second.kind, second.control_id, second.result_version_id) == (
        outbox.RETRACTION, control_id_for(first.result_version_id) + "X",
        first.result_version_id)
    with engine.begin() as conn:
        item = outbox.payload(conn, second.id)
        [row] = reconcile(conn, ["his"])
    assert (item.retracted, item.retracts, item.responsible) == (True, first.control_id,
                                                                 "dr_minh")
    assert (row.state, row.destinations[0].where) == (ResultState.RETRACTED, "pending")
    answer(engine, second, DeliveryStatus.DELIVERED)
    with engine.begin() as conn:
        [row] = reconcile(conn, ["his"])
        status = judgements.result_status(conn, row.result_id)
    assert (row.destinations[0].where, row.destinations[0].control_id) == (
        "retracted", second.control_id)
    assert status.reasons == ("sample of another patient",)


def test_a_result_retracted_before_delivery_still_goes_first(engine: Engine) -> None:
    """Both entries queue in release-then-retraction order; the retraction waits for it."""
    users(engine)
    ingest(engine, [result(sample="S1", value="5.0")], policy=ONE_STEP)
    release(engine, "S1")
    retract(engine)
    assert enqueue(engine) == 2
    with engine.begin() as conn:
        entries = outbox.entries(conn)
    assert [e.kind for e in entries] == [outbox.RESULT, outbox.RETRACTION]
    assert [e.id for e in due(engine, LATER + timedelta(minutes=30))] == [entries[0].id]
    assert entries[0].state is EntryState.PENDING
