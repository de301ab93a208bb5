"""Results by lifecycle state, sampled from the store into ``lis_gateway_results``.

The states live in the store (each result's latest event), so a gauge is
refreshed every ``interval`` seconds by one query
(:func:`lis_gateway.store.judgements.state_counts`) rather than counted at
each transition: a restart, a second process (the CLI validating) or a
migration cannot make it drift.
"""

from __future__ import annotations

from typing import Any

import structlog
from structlog.typing import FilteringBoundLogger
from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from lis_gateway import metrics
from lis_gateway.ingest import RunsWork
from lis_gateway.lifecycle import ResultState
from lis_gateway.store.judgements import state_counts

#: Seconds between samples.
INTERVAL = 30.0


class StateGauge(Service):
    """Samples the results' states into :data:`lis_gateway.metrics.RESULTS`.

    Args:
        pool: runs the query off the reactor thread.
        clock: schedules the samples.
        interval: seconds between samples.
        log: a logger.
    """

    def __init__(self, pool: RunsWork, clock: IReactorTime, *, interval: float = INTERVAL,
                 log: FilteringBoundLogger | None = None) -> None:
        self.setName("results-by-state")
        self._pool = pool
        self._clock = clock
        self.interval = interval
        self._log: FilteringBoundLogger = (
            log if log is not None else structlog.get_logger("lis_gateway.metrics"))
        self._loop: LoopingCall | None = None

    def startService(self) -> None:
        """Sample now and every ``interval`` seconds."""
        super().startService()
        loop = LoopingCall(self.sample)
        loop.clock = self._clock
        loop.start(self.interval, now=True)
        self._loop = loop

    def stopService(self) -> Any:
        """Stop sampling."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        return super().stopService()

    def sample(self) -> Any:
        """One sample (a failed query is logged; the gauge keeps its last values)."""
        return self._pool.run(state_counts).addCallbacks(self._set, self._failed)

    def _set(self, counts: dict[ResultState, int]) -> None:
        for state, count in counts.items():
            metrics.RESULTS.labels(state.value).set(count)

    def _failed(self, failure: Failure) -> None:
        self._log.warning("results-by-state-failed",
                          kind=failure.type.__name__ if failure.type else "")
