"""The outbox on SQLite and PostgreSQL: released versions queued, in order, with their fate."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Connection, Engine, event

from lis_gateway.lifecycle import Policy
from lis_gateway.outbound.delivery import (
    DeliveryStatus,
    EntryState,
    control_id_for,
    decide,
)
from lis_gateway.store import judgements, outbox
from lis_gateway.store import repository as repo
from lis_gateway.store._common import StoreError
from lis_gateway.store.audit import audit_entries, verify_audit
from lis_gateway.validation import retract_result, validate_sample
from lis_gateway.webapp.actions import correct

from .test_lifecycle_store import ingest, users
from .test_repository import RAW, T0, result

ONE_STEP = Policy(require_approval=False)
LATER = T0 + timedelta(minutes=10)


def release(engine: Engine, accession: str) -> None:
    """Technician validates ``accession`` under the one-step policy (which releases it)."""
    with engine.begin() as conn:
        out = validate_sample(conn, accession, "lan", ONE_STEP, approve=False,
                              at=T0 + timedelta(minutes=5), source="test")
    assert all(o.refused == "" for o in out)


def enqueue(engine: Engine, destination: str = "his") -> int:
    """Queue released versions for ``destination`` as the delivery worker does."""
    with engine.begin() as conn:
        return outbox.enqueue_released(conn, destination, LATER)


def due(engine: Engine, now: datetime = LATER, limit: int = 10) -> list[outbox.OutboxEntry]:
    """The due entries of destination ``his``."""
    with engine.begin() as conn:
        return outbox.due(conn, "his", now, limit)


def answer(engine: Engine, entry: outbox.OutboxEntry, status: DeliveryStatus,
           error: str = "", at: datetime = LATER) -> outbox.OutboxEntry:
    """Record an attempt as the delivery worker does."""
    decision = decide(status, entry.attempts + 1, at.timestamp(), 0.0)
    nxt = None
    if decision.next_attempt_at is not None:
        nxt = at + timedelta(seconds=decision.next_attempt_at - at.timestamp())
    with engine.begin() as conn:
        return outbox.record_attempt(conn, entry.id, status, decision, error=error, at=at,
                                     next_attempt_at=nxt)


def test_only_released_results_are_queued_once_per_destination(engine: Engine) -> None:
    """Held results wait; a released one gets one entry per destination, found again never."""
    users(engine)
    ingest(engine, [result(sample="S1", value="5.0")], policy=ONE_STEP)
    ingest(engine, [result(sample="S2", value="5.1")], raw=RAW + b"2", policy=ONE_STEP)
    assert enqueue(engine) == 0
    release(engine, "S1")
    assert (enqueue(engine), enqueue(engine), enqueue(engine, "fhir")) == (1, 0, 1)
    [entry] = due(engine)
    with engine.begin() as conn:
        status = judgements.result_status(conn, entry.result_id)
    assert (entry.accession, entry.test_code, entry.state, entry.attempts) == (
        "S1", "GLU", EntryState.PENDING, 0)
    assert entry.result_version_id == status.version_id
    assert entry.control_id == control_id_for(status.version_id)


def test_a_samples_entries_leave_in_order(engine: Engine) -> None:
    """The second entry of a sample waits until the first is delivered; other samples do not."""
    users(engine)
    ingest(engine, [result(sample="S1", test="GLU"), result(sample="S1", test="UREA")],
           policy=ONE_STEP)
    ingest(engine, [result(sample="S2", value="5.1")], raw=RAW + b"2", policy=ONE_STEP)
    release(engine, "S1")
    release(engine, "S2")
    assert enqueue(engine) == 3
    first, other = due(engine)
    assert (first.accession, first.test_code, other.accession) == ("S1", "GLU", "S2")
    # AE: the first waits for its back-off, and its sample's next entry still waits for it
    answer(engine, first, DeliveryStatus.RETRY, "database busy")
    assert [e.accession for e in due(engine)] == ["S2"]
    later = due(engine, now=LATER + timedelta(seconds=6))
    assert [(e.accession, e.test_code) for e in later] == [("S1", "GLU"), ("S2", "GLU")]
    answer(engine, later[0], DeliveryStatus.DELIVERED, at=LATER + timedelta(seconds=6))
    assert [(e.accession, e.test_code) for e in due(engine, now=LATER + timedelta(seconds=7))] \
        == [("S1", "UREA"), ("S2", "GLU")]


def test_rejected_goes_dead_with_its_reason_and_a_person_can_retry_it(engine: Engine) -> None:
    """AR: dead, with the HIS's text, audited; retry puts it back, due now; the chain holds."""
    users(engine)
    ingest(engine, [result()], policy=ONE_STEP)
    release(engine, "S1")
    enqueue(engine)
    [entry] = due(engine)
    dead = answer(engine, entry, DeliveryStatus.REJECTED, "unknown patient")
    assert (dead.state, dead.attempts, dead.last_status, dead.last_error) == (
        EntryState.DEAD, 1, "rejected", "unknown patient")
    assert dead.next_attempt_at is None and due(engine) == []
    with engine.begin() as conn:
        assert [e.id for e in outbox.entries(conn, state=EntryState.DEAD)] == [entry.id]
        again = outbox.retry(conn, entry.id, actor="lan", at=LATER + timedelta(hours=1),
                             source="test")
        with pytest.raises(StoreError, match="only a dead entry"):
            outbox.retry(conn, entry.id, actor="lan", at=LATER, source="test")
        assert verify_audit(conn) == []
    assert again.state is EntryState.PENDING
    [back] = due(engine, now=LATER + timedelta(hours=1))
    delivered = answer(engine, back, DeliveryStatus.DELIVERED, at=LATER + timedelta(hours=1))
    assert (delivered.state, delivered.attempts, delivered.delivered_at) == (
        EntryState.DELIVERED, 2, LATER + timedelta(hours=1))
    with engine.begin() as conn, pytest.raises(StoreError, match="not pending"):
        outbox.record_attempt(conn, back.id, DeliveryStatus.DELIVERED,
                              decide(DeliveryStatus.DELIVERED, 3, 0, 0), error="", at=LATER,
                              next_attempt_at=None)


def test_an_unreleased_correction_is_not_queued(engine: Engine) -> None:
    """A released result corrected: the new version waits for its own release; the
    original's entry stays as it was."""
    users(engine)
    ingest(engine, [result()], policy=ONE_STEP)
    release(engine, "S1")
    enqueue(engine)
    [original] = due(engine)
    with engine.begin() as conn:
        [version] = repo.result_versions(conn, original.result_id)
        repo.correct_result(conn, version.id, dataclasses.replace(version.content,
                                                                  value_raw="5.6"),
                            reason="transcription", author="lan", at=LATER, source="test")
    assert enqueue(engine) == 0  # the correction is not released yet
    with engine.begin() as conn:
        status = judgements.result_status(conn, original.result_id)
    assert status.version_id != original.result_version_id
    assert [e.result_version_id for e in due(engine)] == [original.result_version_id]


def test_the_scan_can_start_after_a_high_water_mark(engine: Engine) -> None:
    """Events up to the mark are skipped; a scan from 0 (every worker start) finds them."""
    users(engine)
    ingest(engine, [result(sample="S1")], policy=ONE_STEP)
    ingest(engine, [result(sample="S2", value="5.1")], raw=RAW + b"2", policy=ONE_STEP)
    release(engine, "S1")
    with engine.begin() as conn:
        mark = outbox.last_event_id(conn)
    release(engine, "S2")
    with engine.begin() as conn:
        assert outbox.enqueue_released(conn, "his", LATER, after_event_id=mark) == 1
        assert [e.accession for e in outbox.entries(conn)] == ["S2"]
        assert outbox.enqueue_released(conn, "his", LATER) == 1
        assert sorted(e.accession for e in outbox.entries(conn)) == ["S1", "S2"]
        assert outbox.last_event_id(conn) > mark


def test_only_a_version_after_a_released_one_is_a_correction(engine: Engine) -> None:
    """Re-mapping a never-released result makes version 2, which is not a correction."""
    users(engine)
    ingest(engine, [result(sample="S1")], policy=ONE_STEP)
    ingest(engine, [result(sample="S2", value="5.1")], raw=RAW + b"2", policy=ONE_STEP)
    release(engine, "S1")
    with engine.begin() as conn:
        for accession in ("S1", "S2"):
            [info] = repo.results_for_sample(conn, accession)
            repo.correct_result(conn, info.latest.id, dataclasses.replace(
                info.latest.content, value_raw="5.6"), reason="re-mapped", author="system",
                at=LATER)
        [s1] = repo.results_for_sample(conn, "S1")
        [s2] = repo.results_for_sample(conn, "S2")
        assert outbox.released_before(conn, s1.id, 2) is True
        assert outbox.released_before(conn, s2.id, 2) is False


# ------------------------------------------------------------------ batches


def test_due_batch_lists_a_samples_entries_in_order_until_one_waits(engine: Engine) -> None:
    """A batch may hold a sample's entries one after another; while the first waits for
    its retry, the rest of its sample waits too; other samples do not."""
    users(engine)
    ingest(engine, [result(sample="S1", test="GLU"), result(sample="S1", test="UREA")],
           policy=ONE_STEP)
    ingest(engine, [result(sample="S2", value="5.1")], raw=RAW + b"2", policy=ONE_STEP)
    release(engine, "S1")
    release(engine, "S2")
    assert enqueue(engine) == 3

    def batch(now: datetime = LATER, limit: int = 10) -> list[tuple[str, str]]:
        with engine.begin() as conn:
            return [(e.accession, e.test_code)
                    for e in outbox.due_batch(conn, "his", now, limit)]

    assert batch() == [("S1", "GLU"), ("S1", "UREA"), ("S2", "GLU")]
    assert batch(limit=2) == [("S1", "GLU"), ("S1", "UREA")]
    [first, *_] = due(engine)
    answer(engine, first, DeliveryStatus.RETRY, "database busy")  # back-off: 5 s
    assert batch() == [("S2", "GLU")]
    assert batch(LATER + timedelta(seconds=6)) == [("S1", "GLU"), ("S1", "UREA"), ("S2", "GLU")]
    answer(engine, first, DeliveryStatus.REJECTED, at=LATER + timedelta(seconds=6))
    assert batch(LATER + timedelta(seconds=7)) == [("S1", "UREA"), ("S2", "GLU")]


def _three_samples(engine: Engine) -> None:
    """S1 (GLU, UREA) released by lan with a placer order; S2 corrected after its release;
    S3 released and then retracted."""
    users(engine)
    with engine.begin() as conn:
        repo.add_order(conn, "S1", "UREA", T0, placer_order="P-77")
        repo.ensure_sample(conn, "S2", T0, repo.PatientIds("H42"))
    ingest(engine, [result(sample="S1", test="GLU"), result(sample="S1", test="UREA")],
           policy=ONE_STEP)
    ingest(engine, [result(sample="S2", value="5.1")], raw=RAW + b"2", policy=ONE_STEP)
    ingest(engine, [result(sample="S3", value="5.2")], raw=RAW + b"3", policy=ONE_STEP)
    for accession in ("S1", "S2", "S3"):
        release(engine, accession)
    with engine.begin() as conn:
        [s2] = repo.results_for_sample(conn, "S2")
        fixed = correct(conn, s2.latest.id, "lan", ONE_STEP, "5.6", "transcription",
                        at=LATER, source="test")
        assert fixed.refused == ""
        validate_sample(conn, "S2", "lan", ONE_STEP, approve=False, at=LATER, source="test")
        assert retract_result(conn, "S3", "GLU", "dr_minh", "another patient", at=LATER,
                              source="test").refused == ""
    enqueue(engine)


def test_payloads_of_a_batch_are_those_of_each_entry_read_alone(engine: Engine) -> None:
    """Read together, no entry takes another's patient, order, person or correction."""
    _three_samples(engine)
    assert len(outbox_entries(engine)) == 6
    with engine.begin() as conn:
        batch = outbox.due_batch(conn, "his", LATER, 50)
        together = outbox.payloads(conn, batch)
        alone = {e.id: outbox.payloads(conn, [e])[e.id] for e in batch}
        assert outbox.payloads(conn, []) == {}
    assert together == alone
    by_test = {(p.accession, p.test_code, p.corrected): p for p in together.values()}
    assert by_test[("S1", "UREA", False)].placer_order == "P-77"
    assert by_test[("S1", "GLU", False)].placer_order == ""
    assert by_test[("S2", "GLU", True)].hospital_id == "H42"
    assert by_test[("S2", "GLU", False)].content.value_raw == "5.1"
    assert {p.responsible for p in together.values() if not p.retracted} == {"lan"}
    [retraction] = [p for p in together.values() if p.retracted]
    assert (retraction.accession, retraction.responsible) == ("S3", "dr_minh")


def answered(entry: outbox.OutboxEntry, status: DeliveryStatus, error: str = ""
             ) -> outbox.Attempt:
    """The attempt the worker notes for ``entry``'s answer at LATER."""
    decision = decide(status, entry.attempts + 1, LATER.timestamp(), 0.0)
    nxt = None
    if decision.next_attempt_at is not None:
        nxt = LATER + timedelta(seconds=decision.next_attempt_at - LATER.timestamp())
    return outbox.Attempt(entry.id, status, decision, error, LATER, nxt)


def test_record_attempts_records_a_batch_and_audits_the_dead(engine: Engine) -> None:
    """Delivered, retried and rejected in one call; an entry no longer pending is left."""
    _three_samples(engine)
    first, second, third, fourth, *_ = outbox_entries(engine)
    gone = answer(engine, fourth, DeliveryStatus.DELIVERED)  # recorded by someone else
    with engine.begin() as conn:
        recorded = outbox.record_attempts(conn, [
            answered(first, DeliveryStatus.DELIVERED),
            answered(second, DeliveryStatus.RETRY, "busy"),
            answered(third, DeliveryStatus.REJECTED, "unknown patient"),
            answered(fourth, DeliveryStatus.RETRY, "late")])
        assert recorded == 3
        assert [e.action for e in audit_entries(conn)].count("outbox.dead") == 1
        assert verify_audit(conn) == []
    after = {e.id: e for e in outbox_entries(engine)}
    assert (after[first.id].state, after[first.id].attempts, after[first.id].delivered_at) \
        == (EntryState.DELIVERED, 1, LATER)
    assert (after[second.id].state, after[second.id].last_error,
            after[second.id].next_attempt_at) == (
        EntryState.PENDING, "busy", LATER + timedelta(seconds=2.5))  # 5 s, full jitter
    assert (after[third.id].state, after[third.id].last_error) == (
        EntryState.DEAD, "unknown patient")
    assert after[fourth.id] == gone
    with engine.begin() as conn, pytest.raises(StoreError, match="next attempt time"):
        outbox.record_attempts(conn, [dataclasses.replace(
            answered(first, DeliveryStatus.RETRY), next_attempt_at=None)])


def outbox_entries(engine: Engine) -> list[outbox.OutboxEntry]:
    """Every entry, oldest first."""
    with engine.begin() as conn:
        return outbox.entries(conn)


def statements(engine: Engine, work: Callable[[Connection], object]) -> list[str]:
    """The SQL statements ``work`` sends in one transaction (their first word)."""
    seen: list[str] = []

    def note(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement.split(None, 1)[0].upper())

    event.listen(engine, "before_cursor_execute", note)
    try:
        with engine.begin() as conn:
            work(conn)
    finally:
        event.remove(engine, "before_cursor_execute", note)
    return seen


def test_reading_and_recording_a_batch_costs_what_one_entry_costs(engine: Engine) -> None:
    """Queue, read with payloads and record: the same statements for one entry as for
    several (no statement per entry)."""
    users(engine)

    def look(conn: Connection) -> list[outbox.OutboxEntry]:
        outbox.enqueue_released(conn, "his", LATER)
        batch = outbox.due_batch(conn, "his", LATER, 50)
        outbox.payloads(conn, batch)
        outbox.depth(conn, "his", LATER)
        return batch

    def record(conn: Connection) -> None:
        batch = outbox.due_batch(conn, "his", LATER, 50)
        outbox.record_attempts(conn, [answered(e, DeliveryStatus.DELIVERED) for e in batch])
        outbox.received_at_many(conn, [e.result_id for e in batch])

    ingest(engine, [result(sample="S1")], policy=ONE_STEP)
    release(engine, "S1")
    one = statements(engine, look), statements(engine, record)
    for n in range(2, 6):
        ingest(engine, [result(sample=f"S{n}", test="GLU"), result(sample=f"S{n}", test="UREA")],
               raw=RAW + str(n).encode(), policy=ONE_STEP)
        release(engine, f"S{n}")
    many = statements(engine, look), statements(engine, record)
    assert len(outbox_entries(engine)) == 9
    assert many == one
    assert {e.state for e in outbox_entries(engine)} == {EntryState.DELIVERED}
    assert len(one[0]) <= 12 and len(one[1]) <= 4  # BEGIN included
