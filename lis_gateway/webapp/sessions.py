"""Server-side sessions of the validation web app, kept in memory (sans-IO: time is an argument).

A session is a random id (the cookie's only content) mapping to who is
logged in, their roles, the CSRF token of every form, the language and the
messages to show on the next page. Sessions end after ``idle`` seconds
without a request or ``absolute`` seconds after the login, whichever comes
first; a restart of the gateway ends them all (people log in again).
Logging in always makes a new session (the id before login is never
reused after it). Anonymous sessions (the login page's, for its CSRF token
and language) are bounded in number: the oldest are dropped first.
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

#: Seconds without a request after which a session ends (shared workstations).
IDLE_TIMEOUT = 15 * 60.0
#: Seconds after the login after which a session ends whatever happens (one shift).
ABSOLUTE_TIMEOUT = 10 * 3600.0
#: The most sessions kept; past it the least recently used are dropped.
MAX_SESSIONS = 10_000


@dataclass(slots=True)
class Session:
    """One browser's session.

    Attributes:
        id: the secret in the cookie.
        csrf: the token every POST form must carry.
        created, seen: when it began and when it was last used (clock seconds).
        lang: the language of its pages.
        username: who is logged in ("" before login).
        roles: their role names.
        display_name: how to greet them.
        flashes: (kind, text) messages for the next page.
    """

    id: str
    csrf: str
    created: float
    seen: float
    lang: str
    username: str = ""
    roles: frozenset[str] = frozenset()
    display_name: str = ""
    flashes: list[tuple[str, str]] = field(default_factory=list)

    def csrf_ok(self, token: str) -> bool:
        """The token is this session's (constant-time compare)."""
        return bool(token) and hmac.compare_digest(token.encode(), self.csrf.encode())

    def flash(self, kind: str, text: str) -> None:
        """Keep a message (``ok`` or ``error``) for the next page."""
        self.flashes.append((kind, text))

    def take_flashes(self) -> list[tuple[str, str]]:
        """The kept messages, forgotten once taken."""
        out, self.flashes = self.flashes, []
        return out


class Sessions:
    """The sessions of one web app.

    Args:
        idle: seconds without use after which a session ends.
        absolute: seconds after creation after which it ends.
        limit: the most sessions kept.
        token: makes the secrets (``secrets.token_urlsafe`` by default).
    """

    def __init__(self, *, idle: float = IDLE_TIMEOUT, absolute: float = ABSOLUTE_TIMEOUT,
                 limit: int = MAX_SESSIONS,
                 token: Callable[[], str] = lambda: secrets.token_urlsafe(32)) -> None:
        self.idle, self.absolute, self._limit, self._token = idle, absolute, limit, token
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_id)

    def new(self, now: float, lang: str, *, username: str = "",
            roles: frozenset[str] = frozenset(), display_name: str = "") -> Session:
        """A new session (the oldest are dropped past the limit)."""
        while len(self._by_id) >= self._limit:
            self._by_id.popitem(last=False)
        session = Session(self._token(), self._token(), now, now, lang, username, roles,
                          display_name)
        self._by_id[session.id] = session
        return session

    def get(self, session_id: str, now: float) -> tuple[Session | None, Session | None]:
        """``(live session, None)``, or ``(None, the session that just expired)``, or
        ``(None, None)`` for an unknown id. A live session counts as used now."""
        session = self._by_id.get(session_id)
        if session is None:
            return None, None
        if now - session.seen > self.idle or now - session.created > self.absolute:
            del self._by_id[session_id]
            return None, session
        session.seen = now
        self._by_id.move_to_end(session_id)
        return session, None

    def peek(self, session_id: str, now: float) -> Session | None:
        """The live session of ``session_id`` without counting this as a use (the
        worklist's live refresh must not keep an unattended screen logged in); None
        when unknown or past a timeout (it ends at the next real request)."""
        session = self._by_id.get(session_id)
        if session is None or now - session.seen > self.idle or (
                now - session.created > self.absolute):
            return None
        return session

    def drop(self, session_id: str) -> None:
        """End a session (logout)."""
        self._by_id.pop(session_id, None)
