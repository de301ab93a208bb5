"""The released results an XML4 export reads, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine, insert, update

from lis_gateway.lifecycle import Action, Actor, Policy, ResultState, Role, Transition, apply
from lis_gateway.store import judgements
from lis_gateway.store import repository as repo
from lis_gateway.store import schema as s
from lis_gateway.store.users import set_certificate
from lis_gateway.store.xml4_rows import ReleasedRow, released_rows
from lis_gateway.validation import validate_sample

from .test_lifecycle_store import ingest, qc_result, users
from .test_outbox import ONE_STEP
from .test_repository import RAW, T0, result

CERT = "0012345/HNO-CCHN"


def release(engine: Engine, accession: str, at: datetime, user: str = "lan") -> None:
    """``user`` validates the sample under the one-step policy, which releases it at ``at``."""
    with engine.begin() as conn:
        out = validate_sample(conn, accession, user, ONE_STEP, approve=False, at=at,
                              source="test")
    assert out and all(o.refused == "" for o in out), out


def lab(engine: Engine) -> None:
    """The users, lan with her certificate number."""
    users(engine)
    with engine.begin() as conn:
        set_certificate(conn, "lan", CERT, T0)


def visit(engine: Engine, accession: str, number: str) -> None:
    """The HIS order gave the sample this visit number."""
    with engine.begin() as conn:
        conn.execute(update(s.samples).where(s.samples.c.accession == accession).values(
            visit_number=number))


def rows(engine: Engine, since: datetime, until: datetime) -> list[ReleasedRow]:
    """released_rows in its own transaction."""
    with engine.begin() as conn:
        return released_rows(conn, since, until)


def test_a_released_result_comes_with_what_its_row_needs(engine: Engine) -> None:
    """Barcode, visit, codes, exact number and raw value, units, release time, approver."""
    lab(engine)
    [rid] = ingest(engine, [result(sample="S1", value="5.40")], policy=ONE_STEP)
    visit(engine, "S1", "V2026-0001")
    release(engine, "S1", T0 + timedelta(minutes=5))
    [row] = rows(engine, T0, T0 + timedelta(hours=1))
    with engine.begin() as conn:
        version_id = judgements.result_status(conn, rid).version_id
    assert row == ReleasedRow(
        result_id=rid, version_id=version_id, version=1, accession="S1",
        visit_number="V2026-0001", analyzer="cobas", test_code="GLU", local_code="GLU",
        number=Decimal("5.40"), value_raw="5.40", unit_ucum="mmol/L", unit_raw="mmol/L",
        released_at=T0 + timedelta(minutes=5), released_by="lan", actor="lan",
        certificate_number=CERT)


def test_only_patient_results_released_in_the_period(engine: Engine) -> None:
    """Held and QC results never; since is inclusive, until exclusive."""
    lab(engine)
    for i, sample in enumerate(("EARLY", "HELD", "LATE")):
        ingest(engine, [result(sample=sample)], raw=RAW + str(i).encode(), policy=ONE_STEP)
    [qc] = ingest(engine, [qc_result("N", sample="QC1")], raw=b"QC-RUN")
    release(engine, "EARLY", T0 + timedelta(minutes=5))
    release(engine, "LATE", T0 + timedelta(minutes=65))
    with engine.begin() as conn:  # not possible through the lifecycle: proves the filter
        judgements.record_transition(
            conn, judgements.result_status(conn, qc).version_id,
            Transition(ResultState.AUTOVERIFIED, ResultState.RELEASED, Action.RELEASE,
                       Actor.system("test")), T0 + timedelta(minutes=6))

    def samples(since_min: int, until_min: int) -> list[str]:
        return [r.accession for r in rows(engine, T0 + timedelta(minutes=since_min),
                                          T0 + timedelta(minutes=until_min))]

    assert samples(0, 24 * 60) == ["EARLY", "LATE"]
    assert samples(5, 65) == ["EARLY"]
    assert samples(6, 66) == ["LATE"]
    assert samples(0, 5) == []


def test_a_released_correction_replaces_the_earlier_row(engine: Engine) -> None:
    """Unreleased, the correction waits and v1 stands; released, only v2 is read, at its time."""
    lab(engine)
    [rid] = ingest(engine, [result(sample="S1")], policy=ONE_STEP)
    release(engine, "S1", T0 + timedelta(minutes=5))
    with engine.begin() as conn:
        [v1] = repo.result_versions(conn, rid)
        v2 = repo.correct_result(conn, v1.id, dataclasses.replace(
            v1.content, value_raw="5.6", number=Decimal("5.6")), reason="transcription",
            author="lan", at=T0 + timedelta(minutes=10))
        judgements.record_transition(conn, v2.id, apply(
            ResultState.RELEASED, Action.CORRECT, Actor.user("lan", Role.TECHNICIAN), ONE_STEP,
            reason="transcription"), T0 + timedelta(minutes=10))
    day = T0 + timedelta(days=1)
    assert [(r.version, r.number) for r in rows(engine, T0, day)] == [(1, Decimal("5.4"))]
    release(engine, "S1", T0 + timedelta(minutes=20))
    [row] = rows(engine, T0, day)
    assert (row.version, row.number, row.released_at) == (
        2, Decimal("5.6"), T0 + timedelta(minutes=20))
    assert rows(engine, T0, T0 + timedelta(minutes=15)) == []  # the result moved with it


def test_a_release_without_a_person_names_no_user(engine: Engine) -> None:
    """The gateway releasing an autoverified result: no username, no certificate, its actor."""
    lab(engine)
    [rid] = ingest(engine, [result(sample="S1")], policy=ONE_STEP)
    policy = Policy(require_approval=False, autoverified_skips_technician=True)
    with engine.begin() as conn:
        status = judgements.result_status(conn, rid)
        assert status.state is ResultState.AUTOVERIFIED
        judgements.record_transition(conn, status.version_id, apply(
            status.state, Action.RELEASE, Actor.system("autorelease"), policy),
            T0 + timedelta(minutes=1))
    [row] = rows(engine, T0, T0 + timedelta(hours=1))
    assert (row.released_by, row.actor, row.certificate_number) == ("", "autorelease", "")


def test_a_result_withdrawn_after_release_is_not_reported(engine: Engine) -> None:
    """A later event leaving the final states (a retraction) removes the result; delivered
    stays final; an earlier released version does not come back."""
    lab(engine)
    ingest(engine, [result(sample="GONE")], raw=RAW + b"1", policy=ONE_STEP)
    [kept] = ingest(engine, [result(sample="SENT")], raw=RAW + b"2", policy=ONE_STEP)
    release(engine, "GONE", T0 + timedelta(minutes=5))
    release(engine, "SENT", T0 + timedelta(minutes=5))
    with engine.begin() as conn:
        for accession, to_state in (("GONE", "retracted"), ("SENT", "delivered")):
            [info] = repo.results_for_sample(conn, accession)
            conn.execute(insert(s.validation_events).values(  # written as the store does
                result_version_id=info.latest.id, action="x", user_id=None, comment="",
                at=T0 + timedelta(minutes=30), from_state="released", to_state=to_state,
                actor_kind="system", actor="test"))
    assert [r.result_id for r in rows(engine, T0, T0 + timedelta(hours=1))] == [kept]
