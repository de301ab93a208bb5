"""A live web app over loopback TCP for the web app and browser tests.

The gateway's site (``build_site(app=webapp_resource(...))``) listens on
127.0.0.1 on a free port, served by a Twisted reactor running in a thread
of the test process (started once, stopped at exit), with a real
``DbPool`` on an SQLite file. The app's clock is a ``task.Clock`` the
tests move (session timeouts, lockout windows): the server only reads it.

:func:`start_outbox` adds the gateway's real outbox worker for an
``hl7-mllp`` destination (the real reactor's clock: it must keep time by
itself); the HIS it sends to in the tests is :class:`tests.mllp_his.MllpHis`
(plain sockets, sharing no code with the gateway).

:class:`Browser` is a small synchronous HTTP client over treq: it keeps
cookies, never follows redirects by itself, and reads each form's CSRF
token from the page.
"""

from __future__ import annotations

import atexit
import dataclasses
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import structlog
import treq
from sqlalchemy import Engine, update
from twisted.internet.task import Clock
from twisted.internet.threads import blockingCallFromThread
from twisted.web.client import Agent, HTTPConnectionPool

from lis_gateway.autoverify import Autoverification
from lis_gateway.ingest import store_for_analyzer
from lis_gateway.lifecycle import Policy
from lis_gateway.linkspec import DestinationSpec
from lis_gateway.normalize import NormalizedResult
from lis_gateway.outbound.destinations import make_channel
from lis_gateway.outbound.worker import OutboxWorker
from lis_gateway.rules_file import load_rules
from lis_gateway.store import repository as repo
from lis_gateway.store import schema as s
from lis_gateway.store.engine import make_engine
from lis_gateway.store.migrations import migrate
from lis_gateway.store.pool import DbPool
from lis_gateway.store.sections import set_user_sections, sync_analyzer_sections
from lis_gateway.store.users import password_hash
from lis_gateway.web.site import build_site
from lis_gateway.webapp import webapp_resource

from ..store.test_lifecycle_store import RULES, ingest
from ..store.test_repository import RAW, T0, result

#: The app's clock starts here (2026-11-22 08:00 in Hanoi).
START = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
PASSWORD = "mật khẩu đúng 123"
_lock = threading.Lock()
_thread: threading.Thread | None = None


def reactor() -> Any:
    """The global reactor, running in a daemon thread (started on first use)."""
    global _thread
    from twisted.internet import reactor as the_reactor

    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=the_reactor.run,
                                       kwargs={"installSignalHandlers": False},
                                       name="test-reactor", daemon=True)
            _thread.start()
            atexit.register(_stop)
    return the_reactor


def _stop() -> None:
    from twisted.internet import reactor as the_reactor

    the_reactor.callFromThread(the_reactor.stop)
    if _thread is not None:
        _thread.join(10)


def on_reactor(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` on the reactor thread and wait for its (Deferred's) result."""
    return blockingCallFromThread(reactor(), fn, *args, **kwargs)


@dataclass
class Live:
    """One running web app: its URL, database, clock and pool."""

    url: str
    engine: Engine
    clock: Clock
    pool: DbPool
    port: Any

    def advance(self, seconds: float) -> None:
        """Move the app's clock."""
        self.clock.advance(seconds)

    def now(self) -> datetime:
        """The app's wall-clock time."""
        return datetime.fromtimestamp(self.clock.seconds(), UTC)


def start_live(tmp: Path, *, secure_cookies: bool = False,
               policy: Policy | None = None) -> Iterator[Live]:
    """Start a web app on a fresh SQLite store; stop it when the generator is closed."""
    url = f"sqlite:///{tmp / 'lis.db'}"
    engine = make_engine(url)
    migrate(url, engine=engine)
    clock = Clock()
    clock.advance(START.timestamp())
    the_reactor = reactor()
    pool = DbPool(make_engine(url), the_reactor)
    pool.start()
    app = webapp_resource(pool, clock, policy or Policy(), secure_cookies=secure_cookies)
    port = on_reactor(the_reactor.listenTCP, 0, build_site(app=app), interface="127.0.0.1")
    try:
        yield Live(f"http://127.0.0.1:{port.getHost().port}", engine, clock, pool, port)
    finally:
        on_reactor(port.stopListening)
        pool.stop()
        engine.dispose()


# --------------------------------------------------------------------- data


def add_user(engine: Engine, name: str, *roles: str, display: str = "",
             sections: Sequence[str] = ()) -> None:
    """A user with :data:`PASSWORD` (and lab ``sections``)."""
    with engine.begin() as conn:
        repo.create_user(conn, name, START, display_name=display, roles=list(roles),
                         hashed_password=password_hash(PASSWORD))
        if sections:
            set_user_sections(conn, name, sections, START)


def set_sections(engine: Engine, sections: dict[str, str]) -> None:
    """The analyzers' lab sections, as ``run`` copies them from the configuration."""
    with engine.begin() as conn:
        sync_analyzer_sections(conn, [(name, "", section) for name, section in
                                      sections.items()], START)


_raw_counter = iter(range(1, 1_000_000))


def receive(engine: Engine, results: Sequence[NormalizedResult], *,
            patient: tuple[str, str, str] | None = None, hospital_id: str = "",
            stat: bool = False, analyzer: str = "cobas", ordered: bool = False) -> list[int]:
    """Store one message from ``analyzer`` judged by the test rule set
    (limits 3..10, delta, critical), with the sample's patient and priority.

    With ``ordered`` the patient is on the sample before the message arrives, as after
    an HIS order, so the delta check finds the patient's earlier results."""
    raw = RAW + str(next(_raw_counter)).encode()
    if ordered:
        with engine.begin() as conn:
            repo.ensure_sample(conn, results[0].row.sample_id, START,
                               repo.PatientIds(hospital_id=hospital_id or None))
    if analyzer == "cobas":
        ids = ingest(engine, list(results), raw=raw)
    else:
        judging = Autoverification(load_rules(RULES), Policy(), driver="generic-astm")
        with engine.begin() as conn:
            ids = list(store_for_analyzer(
                conn, analyzer=analyzer, family="generic-astm", protocol="astm", raw=raw,
                received_at=T0, results=list(results), autoverification=judging).result_ids)
    accession = results[0].row.sample_id
    with engine.begin() as conn:
        if patient is not None or hospital_id:
            family, middle, given = patient or ("", "", "")
            conn.execute(update(s.samples).where(s.samples.c.accession == accession).values(
                family_name=family, middle_name=middle, given_name=given,
                hospital_id=hospital_id or None, patient_source="his"))
        if stat:
            order_id = repo.add_order(conn, accession, results[0].code, START)
            conn.execute(update(s.orders).where(s.orders.c.id == order_id).values(
                priority="S"))
    return ids


def glucose(sample: str, value: str = "5.4", *, critical: str = "",
            minute: int = 0) -> NormalizedResult:
    """A glucose result (mmol/L, range 3.9-6.1)."""
    base = result(sample=sample, value=value,
                  completed_at=f"202611220{8 + minute // 60}{minute % 60:02d}00")
    return dataclasses.replace(base, critical=critical,
                               result_time=START + timedelta(minutes=minute))


# --------------------------------------------------------------------- the HIS


def start_outbox(live: Live, port: int, *, name: str = "his") -> Iterator[OutboxWorker]:
    """The outbox worker of an ``hl7-mllp`` destination on 127.0.0.1:``port``, on the live
    app's store; stopped when the generator is closed."""
    destination = DestinationSpec(name=name, type="hl7-mllp", host="127.0.0.1", port=port,
                                  hospital="BV_TEST", ack_timeout=10)
    the_reactor = reactor()
    channel = make_channel(destination, the_reactor, structlog.get_logger("test-outbox"))
    worker = OutboxWorker(name, live.pool, channel, the_reactor, poll_interval=0.2)
    on_reactor(worker.startService)
    try:
        yield worker
    finally:
        on_reactor(worker.stopService)


# --------------------------------------------------------------------- client


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer."""

    status: int
    headers: dict[str, list[str]]
    text: str

    def header(self, name: str) -> str:
        """The first value of a header ("" when absent)."""
        return (self.headers.get(name.lower()) or [""])[0]


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Browser:
    """Cookies, CSRF tokens and plain requests over loopback TCP (through treq)."""

    def __init__(self, live: Live) -> None:
        self.live = live
        self.cookies: dict[str, str] = {}
        self.set_cookies: list[str] = []
        self.last = Answer(0, {}, "")
        self.token = ""

    def request(self, method: str, path: str, form: Sequence[tuple[str, str]] | None = None
                ) -> Answer:
        """One request; Set-Cookie answers update the cookies."""
        headers = {b"Cookie": [ "; ".join(f"{k}={v}" for k, v in self.cookies.items())
                               .encode()]} if self.cookies else {}
        body = None
        if form is not None:
            body = urlencode(list(form)).encode()
            headers[b"Content-Type"] = [b"application/x-www-form-urlencoded"]

        def go() -> Any:
            client = treq.client.HTTPClient(Agent(reactor(), pool=HTTPConnectionPool(
                reactor(), persistent=False)))
            d = client.request(method, self.live.url + path, data=body, headers=headers,
                               allow_redirects=False)
            return d.addCallback(lambda r: treq.content(r).addCallback(lambda c: (r, c)))

        response, content = on_reactor(go)
        raw = {k.decode().lower(): [v.decode("latin-1") for v in vs]
               for k, vs in response.headers.getAllRawHeaders()}
        for line in raw.get("set-cookie", []):
            self.set_cookies.append(line)
            for name, morsel in SimpleCookie(line).items():
                if morsel.value == "" or morsel["max-age"] == "0":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        self.last = Answer(response.code, raw, content.decode("utf-8"))
        found = _CSRF.search(self.last.text)
        if found:
            self.token = found.group(1)
        return self.last

    def get(self, path: str) -> Answer:
        """GET."""
        return self.request("GET", path)

    def post(self, path: str, form: Sequence[tuple[str, str]], *, csrf: bool = True) -> Answer:
        """POST a form, with the latest page's CSRF token unless ``csrf`` is False."""
        fields = list(form)
        if csrf:
            fields.insert(0, ("csrf", self.csrf()))
        return self.request("POST", path, fields)

    def csrf(self) -> str:
        """The CSRF token of the latest page that had one."""
        assert self.token, "no page with a CSRF token yet"
        return self.token

    def login(self, username: str, password: str = PASSWORD) -> Answer:
        """Open the login page and send the form."""
        self.get("/login")
        return self.post("/login", [("username", username), ("password", password)])
