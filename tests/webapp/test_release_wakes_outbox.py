"""A person's release in the web app wakes the outbox worker: the HIS gets the result
although the worker's next poll is an hour away.

Real parts: the gateway's site and web app over loopback TCP, the outbox worker made by
``service.destination_service`` and woken through a ``ReleaseSignal`` as ``run_gateway``
wires it, a ``DbPool`` on SQLite, and :class:`tests.mllp_his.MllpHis` as the HIS.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from twisted.internet.task import Clock

from lis_gateway.lifecycle import Policy
from lis_gateway.linkspec import DestinationSpec
from lis_gateway.outbound.delivery import EntryState
from lis_gateway.outbound.wakeup import ReleaseSignal
from lis_gateway.outbound.worker import OutboxWorker
from lis_gateway.service import destination_service
from lis_gateway.store import outbox
from lis_gateway.store.engine import make_engine
from lis_gateway.store.migrations import migrate
from lis_gateway.store.pool import DbPool
from lis_gateway.validation import validate_sample
from lis_gateway.web.site import build_site
from lis_gateway.webapp import webapp_resource
from tests.mllp_his import MllpHis

from .live import START, Browser, Live, add_user, glucose, on_reactor, reactor, receive
from .test_pages import version


@dataclass
class Site:
    """The live web app, its HIS and the notifications the web app sent."""

    live: Live
    his: MllpHis
    notified: list[int]


def wait_until(done: object, what: str, timeout: float = 20.0) -> None:
    """Poll ``done()`` until it holds (bounded); fail naming ``what``."""
    assert callable(done)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(0.05)  # polling, not asserting on speed
    raise AssertionError(f"{what} did not happen")


def delivered(live: Live, accession: str) -> bool:
    """Every entry of ``accession`` is delivered (and there is one)."""
    with live.engine.begin() as conn:
        states = [e.state for e in outbox.entries(conn) if e.accession == accession]
    return bool(states) and set(states) == {EntryState.DELIVERED}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The web app and an outbox worker polling once an hour, both on one ReleaseSignal;
    sample W1 released before the worker starts and delivered by its first look."""
    tmp = tmp_path_factory.mktemp("wake")
    url = f"sqlite:///{tmp / 'lis.db'}"
    engine = make_engine(url)
    migrate(url, engine=engine)
    clock = Clock()
    clock.advance(START.timestamp())
    the_reactor = reactor()
    pool = DbPool(make_engine(url), the_reactor)
    pool.start()
    his = MllpHis()
    released, notified = ReleaseSignal(), []
    released.subscribe(lambda: notified.append(1))
    worker = destination_service(
        DestinationSpec(name="his", type="hl7-mllp", host="127.0.0.1", port=his.port,
                        hospital="BV_TEST", ack_timeout=10), pool, the_reactor, released)
    assert isinstance(worker, OutboxWorker)
    worker.poll_interval = 3600.0
    app = webapp_resource(pool, clock, Policy(), secure_cookies=False,
                          on_release=released.notify)
    port = on_reactor(the_reactor.listenTCP, 0, build_site(app=app), interface="127.0.0.1")
    live = Live(f"http://127.0.0.1:{port.getHost().port}", engine, clock, pool, port)
    add_user(engine, "lan", "technician")
    add_user(engine, "dr_minh", "doctor")
    for sample in ("W1", "W2"):
        receive(engine, [glucose(sample)], hospital_id="H42")
    with engine.begin() as conn:
        validate_sample(conn, "W1", "lan", Policy(), approve=False, at=live.now())
        validate_sample(conn, "W1", "dr_minh", Policy(), approve=True, at=live.now())
    on_reactor(worker.startService)
    try:
        wait_until(lambda: delivered(live, "W1"), "delivery of W1 by the first look")
        yield Site(live, his, notified)
    finally:
        on_reactor(worker.stopService)
        on_reactor(port.stopListening)
        pool.stop()
        engine.dispose()
        his.close()


def logged_in(live: Live, user: str) -> Browser:
    """A browser logged in as ``user``."""
    browser = Browser(live)
    assert browser.login(user).status == 303
    return browser


def test_an_approval_reaches_the_his_without_waiting_for_the_poll(site: Site) -> None:
    """A comment wakes nobody; the doctor's approval (which releases) does, and the
    result goes to the HIS although the worker's poll is an hour away."""
    live = site.live
    tech = logged_in(live, "lan")
    tech.get("/sample?s=W2")
    tech.post("/sample", [("s", "W2"), ("version", version(live.engine, "W2")),
                          ("action", "validate")])
    doctor = logged_in(live, "dr_minh")
    doctor.get("/sample?s=W2")
    before = len(site.notified)
    doctor.post("/sample", [("s", "W2"), ("version", version(live.engine, "W2")),
                            ("action", "comment"), ("text", "hemolysed? no")])
    assert len(site.notified) == before
    assert not any(b"W2" in m for m in site.his.messages())
    doctor.post("/sample", [("s", "W2"), ("version", version(live.engine, "W2")),
                            ("action", "approve")])
    assert len(site.notified) == before + 1
    wait_until(lambda: delivered(live, "W2"), "delivery of W2 after the approval")
    assert sum(b"W2" in m for m in site.his.messages()) == 1
