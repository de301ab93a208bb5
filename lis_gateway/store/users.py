"""Users and roles (the accounts of technicians, doctors and admins)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select

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


def ensure_role(conn: Connection, name: str) -> int:
    """The id of role ``name``, created if new."""
    found = conn.execute(select(s.roles.c.id).where(s.roles.c.name == name)).scalar()
    if found is not None:
        return int(found)
    return int(primary_key(conn.execute(insert(s.roles).values(name=name)))[0])


def create_user(conn: Connection, username: str, now: datetime, *, display_name: str = "",
                roles: Sequence[str] = (), actor: str = "system", source: str = "") -> User:
    """Create a user with roles (audited)."""
    when = require_aware(now, "now")
    user_id = int(primary_key(conn.execute(insert(s.users).values(
        username=username, display_name=display_name, active=True, created_at=when)
    ))[0])
    for role in roles:
        conn.execute(insert(s.user_roles).values(user_id=user_id, role_id=ensure_role(conn, role)))
    append_audit(conn, actor=actor, action="user.create", target=f"user:{username}",
                 detail={"roles": sorted(roles)}, source=source, at=when)
    return get_user(conn, username)


def get_user(conn: Connection, username: str) -> User:
    """A user by name, with role names sorted."""
    row = conn.execute(select(s.users).where(s.users.c.username == username)).first()
    if row is None:
        raise NotFoundError(f"user {username!r}")
    names = conn.execute(select(s.roles.c.name).join(s.user_roles).where(
        s.user_roles.c.user_id == row.id).order_by(s.roles.c.name)).scalars().all()
    return User(row.id, row.username, row.display_name, bool(row.active), tuple(names))
