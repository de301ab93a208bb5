"""Pushing one payload at a time to an HIS or EMR over HTTP(S) (the thin Twisted part).

Used by the REST/JSON and FHIR destinations: both POST a body built by a
pure module (:mod:`lis_gateway.outbound.rest_json`,
:mod:`lis_gateway.outbound.fhir`) and read the answer with a pure function
of (status, body). What happens on the wire is reported, never raised:

* no connection could be made: NOT_SENT (the HIS never saw it);
* the connection failed after the request started: CONNECTION_LOST (the
  HIS may have it, so the resend carries the same ``Idempotency-Key``);
* no complete answer within ``timeout`` seconds: TIMEOUT, same reasoning;
* an answer: whatever the pure interpreter makes of it.

Every request carries ``Idempotency-Key: <control ID>`` and, when a token is
configured, ``Authorization: Bearer <token>``. Redirects are not followed.
Connections are kept alive between requests (one pool per destination).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import treq
from treq.client import HTTPClient
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectError, DNSLookupError
from twisted.internet.interfaces import IConsumer
from twisted.python.failure import Failure
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IPolicyForHTTPS
from zope.interface import implementer

from lis_gateway.outbound.delivery import DeliveryStatus
from lis_gateway.outbound.sender import DeliveryReport

#: Seconds the HIS has for a complete answer by default.
HTTP_TIMEOUT = 30.0
#: Bytes of an answer read at most (the rest is dropped; only a reason is kept).
MAX_ANSWER = 64 * 1024

Interpret = Callable[[int, bytes], tuple[DeliveryStatus, str]]


def tls_policy(ca_file: str = "") -> IPolicyForHTTPS:
    """Trust the system's CAs, or only the CA certificate(s) in ``ca_file`` (PEM)."""
    if not ca_file:
        return BrowserLikePolicyForHTTPS()
    from twisted.internet.ssl import Certificate

    with open(ca_file, "rb") as f:
        root = Certificate.loadPEM(f.read())
    return BrowserLikePolicyForHTTPS(trustRoot=root)


@implementer(IBodyProducer)
class BytesProducer:
    """A request body already in memory, written in one go (no cooperator needed)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self._data)
        return succeed(None)

    def pauseProducing(self) -> None:
        """Nothing to pause: everything was written."""

    def resumeProducing(self) -> None:
        """Nothing to resume."""

    def stopProducing(self) -> None:
        """Nothing to stop."""


class HttpChannel(Service):
    """POSTs payloads to one URL and reports what became of each.

    Args:
        url: where to POST (http or https).
        build: makes the payload of one outbox entry (raises BuildError).
        interpret: what an HTTP (status, body) means.
        reactor: the reactor (connections and the timeout timer).
        content_type: of the payloads.
        token: bearer token ("" for none).
        timeout: seconds for a complete answer.
        tls: the HTTPS trust policy.
        agent: makes the requests (default: a keep-alive Agent on ``reactor``;
            tests pass an in-memory one).
    """

    def __init__(self, url: str, build: Callable[..., bytes], interpret: Interpret,
                 reactor: Any, *, content_type: str = "application/json",
                 token: str = "", timeout: float = HTTP_TIMEOUT,
                 tls: IPolicyForHTTPS | None = None,
                 agent: IAgent | None = None) -> None:
        self.url, self.build, self._interpret = url, build, interpret
        self._reactor = reactor
        self._content_type, self._token, self.timeout = content_type, token, timeout
        self._tls = tls if tls is not None else BrowserLikePolicyForHTTPS()
        self._pool: HTTPConnectionPool | None = None
        self._http: HTTPClient | None = None
        self._agent = agent

    def startService(self) -> None:
        """Open the connection pool."""
        super().startService()
        if self._agent is not None:
            self._http = HTTPClient(self._agent, data_to_body_producer=BytesProducer)
            return
        # A new connection per request: reusing a kept-alive one races with the server
        # closing it, and the POST comes back connection-lost (twisted#7843), which a
        # batch sending back to back hits at once. The price is a TCP (and TLS)
        # handshake per message, small at a laboratory's rate.
        self._pool = HTTPConnectionPool(self._reactor, persistent=False)
        self._http = HTTPClient(Agent(self._reactor, contextFactory=self._tls, pool=self._pool),
                                data_to_body_producer=BytesProducer)

    def stopService(self) -> Deferred[None]:
        """Close the kept-alive connections."""
        super().stopService()
        pool, self._pool, self._http = self._pool, None, None
        if pool is None:
            return succeed(None)
        closed: Deferred[None] = pool.closeCachedConnections()
        return closed

    def reachable(self) -> None:
        """No standing connection: the worker's back-off alone decides."""
        return None

    def send(self, payload: bytes, control_id: str) -> Deferred[DeliveryReport]:
        """POST one payload; fires with a report (cancelling gives CancelledError)."""
        if self._http is None:
            return succeed(DeliveryReport(control_id, DeliveryStatus.NOT_SENT,
                                          detail="the destination is stopped"))
        headers = Headers({b"Content-Type": [self._content_type.encode()],
                           b"Accept": [b"application/json, application/fhir+json, */*"],
                           b"Idempotency-Key": [control_id.encode()]})
        if self._token:
            headers.setRawHeaders(b"Authorization", [b"Bearer " + self._token.encode()])
        timed_out = False
        request: Deferred[Any] = self._http.post(self.url, data=payload, headers=headers,
                                                 allow_redirects=False)
        request.addCallback(self._read)
        # What the owner holds: cancelling it (stopService) cancels the request
        # and fails with CancelledError; everything else becomes a report.
        owner_cancelled = False

        def cancel(_: Deferred[DeliveryReport]) -> None:
            nonlocal owner_cancelled
            owner_cancelled = True
            request.cancel()

        result: Deferred[DeliveryReport] = Deferred(cancel)

        def expire() -> None:
            nonlocal timed_out
            timed_out = True
            request.cancel()

        timer: Any = self._reactor.callLater(self.timeout, expire)

        def failed(failure: Failure) -> DeliveryReport:
            if timed_out:  # however the cancelled request failed
                return DeliveryReport(control_id, DeliveryStatus.TIMEOUT,
                                      detail=f"no answer within {self.timeout:g} s")
            if failure.check(ConnectError, DNSLookupError) is not None:
                return DeliveryReport(control_id, DeliveryStatus.NOT_SENT,
                                      detail=f"could not connect ({failure.type.__name__})")
            kind = failure.type.__name__ if failure.type is not None else "error"
            return DeliveryReport(control_id, DeliveryStatus.CONNECTION_LOST,
                                  detail=f"the connection failed before the answer ({kind})")

        def answered(got: tuple[int, bytes]) -> DeliveryReport:
            status, text = self._interpret(*got)
            return DeliveryReport(control_id, status, detail=text)

        def finish(report: DeliveryReport) -> None:
            if timer.active():
                timer.cancel()
            if not owner_cancelled:  # else the owner gets CancelledError
                result.callback(report)

        request.addCallbacks(answered, failed).addCallback(finish)
        return result

    @staticmethod
    def _read(response: Any) -> Deferred[tuple[int, bytes]]:
        code = int(response.code)
        body: Deferred[bytes] = treq.content(response)

        def cut(data: bytes) -> tuple[int, bytes]:
            return code, data[:MAX_ANSWER]

        return body.addCallback(cut)
