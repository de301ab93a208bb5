"""The result lifecycle table, checked exhaustively, by role, by policy and at random."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lis_gateway.lifecycle import (
    GUARDS,
    TRANSITIONS,
    Action,
    Actor,
    ActorKind,
    IllegalTransitionError,
    MissingReasonError,
    NotAuthorizedError,
    Policy,
    ResultState,
    Role,
    Transition,
    apply,
    may_send_final,
)

S, A = ResultState, Action
TECH = Actor.user("tech-1", Role.TECHNICIAN)
TECH2 = Actor.user("tech-2", Role.TECHNICIAN)
DOCTOR = Actor.user("doc-1", Role.DOCTOR)
DOCTOR2 = Actor.user("doc-2", Role.DOCTOR)
ADMIN = Actor.user("admin", Role.ADMIN)
RULE = Actor.rule("limits", "rs-1")
SYSTEM = Actor.system("outbox")
ACTORS = {"technician": TECH, "doctor": DOCTOR, "admin": ADMIN, "rule": RULE, "system": SYSTEM}

TWO_STEP = Policy()
ONE_STEP = Policy(require_approval=False)
POLICIES = [Policy(require_approval=r, autoverified_skips_technician=s)
            for r, s in itertools.product([True, False], repeat=2)]

#: Written independently of the module: who may do what (the issue's roles).
WHO: dict[Action, set[str]] = {
    A.HOLD: {"rule", "technician", "doctor"},
    A.AUTOVERIFY: {"rule"},
    A.VALIDATE: {"technician", "doctor"},
    A.APPROVE: {"doctor"},
    A.RELEASE: {"system", "technician", "doctor"},
    A.MARK_DELIVERED: {"system"},
    A.REJECT: {"technician", "doctor"},
    A.REQUEST_RERUN: {"rule", "technician", "doctor"},
    A.CORRECT: {"technician", "doctor"},
    A.RETRACT: {"doctor"},  # a medical decision: the lab doctor withdraws a released result
}


def legal_under(policy: Policy) -> set[tuple[ResultState, Action]]:
    """The legal (state, action) pairs for a policy, written out from the issue."""
    pairs = {
        (S.RECEIVED, A.HOLD), (S.RECEIVED, A.AUTOVERIFY), (S.RECEIVED, A.REJECT),
        (S.RECEIVED, A.REQUEST_RERUN), (S.HELD, A.VALIDATE), (S.HELD, A.REJECT),
        (S.HELD, A.REQUEST_RERUN), (S.AUTOVERIFIED, A.VALIDATE), (S.AUTOVERIFIED, A.HOLD),
        (S.AUTOVERIFIED, A.REJECT), (S.AUTOVERIFIED, A.REQUEST_RERUN),
        (S.TECH_VALIDATED, A.HOLD), (S.TECH_VALIDATED, A.REJECT),
        (S.TECH_VALIDATED, A.REQUEST_RERUN), (S.TECH_VALIDATED, A.APPROVE),
        (S.APPROVED, A.RELEASE),
        (S.RELEASED, A.MARK_DELIVERED), (S.RELEASED, A.CORRECT), (S.DELIVERED, A.CORRECT),
        (S.CORRECTED, A.VALIDATE), (S.CORRECTED, A.REJECT),
        (S.RELEASED, A.RETRACT), (S.DELIVERED, A.RETRACT),
    }
    if policy.autoverified_skips_technician:
        pairs.add((S.AUTOVERIFIED, A.APPROVE))
    if not policy.require_approval:
        pairs.add((S.TECH_VALIDATED, A.RELEASE))
        if policy.autoverified_skips_technician:
            pairs.add((S.AUTOVERIFIED, A.RELEASE))
    return pairs


def run(policy: Policy, *steps: tuple[Action, Actor]) -> list[Transition]:
    """Apply steps from RECEIVED and return the history."""
    history: list[Transition] = []
    state = S.RECEIVED
    for action, actor in steps:
        history.append(apply(state, action, actor, policy, reason="because"))
        state = history[-1].to_state
    return history


@pytest.mark.parametrize("policy", POLICIES, ids=repr)
@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("state", list(ResultState))
def test_every_state_action_pair_follows_the_table_or_raises(
        state: ResultState, action: Action, policy: Policy) -> None:
    """Each (state, action, policy, actor) either transitions per the table or raises."""
    legal = (state, action) in legal_under(policy)
    for name, actor in ACTORS.items():
        if not legal:
            with pytest.raises(IllegalTransitionError):
                apply(state, action, actor, policy, reason="r")
        elif name not in WHO[action]:
            with pytest.raises(NotAuthorizedError):
                apply(state, action, actor, policy, reason="r")
        else:
            t = apply(state, action, actor, policy, reason="r")
            assert t == Transition(state, TRANSITIONS[(state, action)], action, actor, "r",
                                   action is A.CORRECT)


def test_table_has_no_rows_beyond_the_issue() -> None:
    """The table and its guards contain exactly the pairs the issue describes."""
    everything = set().union(*(legal_under(p) for p in POLICIES))
    assert set(TRANSITIONS) == everything
    assert set(GUARDS) <= set(TRANSITIONS)


def test_terminal_states_have_no_way_out() -> None:
    """Rejected, rerun-requested and retracted results accept no action."""
    for state in (S.REJECTED, S.RERUN_REQUESTED, S.RETRACTED):
        assert not [a for (s, a) in TRANSITIONS if s is state]


def test_technician_cannot_approve_but_doctor_can() -> None:
    """Approval needs the doctor role; a user holding both roles may approve."""
    with pytest.raises(NotAuthorizedError):
        apply(S.TECH_VALIDATED, A.APPROVE, TECH, TWO_STEP)
    assert apply(S.TECH_VALIDATED, A.APPROVE, DOCTOR, TWO_STEP).to_state is S.APPROVED
    both = Actor.user("chief", Role.TECHNICIAN, Role.DOCTOR)
    assert apply(S.TECH_VALIDATED, A.APPROVE, both, TWO_STEP).to_state is S.APPROVED


def test_admin_has_no_lifecycle_permission() -> None:
    """The admin role configures; it cannot validate, approve or release."""
    for action in (A.VALIDATE, A.REJECT):
        with pytest.raises(NotAuthorizedError):
            apply(S.HELD, action, ADMIN, TWO_STEP, reason="r")


def test_only_a_rule_autoverifies_and_only_the_system_marks_delivered() -> None:
    """People cannot autoverify, and only the HIS acknowledgement path delivers."""
    with pytest.raises(NotAuthorizedError):
        apply(S.RECEIVED, A.AUTOVERIFY, TECH, TWO_STEP)
    with pytest.raises(NotAuthorizedError):
        apply(S.RELEASED, A.MARK_DELIVERED, DOCTOR, TWO_STEP)
    assert apply(S.RELEASED, A.MARK_DELIVERED, SYSTEM, TWO_STEP).to_state is S.DELIVERED


@pytest.mark.parametrize("action,state", [(A.HOLD, S.RECEIVED), (A.REJECT, S.HELD),
                                          (A.REQUEST_RERUN, S.HELD), (A.CORRECT, S.RELEASED)])
@pytest.mark.parametrize("reason", ["", "   "])
def test_reason_required(action: Action, state: ResultState, reason: str) -> None:
    """Hold, reject, rerun and correct need a non-blank reason."""
    with pytest.raises(MissingReasonError):
        apply(state, action, DOCTOR if action is not A.HOLD else RULE, TWO_STEP, reason=reason)


def test_reason_is_stripped_and_optional_elsewhere() -> None:
    """A reason is kept stripped; validate needs none."""
    assert apply(S.HELD, A.VALIDATE, TECH, TWO_STEP).reason == ""
    assert apply(S.HELD, A.REJECT, TECH, TWO_STEP, reason=" clotted ").reason == "clotted"


def test_illegal_is_reported_before_authorization() -> None:
    """An illegal pair raises IllegalTransitionError even for an unauthorised actor."""
    with pytest.raises(IllegalTransitionError):
        apply(S.REJECTED, A.APPROVE, TECH, TWO_STEP)


def test_two_step_policy_requires_approval() -> None:
    """Under two-step, a technically validated result cannot be released directly."""
    with pytest.raises(IllegalTransitionError, match="policy"):
        apply(S.TECH_VALIDATED, A.RELEASE, TECH, TWO_STEP)
    history = run(TWO_STEP, (A.HOLD, RULE), (A.VALIDATE, TECH), (A.APPROVE, DOCTOR),
                  (A.RELEASE, SYSTEM), (A.MARK_DELIVERED, SYSTEM))
    assert [t.to_state for t in history][-3:] == [S.APPROVED, S.RELEASED, S.DELIVERED]
    assert may_send_final(history, TWO_STEP)


def test_one_step_policy_releases_after_technical_validation() -> None:
    """Labs configured for one step release after the technician; approval stays optional."""
    history = run(ONE_STEP, (A.AUTOVERIFY, RULE), (A.VALIDATE, TECH), (A.RELEASE, TECH))
    assert history[-1].to_state is S.RELEASED
    assert may_send_final(history, ONE_STEP)
    optional = run(ONE_STEP, (A.HOLD, RULE), (A.VALIDATE, TECH), (A.APPROVE, DOCTOR),
                   (A.RELEASE, SYSTEM))
    assert may_send_final(optional, ONE_STEP)


def test_autoverified_skip_technician_paths() -> None:
    """With the skip policy, an autoverified result goes to the doctor or straight out."""
    two = Policy(autoverified_skips_technician=True)
    one = Policy(require_approval=False, autoverified_skips_technician=True)
    h2 = run(two, (A.AUTOVERIFY, RULE), (A.APPROVE, DOCTOR), (A.RELEASE, SYSTEM))
    h1 = run(one, (A.AUTOVERIFY, RULE), (A.RELEASE, SYSTEM))
    assert may_send_final(h2, two) and may_send_final(h1, one)
    for policy in (TWO_STEP, ONE_STEP):
        with pytest.raises(IllegalTransitionError):
            apply(S.AUTOVERIFIED, A.RELEASE, SYSTEM, policy)


def test_correction_creates_a_new_version_that_must_pass_the_steps_again() -> None:
    """Correct after release flags a new version, which needs validation and approval."""
    old = run(TWO_STEP, (A.HOLD, RULE), (A.VALIDATE, TECH), (A.APPROVE, DOCTOR),
              (A.RELEASE, SYSTEM))
    fix = apply(old[-1].to_state, A.CORRECT, TECH, TWO_STEP, reason="transcription error")
    assert fix.new_version and fix.to_state is S.CORRECTED
    for action, actor in ((A.RELEASE, SYSTEM), (A.APPROVE, DOCTOR), (A.AUTOVERIFY, RULE)):
        with pytest.raises(IllegalTransitionError):
            apply(S.CORRECTED, action, actor, TWO_STEP)
    new = [fix]
    for action, actor in ((A.VALIDATE, TECH2), (A.APPROVE, DOCTOR), (A.RELEASE, SYSTEM)):
        new.append(apply(new[-1].to_state, action, actor, TWO_STEP))
    assert not may_send_final(new[:-1], TWO_STEP)
    assert may_send_final(new, TWO_STEP)
    assert all(not t.new_version for t in new[1:])


def test_correction_of_a_delivered_result() -> None:
    """A delivered result can be corrected too, into a new version."""
    t = apply(S.DELIVERED, A.CORRECT, DOCTOR, ONE_STEP, reason="wrong unit")
    assert (t.to_state, t.new_version) == (S.CORRECTED, True)


def test_may_send_final_refuses_incomplete_or_forged_histories() -> None:
    """Empty, unfinished, broken, forged or wrongly-started histories are not final."""
    good = run(TWO_STEP, (A.HOLD, RULE), (A.VALIDATE, TECH), (A.APPROVE, DOCTOR),
               (A.RELEASE, SYSTEM))
    assert may_send_final(good, TWO_STEP)
    assert not may_send_final([], TWO_STEP)
    assert not may_send_final(good[:-1], TWO_STEP)
    assert not may_send_final([good[0], *good[2:]], TWO_STEP)  # gap in the chain
    assert not may_send_final(good[1:], TWO_STEP)  # does not start at RECEIVED
    forged = Transition(S.TECH_VALIDATED, S.RELEASED, A.RELEASE, SYSTEM)
    assert not may_send_final([*good[:2], forged], TWO_STEP)
    tampered = Transition(S.APPROVED, S.RELEASED, A.RELEASE, ADMIN)
    assert not may_send_final([*good[:-1], tampered], TWO_STEP)


def test_may_send_final_uses_the_current_policy() -> None:
    """A lab that switches to two-step blocks one-step results not yet sent."""
    history = run(ONE_STEP, (A.HOLD, RULE), (A.VALIDATE, TECH), (A.RELEASE, TECH))
    assert may_send_final(history, ONE_STEP)
    assert not may_send_final(history, TWO_STEP)


def test_four_eyes_rule() -> None:
    """The same person may not validate and approve unless the policy allows it."""
    chief = Actor.user("chief", Role.TECHNICIAN, Role.DOCTOR)
    history = run(TWO_STEP, (A.HOLD, RULE), (A.VALIDATE, chief), (A.APPROVE, chief),
                  (A.RELEASE, SYSTEM))
    assert not may_send_final(history, TWO_STEP)
    assert may_send_final(history, Policy(distinct_approver=False))


@pytest.mark.parametrize("kwargs", [
    {"kind": ActorKind.USER, "id": ""},
    {"kind": ActorKind.RULE, "id": "r"},
    {"kind": ActorKind.SYSTEM, "id": "s", "roles": frozenset({Role.DOCTOR})},
    {"kind": ActorKind.USER, "id": "u", "rule_set_version": "1"},
])
def test_actor_validation(kwargs: dict[str, object]) -> None:
    """Malformed actors are refused at construction."""
    with pytest.raises(ValueError):
        Actor(**kwargs)  # type: ignore[arg-type]


STEPS = st.tuples(st.sampled_from(list(Action)),
                  st.sampled_from([TECH, TECH2, DOCTOR, DOCTOR2, ADMIN, RULE, SYSTEM]))


def passed_steps(history: list[Transition], policy: Policy) -> bool:
    """Oracle: the version's history contains the configured validations, in order."""
    validated = approved = False
    for t in history:
        if t.to_state in (S.HELD, S.CORRECTED, S.RECEIVED):
            validated = approved = False
        if t.action is A.VALIDATE and t.actor.roles & {Role.TECHNICIAN, Role.DOCTOR}:
            validated = True
        if t.action is A.AUTOVERIFY and policy.autoverified_skips_technician:
            validated = t.actor.kind is ActorKind.RULE
        if t.action is A.APPROVE and validated and Role.DOCTOR in t.actor.roles:
            approved = True
    return validated and (approved or not policy.require_approval)


@settings(max_examples=400, deadline=None)
@given(policy=st.sampled_from(POLICIES), distinct=st.booleans(),
       steps=st.lists(STEPS, max_size=40))
def test_random_sequences_never_release_without_the_required_validations(
        policy: Policy, distinct: bool, steps: list[tuple[Action, Actor]]) -> None:
    """Whatever actions are tried, every released version passed its configured steps."""
    policy = Policy(policy.require_approval, policy.autoverified_skips_technician, distinct)
    state, history = S.RECEIVED, list[Transition]()
    for action, actor in steps:
        try:
            t = apply(state, action, actor, policy, reason="r")
        except (IllegalTransitionError, NotAuthorizedError):
            continue
        history = [t] if t.new_version else [*history, t]
        state = t.to_state
        if state in (S.RELEASED, S.DELIVERED):
            assert passed_steps(history, policy)
            same = any(h.action is A.APPROVE and h.actor.id == next(
                (v.actor.id for v in reversed(history[:i]) if v.action is A.VALIDATE), None)
                for i, h in enumerate(history))
            assert may_send_final(history, policy) == (not (distinct and same))
        else:
            assert not may_send_final(history, policy)


def test_policies_pick_the_first_group_listing_the_test() -> None:
    """A test in a group gets that group's policy; any other test the default."""
    from lis_gateway.lifecycle import GroupPolicy, Policies, policy_for

    one_step = Policy(require_approval=False)
    policies = Policies(Policy(), (GroupPolicy("haematology", frozenset({"WBC", "HGB"}),
                                               one_step),))
    assert policies.for_test("HGB") is one_step
    assert policies.for_test("GLU") == Policy()
    assert policy_for(one_step, "anything") is one_step
