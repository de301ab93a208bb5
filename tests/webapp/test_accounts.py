"""Accounts over loopback TCP: sessions, cookies, CSRF, lockout, timeouts and their audit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from lis_gateway.store.audit import audit_entries
from lis_gateway.store.logins import LOCKOUT_FAILURES
from lis_gateway.webapp.sessions import ABSOLUTE_TIMEOUT, IDLE_TIMEOUT

from .live import Browser, Live, add_user, start_live


def actions(engine: Engine, target: str) -> list[tuple[str, str]]:
    """(action, detail) of the audit rows about ``target``."""
    with engine.begin() as conn:
        return [(e.action, e.detail) for e in audit_entries(conn) if e.target == target]


@pytest.fixture(scope="module", autouse=True)
def people(live: Live) -> None:
    """A technician, a doctor and a disabled account."""
    add_user(live.engine, "lan", "technician", display="Nguyễn Thị Lan")
    add_user(live.engine, "dr_minh", "doctor")
    add_user(live.engine, "locky", "technician")
    add_user(live.engine, "gone", "technician")
    from lis_gateway.store.users import disable_user

    with live.engine.begin() as conn:
        disable_user(conn, "gone", live.now())


@pytest.mark.parametrize("path", ["/", "/worklist", "/worklist?state=held", "/sample?s=S1"])
def test_pages_need_a_session(live: Live, path: str) -> None:
    """Without a session every page sends to the login page (303) and shows nothing."""
    answer = Browser(live).get(path)
    assert answer.status == 303
    assert answer.header("location").startswith("/login") and answer.text == ""


@pytest.mark.parametrize("path", ["/worklist", "/sample", "/logout"])
def test_posts_need_a_session(live: Live, path: str) -> None:
    """A POST without a session is refused (403), whatever it carries."""
    answer = Browser(live).request("POST", path, [("csrf", "x"), ("v", "1")])
    assert answer.status == 403


def test_health_static_and_unknown_paths(live: Live) -> None:
    """/healthz and the stylesheet need no session; unknown paths and an absent API are 404."""
    browser = Browser(live)
    assert (browser.get("/healthz").status, browser.last.text) == (200, "ok\n")
    css = browser.get("/static/app.css")
    assert css.status == 200 and css.header("content-type") == "text/css; charset=utf-8"
    assert browser.get("/static/nothing.js").status == 404
    assert browser.get("/nothing").status == 404
    assert browser.get("/api/orders").status == 404


def test_login_page_is_vietnamese_utf8_with_safe_headers(live: Live) -> None:
    """The login page: Vietnamese by default, UTF-8 declared twice, no caching, no framing."""
    page = Browser(live).get("/login")
    assert page.status == 200
    assert page.header("content-type") == "text/html; charset=utf-8"
    assert '<meta charset="utf-8">' in page.text and '<html lang="vi">' in page.text
    assert "Đăng nhập" in page.text and "Mật khẩu" in page.text
    assert page.header("cache-control") == "no-store"
    assert "frame-ancestors 'none'" in page.header("content-security-policy")
    assert page.header("x-frame-options") == "DENY"


def test_login_rotates_the_session_and_sets_strict_cookies(live: Live) -> None:
    """A login replaces the anonymous session; the cookie is HttpOnly and SameSite=Strict."""
    browser = Browser(live)
    browser.get("/login")
    before = browser.cookies["lis_session"]
    answer = browser.post("/login", [("username", "lan"), ("password", "mật khẩu đúng 123"),
                                     ("next", "/worklist?state=held")])
    assert (answer.status, answer.header("location")) == (303, "/worklist?state=held")
    assert browser.cookies["lis_session"] != before
    cookie = browser.set_cookies[-1]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    assert "secure" not in cookie.lower()
    page = browser.get("/worklist")
    assert page.status == 200 and "Nguyễn Thị Lan (Kỹ thuật viên)" in page.text
    assert ("auth.login", "{}") in actions(live.engine, "user:lan")


def test_secure_cookies_when_configured(tmp_path: Path) -> None:
    """With secure_cookies the session cookie carries Secure too."""
    for live in start_live(tmp_path, secure_cookies=True):
        browser = Browser(live)
        browser.get("/login")
        cookie = browser.set_cookies[-1].lower()
        assert "; secure" in cookie and "samesite=strict" in cookie


def test_an_open_redirect_is_not_followed(live: Live) -> None:
    """``next`` pointing off the site sends to the worklist instead."""
    browser = Browser(live)
    browser.get("/login")
    answer = browser.post("/login", [("username", "lan"), ("password", "mật khẩu đúng 123"),
                                     ("next", "//evil.example/")])
    assert answer.header("location") == "/worklist"


@pytest.mark.parametrize("who,password", [("lan", "sai"), ("nobody", "x"),
                                          ("gone", "mật khẩu đúng 123")])
def test_a_refused_login_says_so_and_is_audited(live: Live, who: str, password: str) -> None:
    """Wrong password, unknown or disabled user: one message on the page; the audit says why."""
    answer = Browser(live).login(who, password)
    assert answer.status == 401 and "Sai tên đăng nhập hoặc mật khẩu." in answer.text
    failures = [json.loads(d)["why"] for a, d in actions(live.engine, f"user:{who}")
                if a == "auth.login-failed"]
    assert failures and failures[-1] in {"wrong password", "unknown user", "disabled"}
    assert password not in json.dumps(actions(live.engine, f"user:{who}"))


def test_failed_logins_lock_the_account_for_a_while(live: Live) -> None:
    """Five failures lock the account (even the right password is refused) for 15 minutes."""
    browser = Browser(live)
    for _ in range(LOCKOUT_FAILURES):
        assert browser.login("locky", "wrong").status == 401
    locked = browser.login("locky")
    assert locked.status == 403 and "tài khoản bị khóa trong 15 phút" in locked.text
    assert actions(live.engine, "user:locky")[-1][0] == "auth.login-locked"
    live.advance(15 * 60 + 1)
    assert browser.login("locky").status == 303


def test_a_form_without_the_right_token_is_refused(live: Live) -> None:
    """Login and logout forms without the session's CSRF token: 403, nothing done."""
    browser = Browser(live)
    browser.get("/login")
    forged = browser.post("/login", [("csrf", "forged"), ("username", "lan"),
                                     ("password", "mật khẩu đúng 123")], csrf=False)
    assert forged.status == 403 and "lis_session" in browser.cookies
    assert browser.get("/worklist").status == 303  # still not logged in
    browser.login("lan")
    assert browser.post("/logout", [], csrf=False).status == 403
    assert browser.get("/worklist").status == 200  # still logged in


def test_logout_ends_the_session_and_is_audited(live: Live) -> None:
    """After logout the old cookie opens nothing; the logout is in the audit log."""
    browser = Browser(live)
    browser.login("dr_minh")
    cookie = browser.cookies["lis_session"]
    browser.get("/worklist")
    assert browser.post("/logout", []).header("location") == "/login"
    browser.cookies["lis_session"] = cookie
    assert browser.get("/worklist").status == 303
    assert ("auth.logout", '{"expired":false}') in actions(live.engine, "user:dr_minh")


def test_sessions_expire_when_idle_and_after_a_shift(live: Live) -> None:
    """Idle past the timeout: back to the login page, audited as expired; likewise after
    the absolute lifetime however busy the session was."""
    browser = Browser(live)
    browser.login("lan")
    live.advance(IDLE_TIMEOUT - 1)
    assert browser.get("/worklist").status == 200
    live.advance(IDLE_TIMEOUT + 1)
    assert browser.get("/worklist").status == 303
    assert ("auth.logout", '{"expired":true}') in actions(live.engine, "user:lan")
    browser.login("lan")
    for _ in range(int(ABSOLUTE_TIMEOUT // (IDLE_TIMEOUT - 1))):
        live.advance(IDLE_TIMEOUT - 1)
        browser.get("/worklist")
    live.advance(IDLE_TIMEOUT - 1)
    assert browser.get("/worklist").status == 303


def test_the_language_switch_is_kept(live: Live) -> None:
    """Switching to English changes the pages of the session and is remembered after logout."""
    browser = Browser(live)
    browser.login("lan")
    browser.get("/worklist")
    answer = browser.post("/lang", [("lang", "en"), ("next", "/worklist")])
    assert answer.header("location") == "/worklist"
    page = browser.get("/worklist")
    assert '<html lang="en">' in page.text and "Worklist" in page.text
    browser.post("/logout", [])
    assert "Log in" in browser.get("/login").text
    assert browser.post("/lang", [("lang", "fr")]).status == 400
