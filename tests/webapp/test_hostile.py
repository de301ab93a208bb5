"""Hostile requests to the live web app (issue 9): authorization on every route, CSRF,
session fixation, markup in patient data and in the request, oversize requests.

The app is the gateway's real site (``build_site(app=webapp_resource(...))``) on
loopback TCP with a real SQLite store (:mod:`tests.webapp.live`). The routes are not
listed by hand: they are read from the app's own resource tree, so a page added
later is checked too. A page is public only if it says so (``login_required =
False``); a role page's readers and writers are its own ``readers``/``writers``.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from twisted.internet.task import Clock
from twisted.web.resource import Resource

from lis_gateway.lifecycle import Policy
from lis_gateway.webapp import webapp_resource
from lis_gateway.webapp.accounts import Page
from lis_gateway.webapp.admin import RolePage

from .live import Browser, Live, add_user, glucose, receive, start_live

MARKUP = "<script>alert('x')</script>"
ATTRIBUTE = "\"><img src=x onerror=alert(1)>"
#: Roles a person may hold; every role page is tried with each.
ROLES = ("technician", "doctor", "admin")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A running web app with one user per role and a sample whose patient has markup."""
    for started in start_live(tmp_path_factory.mktemp("hostile")):
        for role in ROLES:
            add_user(started.engine, f"u_{role}", role)
        receive(started.engine, [glucose("S-XSS")],
                patient=(MARKUP, ATTRIBUTE, "Lan & <b>Hoa</b>"), hospital_id="BN<i>1</i>")
        yield started


def _routes() -> dict[str, Resource]:
    """Every path of the app's tree, with the resource answering it."""
    root: Any = webapp_resource(object(), Clock(), Policy(), secure_cookies=False)  # type: ignore[arg-type]
    found: dict[str, Resource] = {}
    for name, page in root.pages.items():
        path = "/" + name.decode()
        found[path] = page
        for child, sub in getattr(page, "pages", {}).items():
            if child:
                found[f"{path}/{child.decode()}"] = sub
    return found


ROUTES = _routes()
PROTECTED = sorted(p for p, r in ROUTES.items() if isinstance(r, Page) and r.login_required)
ROLE_PAGES = sorted(p for p, r in ROUTES.items() if isinstance(r, RolePage))


def test_the_route_table_is_what_the_app_serves() -> None:
    """The tree has the pages the docs list; every page but login, language and the
    static files needs a session (a page that is neither is a new kind: decide)."""
    assert {"/login", "/logout", "/lang", "/worklist", "/sample", "/static"} <= set(ROUTES)
    public = {p for p, r in ROUTES.items() if isinstance(r, Page) and not r.login_required}
    assert public == {"/login", "/lang"}
    others = {p for p, r in ROUTES.items() if not isinstance(r, Page)}
    assert others <= {"/static", "/mapping", "/analyzers", "/delivery"}, others
    for folder in others - {"/static"}:  # a folder's index is a page of its own
        index = ROUTES[folder].pages[b""]  # type: ignore[attr-defined]
        assert isinstance(index, Page) and index.login_required


@pytest.mark.parametrize("path", [*PROTECTED, "/mapping", "/analyzers", "/delivery"])
def test_every_page_sends_anonymous_readers_to_login(live: Live, path: str) -> None:
    """Without a session a GET is sent to the login page (303), never answered."""
    answer = Browser(live).get(path)
    assert answer.status == 303, (path, answer.status)
    assert answer.header("location").startswith("/login")


@pytest.mark.parametrize("path", PROTECTED)
def test_every_page_refuses_anonymous_posts(live: Live, path: str) -> None:
    """Without a session a POST is refused (403) and nothing happens."""
    browser = Browser(live)
    answer = browser.request("POST", path, [("csrf", "x"), ("s", "S-XSS")])
    assert answer.status == 403, (path, answer.status)


@pytest.mark.parametrize("path", ROLE_PAGES)
@pytest.mark.parametrize("role", ROLES)
def test_role_pages_answer_only_their_roles(live: Live, path: str, role: str) -> None:
    """A person without one of the page's reader roles gets 403 on GET; without a writer
    role, 403 on a POST with a valid token (the token alone is not a permission)."""
    page = ROUTES[path]
    assert isinstance(page, RolePage)
    browser = Browser(live)
    assert browser.login(f"u_{role}").status == 303
    answer = browser.get(path)
    if role in page.readers:
        assert answer.status != 403, (path, role)
    else:
        assert answer.status == 403, (path, role, answer.status)
    browser.get("/worklist")  # a page with a token for this session
    posted = browser.post(path, [("link", "x"), ("entry", "1"), ("id", "1")])
    if role not in page.writers:
        assert posted.status == 403, (path, role, posted.status)


def test_posts_without_the_sessions_token_are_refused(live: Live) -> None:
    """No token, another session's token, an empty one: 403 and nothing done."""
    victim, attacker = Browser(live), Browser(live)
    victim.login("u_technician")
    attacker.login("u_doctor")
    attacker.get("/worklist")
    victim.get("/sample?s=S-XSS")
    for form in ([("comment", "x"), ("s", "S-XSS")],
                 [("csrf", attacker.csrf()), ("comment", "x"), ("s", "S-XSS")],
                 [("csrf", ""), ("comment", "x"), ("s", "S-XSS")]):
        answer = victim.request("POST", "/sample", form)
        assert answer.status == 403, form
    assert victim.request("POST", "/logout", [("csrf", attacker.csrf())]).status == 403
    assert victim.get("/worklist").status == 200  # still logged in: logout needed the token


def test_login_form_itself_needs_the_token(live: Live) -> None:
    """A login posted without its page's token (login CSRF) is refused, even with the
    right password."""
    browser = Browser(live)
    browser.get("/login")
    answer = browser.request("POST", "/login", [("username", "u_admin"),
                                                ("password", "mật khẩu đúng 123")])
    assert answer.status == 403
    assert browser.get("/worklist").status == 303


def _cookie(browser: Browser) -> str:
    return browser.cookies.get("lis_session", "")


def test_session_fixation_a_planted_session_id_is_not_logged_in(live: Live) -> None:
    """The attacker gets an anonymous session from the login page and plants its id in
    the victim's browser; the victim logs in: the session id changes, and the planted
    one stays anonymous."""
    attacker = Browser(live)
    attacker.get("/login")
    planted = _cookie(attacker)
    assert planted
    victim = Browser(live)
    victim.cookies["lis_session"] = planted
    victim.get("/login")  # the form carries the planted session's token
    assert victim.post("/login", [("username", "u_admin"),
                                  ("password", "mật khẩu đúng 123")]).status == 303
    assert _cookie(victim) and _cookie(victim) != planted
    assert victim.get("/worklist").status == 200
    answer = attacker.get("/worklist")
    assert answer.status == 303 and answer.header("location").startswith("/login")


def test_an_invented_session_id_is_ignored(live: Live) -> None:
    """A session id the server never issued gets no session: the login page issues a
    fresh id, and logging in never adopts the invented one."""
    browser = Browser(live)
    browser.cookies["lis_session"] = "attacker-chosen-id"
    assert browser.get("/worklist").status == 303
    browser.get("/login")
    assert _cookie(browser) != "attacker-chosen-id"
    browser.post("/login", [("username", "u_doctor"), ("password", "mật khẩu đúng 123")])
    assert _cookie(browser) not in ("", "attacker-chosen-id")


def test_session_cookie_flags(live: Live) -> None:
    """The session cookie is HttpOnly and SameSite=Strict (scripts and other sites
    cannot use it)."""
    browser = Browser(live)
    browser.get("/login")
    line = next(c for c in browser.set_cookies if c.startswith("lis_session="))
    assert "httponly" in line.lower() and "samesite=strict" in line.lower()


def _no_raw_markup(text: str) -> None:
    for raw in ("<script>alert", "<img src=x", "<b>Hoa</b>", "<i>1</i>"):
        assert raw not in text, raw


def test_markup_in_patient_data_is_shown_as_text(live: Live) -> None:
    """A patient name and ID holding markup appear escaped on the worklist and the sample
    page; no tag of theirs reaches the page."""
    browser = Browser(live)
    browser.login("u_technician")
    for path in ("/worklist", "/sample?s=S-XSS"):
        answer = browser.get(path)
        assert answer.status == 200
        _no_raw_markup(answer.text)
    assert "&lt;script&gt;" in browser.get("/sample?s=S-XSS").text  # shown, as text


@pytest.mark.parametrize("path", ["/worklist?state=" + quote(MARKUP),
                                  "/worklist?analyzer=" + quote(ATTRIBUTE),
                                  "/worklist?day=" + quote(MARKUP),
                                  "/sample?s=" + quote(MARKUP),
                                  "/audit?patient=" + quote(MARKUP),
                                  "/audit?sample=" + quote(ATTRIBUTE),
                                  "/mapping?table=" + quote(MARKUP),
                                  "/analyzers/wire?link=" + quote(MARKUP),
                                  "/delivery?state=" + quote(MARKUP)])
def test_markup_in_the_request_is_never_reflected_as_markup(live: Live, path: str) -> None:
    """Query values (bad filters, unknown samples, searches) come back escaped, if at all."""
    browser = Browser(live)
    browser.login("u_admin")
    answer = browser.get(path)
    assert answer.status < 500, (path, answer.status)
    _no_raw_markup(answer.text)


def test_markup_in_a_form_value_is_never_reflected_as_markup(live: Live) -> None:
    """A refused form value (an unknown language) is named escaped in the 400 page."""
    browser = Browser(live)
    browser.login("u_admin")
    browser.get("/worklist")
    answer = browser.post("/lang", [("lang", MARKUP), ("next", "/worklist")])
    assert answer.status == 400
    _no_raw_markup(answer.text)


def test_redirect_after_login_stays_on_this_site(live: Live) -> None:
    """``next`` pointing elsewhere (open redirect) is replaced by a local page."""
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        browser = Browser(live)
        browser.get("/login?next=" + quote(target))
        answer = browser.post("/login", [("username", "u_admin"),
                                         ("password", "mật khẩu đúng 123"),
                                         ("next", target)])
        assert answer.status == 303
        location = answer.header("location")
        assert location.startswith("/") and not location.startswith(("//", "/\\")), location


def _raw_request(live: Live, head: bytes, body_size: int = 0, chunk: int = 1 << 16
                 ) -> tuple[int, int]:
    """Send a request over a plain socket (the body as zeros, as far as the server takes
    it); return the status (0 if the connection closed first) and the body bytes sent."""
    host, port = live.url.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head)
        zeros = b"0" * chunk
        try:
            while sent < body_size:
                sock.sendall(zeros[:min(chunk, body_size - sent)])
                sent += min(chunk, body_size - sent)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        try:
            while b"\r\n" not in data:
                more = sock.recv(4096)
                if not more:
                    break
                data += more
        except (ConnectionResetError, TimeoutError):
            pass
    found = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return (int(found.group(1)) if found else 0), sent


def test_oversize_headers_and_request_lines_are_refused(live: Live) -> None:
    """A request line or headers far beyond any real browser's are refused."""
    long_path = b"/worklist?state=" + b"a" * 70_000
    status, _ = _raw_request(live, b"GET " + long_path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status in (0, 400, 414, 431), status
    headers = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"b" * 1000) for i in range(200))
    status, _ = _raw_request(live, b"GET /login HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert status in (0, 400, 431), status



def test_oversize_bodies_are_refused_before_they_are_read(live: Live) -> None:
    """A 64 MiB form post is answered 413 without the server taking it all; a chunked
    body growing past the limit too; a normal login form still works after."""
    size = 64 << 20
    status, sent = _raw_request(
        live, b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: "
        b"application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n" % size, size)
    assert status == 413 and sent < size
    status, _ = _raw_request(
        live, b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"100000\r\n" + b"0" * 0x100000 + b"\r\n" for _ in range(5)))
    assert status == 413
    status, _ = _raw_request(live, b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200
