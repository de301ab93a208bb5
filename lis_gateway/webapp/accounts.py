"""The page base class (session and CSRF checks) and the account pages: login, logout, language.

Every page but the login page and the language switch needs a logged-in
session: a GET without one is sent to the login page (303), a POST without
one is refused (403). Every POST, the login form included, must carry the
session's CSRF token (``csrf`` field), else 403 and nothing is done. The
login page therefore starts an anonymous session for its token and
language; a successful login replaces it with a new one (a new id).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from twisted.web.server import Request

from lis_gateway.store.logins import Login, LoginOutcome, attempt_login, record_logout

from .i18n import LANGUAGES
from .sessions import Session
from .web import FormError, WebContext, client, field_text, local_path, with_query


class Page(Resource):
    """A leaf page with the session and CSRF checks; subclasses define ``get``/``post``."""

    isLeaf = True
    login_required = True

    def __init__(self, ctx: WebContext) -> None:
        super().__init__()
        self.ctx = ctx

    def _text(self, session: Session | None, request: Request, message: str) -> str:
        return self.ctx.locales[self.ctx.lang_of(request, session)].gettext(message)

    def _after_expiry(self, request: Request, ended: Deferred[None] | None,
                      answer: Callable[[object], bytes]) -> bytes | int:
        """Answer once an expired session's audit row is written (at once without one)."""
        if ended is None:
            return answer(None)
        return self.ctx.respond(request, None, ended, answer)

    def render_GET(self, request: Request) -> bytes | int:
        session, ended = self.ctx.session(request)
        if self.login_required and (session is None or not session.username):
            return self._after_expiry(request, ended, lambda _: self.ctx.redirect(
                request, with_query("/login", {"next": request.uri.decode("utf-8", "replace")})))
        try:
            return self.get(request, session)
        except FormError as exc:
            return self.ctx.refuse(request, session, 400, str(exc))

    def render_POST(self, request: Request) -> bytes | int:
        session, ended = self.ctx.session(request)
        if session is None and not self.login_required:
            return self._after_expiry(request, ended, lambda _: self.ctx.redirect(
                request, "/login"))  # its page had expired: a fresh one
        if session is None or (self.login_required and not session.username):
            return self._after_expiry(request, ended, lambda _: self.ctx.refuse(
                request, None, 403, self._text(None, request,
                                               "Your session has ended. Log in again.")))
        try:
            if not session.csrf_ok(field_text(request, "csrf")):
                return self.ctx.refuse(request, session, 403, self._text(
                    session, request, "The form is out of date or was not sent by this "
                    "page. Reload the page and try again."))
            return self.post(request, session)
        except FormError as exc:
            return self.ctx.refuse(request, session, 400, str(exc))

    def get(self, request: Request, session: Session | None) -> bytes | int:
        """Answer a GET (the default: 405)."""
        request.setHeader(b"Allow", b"POST")
        return self.ctx.refuse(request, session, 405, "POST only")

    def post(self, request: Request, session: Session) -> bytes | int:
        """Answer a POST with a valid token (the default: 405)."""
        request.setHeader(b"Allow", b"GET")
        return self.ctx.refuse(request, session, 405, "GET only")


class LoginPage(Page):
    """``/login``: the form, and checking it (lockout and audit in the store)."""

    login_required = False

    def get(self, request: Request, session: Session | None) -> bytes | int:
        if session is not None and session.username:
            return self.ctx.redirect(request, "/worklist")
        if session is None:
            session = self.ctx.sessions.new(self.ctx.clock.seconds(),
                                             self.ctx.lang_of(request, None))
            self.ctx.set_session_cookie(request, session)
        return self._form(request, session, "")

    def _form(self, request: Request, session: Session, error: str, username: str = "",
              status: int = 200) -> bytes:
        return self.ctx.render(request, session, "login.html", status=status, error=error,
                               username=username,
                               next=local_path(field_text(request, "next"), "/worklist"))

    def post(self, request: Request, session: Session) -> bytes | int:
        if session.username:
            return self.ctx.redirect(request, "/worklist")
        username = field_text(request, "username").strip()
        password = field_text(request, "password")
        if not username or not password:
            return self._form(request, session, self._text(
                session, request, "Enter your user name and password."), username, 400)
        d = self.ctx.pool.run(attempt_login, username, password, at=self.ctx.now(),
                              source=client(request))

        def done(login: Login) -> bytes:
            if login.outcome is LoginOutcome.LOCKED:
                self.ctx.log.warning("webapp-login-locked")
                return self._form(request, session, self._text(
                    session, request, "Too many failed attempts: this account is locked "
                    "for 15 minutes."), username, 403)
            if login.outcome is LoginOutcome.REFUSED or login.user is None:
                self.ctx.log.info("webapp-login-refused")
                return self._form(request, session, self._text(
                    session, request, "Wrong user name or password."), username, 401)
            self.ctx.sessions.drop(session.id)
            user = login.user
            fresh = self.ctx.sessions.new(self.ctx.clock.seconds(), session.lang,
                                          username=user.username, roles=frozenset(user.roles),
                                          display_name=user.display_name or user.username)
            self.ctx.set_session_cookie(request, fresh)
            self.ctx.log.info("webapp-login", user=user.username)
            return self.ctx.redirect(request, field_text(request, "next", "/worklist"))

        return self.ctx.respond(request, session, d, done)


class LogoutPage(Page):
    """``/logout`` (POST): end the session, audited."""

    def post(self, request: Request, session: Session) -> bytes | int:
        d = self.ctx.pool.run(record_logout, session.username, at=self.ctx.now(),
                              source=client(request))

        def done(_: None) -> bytes:
            self.ctx.sessions.drop(session.id)
            self.ctx.clear_session_cookie(request)
            return self.ctx.redirect(request, "/login")

        return self.ctx.respond(request, session, d, done)


class LanguagePage(Page):
    """``/lang`` (POST ``lang``): switch the language of the session (and remember it)."""

    login_required = False

    def post(self, request: Request, session: Session) -> bytes | int:
        lang = field_text(request, "lang")
        if lang not in LANGUAGES:
            raise FormError(f"unknown language {lang!r}")
        session.lang = lang
        self.ctx.set_lang_cookie(request, lang)
        return self.ctx.redirect(request, field_text(request, "next", "/worklist"))
