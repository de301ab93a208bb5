"""What to do after each delivery attempt: sans-IO, time and randomness passed in.

The outbox keeps one entry per released result version and destination. After
each attempt the entry's fate follows from the destination's answer alone:

* DELIVERED (AA/CA): done.
* REJECTED (AR/CR or an unknown code): sending the same bytes again will not
  help, so the entry goes to the dead-letter list with the HIS's text, to be
  retried by a person once the cause is fixed. UNBUILDABLE (the released
  content itself cannot make a correct message: no value, an unknown flag)
  goes there too, with the reason: released content never changes by itself.
* RETRY (AE/CE), TIMEOUT, CONNECTION_LOST, NOT_SENT, NOT_BUILT (the message
  could not be made yet, e.g. the sample has no patient identifier until
  its order arrives): tried again after an
  exponential back-off with jitter, without limit. The back-off is capped
  (15 minutes by default) so that after an overnight outage the first
  results go out within one cap of the HIS coming back, and the jitter keeps
  several gateways from hammering a recovering HIS in step. For TIMEOUT,
  CONNECTION_LOST and NOT_SENT (the destination unreachable) the outbox
  worker applies the back-off to the whole destination instead and keeps the
  entry due, so the oldest entry is still first when the HIS comes back
  (:mod:`lis_gateway.outbound.worker`).

No Twisted, no store: :func:`decide` is a pure function of its arguments.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class DeliveryStatus(enum.Enum):
    """What became of one message sent to a destination."""

    DELIVERED = "delivered"  #: AA or CA
    RETRY = "retry"  #: AE or CE: the HIS had a problem; sending again later may work
    REJECTED = "rejected"  #: AR, CR or an unknown code: sending again as is will not help
    TIMEOUT = "timeout"  #: no matching ACK in time; the HIS may or may not have it
    CONNECTION_LOST = "connection-lost"  #: lost before the ACK; the HIS may or may not have it
    NOT_SENT = "not-sent"  #: never written (not connected, or the client stopped)
    NOT_BUILT = "not-built"  #: no correct message could be made yet (e.g. no patient ID)
    UNBUILDABLE = "unbuildable"  #: the version itself cannot make a correct message


class EntryState(enum.Enum):
    """Where an outbox entry is."""

    PENDING = "pending"  #: waiting for its (next) attempt
    DELIVERED = "delivered"  #: acknowledged by the destination
    DEAD = "dead"  #: rejected; waits for a person to fix the cause and retry it


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential back-off with jitter.

    Attempt ``n`` (1-based, counting the one that just failed) waits
    ``d = min(cap, first * factor ** (n - 1))`` scaled into
    ``[d * (1 - jitter), d]`` by a random number in ``[0, 1)``.
    """

    first: float = 5.0
    factor: float = 2.0
    cap: float = 900.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.first <= 0 or self.factor < 1 or self.cap < self.first:
            raise ValueError("back-off needs first > 0, factor >= 1 and cap >= first")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")

    def delay(self, attempts: int, rand: float) -> float:
        """Seconds to wait after ``attempts`` failed attempts (``rand`` in [0, 1))."""
        if attempts < 1:
            raise ValueError("attempts counts the failed attempt, so it is at least 1")
        if not 0 <= rand < 1:
            raise ValueError("rand must be in [0, 1)")
        exponent = min(attempts - 1, 64)  # beyond this the cap has long been reached
        full = min(self.cap, self.first * self.factor ** exponent)
        return full * (1 - self.jitter) + full * self.jitter * rand


@dataclass(frozen=True, slots=True)
class Decision:
    """The entry's next state after an attempt.

    Attributes:
        state: where the entry goes.
        next_attempt_at: when to try again (PENDING only), in the caller's clock.
    """

    state: EntryState
    next_attempt_at: float | None


#: The back-off used unless a destination configures its own.
DEFAULT_BACKOFF = Backoff()

_RETRIED = frozenset({DeliveryStatus.RETRY, DeliveryStatus.TIMEOUT,
                      DeliveryStatus.CONNECTION_LOST, DeliveryStatus.NOT_SENT,
                      DeliveryStatus.NOT_BUILT})


def decide(status: DeliveryStatus, attempts: int, now: float, rand: float,
           backoff: Backoff = DEFAULT_BACKOFF) -> Decision:
    """The fate of an entry whose attempt number ``attempts`` ended in ``status`` at ``now``."""
    if status is DeliveryStatus.DELIVERED:
        return Decision(EntryState.DELIVERED, None)
    if status in (DeliveryStatus.REJECTED, DeliveryStatus.UNBUILDABLE):
        return Decision(EntryState.DEAD, None)
    assert status in _RETRIED
    return Decision(EntryState.PENDING, now + backoff.delay(attempts, rand))


def control_id_for(version_id: int, retraction: bool = False) -> str:
    """MSH-10 of the message carrying one result version: stable across resends.

    ``LG`` + the version's id fits HL7 v2.5.1's 20-character MSH-10 up to
    ids of 17 digits; a resend after a lost ACK carries the same ID, so the
    HIS can recognise it. The retraction of the version is ``LG<id>X``.
    """
    if version_id < 1:
        raise ValueError("result version ids start at 1")
    return f"LG{version_id}" + ("X" if retraction else "")
