"""The shell every link protocol shares: wire recording, connection state, one timer.

* Every byte goes to the wire recorder before anything else looks at it:
  subclasses call :meth:`RecordedProtocol._record_received` first thing in
  ``dataReceived``, and write only through :meth:`RecordedProtocol._write`,
  which records before ``transport.write``.
* The protocol owns the recorder it is given and closes it when the
  connection is lost, after noting why.
* One ``IDelayedCall`` is re-armed at the core's nearest deadline after every
  turn (aioquic's ``transmit``/``_handle_timer``): subclasses say what the
  deadline is (:meth:`_deadline`) and what firing means (:meth:`_fire_timers`).
* Time always comes from the injected clock; logs carry no patient data.
* :meth:`RecordedProtocol.idle_since` tells a listening link's factory
  (:class:`lis_gateway.adapters.tcp.Evictable`) whether the connection is at
  rest and since when it carried no byte; subclasses say what "at rest" means
  (:meth:`_at_rest`).
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Sequence

import structlog
from structlog.typing import FilteringBoundLogger
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from lis_gateway.wire import Recorder


class DrivenCore(typing.Protocol):
    """What a sans-IO link core offers its shell: bytes to send, events, its next deadline."""

    def data_to_send(self) -> bytes: ...

    def events(self) -> Sequence[typing.Any]: ...

    def get_timer(self) -> float | None: ...


class RecordedProtocol(Protocol):
    """Clock, recorder, logger, connection state and the single re-armed timer.

    Args:
        clock: time source and timer scheduler.
        recorder: the wire recorder of this connection (closed on disconnect).
        log: a logger bound per link (analyzer, transport, session).
        kind: a word for the logs (``astm``, ``mllp``, ``bare``).
    """

    def __init__(self, clock: IReactorTime, recorder: Recorder | None,
                 log: FilteringBoundLogger | None, kind: str) -> None:
        self._clock = clock
        self._recorder = recorder
        self._log: FilteringBoundLogger = (
            log if log is not None else structlog.get_logger("lis_gateway.link"))
        self._kind = kind
        self._closed = False
        self._timer: IDelayedCall | None = None
        self._timer_at: float | None = None
        self._last_activity = 0.0  # when a byte last went either way (or the connection came)
        self._in_turn = False

    @property
    def is_connected(self) -> bool:
        """``True`` between ``connectionMade`` and ``connectionLost``."""
        return self.transport is not None and not self._closed

    def connectionMade(self) -> None:
        """Note the new connection in the recording and the log."""
        self._last_activity = self._clock.seconds()
        if self._recorder is not None:
            self._recorder.note("connected", self._clock.seconds())
        self._log.info("link-connected", protocol=self._kind)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Stop the timer, note the loss, close the recorder this protocol owns.

        Subclasses finish their own cleanup first, then call this.
        """
        self._closed = True
        self._cancel_timer()
        why = reason.getErrorMessage()
        if self._recorder is not None:
            self._recorder.note(f"connection lost: {why}", self._clock.seconds())
            self._recorder.close()
            self._recorder = None
        self._log.info("link-disconnected", reason=why)

    def _record_received(self, data: bytes) -> float:
        """Record received bytes; return the time they arrived."""
        now = self._clock.seconds()
        self._last_activity = now
        if self._recorder is not None:
            self._recorder.record("rx", data, now)
        return now

    def _write(self, data: bytes) -> bool:
        """Record, then write; ``False`` when the connection is gone."""
        if not data:
            return True
        if self.transport is None or self._closed:
            return False
        self._last_activity = self._clock.seconds()
        if self._recorder is not None:
            self._recorder.record("tx", data, self._last_activity)
        self.transport.write(data)
        return True

    def idle_since(self) -> float | None:
        """When a byte last crossed this connection, if it is at rest now; else ``None``.

        A connection at rest may be closed to make room for a new one without
        cutting anything short (see :class:`lis_gateway.adapters.tcp.Evictable`).
        """
        if not self.is_connected or not self._at_rest():
            return None
        return self._last_activity

    def _at_rest(self) -> bool:
        """No message in the middle of its transfer, nothing waiting (default: never)."""
        return False

    def _run_turn(self, core: DrivenCore, route: Callable[[typing.Any], None]) -> None:
        """Drain the core's output and events until it is quiet, then re-arm the timer.

        Re-entrant calls (an event handler feeding the core) return at once: the
        outer turn picks up whatever they would have done.
        """
        if self._in_turn or self.transport is None:
            return
        self._in_turn = True
        try:
            while True:
                self._write(core.data_to_send())
                events = core.events()
                if not events:
                    break
                for event in events:
                    route(event)
        finally:
            self._in_turn = False
        self._rearm()

    # -------------------------------------------------------------- the timer

    def _deadline(self) -> float | None:
        """When the core next needs :meth:`_fire_timers` (None: never)."""
        return None

    def _fire_timers(self, now: float) -> None:
        """Give the core its timer call."""

    def _rearm(self) -> None:
        when = None if self._closed else self._deadline()
        if self._timer is not None and when == self._timer_at:
            return
        self._cancel_timer()
        if when is not None:
            self._timer_at = when
            self._timer = self._clock.callLater(max(0.0, when - self._clock.seconds()),
                                                self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    def _on_timer(self) -> None:
        due, now = self._timer_at, self._clock.seconds()
        self._timer = None
        self._timer_at = None
        # The reactor fired the call, so it is due; max() absorbs float rounding
        # in "now + (when - now)" that would otherwise make the core wait again.
        self._fire_timers(now if due is None else max(now, due))
        self._rearm()
