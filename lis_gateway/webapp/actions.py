"""What a person does to results from the web app, each run inside one store transaction.

Every function takes the ``Connection`` of a ``pool.run`` transaction, the
result *version* the person saw on the page (so nothing they did not see
is touched: a version corrected or reprocessed meanwhile is refused as
changed), the username and the lab's policies. Moves go through
:func:`lis_gateway.lifecycle.apply` (directly or via
:func:`lis_gateway.validation.validate_result`), so the lifecycle's table,
permissions and reasons decide; a refusal comes back as the
:class:`~lis_gateway.validation.Outcome`'s ``refused`` text, for the
person to read.

Sections come first: a result of an analyzer outside the person's lab
sections (:func:`lis_gateway.store.sections.scope_of`, read in the same
transaction, so a section taken away applies at once) is refused as an
:class:`OutOfSection` outcome whatever the action, before the lifecycle is
asked. No SQL here.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Connection

from lis_gateway.lifecycle import (
    Action,
    LifecycleError,
    Policies,
    Policy,
    ResultState,
    apply,
    policy_for,
)
from lis_gateway.sections import Scope
from lis_gateway.store import judgements, notes, repository, worklist
from lis_gateway.store.repository import ResultInfo
from lis_gateway.store.sections import scope_of, section_of_result
from lis_gateway.validation import Outcome, UserRefusedError, user_actor, validate_result
from lis_gateway.values import parse_value

#: What the batch form may validate without an individual look.
BATCH_STATES = frozenset({ResultState.AUTOVERIFIED, ResultState.TECH_VALIDATED})
_RANGE = re.compile(r"^\s*(-?\d+(?:[.,]\d+)?)\s*-\s*(-?\d+(?:[.,]\d+)?)\s*$")


class ChangedError(ValueError):
    """The version shown is no longer the result's latest one.

    Attributes:
        test: the result's test code ("#<version id>" when the version is unknown).
    """

    def __init__(self, test: str, message: str) -> None:
        super().__init__(message)
        self.test = test


class SectionError(ValueError):
    """The result belongs to a lab section the person does not hold.

    Attributes:
        test: the result's test code.
        section: its analyzer's section ("" for an analyzer without one).
    """

    def __init__(self, test: str, section: str) -> None:
        super().__init__(f"the result belongs to section {section!r}, which is not yours")
        self.test, self.section = test, section


@dataclass(frozen=True, slots=True)
class OutOfSection(Outcome):
    """An action refused because the result's section is not one of the person's.

    Attributes:
        section: the result's section ("" for an analyzer without one); the page
            says it in the person's language.
    """

    section: str = ""


def _current(conn: Connection, version_id: int, scope: Scope
             ) -> tuple[ResultInfo, judgements.ResultStatus]:
    """The result of a version that must still be its latest one, in the person's sections.

    Raises:
        ChangedError: a newer version exists, or no such version.
        SectionError: the result is outside the person's sections.
    """
    try:
        result_id = worklist.result_of_version(conn, version_id)
    except repository.NotFoundError:
        raise ChangedError(f"#{version_id}", "no such result") from None
    info = repository.get_result(conn, result_id)
    section = section_of_result(conn, result_id)
    if not scope.allows(section):
        raise SectionError(info.test_code, section)
    if info.latest.id != version_id:
        raise ChangedError(info.test_code, f"changed since it was shown (now version "
                           f"{info.latest.version}); look again")
    return info, judgements.result_status(conn, result_id)


def _refused(why: str, info: ResultInfo, state: ResultState) -> Outcome:
    return Outcome(info.id, info.test_code, state, state, (), why)


def _changed(exc: ChangedError | SectionError) -> Outcome:
    if isinstance(exc, SectionError):
        return OutOfSection(0, exc.test, ResultState.RECEIVED, ResultState.RECEIVED, (),
                            str(exc), exc.section)
    return Outcome(0, exc.test, ResultState.RECEIVED, ResultState.RECEIVED, (), str(exc))


def batch_validate(conn: Connection, version_ids: Sequence[int], username: str,
                   policy: Policy | Policies, *, approve: bool, at: datetime,
                   source: str) -> list[Outcome]:
    """Validate (or, with ``approve``, approve) routine results from the worklist.

    Only AUTOVERIFIED and TECH_VALIDATED results go through here: held,
    received and corrected results, and open critical values, need the
    sample page (refused with that reason).

    Raises:
        UserRefusedError: the user is unknown or disabled.
    """
    actor = user_actor(conn, username)
    scope = scope_of(conn, username)
    out = []
    for version_id in version_ids:
        try:
            info, status = _current(conn, version_id, scope)
        except (ChangedError, SectionError) as exc:
            out.append(_changed(exc))
            continue
        critical_open = (info.latest.content.critical
                         and not notes.acknowledged(conn, [version_id]))
        if status.state not in BATCH_STATES or critical_open:
            out.append(_refused("needs an individual look on the sample page", info,
                                status.state))
            continue
        out.append(validate_result(conn, info.id, actor,
                                   policy_for(policy, info.latest.content.code),
                                   approve=approve, at=at, source=source))
    return out


def validate_one(conn: Connection, version_id: int, username: str, policy: Policy | Policies,
                 *, approve: bool, at: datetime, source: str) -> Outcome:
    """Validate (or approve) one result from its sample page (held ones included).

    Raises:
        UserRefusedError: the user is unknown or disabled.
    """
    actor = user_actor(conn, username)
    try:
        info, _ = _current(conn, version_id, scope_of(conn, username))
    except (ChangedError, SectionError) as exc:
        return _changed(exc)
    return validate_result(conn, info.id, actor, policy_for(policy, info.latest.content.code),
                           approve=approve, at=at, source=source)


#: The decisions :func:`decide` takes (each needs a reason).
DECISIONS = frozenset({Action.REJECT, Action.REQUEST_RERUN, Action.RETRACT})


def decide(conn: Connection, version_id: int, username: str, policy: Policy | Policies,
           action: Action, reason: str, *, at: datetime, source: str) -> Outcome:
    """Reject a result, request a rerun, or retract a released one (a reason is required).

    A retraction (a lab doctor's, from RELEASED) is then sent to every destination as
    a deletion (:func:`lis_gateway.store.outbox.enqueue_released`, kind retraction),
    as ``lis-gateway retract`` does.

    Raises:
        UserRefusedError: the user is unknown or disabled.
        ValueError: an action other than those in :data:`DECISIONS`.
    """
    if action not in DECISIONS:
        raise ValueError(f"not a decision: {action.value}")
    actor = user_actor(conn, username)
    try:
        info, status = _current(conn, version_id, scope_of(conn, username))
        transition = apply(status.state, action, actor,
                           policy_for(policy, info.latest.content.code), reason=reason)
    except (ChangedError, SectionError) as exc:
        return _changed(exc)
    except LifecycleError as exc:
        return _refused(str(exc), info, status.state)
    judgements.record_transition(conn, version_id, transition, at, source=source)
    return Outcome(info.id, info.test_code, status.state, transition.to_state, (action,))


def range_flags(number: Decimal | None, reference_range: str) -> tuple[str, ...]:
    """HL7 0078 L, H or N for a number against a ``low-high`` range; () when unknown."""
    match = _RANGE.match(reference_range)
    if number is None or match is None:
        return ()
    low, high = (Decimal(g.replace(",", ".")) for g in match.groups())
    return ("L",) if number < low else ("H",) if number > high else ("N",)


def correct(conn: Connection, version_id: int, username: str, policy: Policy | Policies,
            value: str, reason: str, *, at: datetime, source: str) -> Outcome:
    """Correct a released result: a new version with the new value (reason required).

    The new version is CORRECTED and must be validated (and approved) again
    before it is released; its flags are worked out again from the reference
    range (none when the range cannot be read). The old version stays as it was.

    Raises:
        UserRefusedError: the user is unknown or disabled.
    """
    actor = user_actor(conn, username)
    text = value.strip()
    try:
        info, status = _current(conn, version_id, scope_of(conn, username))
        if not text:
            raise LifecycleError("a corrected value is required")
        transition = apply(status.state, Action.CORRECT, actor,
                           policy_for(policy, info.latest.content.code), reason=reason)
    except (ChangedError, SectionError) as exc:
        return _changed(exc)
    except LifecycleError as exc:
        return _refused(str(exc), info, status.state)
    old = info.latest.content
    number = parse_value(text).number
    content = dataclasses.replace(old, value_raw=text, number=number,
                                  flags=range_flags(number, old.reference_range))
    new = repository.correct_result(conn, version_id, content, reason=transition.reason,
                                    author=username, at=at, source=source)
    judgements.record_transition(conn, new.id, transition, at, source=source)
    return Outcome(info.id, info.test_code, status.state, transition.to_state, (Action.CORRECT,))


def comment(conn: Connection, version_id: int, username: str, text: str, *, at: datetime,
            source: str) -> Outcome:
    """Keep a comment on a result version (any logged-in person).

    Raises:
        UserRefusedError: the user is unknown or disabled.
    """
    user_actor(conn, username)
    try:
        info, status = _current(conn, version_id, scope_of(conn, username))
        notes.add_comment(conn, version_id, username, text, at=at, source=source)
    except (ChangedError, SectionError) as exc:
        return _changed(exc)
    except ValueError as exc:
        return _refused(str(exc), info, status.state)
    return Outcome(info.id, info.test_code, status.state, status.state, ())


def acknowledge(conn: Connection, version_id: int, username: str, *, informed: str,
                informed_at: datetime, how: str, at: datetime, source: str) -> Outcome:
    """Record that a critical value was told to someone (who, when, how).

    Raises:
        UserRefusedError: the user is unknown or disabled.
    """
    user_actor(conn, username)
    try:
        info, status = _current(conn, version_id, scope_of(conn, username))
        if not info.latest.content.critical:
            raise ValueError("not a critical value")
        if notes.acknowledged(conn, [version_id]):
            raise ValueError("already acknowledged")
        if informed_at > at:
            raise ValueError("the time the person was informed is in the future")
        notes.acknowledge_critical(conn, version_id, username, informed=informed,
                                   informed_at=informed_at, how=how, at=at, source=source)
    except (ChangedError, SectionError) as exc:
        return _changed(exc)
    except ValueError as exc:
        return _refused(str(exc), info, status.state)
    return Outcome(info.id, info.test_code, status.state, status.state, ())


__all__ = ["BATCH_STATES", "DECISIONS", "ChangedError", "OutOfSection", "Outcome",
           "SectionError", "UserRefusedError", "acknowledge", "batch_validate", "comment",
           "correct", "decide", "range_flags", "validate_one"]
