"""Autoverification of stored results: rules in, a HOLD or AUTOVERIFY transition out.

:func:`judge_result` runs inside the store transaction that stores the
result (``StoreSink``), so the rule outcomes and the lifecycle transition are
durable before the analyzer is acknowledged, together with the message. No
SQL here: it calls :mod:`lis_gateway.store.repository`.

* Without a rule set every result is HELD with :data:`NO_RULES_REASON`, by
  the pseudo-rule :data:`NO_RULES_ACTOR` (a hold needs a rule or a person).
* A critical value is always held, whatever the rule set says (the rule set
  must contain the ``critical`` rule; this is a second guard).
* The delta check gets the previous result of the same test of the same
  patient (or sample) from the store (:func:`judgements.previous_for_delta`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection

from lis_gateway.lifecycle import (
    Action,
    Actor,
    Policies,
    Policy,
    ResultState,
    Transition,
    apply,
    may_send_final,
    policy_for,
)
from lis_gateway.mapping import MappingTable
from lis_gateway.normalize import NormalizedResult
from lis_gateway.rules import Decision, Previous, RuleSet, evaluate, facts_from_result
from lis_gateway.store import judgements, repository
from lis_gateway.store.orders import OrderedTest, hold_reason, ordered_tests

#: The hold reason when no rule set is configured.
NO_RULES_REASON = "no rule set configured"
#: Who holds when no rule set is configured.
NO_RULES_ACTOR = Actor.rule("no-rule-set", "none")
#: Who releases autoverified results when the policy says so.
AUTORELEASE_ACTOR = Actor.system("autorelease")
#: The hold reason added when a critical value would have been autoverified.
CRITICAL_REASON = "critical value: always held"


@dataclass(frozen=True, slots=True)
class Autoverification:
    """What judging a link's results needs.

    Attributes:
        rules: the configured rule set, or None (every result is held).
        policy: the lab's validation policy, or its per-test-group policies.
        table: the driver's mapping table (autoverification limits), or None.
        driver: the driver family name (instrument error flags).
        require_order: hold a result whose sample (or test) the HIS has not ordered
            (orders are configured and the analyzer is not ``unsolicited``).
    """

    rules: RuleSet | None
    policy: Policy | Policies = field(default_factory=Policy)
    table: MappingTable | None = None
    driver: str = ""
    require_order: bool = False


def decide(rules: RuleSet, result: NormalizedResult, *, driver: str,
           table: MappingTable | None, previous: Previous | None,
           received_at: datetime | None, qc_hold: bool = False) -> Decision:
    """Evaluate a rule set on one normalized result (pure; also used by ``rules test``)."""
    entry = table.lookup(result.row.test) if table is not None else None
    facts = facts_from_result(result, driver=driver, entry=entry, qc_hold=qc_hold,
                              previous=previous, received_at=received_at)
    return evaluate(rules, facts)


def decision_transition(decision: Decision | None, result: NormalizedResult,
                        policy: Policy) -> tuple[Transition, tuple[str, ...]]:
    """The RECEIVED -> HELD/AUTOVERIFIED transition for a decision, with the hold reasons."""
    if decision is None:
        return (apply(ResultState.RECEIVED, Action.HOLD, NO_RULES_ACTOR, policy,
                      reason=NO_RULES_REASON), (NO_RULES_REASON,))
    action = decision.action
    reasons = tuple(f"{r.rule_id}: {r.text}" for r in decision.held_reasons)
    reason = decision.reason
    actor = decision.actor
    if action is Action.AUTOVERIFY and result.critical:  # never, with a valid rule set
        action, reasons, reason = Action.HOLD, (CRITICAL_REASON,), CRITICAL_REASON
        actor = Actor.rule("critical-guard", decision.rule_set_version)
    if action is Action.HOLD and not reasons:
        reasons = (reason,)
    return apply(ResultState.RECEIVED, action, actor, policy, reason=reason), reasons


@dataclass(frozen=True, slots=True)
class Judging:
    """One just-stored result to judge (:func:`judge_results`)."""

    result_id: int
    version_id: int  #: the version judged (its latest)
    accession: str
    result: NormalizedResult  #: what it was stored from


@dataclass(frozen=True, slots=True)
class Judged:
    """What judging did to one result: the HOLD or AUTOVERIFY, and whether it was released."""

    transition: Transition
    released: bool


def judge_result(conn: Connection, result_id: int, result: NormalizedResult,
                 av: Autoverification, at: datetime, *, source: str = "system") -> Transition:
    """Evaluate the rules on one stored result (its latest version); see :func:`judge_results`.

    Returns:
        The recorded judging transition (HOLD or AUTOVERIFY).
    """
    info = repository.get_result(conn, result_id)
    (judged,) = judge_results(conn, info.analyzer_id,
                              [Judging(result_id, info.latest.id, info.accession, result)],
                              av, at, source=source)
    return judged.transition


def judge_results(conn: Connection, analyzer_id: int, items: Sequence[Judging],
                  av: Autoverification, at: datetime, *, source: str = "system"
                  ) -> list[Judged]:
    """Evaluate the rules on just-stored results of one analyzer; record outcomes and transitions.

    What judging reads is read once for all of them (the analyzer's QC state,
    each sample's earlier results for the delta check, each sample's orders),
    and the rule outcomes, lifecycle events and audit rows are written with one
    insert per table, so the cost of a message does not grow by statements
    with its results. Results are judged in order, so a result's delta check
    sees an earlier result of the same message.

    Args:
        conn: the transaction that stored the results.
        analyzer_id: the analyzer that sent them.
        items: the results with their judged versions, in order.
        av: rules, policy, table and driver.
        at: timezone-aware time of the decision.
        source: for the audit log.

    With the policy's ``release_autoverified``, an AUTOVERIFIED result is then
    released by :data:`AUTORELEASE_ACTOR` in the same transaction (the outbox
    worker picks the release up like a person's).

    Returns:
        For each item, the recorded judging transition and whether it was released.
    """
    if not items:
        return []
    qc_failed = judgements.qc_failure(conn, analyzer_id)
    previous: dict[int, Previous | None] = {}
    if av.rules is not None:
        previous = judgements.previous_for_delta_many(conn, [
            judgements.DeltaQuery(i.result_id, i.accession, i.result.row.test,
                                  i.result.unit_ucum) for i in items])
    orders: dict[str, tuple[OrderedTest, ...]] = {}
    if av.require_order:
        orders = {a: ordered_tests(conn, a) for a in dict.fromkeys(i.accession for i in items)}
    outcomes: list[tuple[int, Decision]] = []
    records: list[judgements.TransitionRecord] = []
    out: list[Judged] = []
    for item in items:
        result = item.result
        decision = None
        if av.rules is not None:
            decision = decide(av.rules, result, driver=av.driver, table=av.table,
                              previous=previous[item.result_id], received_at=at,
                              qc_hold=bool(qc_failed))
            outcomes.append((item.version_id, decision))
        policy = policy_for(av.policy, result.code)
        transition, reasons = decision_transition(decision, result, policy)
        if qc_failed and transition.to_state is ResultState.HELD:
            reasons = (*reasons, f"qc: {qc_failed}")
        unordered = (hold_reason(orders[item.accession], item.accession, result.code)
                     if av.require_order else "")
        if unordered and transition.to_state is ResultState.HELD:
            reasons = (*reasons, unordered)
        elif unordered:  # never autoverify what nobody ordered
            transition = apply(ResultState.RECEIVED, Action.HOLD,
                               Actor.rule("order-guard", transition.actor.rule_set_version),
                               policy, reason=unordered)
            reasons = (unordered,)
        records.append(judgements.TransitionRecord(item.version_id, transition, at, reasons,
                                                   item.result_id))
        released = False
        if transition.to_state is ResultState.AUTOVERIFIED and policy.release_autoverified:
            release = apply(ResultState.AUTOVERIFIED, Action.RELEASE, AUTORELEASE_ACTOR,
                            policy)
            if may_send_final([transition, release], policy):
                records.append(judgements.TransitionRecord(item.version_id, release, at,
                                                           result_id=item.result_id))
                released = True
        out.append(Judged(transition, released))
    judgements.record_rule_outcomes_many(conn, outcomes, at)
    judgements.record_transitions(conn, records, source=source)
    return out
