"""ReleaseSignal: every subscriber is called on notify; one failing does not stop the rest."""

from __future__ import annotations

from lis_gateway.outbound.wakeup import ReleaseSignal


def test_notify_calls_every_subscriber_each_time() -> None:
    """Two workers subscribed: both are woken by each notification, in subscription order."""
    signal, calls = ReleaseSignal(), []
    signal.notify()  # nobody listens yet: nothing happens
    signal.subscribe(lambda: calls.append("his"))
    signal.subscribe(lambda: calls.append("fhir"))
    signal.notify()
    signal.notify()
    assert calls == ["his", "fhir", "his", "fhir"]


def test_a_failing_subscriber_neither_stops_the_others_nor_reaches_the_notifier() -> None:
    """The commit's caller never sees a worker's defect; the next worker is still woken."""
    signal, calls = ReleaseSignal(), []

    def broken() -> None:
        raise RuntimeError("defect")

    signal.subscribe(broken)
    signal.subscribe(lambda: calls.append("woken"))
    signal.notify()
    assert calls == ["woken"]
