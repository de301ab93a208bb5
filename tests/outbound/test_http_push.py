"""HttpChannel against an in-memory HTTP server (treq.testing) on a Clock: no sockets.

The loopback-socket version (the gateway in a subprocess, an independent
HTTP receiver) is in tests/integration/test_http_delivery.py.
"""

from __future__ import annotations

from typing import Any

from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web._newclient import ResponseNeverReceived
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from lis_gateway.outbound.delivery import DeliveryStatus
from lis_gateway.outbound.http_push import HttpChannel
from lis_gateway.outbound.rest_json import interpret_response
from lis_gateway.outbound.sender import DeliveryReport


class Receiver(Resource):
    """Answers each POST with the next scripted (status, body); None: never answers."""

    isLeaf = True

    def __init__(self, *answers: tuple[int, bytes] | None) -> None:
        super().__init__()
        self.answers = list(answers)
        self.requests: list[tuple[dict[bytes, list[bytes]], bytes]] = []

    def render_POST(self, request: Request) -> bytes | int:
        headers = {k.lower(): v for k, v in request.requestHeaders.getAllRawHeaders()}
        self.requests.append((headers, request.content.read()))
        answer = self.answers.pop(0)
        if answer is None:
            return NOT_DONE_YET
        request.setResponseCode(answer[0])
        return answer[1]


def channel(agent: Any, clock: Clock, token: str = "") -> HttpChannel:
    ch = HttpChannel("http://his.test/api/results", lambda item, now: b"", interpret_response,
                     clock, token=token, timeout=10.0, agent=agent)
    ch.startService()
    return ch


def reports(d: Deferred[DeliveryReport]) -> list[DeliveryReport]:
    got: list[DeliveryReport] = []

    def keep(report: DeliveryReport) -> DeliveryReport:
        got.append(report)
        return report
    d.addCallback(keep)
    return got


def outcome(d: Deferred[DeliveryReport]) -> DeliveryReport:
    got: list[DeliveryReport] = []

    def keep(report: DeliveryReport) -> DeliveryReport:
        got.append(report)
        return report
    d.addCallback(keep)
    assert got, "no report yet"
    return got[0]


def test_a_post_carries_the_idempotency_key_and_token() -> None:
    """Content type, Idempotency-Key = control ID, bearer token; 201 is delivered."""
    receiver, clock = Receiver((201, b'{"ok": true}')), Clock()
    agent = RequestTraversalAgent(receiver)
    d = channel(agent, clock, token="abc").send(b'{"sample": "S1"}', "LG7")
    agent.flush()
    report = outcome(d)
    assert (report.control_id, report.status, report.text) == (
        "LG7", DeliveryStatus.DELIVERED, "HTTP 201")
    headers, body = receiver.requests[0]
    assert body == b'{"sample": "S1"}'
    assert headers[b"idempotency-key"] == [b"LG7"]
    assert headers[b"authorization"] == [b"Bearer abc"]
    assert headers[b"content-type"] == [b"application/json"]
    assert clock.getDelayedCalls() == []  # the timeout timer was cancelled


def test_error_answers_are_reported_with_the_his_text() -> None:
    """503 retried, 422 refused, each with the body as the reason."""
    receiver, clock = Receiver((503, b"bao tri"), (422, b"sai ma")), Clock()
    agent = RequestTraversalAgent(receiver)
    ch = channel(agent, clock)
    first = ch.send(b"{}", "LG1")
    agent.flush()
    second = ch.send(b"{}", "LG2")
    agent.flush()
    assert (outcome(first).status, outcome(first).text) == (DeliveryStatus.RETRY,
                                                            "HTTP 503: bao tri")
    assert (outcome(second).status, outcome(second).text) == (DeliveryStatus.REJECTED,
                                                              "HTTP 422: sai ma")


def test_silence_is_a_timeout() -> None:
    """No answer within the timeout: TIMEOUT, not an exception."""
    receiver, clock = Receiver(None), Clock()
    agent = RequestTraversalAgent(receiver)
    d = channel(agent, clock).send(b"{}", "LG3")
    agent.flush()
    clock.advance(9.9)
    assert reports(d) == []
    clock.advance(0.2)
    report = outcome(d)
    assert (report.status, report.text) == (DeliveryStatus.TIMEOUT, "no answer within 10 s")


class Failing:
    """An agent whose every request fails with ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def request(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
        return fail(self.error)


def test_refused_connections_were_not_sent_and_lost_ones_may_have_been() -> None:
    """Refused: NOT_SENT; a connection dropped before the answer: CONNECTION_LOST."""
    from twisted.web.iweb import IAgent
    from zope.interface import directlyProvides

    refused, lost = Failing(ConnectionRefusedError()), Failing(
        ResponseNeverReceived([Failure(ConnectionError("reset"))]))
    for agent in (refused, lost):
        directlyProvides(agent, IAgent)
    assert outcome(channel(refused, Clock()).send(b"{}", "A")).status is DeliveryStatus.NOT_SENT
    report = outcome(channel(lost, Clock()).send(b"{}", "B"))
    assert report.status is DeliveryStatus.CONNECTION_LOST
    assert report.text == "the connection failed before the answer (ResponseNeverReceived)"


def test_a_stopped_channel_sends_nothing_and_cancelling_is_not_a_report() -> None:
    """After stopService: NOT_SENT. The owner's cancel propagates as CancelledError."""
    from twisted.internet.defer import CancelledError

    receiver, clock = Receiver(None), Clock()
    agent = RequestTraversalAgent(receiver)
    ch = channel(agent, clock)
    pending = ch.send(b"{}", "LG4")
    agent.flush()
    errors: list[Failure] = []
    pending.addErrback(errors.append)
    pending.cancel()
    assert errors and errors[0].check(CancelledError)
    ch.stopService()
    assert outcome(ch.send(b"{}", "LG5")).status is DeliveryStatus.NOT_SENT
