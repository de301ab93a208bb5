"""Lab sections (haematology, biochemistry, ...): whose results a person may see and act on.

An analyzer belongs to one section through the configuration (``section =
"haematology"`` on its ``[[analyzers]]`` table); :func:`sync_analyzer_sections`
copies that into ``analyzers.section`` when the gateway starts. A user holds
sections in ``user_sections`` (``lis-gateway user add --section S`` and
``lis-gateway user sections NAME S...``, audited).

The rule (:func:`scope_of`):

* a lab whose analyzers have no section at all works as if sections did not
  exist: everybody sees everything;
* once any analyzer has a section, a person sees and acts on the results of
  analyzers in the sections they hold, and nothing else; a person holding no
  section sees nothing (and is told so);
* an admin sees every section (the admin role grants no lifecycle action by
  itself: what they may *do* is still their other roles');
* an analyzer no longer configured keeps the section it last had, so its
  results stay with the people of that section; when the configuration has
  no section at all any more, every analyzer's section is cleared.

No patient data here; SQL only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import Connection, delete, insert, select, update

from lis_gateway.sections import ADMIN, EVERYTHING, SECTION_MAX, Scope, section_name

from . import schema as s
from ._common import NotFoundError, require_aware
from .audit import append_audit
from .repository import ensure_analyzer
from .users import get_user


def sections_in_use(conn: Connection) -> tuple[str, ...]:
    """Every section some analyzer belongs to, sorted by code point (empty: sections are
    not used); sorted here, not by the database, whose collations differ."""
    a = s.analyzers
    return tuple(sorted(conn.execute(select(a.c.section).where(a.c.section != "")
                                     .distinct()).scalars()))


def user_sections(conn: Connection, username: str) -> tuple[str, ...]:
    """The sections a user holds, sorted.

    Raises:
        NotFoundError: no such user.
    """
    user = get_user(conn, username)
    return tuple(sorted(conn.execute(select(s.user_sections.c.section).where(
        s.user_sections.c.user_id == user.id)).scalars()))


def scope_of(conn: Connection, username: str) -> Scope:
    """What ``username`` may see, by the rule in the module docstring.

    Raises:
        NotFoundError: no such user.
    """
    user = get_user(conn, username)
    held = frozenset(user_sections(conn, username))
    in_use = bool(sections_in_use(conn))
    return Scope(not in_use or ADMIN in user.roles, held, in_use)


def set_user_sections(conn: Connection, username: str, sections: Iterable[str], now: datetime,
                      *, actor: str = "system", source: str = "") -> tuple[str, ...]:
    """Replace the sections a user holds (audited, old and new); returns them sorted.

    Raises:
        NotFoundError: no such user.
        ValueError: a name :func:`section_name` refuses.
    """
    wanted = sorted({section_name(x) for x in sections})
    before = user_sections(conn, username)
    user = get_user(conn, username)
    conn.execute(delete(s.user_sections).where(s.user_sections.c.user_id == user.id))
    if wanted:
        conn.execute(insert(s.user_sections), [{"user_id": user.id, "section": x}
                                               for x in wanted])
    append_audit(conn, actor=actor, action="user.sections", target=f"user:{username}",
                 detail={"from": list(before), "to": wanted}, source=source,
                 at=require_aware(now, "now"))
    return tuple(wanted)


def sync_analyzer_sections(conn: Connection, analyzers: Sequence[tuple[str, str, str]],
                           now: datetime, *, source: str = "configuration") -> int:
    """Make the store's analyzer sections follow the configuration (each change audited).

    Args:
        analyzers: (name, driver family, section or "") of each configured analyzer.
        now: when (timezone-aware).

    Returns:
        How many analyzers changed section.
    """
    when = require_aware(now, "now")
    a = s.analyzers
    changed = 0
    wanted = {name: section for name, _family, section in analyzers}
    for name, family, _section in analyzers:
        ensure_analyzer(conn, name, when, family=family)
    if not any(wanted.values()):  # the lab does not use sections (any more)
        wanted.update({name: "" for name in conn.execute(
            select(a.c.name).where(a.c.section != "")).scalars()})
    for name, section in sorted(wanted.items()):
        current = conn.execute(select(a.c.section).where(a.c.name == name)).scalar_one()
        if current == section:
            continue
        conn.execute(update(a).where(a.c.name == name).values(section=section))
        append_audit(conn, actor="system", action="analyzer.section", target=f"analyzer:{name}",
                     detail={"from": current, "to": section}, source=source, at=when)
        changed += 1
    return changed


def section_of_result(conn: Connection, result_id: int) -> str:
    """The section of the analyzer that produced a result ("" for none).

    Raises:
        NotFoundError: no such result.
    """
    found = conn.execute(select(s.analyzers.c.section).join(
        s.results, s.results.c.analyzer_id == s.analyzers.c.id).where(
        s.results.c.id == result_id)).scalar_one_or_none()
    if found is None:
        raise NotFoundError(f"result {result_id}")
    return str(found)


__all__ = ["ADMIN", "EVERYTHING", "SECTION_MAX", "Scope", "scope_of", "section_name",
           "section_of_result", "sections_in_use", "set_user_sections",
           "sync_analyzer_sections", "user_sections"]
