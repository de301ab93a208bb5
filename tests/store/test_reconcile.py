"""The reconciliation report on SQLite and PostgreSQL: every result, every destination."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from lis_gateway.lifecycle import Action, Actor, Role, apply
from lis_gateway.outbound.delivery import DeliveryStatus
from lis_gateway.store import judgements
from lis_gateway.store import repository as repo
from lis_gateway.store.reconcile import reconcile

from .test_lifecycle_store import ingest, users
from .test_outbox import ONE_STEP, answer, due, enqueue, release
from .test_repository import RAW, T0, result


def report(engine: Engine, since_minutes: int | None = None) -> dict[str, list[tuple[str, str]]]:
    """sample -> [(destination, where: detail)] for both destinations."""
    since = None if since_minutes is None else T0 + timedelta(minutes=since_minutes)
    with engine.begin() as conn:
        rows = reconcile(conn, ["his", "emr"], since)
    return {row.accession: [(w.destination, f"{w.where}: {w.detail}".rstrip(": "))
                            for w in row.destinations] for row in rows}


def test_every_result_is_delivered_or_says_where_it_waits(engine: Engine) -> None:
    """Not validated, rejected, not queued, pending after AE, dead after AR, delivered."""
    users(engine)
    for i, sample in enumerate(("WAIT", "REJ", "DONE", "AE", "AR")):
        ingest(engine, [result(sample=sample)], raw=RAW + str(i).encode(), policy=ONE_STEP)
    for sample in ("DONE", "AE", "AR"):
        release(engine, sample)
    with engine.begin() as conn:
        [rejected] = repo.results_for_sample(conn, "REJ")
        status = judgements.result_status(conn, rejected.id)
        judgements.record_transition(conn, status.version_id, apply(
            status.state, Action.REJECT, Actor.user("lan", Role.TECHNICIAN), ONE_STEP,
            reason="haemolysed"), T0 + timedelta(minutes=6))
    enqueue(engine, "his")  # the "emr" worker has not run yet
    done, ae, ar = due(engine)
    answer(engine, done, DeliveryStatus.DELIVERED)
    answer(engine, ae, DeliveryStatus.RETRY, "HIS database busy")
    answer(engine, ar, DeliveryStatus.REJECTED, "unknown patient")
    not_queued = ("emr", "not-queued: released; the destination's worker has not queued it "
                  "yet (is the gateway running?)")
    assert report(engine) == {
        "WAIT": [("his", "waiting-validation: autoverified"),
                 ("emr", "waiting-validation: autoverified")],
        "REJ": [("his", "not-reportable: rejected (haemolysed)"),
                ("emr", "not-reportable: rejected (haemolysed)")],
        "DONE": [("his", "delivered"), not_queued],
        "AE": [("his", "pending: 1 attempt(s), last retry: HIS database busy"), not_queued],
        "AR": [("his", "dead: rejected: unknown patient"), not_queued],
    }
    with engine.begin() as conn:
        [delivered] = [r for r in reconcile(conn, ["his"]) if r.accession == "DONE"]
    assert delivered.destinations[0].control_id.startswith("LG")
    assert delivered.destinations[0].at is not None
    assert report(engine, since_minutes=1) == {}  # everything was received at T0
