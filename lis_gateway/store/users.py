"""Users and roles (the accounts of technicians, doctors and admins).

Passwords are kept only as argon2id hashes (:func:`password_hash`); the audit
log records that a password was set, never the hash.

A user's practising-certificate number (*số chứng chỉ hành nghề*) is what the
social-insurance table XML4 names the person who approved a result by
(``MA_BS_DOC_KQ``, several joined by ``;``); "" means not known yet.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from . import schema as s
from ._common import NotFoundError, primary_key, require_aware
from .audit import append_audit


@dataclass(frozen=True, slots=True)
class User:
    """A user and the names of their roles."""

    id: int
    username: str
    display_name: str
    active: bool
    roles: tuple[str, ...]
    has_password: bool = False
    certificate_number: str = ""  #: practising-certificate number; "" not known


#: The longest certificate number the store keeps (``users.certificate_number``).
CERTIFICATE_MAX = 50


def certificate_number(text: str) -> str:
    """A practising-certificate number as it is kept: trimmed, NFC ("" clears it).

    Raises:
        ValueError: longer than :data:`CERTIFICATE_MAX`, or holding ``;`` (the
            XML4 separator between several people) or a control character.
    """
    number = unicodedata.normalize("NFC", text.strip())
    if len(number) > CERTIFICATE_MAX:
        raise ValueError(f"a certificate number has at most {CERTIFICATE_MAX} characters")
    if ";" in number:
        raise ValueError("a certificate number must not contain ';' (XML4 joins several "
                         "people's numbers with it)")
    if any(unicodedata.category(c).startswith("C") for c in number):
        raise ValueError("a certificate number must not contain control characters")
    return number


#: The shortest password accepted (characters); a passphrase is easier to remember.
MIN_PASSWORD_LENGTH = 10


def password_problem(username: str, password: str) -> str:
    """Why a new password is refused ("" when it is acceptable): too short, or the
    user name itself."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"a password needs at least {MIN_PASSWORD_LENGTH} characters"
    if password.strip().casefold() == username.strip().casefold():
        return "the password may not be the user name"
    return ""


def password_hash(password: str) -> str:
    """The argon2id hash of a password (argon2-cffi's default parameters).

    Raises:
        ValueError: an empty password.
    """
    from argon2 import PasswordHasher

    if not password:
        raise ValueError("a password must not be empty")
    return PasswordHasher().hash(password)


def check_password(conn: Connection, username: str, password: str) -> bool:
    """Whether ``password`` is the active user's password."""
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    row = conn.execute(select(s.users.c.password_hash, s.users.c.active).where(
        s.users.c.username == username)).first()
    if row is None or not row.active or not row.password_hash:
        return False
    try:
        return PasswordHasher().verify(row.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def ensure_role(conn: Connection, name: str) -> int:
    """The id of role ``name``, created if new."""
    found = conn.execute(select(s.roles.c.id).where(s.roles.c.name == name)).scalar()
    if found is not None:
        return int(found)
    return int(primary_key(conn.execute(insert(s.roles).values(name=name)))[0])


def create_user(conn: Connection, username: str, now: datetime, *, display_name: str = "",
                roles: Sequence[str] = (), actor: str = "system", source: str = "",
                hashed_password: str | None = None, certificate: str = "") -> User:
    """Create a user with roles, optionally a password hash and certificate number (audited).

    Raises:
        ValueError: a certificate number :func:`certificate_number` refuses.
    """
    when = require_aware(now, "now")
    number = certificate_number(certificate)
    user_id = int(primary_key(conn.execute(insert(s.users).values(
        username=username, display_name=display_name, active=True, created_at=when,
        password_hash=hashed_password, certificate_number=number)))[0])
    for role in roles:
        conn.execute(insert(s.user_roles).values(user_id=user_id, role_id=ensure_role(conn, role)))
    append_audit(conn, actor=actor, action="user.create", target=f"user:{username}",
                 detail={"roles": sorted(roles), "password": hashed_password is not None,
                         "certificate_number": number},
                 source=source, at=when)
    return get_user(conn, username)


def set_certificate(conn: Connection, username: str, certificate: str, now: datetime, *,
                    actor: str = "system", source: str = "") -> User:
    """Set (or with "" clear) a user's practising-certificate number (audited, old and new).

    Raises:
        NotFoundError: no such user.
        ValueError: a certificate number :func:`certificate_number` refuses.
    """
    number = certificate_number(certificate)
    user = get_user(conn, username)
    conn.execute(update(s.users).where(s.users.c.id == user.id).values(
        certificate_number=number))
    append_audit(conn, actor=actor, action="user.certificate", target=f"user:{username}",
                 detail={"from": user.certificate_number, "to": number}, source=source,
                 at=require_aware(now, "now"))
    return get_user(conn, username)


def set_password(conn: Connection, username: str, hashed_password: str, now: datetime, *,
                 actor: str = "system", source: str = "") -> User:
    """Replace a user's password hash (audited, without the hash).

    Raises:
        NotFoundError: no such user.
    """
    user = get_user(conn, username)
    conn.execute(update(s.users).where(s.users.c.id == user.id).values(
        password_hash=hashed_password))
    append_audit(conn, actor=actor, action="user.passwd", target=f"user:{username}",
                 detail={}, source=source, at=require_aware(now, "now"))
    return get_user(conn, username)


def disable_user(conn: Connection, username: str, now: datetime, *, actor: str = "system",
                 source: str = "") -> User:
    """Mark a user inactive: kept for the history, refused for new actions (audited).

    Raises:
        NotFoundError: no such user.
    """
    user = get_user(conn, username)
    conn.execute(update(s.users).where(s.users.c.id == user.id).values(active=False))
    append_audit(conn, actor=actor, action="user.disable", target=f"user:{username}",
                 detail={}, source=source, at=require_aware(now, "now"))
    return get_user(conn, username)


def enable_user(conn: Connection, username: str, now: datetime, *, actor: str = "system",
                source: str = "") -> User:
    """Let a disabled user act again (audited). Failed logins before it still count
    toward the lockout window, as for any account.

    Raises:
        NotFoundError: no such user.
    """
    user = get_user(conn, username)
    conn.execute(update(s.users).where(s.users.c.id == user.id).values(active=True))
    append_audit(conn, actor=actor, action="user.enable", target=f"user:{username}",
                 detail={}, source=source, at=require_aware(now, "now"))
    return get_user(conn, username)


def get_user(conn: Connection, username: str) -> User:
    """A user by name, with role names sorted."""
    row = conn.execute(select(s.users).where(s.users.c.username == username)).first()
    if row is None:
        raise NotFoundError(f"user {username!r}")
    names = conn.execute(select(s.roles.c.name).join(s.user_roles).where(
        s.user_roles.c.user_id == row.id).order_by(s.roles.c.name)).scalars().all()
    return User(row.id, row.username, row.display_name, bool(row.active), tuple(names),
                bool(row.password_hash), row.certificate_number)
