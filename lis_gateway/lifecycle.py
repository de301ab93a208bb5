"""The life of one result version, as a pure state table (no I/O).

Theory of operation
-------------------
Every lifecycle transition lives in this file, in :data:`TRANSITIONS`, as
every link transition lives in ``astm/link.py``. :func:`apply` is the only
way to move a result: it takes the current state, an :class:`Action`, the
:class:`Actor` who (or the rule that) caused it, the lab's :class:`Policy`
for the test group and a reason, and returns a :class:`Transition` record.
The caller (the store) persists the record and the new state; this module
keeps nothing and reads no clock (the store stamps the time).

The main path::

    RECEIVED -> HELD (reasons)  -> TECH_VALIDATED -> APPROVED -> RELEASED -> DELIVERED
             -> AUTOVERIFIED    ->

Side branches: REJECTED (terminal, reason required), RERUN_REQUESTED
(terminal for this result; the rerun arrives as a new result),
CORRECTED (after release; see below) and RETRACTED (after release: a lab
doctor withdraws a result that must never have been reported, such as a
sample of the wrong patient; terminal, reason required; the destinations
are told to delete it).

Policy (per test group) removes steps, never adds paths the table lacks:

* ``require_approval`` (default, Vietnam two-step validation): RELEASE only
  from APPROVED. When false, TECH_VALIDATED may be released directly (a
  doctor may still approve first: approval is then optional, not skipped).
* ``autoverified_skips_technician``: an AUTOVERIFIED result may go straight
  to APPROVE or, when approval is not required, to RELEASE.
* ``release_autoverified``: the gateway itself releases an AUTOVERIFIED result
  (actor SYSTEM ``autorelease``) in the transaction that autoverified it; it
  needs both policies above, so that release is a legal table row.
* ``distinct_approver``: the doctor who approves must not be the person who
  validated. :func:`apply` sees only a state, so this four-eyes rule is
  checked over the history by :func:`may_send_final`.

Table rows whose :data:`GUARDS` entry the policy does not meet raise
:class:`IllegalTransitionError`, like rows that do not exist.

Corrections: released results are immutable. CORRECT from RELEASED or
DELIVERED returns a transition with ``new_version=True``: the store keeps
the old version as it is (marking it superseded), creates a new version
linked to it, whose state is ``to_state`` (CORRECTED) and whose history
begins with this transition. A CORRECTED version must be validated by a
technician again (autoverification never applies to it) and pass the
configured approval before it can be released.

Errors (all :class:`LifecycleError`, a ``ValueError``): the pair is not in
the table or the policy forbids it: :class:`IllegalTransitionError`; the
actor lacks the permission: :class:`NotAuthorizedError`; a reason is
required and missing: :class:`MissingReasonError`. They are checked in that
order, and a failed :func:`apply` changes nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


class ResultState(enum.Enum):
    """States of one result version; see the module docstring."""

    #: Stored, not yet judged by the autoverification rules.
    RECEIVED = "received"
    #: A rule or a person held it; a technician must look (reasons recorded).
    HELD = "held"
    #: Every autoverification rule passed (not in shadow mode).
    AUTOVERIFIED = "autoverified"
    #: A technician validated it technically.
    TECH_VALIDATED = "tech-validated"
    #: A lab doctor approved it medically.
    APPROVED = "approved"
    #: Final: may be sent to the HIS; immutable from here on.
    RELEASED = "released"
    #: The HIS acknowledged the final result.
    DELIVERED = "delivered"
    #: Rejected (bad sample, wrong patient, ...); terminal, reason recorded.
    REJECTED = "rejected"
    #: A rerun was requested; terminal for this result.
    RERUN_REQUESTED = "rerun-requested"
    #: A new version correcting a released one; must be validated again.
    CORRECTED = "corrected"
    #: Withdrawn after release (wrong patient, wrong sample); terminal, reason recorded.
    RETRACTED = "retracted"


class Action(enum.Enum):
    """Inputs of the state table."""

    HOLD = "hold"
    AUTOVERIFY = "autoverify"
    VALIDATE = "validate"
    APPROVE = "approve"
    RELEASE = "release"
    MARK_DELIVERED = "mark-delivered"
    REJECT = "reject"
    REQUEST_RERUN = "request-rerun"
    CORRECT = "correct"
    RETRACT = "retract"


class Role(enum.Enum):
    """Roles a user may hold. ``ADMIN`` configures; it grants no lifecycle action."""

    TECHNICIAN = "technician"
    DOCTOR = "doctor"
    ADMIN = "admin"


class ActorKind(enum.Enum):
    """Who caused a transition: a person, an autoverification rule, or the gateway itself."""

    USER = "user"
    RULE = "rule"
    SYSTEM = "system"  #: the gateway (automatic release, the HIS acknowledgement)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who or what caused a transition.

    Attributes:
        kind: user, rule or system.
        id: the user's id, the rule's id, or the system component's name.
        roles: the user's roles (empty for rules and the system).
        rule_set_version: for rules, the version of the rule set that decided.

    Raises:
        ValueError: an empty id, roles on a non-user, or a rule without a version.
    """

    kind: ActorKind
    id: str
    roles: frozenset[Role] = frozenset()
    rule_set_version: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("an actor needs an id")
        if self.roles and self.kind is not ActorKind.USER:
            raise ValueError("only users hold roles")
        if (self.kind is ActorKind.RULE) != bool(self.rule_set_version):
            raise ValueError("a rule actor, and only a rule actor, has a rule-set version")

    @classmethod
    def user(cls, user_id: str, *roles: Role) -> Actor:
        """A person with the given roles."""
        return cls(ActorKind.USER, user_id, frozenset(roles))

    @classmethod
    def rule(cls, rule_id: str, rule_set_version: str) -> Actor:
        """An autoverification rule of a versioned rule set."""
        return cls(ActorKind.RULE, rule_id, rule_set_version=rule_set_version)

    @classmethod
    def system(cls, component: str) -> Actor:
        """The gateway itself (for example ``"outbox"`` for an HIS acknowledgement)."""
        return cls(ActorKind.SYSTEM, component)


@dataclass(frozen=True, slots=True)
class Policy:
    """The validation steps a test group requires; the default is the strict two-step one.

    Attributes:
        require_approval: a lab doctor must approve before release.
        autoverified_skips_technician: autoverified results need no technician.
        distinct_approver: the approver must not be the technical validator.
        release_autoverified: the gateway releases an AUTOVERIFIED result at once
            (a SYSTEM actor); only meaningful with ``require_approval`` false and
            ``autoverified_skips_technician`` true (the configuration refuses
            anything else), since the release must be legal under the table.
    """

    require_approval: bool = True
    autoverified_skips_technician: bool = False
    distinct_approver: bool = True
    release_autoverified: bool = False


@dataclass(frozen=True, slots=True)
class GroupPolicy:
    """The policy of one test group (haematology, biochemistry, ...).

    Attributes:
        name: the group's name, for messages.
        tests: the local test codes in the group.
        policy: its validation steps.
    """

    name: str
    tests: frozenset[str]
    policy: Policy


@dataclass(frozen=True, slots=True)
class Policies:
    """The lab's policies: per test group, and a default for every other test.

    Some labs release haematology after technical validation and want a doctor
    for biochemistry; a test belongs to the first group that lists it.
    """

    default: Policy = field(default_factory=Policy)
    groups: tuple[GroupPolicy, ...] = ()

    def for_test(self, code: str) -> Policy:
        """The policy that applies to local test ``code``."""
        for group in self.groups:
            if code in group.tests:
                return group.policy
        return self.default


def policy_for(policy: Policy | Policies, code: str) -> Policy:
    """The policy for ``code`` from a single policy or per-group policies."""
    return policy.for_test(code) if isinstance(policy, Policies) else policy


@dataclass(frozen=True, slots=True)
class Transition:
    """One recorded transition.

    Attributes:
        from_state: the state before.
        to_state: the state after (of the new version when ``new_version``).
        action: what was done.
        actor: who or which rule did it.
        reason: why (required for hold, reject, rerun and correct).
        new_version: the store must create a new version linked to the old one.
    """

    from_state: ResultState
    to_state: ResultState
    action: Action
    actor: Actor
    reason: str = ""
    new_version: bool = False


class LifecycleError(ValueError):
    """Base of the errors :func:`apply` raises; nothing changed."""


class IllegalTransitionError(LifecycleError):
    """The action is not allowed from this state (by the table or by the policy)."""


class NotAuthorizedError(LifecycleError):
    """The actor may not perform this action."""


class MissingReasonError(LifecycleError):
    """The action requires a reason and none was given."""


class Guard(enum.Enum):
    """Policy conditions a table row may carry."""

    ONE_STEP = "one-step"  #: medical approval is not required
    AUTO_SKIPS_TECHNICIAN = "auto-skips-technician"


class Permit(enum.Enum):
    """Who may perform an action: a user role, any rule, or the system."""

    TECHNICIAN = "technician"
    DOCTOR = "doctor"
    RULE = "rule"
    SYSTEM = "system"


S = ResultState
A = Action

#: Every transition: (state, action) -> next state. A pair missing here is illegal.
TRANSITIONS: dict[tuple[ResultState, Action], ResultState] = {
    (S.RECEIVED, A.HOLD): S.HELD,
    (S.RECEIVED, A.AUTOVERIFY): S.AUTOVERIFIED,
    (S.RECEIVED, A.REJECT): S.REJECTED,
    (S.RECEIVED, A.REQUEST_RERUN): S.RERUN_REQUESTED,
    (S.HELD, A.VALIDATE): S.TECH_VALIDATED,
    (S.HELD, A.REJECT): S.REJECTED,
    (S.HELD, A.REQUEST_RERUN): S.RERUN_REQUESTED,
    (S.AUTOVERIFIED, A.VALIDATE): S.TECH_VALIDATED,
    (S.AUTOVERIFIED, A.HOLD): S.HELD,
    (S.AUTOVERIFIED, A.APPROVE): S.APPROVED,
    (S.AUTOVERIFIED, A.RELEASE): S.RELEASED,
    (S.AUTOVERIFIED, A.REJECT): S.REJECTED,
    (S.AUTOVERIFIED, A.REQUEST_RERUN): S.RERUN_REQUESTED,
    (S.TECH_VALIDATED, A.APPROVE): S.APPROVED,
    (S.TECH_VALIDATED, A.RELEASE): S.RELEASED,
    (S.TECH_VALIDATED, A.HOLD): S.HELD,  # the doctor sends it back
    (S.TECH_VALIDATED, A.REJECT): S.REJECTED,
    (S.TECH_VALIDATED, A.REQUEST_RERUN): S.RERUN_REQUESTED,
    (S.APPROVED, A.RELEASE): S.RELEASED,
    (S.RELEASED, A.MARK_DELIVERED): S.DELIVERED,
    (S.RELEASED, A.CORRECT): S.CORRECTED,
    (S.DELIVERED, A.CORRECT): S.CORRECTED,
    (S.CORRECTED, A.VALIDATE): S.TECH_VALIDATED,
    (S.CORRECTED, A.REJECT): S.REJECTED,  # the correction is withdrawn; the old version stands
    (S.RELEASED, A.RETRACT): S.RETRACTED,
    (S.DELIVERED, A.RETRACT): S.RETRACTED,
}

#: Policy conditions on table rows; a row not listed here has none.
GUARDS: dict[tuple[ResultState, Action], frozenset[Guard]] = {
    (S.TECH_VALIDATED, A.RELEASE): frozenset({Guard.ONE_STEP}),
    (S.AUTOVERIFIED, A.RELEASE): frozenset({Guard.ONE_STEP, Guard.AUTO_SKIPS_TECHNICIAN}),
    (S.AUTOVERIFIED, A.APPROVE): frozenset({Guard.AUTO_SKIPS_TECHNICIAN}),
}

#: Who may perform each action.
PERMITS: dict[Action, frozenset[Permit]] = {
    A.HOLD: frozenset({Permit.RULE, Permit.TECHNICIAN, Permit.DOCTOR}),
    A.AUTOVERIFY: frozenset({Permit.RULE}),
    A.VALIDATE: frozenset({Permit.TECHNICIAN, Permit.DOCTOR}),
    A.APPROVE: frozenset({Permit.DOCTOR}),
    A.RELEASE: frozenset({Permit.SYSTEM, Permit.TECHNICIAN, Permit.DOCTOR}),
    A.MARK_DELIVERED: frozenset({Permit.SYSTEM}),
    A.REJECT: frozenset({Permit.TECHNICIAN, Permit.DOCTOR}),
    A.REQUEST_RERUN: frozenset({Permit.RULE, Permit.TECHNICIAN, Permit.DOCTOR}),
    A.CORRECT: frozenset({Permit.TECHNICIAN, Permit.DOCTOR}),
    A.RETRACT: frozenset({Permit.DOCTOR}),
}

#: Actions that need a non-blank reason.
REASON_REQUIRED: frozenset[Action] = frozenset(
    {A.HOLD, A.REJECT, A.REQUEST_RERUN, A.CORRECT, A.RETRACT})

#: Actions whose transition starts a new version.
NEW_VERSION: frozenset[Action] = frozenset({A.CORRECT})

#: States in which a result is final for the HIS.
FINAL_STATES: frozenset[ResultState] = frozenset({S.RELEASED, S.DELIVERED})

_GUARD_HOLDS: dict[Guard, Callable[[Policy], bool]] = {
    Guard.ONE_STEP: lambda p: not p.require_approval,
    Guard.AUTO_SKIPS_TECHNICIAN: lambda p: p.autoverified_skips_technician,
}

_ROLE_PERMITS: dict[Role, frozenset[Permit]] = {
    Role.TECHNICIAN: frozenset({Permit.TECHNICIAN}),
    Role.DOCTOR: frozenset({Permit.DOCTOR}),
    Role.ADMIN: frozenset(),
}

_KIND_PERMITS: dict[ActorKind, frozenset[Permit]] = {
    ActorKind.USER: frozenset(),
    ActorKind.RULE: frozenset({Permit.RULE}),
    ActorKind.SYSTEM: frozenset({Permit.SYSTEM}),
}


def permits_of(actor: Actor) -> frozenset[Permit]:
    """What an actor is permitted as.

    Args:
        actor: a user, rule or system actor.

    Returns:
        The union of the actor's kind permit and its roles' permits.
    """
    out = _KIND_PERMITS[actor.kind]
    for role in actor.roles:
        out = out | _ROLE_PERMITS[role]
    return out


def allowed(state: ResultState, action: Action, policy: Policy) -> ResultState | None:
    """The next state when the table and the policy allow the action, else None.

    Args:
        state: the current state.
        action: the action tried.
        policy: the test group's policy.

    Returns:
        The next state, or None.
    """
    target = TRANSITIONS.get((state, action))
    if target is None:
        return None
    guards = GUARDS.get((state, action), frozenset())
    if not all(_GUARD_HOLDS[g](policy) for g in guards):
        return None
    return target


def apply(state: ResultState, action: Action, actor: Actor, policy: Policy, *,
          reason: str = "") -> Transition:
    """Check one transition and return its record.

    Args:
        state: the result version's current state.
        action: what is being done.
        actor: who or which rule does it.
        policy: the test group's policy.
        reason: why; required (non-blank) for the actions in :data:`REASON_REQUIRED`.

    Returns:
        The transition to persist (``new_version`` set for corrections).

    Raises:
        IllegalTransitionError: the table has no such row, or the policy forbids it.
        NotAuthorizedError: the actor lacks every permit :data:`PERMITS` lists.
        MissingReasonError: a required reason is blank.
    """
    target = allowed(state, action, policy)
    if target is None:
        why = "by the policy" if (state, action) in TRANSITIONS else "from this state"
        raise IllegalTransitionError(f"{action.value} is not allowed {why}: {state.value}")
    if not permits_of(actor) & PERMITS[action]:
        raise NotAuthorizedError(f"{actor.kind.value} {actor.id!r} may not {action.value}")
    if action in REASON_REQUIRED and not reason.strip():
        raise MissingReasonError(f"{action.value} requires a reason")
    return Transition(state, target, action, actor, reason.strip(), action in NEW_VERSION)


def _replays(history: Sequence[Transition], policy: Policy) -> bool:
    """Every step is legal under ``policy`` now and the steps form one chain."""
    expected: ResultState | None = None
    for i, step in enumerate(history):
        start_ok = step.from_state is S.RECEIVED or step.new_version
        if (expected is None and not (i == 0 and start_ok)) or (
                expected is not None and step.from_state is not expected):
            return False
        try:
            again = apply(step.from_state, step.action, step.actor, policy, reason=step.reason)
        except LifecycleError:
            return False
        if again != step:
            return False
        expected = step.to_state
    return True


def _four_eyes(history: Sequence[Transition]) -> bool:
    """Each approval comes from someone other than the latest technical validator."""
    validator = ""
    for step in history:
        if step.action is A.VALIDATE:
            validator = step.actor.id
        elif step.action is A.APPROVE and step.actor.id == validator:
            return False
    return True


def may_send_final(history: Sequence[Transition], policy: Policy) -> bool:
    """Whether one version's history lets it reach the HIS as a final result.

    The history must start at RECEIVED (or with the correction that created the
    version), form an unbroken chain, be legal step by step under the policy
    *as it is now* (a lab that tightens its policy blocks what is not yet
    sent), end in a final state and, with ``distinct_approver``, have each
    approval by someone other than the technical validator.

    Args:
        history: the version's transitions, oldest first.
        policy: the test group's current policy.

    Returns:
        True when the result may be sent as final.
    """
    if not history or history[-1].to_state not in FINAL_STATES:
        return False
    if not _replays(history, policy):
        return False
    return not policy.distinct_approver or _four_eyes(history)
