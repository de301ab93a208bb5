"""Security of the web app over loopback TCP, route by route from the app's own table.

* every route but the public ones needs a session: a GET is sent to the login page, a
  POST is refused (403); the public ones are the login page, the language switch, the
  app's script and stylesheet, and the operations endpoints (``/healthz``, ``/readyz``,
  ``/metrics``: no patient data; ``/api`` needs the HIS's bearer token);
* every form needs the session's own CSRF token: a POST without it, with a made-up one
  or with another session's is refused (403) and does nothing;
* a technician cannot approve where approval is the doctor's (sample page, batch);
* failed logins lock the account, whatever browser they come from, for a while only.

The route table is read from the app itself, so a page added later is checked too.
"""

from __future__ import annotations

import re

import pytest
from twisted.web.resource import Resource

from lis_gateway.lifecycle import Policy, ResultState
from lis_gateway.store import judgements
from lis_gateway.store import repository as repo
from lis_gateway.store.audit import audit_entries
from lis_gateway.store.logins import LOCKOUT_FAILURES, LOCKOUT_WINDOW
from lis_gateway.web.site import build_site
from lis_gateway.webapp import webapp_resource
from lis_gateway.webapp.accounts import Page

from .live import Browser, Live, add_user, glucose, receive

#: Routes anyone may open (see the module docstring).
PUBLIC = {"/login", "/lang", "/static"}
#: What the site adds beside the app (each checked in tests/web and below).
SITE_CHILDREN = {"healthz", "metrics", "readyz", "api"}


def routes(resource: Resource, prefix: str = "") -> dict[str, Resource]:
    """Every path of the app's route table (``pages`` of the app and of its folders)."""
    found: dict[str, Resource] = {}
    for name, child in getattr(resource, "pages", {}).items():
        path = f"{prefix}/{name.decode()}" if name else (prefix or "/")
        if name and isinstance(getattr(child, "pages", None), dict):
            found.update(routes(child, path))
        else:
            found[path] = child
    return found


@pytest.fixture(scope="module")
def table(live: Live) -> dict[str, Resource]:
    """The app's routes, and the site's own children, from a fresh app."""
    app = webapp_resource(live.pool, live.clock, Policy(), secure_cookies=False)
    build_site(app=app)
    found = routes(app)
    assert {"/", "/login", "/logout", "/lang", "/worklist", "/sample", "/static"} <= set(found)
    assert {name.decode() for name in app.children} <= SITE_CHILDREN
    return found


@pytest.fixture(scope="module", autouse=True)
def people(live: Live) -> None:
    """Users of every role and a few samples."""
    add_user(live.engine, "lan", "technician")
    add_user(live.engine, "dr_minh", "doctor")
    add_user(live.engine, "boss", "admin", "technician", "doctor")
    for name in ("lock1", "lock2", "lock3", "lock4"):
        add_user(live.engine, name, "technician")
    receive(live.engine, [glucose("S1", "5.4")])
    receive(live.engine, [glucose("S2", "5.1")])


def audit_count(live: Live) -> int:
    """How many audit rows there are."""
    with live.engine.begin() as conn:
        return len(audit_entries(conn))


def state(live: Live, accession: str) -> ResultState:
    """The state of a sample's only result."""
    with live.engine.begin() as conn:
        [info] = repo.results_for_sample(conn, accession)
        return judgements.result_status(conn, info.id).state


def test_every_private_route_needs_a_session(live: Live, table: dict[str, Resource]) -> None:
    """Without a session: GET goes to the login page (coming back afterwards), POST is 403;
    the worklist's live part answers 401; public routes answer without one."""
    for path in sorted(set(table) - PUBLIC):
        browser = Browser(live)
        answer = browser.get(path + "?s=S1")
        assert answer.status == 303, path
        assert answer.header("location").startswith("/login?next="), path
        assert "S1" not in answer.text and "5.4" not in answer.text
        assert browser.request("POST", path, [("csrf", "x"), ("s", "S1")]).status == 403, path
    assert Browser(live).get("/worklist?part=live").status == 401
    public = Browser(live)
    assert public.get("/login").status == 200
    assert public.get("/static/app.css").status == 200
    assert public.get("/static/app.js").status == 200
    assert public.get("/healthz").status == 200


def forged(browser: Browser, path: str, token: str | None) -> int:
    """POST to ``path`` with ``token`` as the CSRF field (None: no field at all)."""
    form = [("s", "S1"), ("action", "validate"), ("v", "1"), ("lang", "en"),
            ("username", "lan"), ("password", "x")]
    if token is not None:
        form.insert(0, ("csrf", token))
    return browser.request("POST", path, form).status


@pytest.mark.parametrize("token", ["none", "made-up", "another session's"])
def test_every_form_needs_the_sessions_own_token(live: Live, table: dict[str, Resource],
                                                 token: str) -> None:
    """Logged in with every role, no route takes a POST without this session's token;
    nothing is done (no audit row, still logged in, the language unchanged)."""
    other = Browser(live)
    other.login("dr_minh")
    other.get("/worklist")
    tokens = {"none": None, "made-up": "x" * 43, "another session's": other.csrf()}
    browser = Browser(live)
    browser.login("boss")
    browser.get("/worklist")
    before = audit_count(live)
    posts = [path for path, page in table.items() if isinstance(page, Page)]
    assert {"/worklist", "/sample", "/logout", "/lang", "/login"} <= set(posts)
    for path in posts:
        assert forged(browser, path, tokens[token]) == 403, path
    assert audit_count(live) == before
    assert state(live, "S1") is ResultState.AUTOVERIFIED
    page = browser.get("/worklist")
    assert page.status == 200 and '<html lang="vi">' in page.text


def test_a_technician_cannot_approve(live: Live) -> None:
    """No approve button for a technician; a forged approval (sample page or batch) is
    refused with the lifecycle's reason and the result stays as it was."""
    tech = Browser(live)
    tech.login("lan")
    worklist = tech.get("/worklist").text
    assert 'value="approve"' not in worklist
    tech.get("/sample?s=S2")
    version = re.search(r'name="version" value="(\d+)"', tech.last.text)
    assert version is not None and 'value="approve"' not in tech.last.text
    tech.post("/sample", [("s", "S2"), ("version", version.group(1)), ("action", "validate")])
    assert state(live, "S2") is ResultState.TECH_VALIDATED
    tech.post("/sample", [("s", "S2"), ("version", version.group(1)), ("action", "approve")])
    assert "may not approve" in tech.get("/sample?s=S2").text
    tech.post("/worklist", [("v", version.group(1)), ("action", "approve")])
    assert "may not approve" in tech.get("/worklist").text
    assert state(live, "S2") is ResultState.TECH_VALIDATED
    doctor = Browser(live)
    doctor.login("dr_minh")
    assert 'value="approve"' in doctor.get("/worklist").text


def logins(live: Live, user: str, password: str, times: int) -> list[int]:
    """The status of each of ``times`` login attempts, each from a new browser."""
    return [Browser(live).login(user, password).status for _ in range(times)]


def test_the_lock_follows_the_account_not_the_browser(live: Live) -> None:
    """Failures from several browsers add up; the locked screen says the same whether the
    password is right or wrong (no oracle)."""
    assert logins(live, "lock1", "sai", LOCKOUT_FAILURES) == [401] * LOCKOUT_FAILURES
    right, wrong = Browser(live).login("lock1"), Browser(live).login("lock1", "sai")
    assert right.status == wrong.status == 403
    lock = "tài khoản bị khóa trong 15 phút"
    assert lock in right.text and lock in wrong.text


def test_hammering_a_locked_account_does_not_keep_it_locked(live: Live) -> None:
    """Attempts while locked do not count: once the failures age out, the person logs in."""
    logins(live, "lock2", "sai", LOCKOUT_FAILURES)
    live.advance(LOCKOUT_WINDOW.total_seconds() / 2)
    assert logins(live, "lock2", "sai", 3) == [403] * 3
    live.advance(LOCKOUT_WINDOW.total_seconds() / 2 + 1)
    assert Browser(live).login("lock2").status == 303


def test_failures_before_a_successful_login_do_not_count(live: Live) -> None:
    """Four failures, a success, four more: not locked; a fifth after it locks."""
    almost = LOCKOUT_FAILURES - 1
    assert logins(live, "lock3", "sai", almost) == [401] * almost
    assert Browser(live).login("lock3").status == 303
    assert logins(live, "lock3", "sai", almost) == [401] * almost
    assert Browser(live).login("lock3").status == 303
    assert logins(live, "lock3", "sai", LOCKOUT_FAILURES + 1)[-1] == 403


def test_a_locked_person_keeps_a_session_already_open(live: Live) -> None:
    """The lock stops new logins; a session opened before goes on (and logs out)."""
    browser = Browser(live)
    browser.login("lock4")
    logins(live, "lock4", "sai", LOCKOUT_FAILURES)
    assert Browser(live).login("lock4").status == 403
    assert browser.get("/worklist").status == 200
    assert browser.post("/logout", []).status == 303
