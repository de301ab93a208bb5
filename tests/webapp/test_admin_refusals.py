"""The administration pages refuse: no session (login), the wrong role (403 naming who may),
a POST without the form token (403, nothing done); the navigation shows what a role may use."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from lis_gateway.store.audit import audit_entries

from .live import Browser, add_user
from .live_admin import AdminLive, start_admin_live

PAGES = ("/mapping", "/mapping/fix?analyzer=chem1&code=685", "/analyzers",
         "/analyzers/wire?link=chem1", "/delivery", "/delivery/reconcile", "/audit")
ACTIONS = (("/mapping/fix", [("analyzer", "chem1"), ("code", "685"), ("based_on", ""),
                              ("col_local_code", "ALT")]),
           ("/mapping/reprocess", [("analyzer", "chem1"), ("code", "685")]),
           ("/delivery/retry", [("entry", "1")]))
#: Who may open each page.
ALLOWED = {"technician": {"/analyzers"}, "doctor": {"/audit"}, "admin": set(PAGES)}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminLive]:
    """The app with one user per role."""
    with start_admin_live(tmp_path_factory.mktemp("refusals")) as started:
        for role in ("admin", "technician", "doctor"):
            add_user(started.live.engine, role, role)
        yield started


def logged_in(lab: AdminLive, user: str) -> Browser:
    """A browser logged in as ``user``."""
    browser = Browser(lab.live)
    assert browser.login(user).status == 303
    return browser


def audit_actions(lab: AdminLive) -> list[str]:
    """Every audit row's action."""
    with lab.live.engine.begin() as conn:
        return [e.action for e in audit_entries(conn)]


@pytest.mark.parametrize("path", PAGES)
def test_without_a_session_a_page_sends_to_the_login(lab: AdminLive, path: str) -> None:
    """GET without a session: 303 to /login with the page to come back to."""
    answer = Browser(lab.live).get(path)
    assert answer.status == 303 and answer.header("location").startswith("/login?next=%2F")


@pytest.mark.parametrize("path,form", ACTIONS)
def test_without_a_session_an_action_is_refused(lab: AdminLive, path: str,
                                                form: list[tuple[str, str]]) -> None:
    """POST without a session: 403."""
    assert Browser(lab.live).request("POST", path, form).status == 403


@pytest.mark.parametrize("role", ["technician", "doctor"])
def test_each_role_gets_403_outside_its_pages(lab: AdminLive, role: str) -> None:
    """A technician opens only the analyzers' status, a doctor only the audit page; the 403
    page names the roles that may."""
    browser = logged_in(lab, role)
    for path in PAGES:
        answer = browser.get(path)
        base = path.split("?")[0]
        if base in ALLOWED[role]:
            assert answer.status == 200, path
        else:
            assert answer.status == 403, path
            assert "Trang này chỉ dành cho:" in answer.text and "Quản trị viên" in answer.text


@pytest.mark.parametrize("path,form", ACTIONS)
def test_a_technician_may_not_act_even_with_the_token(lab: AdminLive, path: str,
                                                       form: list[tuple[str, str]]) -> None:
    """With a valid form token, a technician's POST is still 403 and does nothing."""
    browser = logged_in(lab, "technician")
    browser.get("/analyzers")
    before = audit_actions(lab)
    assert browser.post(path, form).status == 403
    assert audit_actions(lab) == before


@pytest.mark.parametrize("path,form", ACTIONS)
def test_an_admins_post_without_the_token_is_refused(lab: AdminLive, path: str,
                                                      form: list[tuple[str, str]]) -> None:
    """The administrator's POST without the CSRF token: 403, nothing audited or written."""
    browser = logged_in(lab, "admin")
    browser.get("/mapping")
    table = (lab.site / "roche-cobas.csv").read_bytes()
    before = audit_actions(lab)
    answer = browser.post(path, form, csrf=False)
    assert answer.status == 403 and "Biểu mẫu đã cũ hoặc không được gửi từ trang này" in answer.text
    assert audit_actions(lab) == before and (lab.site / "roche-cobas.csv").read_bytes() == table


def test_the_navigation_follows_the_roles_and_english_works(lab: AdminLive) -> None:
    """The header links each role to its pages; in English the 403 page is English."""
    def nav(browser: Browser) -> list[str]:
        header = browser.get("/worklist").text.split("<nav>")[1].split("</nav>")[0]
        return re.findall(r'href="(/[a-z]+)"', header)

    assert nav(logged_in(lab, "admin")) == ["/worklist", "/mapping", "/analyzers",
                                            "/delivery", "/audit"]
    assert nav(logged_in(lab, "technician")) == ["/worklist", "/analyzers"]
    doctor = logged_in(lab, "doctor")
    assert nav(doctor) == ["/worklist", "/audit"]
    doctor.post("/lang", [("lang", "en"), ("next", "/worklist")])
    answer = doctor.get("/delivery")
    assert answer.status == 403
    assert ("This page is only for: Administrator. Ask an administrator if you need it."
            in answer.text)


def test_unknown_pages_and_wrong_methods(lab: AdminLive) -> None:
    """A path under an administration page that does not exist is 404; GET on an action 405."""
    browser = logged_in(lab, "admin")
    assert browser.get("/mapping/nothing").status == 404
    assert browser.get("/delivery/retry").status == 405
    assert browser.get("/mapping/").status == 200
