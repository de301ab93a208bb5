"""Tells the outbox workers that something may have become deliverable.

Whoever commits a release (the store sink after results autoreleased, the
web app after a validation, correction, retraction or a dead letter's retry)
calls :meth:`ReleaseSignal.notify` on the reactor thread; every subscribed
worker then looks at the outbox at once instead of at its next poll. A
notification is only a hint: a worker coalesces many into one look, and its
poll still finds what was committed elsewhere (the CLI, another process).
"""

from __future__ import annotations

from collections.abc import Callable

import structlog


class ReleaseSignal:
    """Calls every subscriber on :meth:`notify` (on the reactor thread)."""

    def __init__(self) -> None:
        self._subscribers: list[Callable[[], None]] = []

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on every notification from now on."""
        self._subscribers.append(callback)

    def notify(self) -> None:
        """Something was released: wake the subscribers.

        A subscriber's exception is logged (its type only) and does not keep
        the others from being called, nor reaches the one who notified.
        """
        for callback in list(self._subscribers):
            try:
                callback()
            except Exception as exc:  # a hint must never fail the commit's caller
                structlog.get_logger("lis_gateway.outbox").error(
                    "wakeup-failed", kind=type(exc).__name__)
