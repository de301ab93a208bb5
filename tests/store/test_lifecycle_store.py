"""Autoverification on storing, state derivation and validation, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from twisted.internet.task import Clock

from lis_gateway.autoverify import NO_RULES_REASON, Autoverification
from lis_gateway.ingest import store_for_analyzer
from lis_gateway.lifecycle import (
    Action,
    ActorKind,
    GroupPolicy,
    Policies,
    Policy,
    ResultState,
    may_send_final,
)
from lis_gateway.metrics import REGISTRY
from lis_gateway.normalize import NormalizedResult
from lis_gateway.rules import SHADOW_REASON
from lis_gateway.rules_file import load_rules
from lis_gateway.state_gauge import StateGauge
from lis_gateway.store import judgements, outbox
from lis_gateway.store import repository as repo
from lis_gateway.store.pool import NonThreadPool
from lis_gateway.store.users import check_password
from lis_gateway.validation import UserRefusedError, validate_sample

from .test_repository import RAW, T0, result, store

RULES = """
version = "2026-11-a"
[[rules]]
id = "always"
kind = "always-hold"
[[rules]]
id = "crit"
kind = "critical"
[[rules]]
id = "glu-limits"
kind = "limits"
low = 3
high = 10
[[rules]]
id = "glu-delta"
kind = "delta"
absolute = 2
window_hours = 72
"""
S = ResultState


def ingest(engine: Engine, results: list[NormalizedResult], rules: str | None = RULES,
           raw: bytes = RAW, policy: Policy | Policies | None = None) -> list[int]:
    """Store one message as StoreSink does, judging new results with ``rules``."""
    av = Autoverification(None if rules is None else load_rules(rules), policy or Policy(),
                          driver="generic-astm")
    with engine.begin() as conn:
        stored = store_for_analyzer(conn, analyzer="cobas", family="roche_cobas",
                                    protocol="astm", raw=raw, received_at=T0,
                                    results=results, autoverification=av)
    return list(stored.result_ids)


def status(engine: Engine, result_id: int) -> judgements.ResultStatus:
    """The derived state of a result."""
    with engine.begin() as conn:
        return judgements.result_status(conn, result_id)


def users(engine: Engine) -> None:
    """A technician, two doctors and a disabled technician."""
    with engine.begin() as conn:
        repo.create_user(conn, "lan", T0, roles=["technician"])
        repo.create_user(conn, "dr_minh", T0, roles=["doctor"])
        repo.create_user(conn, "dr_hoa", T0, roles=["doctor"])
        repo.create_user(conn, "old", T0, roles=["technician"])
        repo.disable_user(conn, "old", T0)


def validate(engine: Engine, user: str, *, approve: bool = False,
             policy: Policy | None = None) -> list[tuple[S, tuple[Action, ...], str]]:
    """Validate sample S1 as ``user``; (state after, actions, refusal) per result."""
    with engine.begin() as conn:
        out = validate_sample(conn, "S1", user, policy or Policy(), approve=approve,
                              at=T0 + timedelta(minutes=5), source="test")
    return [(o.after, o.done, o.refused) for o in out]


def test_without_rules_every_result_is_held(engine: Engine) -> None:
    """No rule set: HELD with reason "no rule set configured", audited, no rule outcomes."""
    [rid] = ingest(engine, [result()], rules=None)
    got = status(engine, rid)
    assert (got.state, got.reasons) == (S.HELD, (NO_RULES_REASON,))
    with engine.begin() as conn:
        assert judgements.rule_outcomes(conn, got.version_id) == ()
        history = judgements.version_history(conn, got.version_id)
        actions = [e.action for e in repo.audit_entries(conn)]
    assert [(t.from_state, t.to_state, t.actor.id) for t in history] == [
        (S.RECEIVED, S.HELD, "no-rule-set")]
    assert "lifecycle.hold" in actions


def test_passing_result_is_autoverified_with_every_outcome_recorded(engine: Engine) -> None:
    """All rules pass: AUTOVERIFIED by the rule set's version; each rule's outcome is stored."""
    [rid] = ingest(engine, [result()])
    got = status(engine, rid)
    assert (got.state, got.reasons) == (S.AUTOVERIFIED, ())
    with engine.begin() as conn:
        outcomes = judgements.rule_outcomes(conn, got.version_id)
        [step] = judgements.version_history(conn, got.version_id)
    assert [(o[0], o[1], o[3]) for o in outcomes] == [
        ("always", "pass", "2026-11-a"), ("crit", "pass", "2026-11-a"),
        ("glu-limits", "pass", "2026-11-a"), ("glu-delta", "not-applicable", "2026-11-a")]
    assert (step.action, step.actor.rule_set_version) == (Action.AUTOVERIFY, "2026-11-a")


def test_out_of_limits_is_held_with_the_rule_reason(engine: Engine) -> None:
    """A value outside the limits is HELD; the reason names the rule."""
    [rid] = ingest(engine, [result(value="12.0")])
    got = status(engine, rid)
    assert got.state is S.HELD
    assert got.reasons == ("glu-limits: 12.0 outside 3..10",)


def test_critical_value_is_always_held(engine: Engine) -> None:
    """A critical value is held even when it lies within the autoverification limits."""
    [rid] = ingest(engine, [dataclasses.replace(result(), critical="HH")])
    got = status(engine, rid)
    assert got.state is S.HELD
    assert got.reasons == ("crit: critical value (HH): acknowledge",)


def test_shadow_rule_set_holds_what_it_would_autoverify(engine: Engine) -> None:
    """In shadow mode a passing result is held with the shadow reason."""
    [rid] = ingest(engine, [result()], rules=RULES.replace('"2026-11-a"',
                                                            '"2026-11-a"\nshadow = true'))
    assert status(engine, rid).reasons == (SHADOW_REASON,)


def test_delta_against_the_previous_result_of_the_same_sample(engine: Engine) -> None:
    """A rerun differing by more than the delta bound is held; the first one was not."""
    [first] = ingest(engine, [result(value="5.0")])
    [second] = ingest(engine, [result(value="8.0", completed_at="20261101090000")],
                      raw=RAW + b"rerun")
    assert status(engine, first).state is S.AUTOVERIFIED
    assert status(engine, second).reasons == ("glu-delta: delta 3.0 exceeds 2",)


def test_previous_result_of_the_same_patient_in_another_sample(engine: Engine) -> None:
    """previous_for_delta finds the same patient's earlier sample by hospital id."""
    store(engine, RAW, [result(value="5.0")])
    with engine.begin() as conn:
        analyzer = repo.ensure_analyzer(conn, "cobas", T0)
        stored = repo.store_message(
            conn, analyzer_id=analyzer.id, protocol="astm", raw=b"other", received_at=T0,
            results=[result(sample="S2", value="6.0")],
            patients={"S2": repo.PatientIds(hospital_id="H42")})
        previous = judgements.previous_for_delta(conn, stored.result_ids[0])
    assert previous is not None and str(previous.number) == "5.0"


def test_technician_validates_doctor_approves_and_it_is_released(engine: Engine) -> None:
    """Two-step: validation, the technician refused approval, the doctor approves, release."""
    users(engine)
    [rid] = ingest(engine, [result(value="12.0")])
    assert validate(engine, "lan", approve=True) == [
        (S.TECH_VALIDATED, (Action.VALIDATE,), "user 'lan' may not approve")]
    assert validate(engine, "dr_minh", approve=True) == [
        (S.RELEASED, (Action.APPROVE, Action.RELEASE), "")]
    got = status(engine, rid)
    with engine.begin() as conn:
        history = judgements.version_history(conn, got.version_id)
    assert got.state is S.RELEASED and may_send_final(history, Policy())


def test_doctor_may_not_approve_own_validation(engine: Engine) -> None:
    """Four eyes: a doctor who validated is refused the approval of the same result."""
    users(engine)
    ingest(engine, [result(value="12.0")])
    [(state, done, refused)] = validate(engine, "dr_hoa", approve=True)
    assert (state, done) == (S.TECH_VALIDATED, (Action.VALIDATE,))
    assert "may not also approve" in refused


def test_one_step_policy_releases_after_validation(engine: Engine) -> None:
    """Without required approval the technician's validation releases the result."""
    users(engine)
    one_step = Policy(require_approval=False)
    [rid] = ingest(engine, [result(value="12.0")], policy=one_step)
    assert validate(engine, "lan", policy=one_step) == [
        (S.RELEASED, (Action.VALIDATE, Action.RELEASE), "")]
    assert status(engine, rid).state is S.RELEASED


AUTORELEASE = Policy(require_approval=False, autoverified_skips_technician=True,
                     release_autoverified=True)


def test_release_autoverified_policy_releases_passing_results_and_queues_them(
        engine: Engine) -> None:
    """With ``release_autoverified`` the gateway releases what the rules autoverify, in the
    same transaction, as the SYSTEM actor; the outbox then queues it. Held ones wait."""
    [ok, high] = ingest(engine, [result(), result(test="GLU2", value="12.0")],
                        policy=AUTORELEASE)
    assert status(engine, ok).state is S.RELEASED
    assert status(engine, high).state is S.HELD
    version_id = status(engine, ok).version_id
    with engine.begin() as conn:
        history = judgements.version_history(conn, version_id)
        queued = outbox.enqueue_released(conn, "his", T0)
    assert [(t.action, t.actor.kind) for t in history] == [
        (Action.AUTOVERIFY, ActorKind.RULE), (Action.RELEASE, ActorKind.SYSTEM)]
    assert history[-1].actor.id == "autorelease"
    assert queued == 1


def test_critical_values_are_never_released_automatically(engine: Engine) -> None:
    """A critical value stays held under ``release_autoverified`` (a person must call)."""
    [rid] = ingest(engine, [dataclasses.replace(result(), critical="HH")], policy=AUTORELEASE)
    assert status(engine, rid).state is S.HELD


def test_state_counts_and_the_results_gauge(engine: Engine) -> None:
    """Results by state: one query over the latest events (QC left out), sampled into the
    ``lis_gateway_results`` gauge by the StateGauge service on its clock."""
    ingest(engine, [result(), result(test="GLU2", value="12.0"),
                    result(test="GLU3")], policy=AUTORELEASE)
    ingest(engine, [qc_result("N")], raw=RAW + b"qc")
    with engine.begin() as conn:
        counts = judgements.state_counts(conn)
    assert (counts[S.RELEASED], counts[S.HELD], counts[S.AUTOVERIFIED]) == (2, 1, 0)
    assert sum(counts.values()) == 3
    clock = Clock()
    gauge = StateGauge(NonThreadPool(engine), clock, interval=60)
    gauge.startService()
    assert REGISTRY.get_sample_value("lis_gateway_results", {"state": "released"}) == 2
    assert REGISTRY.get_sample_value("lis_gateway_results", {"state": "held"}) == 1
    ingest(engine, [result(sample="S2")], policy=AUTORELEASE, raw=RAW + b"2")
    clock.advance(60)
    assert REGISTRY.get_sample_value("lis_gateway_results", {"state": "released"}) == 3
    gauge.stopService()


def test_each_result_follows_its_test_groups_policy(engine: Engine) -> None:
    """Haematology releases after validation; glucose (default group) waits for a doctor."""
    users(engine)
    policies = Policies(Policy(), (GroupPolicy("haematology", frozenset({"HGB"}),
                                               Policy(require_approval=False)),))
    ingest(engine, [result(value="12.0"), result(test="HGB", value="130")], policy=policies)
    with engine.begin() as conn:
        out = validate_sample(conn, "S1", "lan", policies, approve=False,
                              at=T0 + timedelta(minutes=5), source="test")
    assert {o.test: o.after for o in out} == {"GLU": S.TECH_VALIDATED, "HGB": S.RELEASED}


def test_released_and_unjudged_results_are_refused_with_the_lifecycle_reason(
        engine: Engine) -> None:
    """A stored but unjudged result cannot be validated; the lifecycle says why."""
    users(engine)
    store(engine, RAW, [result()])
    assert validate(engine, "lan") == [
        (S.RECEIVED, (), "validate is not allowed from this state: received")]


def test_unknown_and_disabled_users_are_refused(engine: Engine) -> None:
    """Only an existing, active user may validate."""
    users(engine)
    ingest(engine, [result()])
    for name in ("nobody", "old"):
        with pytest.raises(UserRefusedError):
            validate(engine, name)


def test_user_password_is_an_argon2_hash_and_audited(engine: Engine) -> None:
    """Passwords are stored hashed; creation and change are audited without the hash."""
    with engine.begin() as conn:
        user = repo.create_user(conn, "lan", T0, roles=["technician"],
                                hashed_password=repo.password_hash("s3cret"))
        assert user.has_password
        assert check_password(conn, "lan", "s3cret")
        assert not check_password(conn, "lan", "wrong")
        repo.set_password(conn, "lan", repo.password_hash("n3w"), T0)
        assert check_password(conn, "lan", "n3w")
        entries = repo.audit_entries(conn)
    assert [e.action for e in entries] == ["user.create", "user.passwd"]
    assert all("argon2" not in e.detail for e in entries)


def qc_result(flag: str, sample: str = "QC-LOT7",
              completed_at: str = "20261101070000") -> NormalizedResult:
    """A control's result from a QC run (the driver marked the message as QC)."""
    r = result(sample=sample, value="5.0", completed_at=completed_at)
    return dataclasses.replace(r, row=dataclasses.replace(r.row, qc=True), flags=(flag,))


def test_qc_results_are_kept_but_never_judged_nor_validated(engine: Engine) -> None:
    """A QC run is stored and marked; it gets no lifecycle event and cannot be validated."""
    users(engine)
    [rid] = ingest(engine, [qc_result("N", sample="S1")], raw=b"QC-RUN-1")
    with engine.begin() as conn:
        (info,) = repo.list_results(conn, "S1")
    assert info.qc and status(engine, rid).state is S.RECEIVED
    assert validate(engine, "lan") == [(S.RECEIVED, (), "a QC result is not a patient result")]


def test_failed_qc_holds_patient_results_until_a_passing_run(engine: Engine) -> None:
    """After a control flagged H, patients are held with the QC reason; a passing run clears it."""
    ingest(engine, [qc_result("H")], raw=b"QC-RUN-FAIL")
    [held] = ingest(engine, [result(sample="P1")], raw=b"PATIENT-1")
    assert status(engine, held).state is S.HELD
    assert any(r.startswith("qc: the last QC run") and "GLU flagged H" in r
               for r in status(engine, held).reasons)
    ingest(engine, [qc_result("N", completed_at="20261101090000")], raw=b"QC-RUN-PASS")
    [passed] = ingest(engine, [result(sample="P2")], raw=b"PATIENT-2")
    assert status(engine, passed).state is S.AUTOVERIFIED


def test_an_unmapped_result_is_never_validated_or_released(engine: Engine) -> None:
    """No local code: validation is refused with the fix, and the result stays held."""
    users(engine)
    unmapped = dataclasses.replace(result(), code="", loinc="",
                                   problems=("not-mapped: GLU",))
    [rid] = ingest(engine, [unmapped])
    before = status(engine, rid).state
    [(state, done, refused)] = validate(engine, "dr_minh", approve=True)
    assert (state, done) == (before, ())
    assert refused == ("test 'GLU' is not mapped to a local code: add it to the mapping "
                       "table, run `lis-gateway reprocess`, then validate")
    assert status(engine, rid).state is before is S.HELD


def test_a_message_is_judged_in_order_and_reports_its_decisions(engine: Engine) -> None:
    """Judging a whole message at once keeps per-result meaning.

    A rerun of GLU later in the same message is delta-checked against the first
    run (it fails the 2 mmol/L delta and is held); the StoredMessage carries each
    judged result's state and how many were released (for the metrics and the
    outbox wake-up); the QC row is stored but not judged.
    """
    av = Autoverification(load_rules(RULES), AUTORELEASE, driver="generic-astm")
    rerun = result(value="8.9", completed_at="20261101083000")
    with engine.begin() as conn:
        stored = store_for_analyzer(conn, analyzer="cobas", family="roche_cobas",
                                    protocol="astm", raw=RAW, received_at=T0,
                                    results=[result(), qc_result("N"), rerun,
                                             result(test="GLU2")],
                                    autoverification=av)
    first, _qc, second, other = stored.result_ids
    assert stored.decisions == ("autoverified", "held", "autoverified")
    assert stored.released == 2
    assert status(engine, first).state is S.RELEASED
    assert status(engine, other).state is S.RELEASED
    held = status(engine, second)
    assert held.state is S.HELD and any(r.startswith("glu-delta") for r in held.reasons)
    with engine.begin() as conn:
        outcomes = judgements.rule_outcomes(conn, held.version_id)
    assert ("glu-delta", "hold") in {(rule, outcome) for rule, outcome, _d, _v in outcomes}
