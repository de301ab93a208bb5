"""Logging in to the validation web app: passwords, lockout, and the audit of each attempt.

The audit log is the record of attempts; there is no table of its own.
An account is locked while :data:`LOCKOUT_FAILURES` failed attempts lie
within :data:`LOCKOUT_WINDOW` after its last successful login; the lock
lifts by itself when the oldest of them ages out of the window. While
locked, even the right password is refused (and that attempt is audited as
``auth.login-locked``, which does not count as a failure, so a locked
account is not kept locked for ever by someone hammering it).

Audit actions: ``auth.login`` (success), ``auth.login-failed`` (unknown user,
disabled user, no password or wrong password: the detail says which, the
screen does not), ``auth.login-locked``, ``auth.logout`` (the detail says
whether the person logged out or the session expired). The target is
``user:<name as typed>``; a password is never written anywhere.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, select

from . import schema as s
from ._common import require_aware
from .audit import append_audit, find_audit
from .users import User, get_user

#: Failed attempts within :data:`LOCKOUT_WINDOW` that lock an account.
LOCKOUT_FAILURES = 5
#: How far back failed attempts count.
LOCKOUT_WINDOW = timedelta(minutes=15)
#: The longest user name written to the audit log (the column holds 200 characters).
NAME_MAX = 100

LOGIN, FAILED, LOCKED, LOGOUT = ("auth.login", "auth.login-failed", "auth.login-locked",
                                 "auth.logout")


class LoginOutcome(enum.Enum):
    """What a login attempt came to."""

    #: The password is right; the user is active.
    OK = "ok"
    #: Unknown user, disabled user, no password set, or a wrong password.
    REFUSED = "refused"
    #: Too many recent failures; nothing was checked.
    LOCKED = "locked"


@dataclass(frozen=True, slots=True)
class Login:
    """The outcome of :func:`attempt_login` (``user`` is set only when OK)."""

    outcome: LoginOutcome
    user: User | None = None


@functools.cache
def _dummy_hash() -> str:
    from argon2 import PasswordHasher

    return PasswordHasher().hash("not a password of anybody")


def _verify(hashed: str | None, password: str) -> bool:
    """argon2 verification; an unknown user costs as much as a known one."""
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        ok = PasswordHasher().verify(hashed or _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return False
    return ok and hashed is not None


def _target(username: str) -> str:
    return f"user:{username[:NAME_MAX]}"


def recent_failures(conn: Connection, username: str, at: datetime, *,
                    window: timedelta = LOCKOUT_WINDOW) -> int:
    """Failed attempts on ``username`` within ``window`` before ``at``, since its last login."""
    when = require_aware(at, "at")
    rows = find_audit(conn, actions=(LOGIN, FAILED), targets=(_target(username),),
                      since=when - window)
    count = 0
    for row in rows:
        count = 0 if row.action == LOGIN else count + 1
    return count


def attempt_login(conn: Connection, username: str, password: str, *, at: datetime,
                  source: str, failures: int = LOCKOUT_FAILURES,
                  window: timedelta = LOCKOUT_WINDOW) -> Login:
    """Check a login attempt and audit it (the caller's transaction).

    Args:
        username: as typed.
        password: as typed; never stored or logged.
        at: timezone-aware time of the attempt.
        source: where from (the client's address), for the audit log.
        failures, window: the lockout rule.

    Returns:
        OK with the user, REFUSED, or LOCKED.
    """
    when = require_aware(at, "at")
    target = _target(username)
    if recent_failures(conn, username, when, window=window) >= failures:
        append_audit(conn, actor=username[:NAME_MAX], action=LOCKED, target=target,
                     detail={}, source=source, at=when)
        return Login(LoginOutcome.LOCKED)
    row = conn.execute(select(s.users.c.password_hash, s.users.c.active).where(
        s.users.c.username == username)).first()
    matches = _verify(None if row is None else row.password_hash, password)
    why = ("unknown user" if row is None else "disabled" if not row.active
           else "no password set" if not row.password_hash
           else "" if matches else "wrong password")
    if why:
        append_audit(conn, actor=username[:NAME_MAX], action=FAILED, target=target,
                     detail={"why": why}, source=source, at=when)
        return Login(LoginOutcome.REFUSED)
    append_audit(conn, actor=username, action=LOGIN, target=target, detail={},
                 source=source, at=when)
    return Login(LoginOutcome.OK, get_user(conn, username))


def record_logout(conn: Connection, username: str, *, at: datetime, source: str,
                  expired: bool = False) -> None:
    """Audit the end of a session (a logout, or an expiry noticed on the next request)."""
    append_audit(conn, actor=username, action=LOGOUT, target=_target(username),
                 detail={"expired": expired}, source=source, at=require_aware(at, "at"))
