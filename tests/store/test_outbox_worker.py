"""OutboxWorker on a task.Clock and StringTransports, with the real store (SQLite, PostgreSQL).

The HIS answers AA, AE, AR, nothing, or drops the connection; each answer
must leave the outbox in the state the delivery policy says, and a worker
restarted mid-wait must resend the same message (same MSH-10).
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from lis_gateway import metrics
from lis_gateway.hl7.datatypes import HierarchicDesignator, MessageRoute
from lis_gateway.hl7.message import parse_message
from lis_gateway.hl7.mllp import FS, VT
from lis_gateway.outbound import worker as worker_module
from lis_gateway.outbound.channel import MllpChannel
from lis_gateway.outbound.delivery import Backoff, EntryState
from lis_gateway.outbound.sender import HisClient
from lis_gateway.outbound.worker import OutboxWorker
from lis_gateway.store import outbox
from lis_gateway.store import repository as repo
from lis_gateway.store.pool import NonThreadPool

from ..adapters.test_mllp_protocol import LoopbackEndpoint, his_ack
from ..outbound.test_send_deadline import HangingEndpoint
from .test_lifecycle_store import ingest, users
from .test_outbox import ONE_STEP, release
from .test_repository import RAW, T0, result

ROUTE = MessageRoute(sending_application=HierarchicDesignator("LIS_GATEWAY"),
                     receiving_application=HierarchicDesignator("HIS"))
START = (T0 + timedelta(minutes=10)).timestamp()


class CountingPool:
    """NonThreadPool noting the name of each transaction's function."""

    def __init__(self, engine: Engine) -> None:
        self._pool = NonThreadPool(engine)
        self.runs: list[str] = []
        self.args: list[tuple[Any, ...]] = []

    def run(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.runs.append(fn.__name__)
        self.args.append(args)
        return self._pool.run(fn, *args, **kwargs)


class Rig:
    """A worker for destination ``his`` over a loopback endpoint, on a Clock."""

    def __init__(self, engine: Engine, *, ack_timeout: float = 30.0,
                 endpoint: Any = None, destination: str = "his") -> None:
        self.engine, self.clock = engine, Clock()
        self.endpoint = LoopbackEndpoint() if endpoint is None else endpoint
        self.clock.advance(START)
        self.client = HisClient(self.endpoint, self.clock, ack_timeout=ack_timeout,
                                retry_policy=lambda attempt: 1.0)
        self.channel = MllpChannel(self.client, ROUTE, HierarchicDesignator("BV_TEST"))
        self.pool = CountingPool(engine)
        self.worker = OutboxWorker(destination, self.pool, self.channel, self.clock,
                                   poll_interval=2.0, backoff=Backoff(jitter=0.0),
                                   rand=lambda: 0.0)

    def start(self) -> None:
        """Start the worker and run its first look at the outbox."""
        self.worker.startService()
        self.clock.advance(0)

    def sent(self, connection: int = -1) -> list[bytes]:
        """The messages written on a connection, unframed."""
        data = self.endpoint.transports[connection].value()
        return [block.strip(b"\r\n").lstrip(VT) for block in data.split(FS) if block.strip()]

    def answer(self, code: bytes, text: bytes = b"", connection: int = -1) -> None:
        """The HIS acknowledges the last message sent on the connection; the worker goes on."""
        control_id = parse_message(self.sent(connection)[-1]).control_id.encode()
        self.endpoint.protocols[connection].dataReceived(his_ack(control_id, code, text))
        self.clock.advance(0)

    def entries(self) -> list[outbox.OutboxEntry]:
        with self.engine.begin() as conn:
            return outbox.entries(conn)


def released_sample(engine: Engine, accession: str = "S1", *, raw: bytes = RAW,
                    with_patient: bool = True) -> None:
    """One released GLU result for ``accession`` (with hospital and national IDs)."""
    ingest(engine, [result(sample=accession)], raw=raw, policy=ONE_STEP)
    if with_patient:
        with engine.begin() as conn:
            repo.ensure_sample(conn, accession, T0, repo.PatientIds("H42", "079000000001"))
    release(engine, accession)


def test_aa_delivers_the_released_result_as_an_oru(engine: Engine) -> None:
    """The ORU carries the stable control ID, the patient IDs, F status; AA marks it delivered."""
    users(engine)
    released_sample(engine)
    rig = Rig(engine)
    rig.start()
    [message] = rig.sent()
    parsed = parse_message(message)
    [entry] = rig.entries()
    assert parsed.control_id == entry.control_id
    text = message.decode()
    assert "PID|1||H42^^^BV_TEST^PI~079000000001^^^BCA^NNVNM|" in text
    obx = next(line for line in text.split("\r") if line.startswith("OBX"))
    fields = obx.split("|")
    assert (fields[3], fields[5], fields[6], fields[11], fields[16], fields[18]) == (
        "2345-7^^LN^GLU^GLU^99LOCAL", "5.4", "mmol/L^mmol/L^UCUM", "F", "lan", "cobas")
    rig.answer(b"AA")
    [entry] = rig.entries()
    assert (entry.state, entry.attempts, entry.last_status) == (
        EntryState.DELIVERED, 1, "delivered")
    rig.worker.stopService()


def test_ae_and_silence_are_retried_with_backoff_ar_is_dead_lettered(engine: Engine) -> None:
    """AE -> again after 5 s; silence -> again after 10 s; AR -> dead with the HIS's text."""
    users(engine)
    released_sample(engine)
    rig = Rig(engine, ack_timeout=30.0)
    rig.start()
    rig.answer(b"AE", b"database busy")
    [entry] = rig.entries()
    assert (entry.state, entry.attempts, entry.last_error) == (
        EntryState.PENDING, 1, "database busy")
    rig.clock.advance(4.9)
    assert len(rig.sent()) == 1  # still backing off
    rig.clock.advance(2.1)  # past the 5 s back-off, and the 2 s poll
    assert (len(rig.sent()) == 2 and rig.sent()[0] == rig.sent()[1]) or \
        parse_message(rig.sent()[1]).control_id == entry.control_id
    rig.clock.advance(30.0)  # the HIS says nothing: ACK timeout
    [entry] = rig.entries()
    assert (entry.state, entry.attempts, entry.last_status) == (EntryState.PENDING, 2, "timeout")
    rig.clock.advance(12.0)  # 10 s back-off for the second failure, then the poll
    assert len(rig.sent()) == 3
    rig.answer(b"AR", b"unknown patient")
    [entry] = rig.entries()
    assert (entry.state, entry.attempts, entry.last_error) == (
        EntryState.DEAD, 3, "unknown patient")
    rig.clock.advance(3600)
    assert len(rig.sent()) == 3  # a dead entry is not sent again by itself
    rig.worker.stopService()


def test_a_dropped_connection_and_a_restart_resend_the_same_message(engine: Engine) -> None:
    """Connection lost before the ACK: pending; a new worker later resends the same MSH-10."""
    users(engine)
    released_sample(engine)
    rig = Rig(engine)
    rig.start()
    [first] = rig.sent()
    rig.endpoint.protocols[0].connectionLost(Failure(ConnectionError("reset")))
    [entry] = rig.entries()
    assert (entry.state, entry.last_status) == (EntryState.PENDING, "connection-lost")
    rig.worker.stopService()  # the gateway stops while the entry waits

    again = Rig(engine)  # a fresh process: new client, new clock at a later time
    again.clock.advance(60)
    again.start()
    [second] = again.sent()
    assert parse_message(second).control_id == parse_message(first).control_id
    again.answer(b"AA")
    assert [(e.state, e.attempts) for e in again.entries()] == [(EntryState.DELIVERED, 2)]
    again.worker.stopService()


def test_a_result_without_patient_id_waits_visibly_and_goes_once_it_has_one(
        engine: Engine) -> None:
    """No PID identifier: not sent, pending with the reason; after the ID arrives it goes."""
    users(engine)
    released_sample(engine, with_patient=False)
    rig = Rig(engine)
    rig.start()
    assert rig.sent() == []
    [entry] = rig.entries()
    assert (entry.state, entry.last_status) == (EntryState.PENDING, "not-built")
    assert entry.last_error == ("the patient needs a hospital ID, a national ID or an "
                                "insurance card number")
    with engine.begin() as conn:
        repo.ensure_sample(conn, "S1", T0, repo.PatientIds(hospital_id="H42"))
    rig.clock.advance(8.0)
    [message] = rig.sent()
    assert b"H42" in message
    rig.answer(b"AA")
    assert [e.state for e in rig.entries()] == [EntryState.DELIVERED]
    rig.worker.stopService()


def test_a_stuck_sample_does_not_hold_back_other_samples(engine: Engine) -> None:
    """S1 dead-lettered, S2 still goes; both messages leave in release order."""
    users(engine)
    released_sample(engine, "S1")
    released_sample(engine, "S2", raw=RAW + b"2")
    rig = Rig(engine)
    rig.start()
    rig.answer(b"AR", b"no such visit")
    rig.answer(b"AA")
    assert [b"|S1" in m for m in rig.sent()] == [True, False]
    assert [(e.accession, e.state) for e in rig.entries()] == [
        ("S1", EntryState.DEAD), ("S2", EntryState.DELIVERED)]
    rig.worker.stopService()


def test_content_that_can_never_make_a_message_is_dead_lettered(engine: Engine) -> None:
    """An unknown flag in released content: dead with the reason, the sample not blocked."""
    users(engine)
    ingest(engine, [dataclasses.replace(result(), flags=("??",))], policy=ONE_STEP)
    with engine.begin() as conn:
        repo.ensure_sample(conn, "S1", T0, repo.PatientIds("H42"))
    release(engine, "S1")
    rig = Rig(engine)
    rig.start()
    [entry] = rig.entries()
    assert (entry.state, entry.last_status) == (EntryState.DEAD, "unbuildable")
    assert "??" in entry.last_error and rig.sent() == []
    rig.worker.stopService()


class HeldPool:
    """NonThreadPool whose answers wait until ``release()``, as a slow database would."""

    def __init__(self, engine: Engine) -> None:
        self._pool = NonThreadPool(engine)
        self.waiting: list[tuple[Deferred[object], object]] = []

    def run(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        outcome: list[object] = []
        self._pool.run(fn, *args, **kwargs).addBoth(outcome.append)
        d: Deferred[object] = Deferred()
        self.waiting.append((d, outcome[0]))
        return d

    def release(self) -> None:
        while self.waiting:
            d, value = self.waiting.pop(0)
            d.callback(value)


def test_a_restart_while_waiting_for_the_store_carries_on(engine: Engine) -> None:
    """stopService then startService while a poll waits for the database: the loop goes on."""
    users(engine)
    released_sample(engine, "S1")
    released_sample(engine, "S2", raw=RAW + b"2")
    rig = Rig(engine)
    pool = HeldPool(engine)
    rig.worker = OutboxWorker("his", pool, rig.channel, rig.clock)  # type: ignore[arg-type]
    rig.start()
    assert len(pool.waiting) == 1  # the first poll is with the database
    rig.worker.stopService()
    rig.endpoint.protocols[0].connectionLost(Failure(ConnectionError("closed by stop")))
    rig.worker.startService()
    pool.release()
    rig.clock.advance(0)
    [first] = rig.sent()
    rig.answer(b"AA")
    pool.release()  # the attempt is recorded; the loop must schedule the next poll
    rig.clock.advance(0)
    pool.release()
    first_again, second = rig.sent()
    assert first_again == first and b"|S2" in second
    rig.worker.stopService()


# ------------------------------------------------------------------ wake-up, batches, deadline


def released_pair(engine: Engine, accession: str) -> None:
    """Two released results (GLU, UREA) for ``accession``, with a hospital ID."""
    ingest(engine, [result(sample=accession, test="GLU"), result(sample=accession, test="UREA")],
           raw=RAW + accession.encode(), policy=ONE_STEP)
    with engine.begin() as conn:
        repo.ensure_sample(conn, accession, T0, repo.PatientIds("H42"))
    release(engine, accession)


def control_ids(rig: Rig) -> list[str]:
    """The MSH-10 of each message written, in order."""
    return [parse_message(m).control_id for m in rig.sent()]


def by_test(rig: Rig) -> dict[tuple[str, str], outbox.OutboxEntry]:
    """The entries by sample and test."""
    return {(e.accession, e.test_code): e for e in rig.entries()}


def test_wake_looks_at_once_instead_of_at_the_next_poll(engine: Engine) -> None:
    """Idle between polls, woken three times: one look, and the message goes now."""
    users(engine)
    rig = Rig(engine)
    rig.start()
    released_sample(engine)
    rig.clock.advance(0)
    assert rig.sent() == []  # the next poll is 2 s away
    for _ in range(3):
        rig.worker.wake()
    rig.clock.advance(0)
    assert len(rig.sent()) == 1 and rig.pool.runs == ["_look", "_look"]
    rig.answer(b"AA")
    assert [e.state for e in rig.entries()] == [EntryState.DELIVERED]
    rig.worker.stopService()
    calls = len(rig.clock.getDelayedCalls())
    rig.worker.wake()  # stopped: nothing to do
    assert len(rig.clock.getDelayedCalls()) == calls


def test_a_release_during_a_look_is_looked_for_right_after_it(engine: Engine) -> None:
    """Woken while its look is with the database (which read before the release): the
    worker looks again as soon as that look is done, not a poll later."""
    users(engine)
    rig = Rig(engine)
    pool = HeldPool(engine)
    rig.worker = OutboxWorker("his", pool, rig.channel, rig.clock)  # type: ignore[arg-type]
    rig.start()
    released_sample(engine)
    rig.worker.wake()
    pool.release()  # the first look found nothing
    rig.clock.advance(0)
    assert len(pool.waiting) == 1  # the second look, at once
    pool.release()
    rig.clock.advance(0)
    assert len(rig.sent()) == 1
    rig.worker.stopService()


def test_a_batch_is_read_in_one_transaction_and_recorded_in_another(engine: Engine) -> None:
    """Four entries of two samples: one look, four messages in order, one record."""
    users(engine)
    released_pair(engine, "S1")
    released_pair(engine, "S2")
    rig = Rig(engine)
    rig.start()
    for _ in range(4):
        rig.answer(b"AA")
    entries = rig.entries()
    assert control_ids(rig) == [e.control_id for e in entries]
    assert {(e.state, e.attempts) for e in entries} == {(EntryState.DELIVERED, 1)}
    assert rig.pool.runs == ["_look", "_record", "_look"]
    rig.worker.stopService()


def test_a_sample_waiting_for_a_retry_holds_back_its_later_entries(engine: Engine) -> None:
    """AE on S1's first result: S1's second is not sent in the batch, S2 is; after the
    back-off S1's two go, in order."""
    users(engine)
    released_pair(engine, "S1")
    released_pair(engine, "S2")
    rig = Rig(engine)
    rig.start()
    rig.answer(b"AE", b"busy")
    rig.answer(b"AA")
    rig.answer(b"AA")
    entries = by_test(rig)
    assert control_ids(rig) == [entries[k].control_id for k in (
        ("S1", "GLU"), ("S2", "GLU"), ("S2", "UREA"))]
    assert [(entries[k].state, entries[k].attempts) for k in (
        ("S1", "GLU"), ("S1", "UREA"), ("S2", "GLU"), ("S2", "UREA"))] == [
        (EntryState.PENDING, 1), (EntryState.PENDING, 0),
        (EntryState.DELIVERED, 1), (EntryState.DELIVERED, 1)]
    for _ in range(6):  # the 5 s back-off and the poll after it
        rig.clock.advance(1.0)
    rig.answer(b"AA")
    rig.answer(b"AA")
    assert control_ids(rig)[3:] == [entries["S1", "GLU"].control_id,
                                    entries["S1", "UREA"].control_id]
    assert {e.state for e in rig.entries()} == {EntryState.DELIVERED}
    rig.worker.stopService()


def test_silence_ends_the_batch_and_the_oldest_entry_stays_first(engine: Engine) -> None:
    """No ACK for S1: TIMEOUT at the deadline, recorded; the entry (not S2) stays first.
    The connection is up, so no pause: the deadline itself paces the retries, and S1
    goes again under the same control ID, then S2, in order."""
    users(engine)
    released_sample(engine, "S1")
    released_sample(engine, "S2", raw=RAW + b"2")
    rig = Rig(engine, ack_timeout=30.0)
    rig.start()
    assert len(rig.sent()) == 1
    rig.clock.advance(30.0)
    assert rig.pool.runs == ["_look", "_record", "_look"]
    [first, second] = rig.entries()
    assert (first.accession, first.state, first.attempts, first.last_status) == (
        "S1", EntryState.PENDING, 1, "timeout")
    assert second.attempts == 0
    entries = by_test(rig)
    rig.answer(b"AA")
    rig.answer(b"AA")
    assert control_ids(rig) == [entries["S1", "GLU"].control_id] * 2 + [
        entries["S2", "GLU"].control_id]
    assert [(e.accession, e.state, e.attempts) for e in rig.entries()] == [
        ("S1", EntryState.DELIVERED, 2), ("S2", EntryState.DELIVERED, 1)]
    rig.worker.stopService()


def test_stopping_mid_batch_records_the_answers_and_resends_the_rest(engine: Engine) -> None:
    """Stopped while S2 waits for its ACK: S1's AA is recorded, S2 and S3 stay pending
    with no attempt; the next worker sends S2 again under the same control ID."""
    users(engine)
    for n in (1, 2, 3):
        released_sample(engine, f"S{n}", raw=RAW + str(n).encode())
    rig = Rig(engine)
    rig.start()
    rig.answer(b"AA")
    in_flight = control_ids(rig)[-1]
    rig.worker.stopService()
    assert [(e.accession, e.state, e.attempts) for e in rig.entries()] == [
        ("S1", EntryState.DELIVERED, 1), ("S2", EntryState.PENDING, 0),
        ("S3", EntryState.PENDING, 0)]
    again = Rig(engine)
    again.clock.advance(60)
    again.start()
    assert control_ids(again) == [in_flight]
    again.answer(b"AA")
    again.answer(b"AA")
    assert {e.state for e in again.entries()} == {EntryState.DELIVERED}
    again.worker.stopService()


def gauge(name: str, **labels: str) -> float | None:
    """A metric's current value."""
    return metrics.REGISTRY.get_sample_value(name, labels)


def test_an_unreachable_his_costs_an_attempt_per_timeout_and_the_metrics_move(
        engine: Engine) -> None:
    """A connection that never comes up: NOT_SENT at the deadline, attempts grow with the
    back-off, and the pending count and oldest age keep being published."""
    users(engine)
    released_sample(engine)
    down = f"his-down-{engine.dialect.name}"  # the metrics are process-wide
    rig = Rig(engine, ack_timeout=30.0, endpoint=HangingEndpoint(), destination=down)
    rig.start()
    assert gauge("lis_gateway_outbox_oldest_pending_seconds", destination=down) == 0
    for _ in range(30):
        rig.clock.advance(1.0)
    [entry] = rig.entries()
    assert (entry.state, entry.attempts, entry.last_status, entry.last_error) == (
        EntryState.PENDING, 1, "not-sent", "no connection to the HIS within 30 s")
    assert gauge("lis_gateway_outbox_oldest_pending_seconds", destination=down) == 30
    looks = rig.pool.runs.count("_look")
    rig.worker.wake()  # a release during the pause does not cut the back-off short
    rig.clock.advance(2.0)
    assert rig.pool.runs.count("_look") == looks and rig.pool.runs[-1] == "depth"
    for _ in range(34):  # the rest of the 5 s back-off, 30 s more
        rig.clock.advance(1.0)
    [entry] = rig.entries()
    assert (entry.attempts, entry.last_status) == (2, "not-sent")
    # read right after each attempt, and every poll interval while paused
    assert gauge("lis_gateway_outbox_oldest_pending_seconds", destination=down) == 65
    assert gauge("lis_gateway_outbox_pending", destination=down, state="pending") == 1
    assert gauge("lis_gateway_deliveries_total", destination=down,
                 status="not-sent") == 2
    assert len(rig.endpoint.attempts) == 1  # the one connection attempt, still hanging
    rig.worker.stopService()


def test_looks_start_at_the_mark_and_look_behind_it_once_a_poll_interval(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first look scans every event; looks woken in between start at the high-water
    mark; once a poll interval a look starts LOOKBACK_EVENTS behind it."""
    monkeypatch.setattr(worker_module, "LOOKBACK_EVENTS", 1)
    users(engine)
    released_sample(engine, "S1")
    rig = Rig(engine)
    rig.start()
    rig.answer(b"AA")
    with engine.begin() as conn:
        mark = outbox.last_event_id(conn)
    rig.worker.wake()
    rig.clock.advance(0)
    rig.clock.advance(2.0)  # the poll
    looks = [args[2] for name, args in zip(rig.pool.runs, rig.pool.args, strict=True)
             if name == "_look"]
    assert looks == [0, mark, mark, mark - 1]
    rig.worker.stopService()
