"""The delivery policy: pure functions, time and randomness passed in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lis_gateway.outbound.delivery import (
    Backoff,
    Decision,
    DeliveryStatus,
    EntryState,
    control_id_for,
    decide,
)

D = DeliveryStatus


def test_acknowledged_is_delivered_and_rejected_is_dead() -> None:
    """AA ends the entry; AR sends it to the dead-letter list; neither is retried."""
    assert decide(D.DELIVERED, 1, 100.0, 0.3) == Decision(EntryState.DELIVERED, None)
    assert decide(D.REJECTED, 4, 100.0, 0.3) == Decision(EntryState.DEAD, None)
    assert decide(D.UNBUILDABLE, 1, 100.0, 0.3) == Decision(EntryState.DEAD, None)


@pytest.mark.parametrize("status", [D.RETRY, D.TIMEOUT, D.CONNECTION_LOST, D.NOT_SENT,
                                    D.NOT_BUILT])
def test_everything_else_is_tried_again_later(status: DeliveryStatus) -> None:
    """AE, silence, a dropped or missing connection, no message yet: pending, backed off."""
    assert decide(status, 1, 100.0, 0.0) == Decision(EntryState.PENDING, 102.5)
    assert decide(status, 3, 100.0, 0.999).next_attempt_at == pytest.approx(100 + 19.99)


def test_backoff_doubles_up_to_the_cap_and_never_gives_up() -> None:
    """5, 10, 20 ... 900 s without jitter; attempt 1000 still gets a time."""
    plain = Backoff(jitter=0.0)
    assert [plain.delay(n, 0.5) for n in range(1, 10)] == [
        5, 10, 20, 40, 80, 160, 320, 640, 900]
    assert plain.delay(1000, 0.0) == 900


def test_an_overnight_outage_costs_at_most_one_cap_after_recovery() -> None:
    """Twelve hours of silence: attempts keep coming, never further apart than the cap."""
    now, attempts, gaps = 0.0, 0, []
    while now < 12 * 3600:
        attempts += 1
        decision = decide(D.TIMEOUT, attempts, now, 0.999)
        assert decision.next_attempt_at is not None
        gaps.append(decision.next_attempt_at - now)
        now = decision.next_attempt_at
    assert max(gaps) <= 900 and attempts > 40


@given(st.integers(1, 200), st.floats(0, 1, exclude_max=True))
def test_jitter_stays_within_its_band(attempts: int, rand: float) -> None:
    """The delay lies in [d/2, d] for the default jitter of one half."""
    full = min(900.0, 5.0 * 2.0 ** min(attempts - 1, 64))
    assert full / 2 <= Backoff().delay(attempts, rand) <= full


def test_bad_arguments_are_refused() -> None:
    """Nonsense back-off settings and arguments raise instead of scheduling wrongly."""
    for kwargs in ({"first": 0}, {"factor": 0.5}, {"cap": 1}, {"jitter": 1.5}):
        with pytest.raises(ValueError):
            Backoff(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Backoff().delay(0, 0.1)
    with pytest.raises(ValueError):
        Backoff().delay(1, 1.0)


def test_control_id_is_stable_and_fits_msh10() -> None:
    """The same version always gets the same MSH-10, at most 20 characters."""
    assert control_id_for(7) == control_id_for(7) == "LG7"
    assert len(control_id_for(10**18 - 1)) == 20
    with pytest.raises(ValueError):
        control_id_for(0)
