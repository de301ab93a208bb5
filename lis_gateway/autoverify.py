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
from lis_gateway.store.orders import order_hold_reason

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


def judge_result(conn: Connection, result_id: int, result: NormalizedResult,
                 av: Autoverification, at: datetime, *, source: str = "system") -> Transition:
    """Evaluate the rules on a just-stored result; record outcomes and the transition.

    Args:
        conn: the transaction that stored the result.
        result_id: the stored result (its latest version is judged).
        result: the normalized result it was stored from.
        av: rules, policy, table and driver.
        at: timezone-aware time of the decision.
        source: for the audit log.

    With the policy's ``release_autoverified``, an AUTOVERIFIED result is then
    released by :data:`AUTORELEASE_ACTOR` in the same transaction (the outbox
    worker picks the release up like a person's).

    Returns:
        The recorded judging transition (HOLD or AUTOVERIFY).
    """
    info = repository.get_result(conn, result_id)
    version_id = info.latest.id
    qc_failed = judgements.qc_failure(conn, info.analyzer_id)
    decision = None
    if av.rules is not None:
        previous = judgements.previous_for_delta(conn, result_id)
        decision = decide(av.rules, result, driver=av.driver, table=av.table,
                          previous=previous, received_at=at, qc_hold=bool(qc_failed))
        judgements.record_rule_outcomes(conn, version_id, decision.outcomes,
                                        decision.rule_set_version, at)
    policy = policy_for(av.policy, result.code)
    transition, reasons = decision_transition(decision, result, policy)
    if qc_failed and transition.to_state is ResultState.HELD:
        reasons = (*reasons, f"qc: {qc_failed}")
    unordered = (order_hold_reason(conn, info.accession, result.code)
                 if av.require_order else "")
    if unordered and transition.to_state is ResultState.HELD:
        reasons = (*reasons, unordered)
    elif unordered:  # never autoverify what nobody ordered
        transition = apply(ResultState.RECEIVED, Action.HOLD,
                           Actor.rule("order-guard", transition.actor.rule_set_version),
                           policy, reason=unordered)
        reasons = (unordered,)
    judgements.record_transition(conn, version_id, transition, at, reasons=reasons,
                                 source=source)
    if transition.to_state is ResultState.AUTOVERIFIED and policy.release_autoverified:
        release = apply(ResultState.AUTOVERIFIED, Action.RELEASE, AUTORELEASE_ACTOR, policy)
        if may_send_final([transition, release], policy):
            judgements.record_transition(conn, version_id, release, at, source=source)
    return transition
