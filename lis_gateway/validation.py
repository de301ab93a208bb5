"""Technical validation, approval and release of a sample's results by a person.

:func:`validate_sample` moves each result of one sample through the
lifecycle with :func:`lis_gateway.lifecycle.apply` (the only way a result
moves): VALIDATE from HELD, AUTOVERIFIED or CORRECTED; with ``approve``,
APPROVE from TECH_VALIDATED; then RELEASE when the policy allows it from
the state reached *and* :func:`lis_gateway.lifecycle.may_send_final` agrees
over the whole history. A refused step changes nothing for that result from
that step on and is reported with the lifecycle's reason. A result not mapped
to a local code is refused outright: nothing unmapped is released as final
(it stays held, so ``reprocess`` picks it up once the table is fixed). Every recorded
transition is audited in the caller's transaction. No SQL here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from lis_gateway.lifecycle import (
    Action,
    Actor,
    LifecycleError,
    Policies,
    Policy,
    ResultState,
    Role,
    Transition,
    allowed,
    apply,
    may_send_final,
    policy_for,
)
from lis_gateway.store import judgements, repository

S = ResultState
#: States in which the technician's step is already done.
_DONE_BY_TECHNICIAN = frozenset({S.TECH_VALIDATED, S.APPROVED})


class UserRefusedError(ValueError):
    """The user does not exist, is disabled, or holds no lifecycle role."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What :func:`validate_sample` did to one result.

    Attributes:
        result_id: the result.
        test: its test code.
        before: the state it was in.
        after: the state it is in now.
        done: the actions recorded, in order.
        refused: why the next step was refused ("" when nothing was refused).
    """

    result_id: int
    test: str
    before: ResultState
    after: ResultState
    done: tuple[Action, ...]
    refused: str = ""


def user_actor(conn: Connection, username: str) -> Actor:
    """The lifecycle actor of an active user.

    Raises:
        UserRefusedError: unknown or disabled user.
    """
    try:
        user = repository.get_user(conn, username)
    except repository.NotFoundError:
        raise UserRefusedError(f"no user {username!r}") from None
    if not user.active:
        raise UserRefusedError(f"user {username!r} is disabled")
    known = {r.value for r in Role}
    return Actor.user(user.username, *(Role(r) for r in user.roles if r in known))


def _validator(history: list[Transition]) -> str:
    who = ""
    for step in history:
        if step.action is Action.VALIDATE:
            who = step.actor.id
    return who


def validate_result(conn: Connection, result_id: int, actor: Actor, policy: Policy, *,
                    approve: bool, at: datetime, source: str = "") -> Outcome:
    """Validate (and approve, and release when allowed) one result; see the module docstring."""
    info = repository.get_result(conn, result_id)
    status = judgements.result_status(conn, result_id)
    if info.qc:
        return Outcome(result_id, info.test_code, status.state, status.state, (),
                       "a QC result is not a patient result")
    if not info.latest.content.code and not info.latest.content.loinc:
        return Outcome(result_id, info.test_code, status.state, status.state, (),
                       f"test {info.test_code!r} is not mapped to a local code: add it to "
                       "the mapping table, run `lis-gateway reprocess`, then validate")
    history = list(judgements.version_history(conn, status.version_id))
    state, done = status.state, []

    def step(action: Action) -> None:
        nonlocal state
        transition = apply(state, action, actor, policy)
        judgements.record_transition(conn, status.version_id, transition, at, source=source)
        history.append(transition)
        done.append(action)
        state = transition.to_state

    try:
        skip_technician = approve and allowed(state, Action.APPROVE, policy) is not None
        if state not in _DONE_BY_TECHNICIAN and not skip_technician:
            step(Action.VALIDATE)  # refused by the table from other states
        if approve and state in (S.TECH_VALIDATED, S.AUTOVERIFIED):
            apply(state, Action.APPROVE, actor, policy)  # the lifecycle's refusal first
            if policy.distinct_approver and _validator(history) == actor.id:
                raise LifecycleError(f"{actor.id!r} validated this result and may not "
                                     "also approve it")
            step(Action.APPROVE)
        if allowed(state, Action.RELEASE, policy) is not None:
            release = apply(state, Action.RELEASE, actor, policy)
            if not may_send_final([*history, release], policy):
                raise LifecycleError("release refused: the history does not allow a final "
                                     "result under the current policy")
            step(Action.RELEASE)
        elif not done:
            if state is S.TECH_VALIDATED and not approve:
                raise LifecycleError("already technically validated; approval is next")
            raise LifecycleError(f"nothing to do in state {state.value}")
    except LifecycleError as exc:
        return Outcome(result_id, info.test_code, status.state, state, tuple(done), str(exc))
    return Outcome(result_id, info.test_code, status.state, state, tuple(done))


def validate_sample(conn: Connection, accession: str, username: str,
                    policy: Policy | Policies, *, approve: bool, at: datetime,
                    source: str = "") -> list[Outcome]:
    """Validate every current result of a sample (reruns included), oldest first.

    Each result is validated under the policy of its test's group.

    Raises:
        UserRefusedError: unknown or disabled user.
        repository.NotFoundError: the sample has no results.
    """
    actor = user_actor(conn, username)
    infos = repository.results_for_sample(conn, accession)
    if not infos:
        raise repository.NotFoundError(f"no results for sample {accession!r}")
    return [validate_result(conn, info.id, actor, policy_for(policy, info.latest.content.code),
                            approve=approve, at=at, source=source) for info in infos]


def retract_result(conn: Connection, accession: str, test_code: str, username: str,
                   reason: str, *, at: datetime, source: str = "") -> Outcome:
    """Withdraw a released result (a lab doctor; reason required); the destinations are
    then told to delete it (:mod:`lis_gateway.store.outbox`, entry kind ``retraction``).

    Raises:
        UserRefusedError: unknown or disabled user.
        repository.NotFoundError: the sample has no current result of that test.
    """
    return _act(conn, accession, test_code, username, Action.RETRACT, reason, Policy(),
                at=at, source=source)


def request_rerun(conn: Connection, accession: str, test_code: str, username: str,
                  reason: str, policy: Policy | Policies, *, at: datetime,
                  source: str = "") -> Outcome:
    """Ask for a rerun of a result not yet released (reason required). An analyzer
    that takes downloads gets the test again (:mod:`lis_gateway.store.downloads`).

    Raises:
        UserRefusedError: unknown or disabled user.
        repository.NotFoundError: the sample has no current result of that test.
    """
    return _act(conn, accession, test_code, username, Action.REQUEST_RERUN, reason, policy,
                at=at, source=source)


def _act(conn: Connection, accession: str, test_code: str, username: str, action: Action,
         reason: str, policy: Policy | Policies, *, at: datetime, source: str) -> Outcome:
    """One person's ``action`` on the latest result of ``test_code`` (analyzer or local
    code) on a sample; a refusal is reported in the outcome, nothing is recorded."""
    actor = user_actor(conn, username)
    found = [i for i in repository.results_for_sample(conn, accession)
             if i.test_code == test_code or i.latest.content.code == test_code]
    if not found:
        raise repository.NotFoundError(f"sample {accession!r} has no result of {test_code!r}")
    info = found[-1]
    status = judgements.result_status(conn, info.id)
    try:
        transition = apply(status.state, action, actor,
                           policy_for(policy, info.latest.content.code), reason=reason)
    except LifecycleError as exc:
        return Outcome(info.id, info.test_code, status.state, status.state, (), str(exc))
    judgements.record_transition(conn, status.version_id, transition, at, source=source)
    return Outcome(info.id, info.test_code, status.state, transition.to_state, (action,))
