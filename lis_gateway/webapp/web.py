"""What every page of the web app shares: sessions, CSRF, languages, templates, answers.

:class:`WebContext` is the app's state (no globals): the store pool, the
clock (session timeouts and the time of every action come from it), the
lab's policies, the sessions, the catalogues and the templates. The page
resources (:mod:`.pages`, :mod:`.accounts`) are thin: read the form, run
store work through ``pool.run``, render a template or redirect.

Every answer carries ``Cache-Control: no-store`` (patient data must not
stay in a shared workstation's cache), a Content-Security-Policy allowing
only the app's own script and style, no framing, no referrer (URLs carry
barcodes) and an explicit UTF-8 charset. Failures of the store become a
503 page without details; the log gets the exception's type only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import structlog
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from structlog.typing import FilteringBoundLogger
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request

from lis_gateway.ingest import RunsWork
from lis_gateway.lifecycle import Policies, Policy, ResultState
from lis_gateway.store.logins import record_logout
from lis_gateway.validation import Outcome

from .i18n import DEFAULT_LANGUAGE, LANGUAGE_NAMES, Locale, language, load_locales
from .sessions import Session, Sessions

SESSION_COOKIE = b"lis_session"
LANG_COOKIE = b"lis_lang"
TEMPLATES = Path(__file__).resolve().parent / "templates"
CSP = (b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
       b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


#: The name of each state on the screen (the English message ids of the catalogues).
STATE_LABELS: dict[ResultState, str] = {
    ResultState.RECEIVED: "Received",
    ResultState.HELD: "Held",
    ResultState.AUTOVERIFIED: "Autoverified",
    ResultState.TECH_VALIDATED: "Awaiting approval",
    ResultState.APPROVED: "Approved",
    ResultState.RELEASED: "Released",
    ResultState.DELIVERED: "Delivered",
    ResultState.REJECTED: "Rejected",
    ResultState.RERUN_REQUESTED: "Rerun requested",
    ResultState.CORRECTED: "Corrected, to validate",
    ResultState.RETRACTED: "Retracted",
}


#: The name of each role on the screen (message ids).
ROLE_LABELS: dict[str, str] = {
    "technician": "Technician", "doctor": "Doctor", "admin": "Administrator"}


class FormError(ValueError):
    """A form field is missing or malformed (shown to the person)."""


def client(request: Request) -> str:
    """The client's address, for the audit log."""
    address = request.getClientAddress()
    return str(getattr(address, "host", "") or "")


def field_text(request: Request, name: str, default: str = "") -> str:
    """One form or query field as text (the first, when repeated).

    Raises:
        FormError: it is not UTF-8.
    """
    args: dict[bytes, list[bytes]] = request.args or {}
    values = args.get(name.encode(), [])
    if not values:
        return default
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise FormError(f"the field {name!r} is not UTF-8 text") from None


def field_list(request: Request, name: str) -> list[str]:
    """Every value of a repeated field."""
    args: dict[bytes, list[bytes]] = request.args or {}
    return [v.decode("utf-8", "replace") for v in args.get(name.encode(), [])]


def local_path(target: str, default: str = "/worklist") -> str:
    """``target`` when it is a path of this site, else ``default`` (no open redirects)."""
    ok = target.startswith("/") and not target.startswith("//") and "\\" not in target
    return target if ok and "\r" not in target and "\n" not in target else default


@dataclass
class WebContext:
    """The state of one web app.

    Attributes:
        pool: runs store work in transactions off the reactor thread.
        clock: the time source (``seconds()``).
        policy: the lab's validation policies.
        secure_cookies: mark cookies ``Secure`` (the site is behind HTTPS).
        zone: the lab's time zone, for showing times.
        sessions: the live sessions.
        log: a logger (ids and kinds only; never patient data).
        on_release: called after an action committed what may go to the destinations
            (wakes the outbox workers; None: they find it at their next poll).
    """

    pool: RunsWork
    clock: IReactorTime
    policy: Policy | Policies
    secure_cookies: bool
    zone: str = "Asia/Ho_Chi_Minh"
    sessions: Sessions = field(default_factory=Sessions)
    log: FilteringBoundLogger = field(
        default_factory=lambda: structlog.get_logger("lis_gateway.webapp"))
    on_release: Callable[[], None] | None = None
    locales: dict[str, Locale] = field(init=False)
    templates: Environment = field(init=False)

    def __post_init__(self) -> None:
        self.locales = load_locales(self.zone)
        self.templates = Environment(
            loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True),
            undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)

    def released(self, value: Any) -> Any:
        """A Deferred callback: tell the outbox workers to look, pass ``value`` on."""
        if self.on_release is not None:
            self.on_release()
        return value

    # ------------------------------------------------------------------ time, sessions

    def now(self) -> datetime:
        """The wall-clock time, from the injected clock."""
        return datetime.fromtimestamp(self.clock.seconds(), UTC)

    def session(self, request: Request) -> tuple[Session | None, Deferred[None] | None]:
        """The request's live session, and when a logged-in session has just expired,
        the Deferred of its audit row (``auth.logout``, expired)."""
        sid = request.getCookie(SESSION_COOKIE)
        if not sid:
            return None, None
        live, expired = self.sessions.get(sid.decode("ascii", "replace"), self.clock.seconds())
        if expired is None or not expired.username:
            return live, None
        d = self.pool.run(record_logout, expired.username, at=self.now(),
                          source=client(request), expired=True)
        return live, d.addErrback(self.store_failed)

    def set_session_cookie(self, request: Request, session: Session) -> None:
        """Send the session's id (HttpOnly, SameSite=Strict, Secure when configured)."""
        request.addCookie(SESSION_COOKIE, session.id.encode(), path=b"/", httpOnly=True,
                          secure=self.secure_cookies, sameSite="strict")

    def clear_session_cookie(self, request: Request) -> None:
        """Tell the browser to forget the session id."""
        request.addCookie(SESSION_COOKIE, b"", path=b"/", httpOnly=True, max_age=b"0",
                          secure=self.secure_cookies, sameSite="strict")

    def set_lang_cookie(self, request: Request, lang: str) -> None:
        """Remember the language across logins (a year)."""
        request.addCookie(LANG_COOKIE, lang.encode(), path=b"/", httpOnly=True,
                          max_age=str(365 * 86400).encode(), secure=self.secure_cookies,
                          sameSite="strict")

    def lang_of(self, request: Request, session: Session | None) -> str:
        """The session's language, else the cookie's, else Vietnamese."""
        if session is not None:
            return session.lang
        cookie = request.getCookie(LANG_COOKIE)
        return language(cookie.decode("ascii", "replace") if cookie else DEFAULT_LANGUAGE)

    # ------------------------------------------------------------------ answers

    def headers(self, request: Request, content_type: bytes = b"text/html; charset=utf-8"
                ) -> None:
        """The headers every answer carries."""
        request.setHeader(b"Content-Type", content_type)
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"Content-Security-Policy", CSP)
        request.setHeader(b"X-Frame-Options", b"DENY")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        request.setHeader(b"Referrer-Policy", b"no-referrer")

    def render(self, request: Request, session: Session | None, template: str, *,
               status: int = 200, criticals: Any = (), keep_flashes: bool = False,
               **context: Any) -> bytes:
        """A page from a template, in the session's language (``keep_flashes``: a part
        of a page, which leaves the session's messages for the next whole page)."""
        locale = self.locales[self.lang_of(request, session)]
        self.headers(request)
        request.setResponseCode(status)
        page = self.templates.get_template(template).render(
            _=locale.gettext, locale=locale, session=session, languages=LANGUAGE_NAMES,
            flashes=session.take_flashes() if session is not None and not keep_flashes
            else [],
            criticals=criticals, state_label=lambda st: locale.gettext(STATE_LABELS[st]),
            role_label=lambda r: locale.gettext(ROLE_LABELS.get(r) or r),
            here=request.uri.decode("utf-8", "replace"),
            query=lambda **kw: urlencode({k: v for k, v in kw.items() if v}), **context)
        return page.encode("utf-8")

    def redirect(self, request: Request, target: str) -> bytes:
        """303 See Other to a path of this site."""
        self.headers(request)
        request.setResponseCode(303)
        request.setHeader(b"Location", local_path(target).encode("utf-8"))
        return b""

    def refuse(self, request: Request, session: Session | None, status: int,
               message: str) -> bytes:
        """An error page (403 bad form token, 404, 400 bad input, 503 store down)."""
        return self.render(request, session, "error.html", status=status, message=message)

    def store_failed(self, failure: Failure) -> None:
        """Log a failed store call by the exception's type only."""
        self.log.error("webapp-store-failed",
                       kind=failure.type.__name__ if failure.type else "")

    def respond(self, request: Request, session: Session | None, d: Deferred[Any],
                done: Callable[[Any], bytes]) -> int:
        """Finish the request with ``done(result)`` once the store work is over."""
        gettext = self.locales[self.lang_of(request, session)].gettext

        def ok(value: Any) -> None:
            try:
                body = done(value)
            except Exception as exc:  # the edge: a page that fails to render is a 500
                self.log.error("webapp-render-failed", kind=type(exc).__name__)
                body = self.refuse(request, session, 500, gettext(
                    "An internal error happened; it was logged. Try again."))
            finish(request, body)

        def failed(failure: Failure) -> None:
            self.store_failed(failure)
            finish(request, self.refuse(request, session, 503, gettext(
                "The database could not be reached. Try again in a moment.")))

        d.addCallbacks(ok, failed)
        return NOT_DONE_YET

    def flash_outcomes(self, session: Session, outcomes: list[Outcome]) -> None:
        """Tell the person what was done and, one by one, what was refused and why."""
        gettext = self.locales[session.lang].gettext
        done = [o for o in outcomes if o.done]
        if done:
            session.flash("ok", gettext("Done: {tests}").format(
                tests=", ".join(f"{o.test} ({gettext(STATE_LABELS[o.after])})" for o in done)))
        for o in outcomes:
            if o.refused:
                session.flash("error", gettext("Refused: {test}: {why}").format(
                    test=o.test, why=o.refused))
        if not outcomes:
            session.flash("error", gettext("Nothing was selected."))


def finish(request: Request, body: bytes) -> None:
    """Write a deferred answer and finish, unless the client hung up meanwhile."""
    if request.channel is None:
        return
    request.write(body)
    request.finish()


def with_query(path: str, params: Mapping[str, str]) -> str:
    """``path`` with the non-empty ``params`` as its query string."""
    query = urlencode({k: v for k, v in params.items() if v})
    return f"{path}?{query}" if query else path
