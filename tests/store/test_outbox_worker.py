"""OutboxWorker on a task.Clock and StringTransports, with the real store (SQLite, PostgreSQL).

The HIS answers AA, AE, AR, nothing, or drops the connection; each answer
must leave the outbox in the state the delivery policy says, and a worker
restarted mid-wait must resend the same message (same MSH-10).
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from sqlalchemy import Engine
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from lis_gateway.hl7.datatypes import HierarchicDesignator, MessageRoute
from lis_gateway.hl7.message import parse_message
from lis_gateway.hl7.mllp import FS, VT
from lis_gateway.outbound.channel import MllpChannel
from lis_gateway.outbound.delivery import Backoff, EntryState
from lis_gateway.outbound.sender import HisClient
from lis_gateway.outbound.worker import OutboxWorker
from lis_gateway.store import outbox
from lis_gateway.store import repository as repo
from lis_gateway.store.pool import NonThreadPool

from ..adapters.test_mllp_protocol import LoopbackEndpoint, his_ack
from .test_lifecycle_store import ingest, users
from .test_outbox import ONE_STEP, release
from .test_repository import RAW, T0, result

ROUTE = MessageRoute(sending_application=HierarchicDesignator("LIS_GATEWAY"),
                     receiving_application=HierarchicDesignator("HIS"))
START = (T0 + timedelta(minutes=10)).timestamp()


class Rig:
    """A worker for destination ``his`` over a loopback endpoint, on a Clock."""

    def __init__(self, engine: Engine, *, ack_timeout: float = 30.0) -> None:
        self.engine, self.clock, self.endpoint = engine, Clock(), LoopbackEndpoint()
        self.clock.advance(START)
        self.client = HisClient(self.endpoint, self.clock, ack_timeout=ack_timeout,
                                retry_policy=lambda attempt: 1.0)
        self.channel = MllpChannel(self.client, ROUTE, HierarchicDesignator("BV_TEST"))
        self.worker = OutboxWorker("his", NonThreadPool(engine), self.channel, self.clock,
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
