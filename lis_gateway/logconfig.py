"""The single structlog configuration of lis-gateway.

JSON lines in production (journald keeps them), a console renderer in
development; both go to standard error so that standard output stays free
for command output (``receive`` prints result rows there).

Logs never carry patient data. Adapters log only event kinds, offsets,
lengths and reasons; :func:`drop_denied_keys` removes the usual suspects as
defence in depth, so a careless ``log.info("x", name=...)`` loses the value
instead of leaking it. Twisted's own log events are forwarded into the same
stream by :func:`forward_twisted_logs` (structlog's Twisted module only
supports Twisted's legacy logging API).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger
from twisted.logger import ILogObserver, LogEvent, LogLevel, formatEvent, globalLogBeginner
from twisted.python.failure import Failure
from zope.interface import provider

#: Keys dropped from every log event: they could carry patient or record data.
DENIED_KEYS = frozenset({"name", "patient", "birthdate", "dob", "text", "record", "raw",
                         "data", "value"})

_TWISTED_LEVELS = {
    LogLevel.debug: "debug",
    LogLevel.info: "info",
    LogLevel.warn: "warning",
    LogLevel.error: "error",
    LogLevel.critical: "critical",
}


def drop_denied_keys(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Remove every key in :data:`DENIED_KEYS` (structlog processor)."""
    for key in DENIED_KEYS.intersection(event_dict):
        del event_dict[key]
    return event_dict


def processors(*, json: bool) -> list[Processor]:
    """The processor chain: level, UTC timestamp, redaction, then the renderer."""
    chain: list[Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        drop_denied_keys,
        structlog.processors.format_exc_info,
    ]
    if json:
        chain.append(structlog.processors.JSONRenderer(sort_keys=False))
    else:
        chain.append(structlog.dev.ConsoleRenderer(colors=False))
    return chain


def configure(json: bool, level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog for the whole process (call once, at start-up).

    Args:
        json: JSON lines (production) instead of the console renderer.
        level: the lowest level logged (``debug``, ``info``, ``warning``, ``error``).
        stream: where log lines go; standard error when None.

    Raises:
        ValueError: ``level`` is not a logging level name.
    """
    number = logging.getLevelNamesMapping().get(level.upper())
    if number is None:
        raise ValueError(f"unknown log level {level!r}")
    structlog.configure(
        processors=processors(json=json),
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=True,
    )


def _frames(failure: Failure) -> str:
    """A failure's stack as "file:line in function" lines, without its message."""
    return "\n".join(f"{path}:{line} in {func}" for func, path, line, *_ in failure.frames)


@provider(ILogObserver)
def twisted_observer(event: LogEvent) -> None:
    """Forward one Twisted log event to structlog (exception messages left out)."""
    level = _TWISTED_LEVELS.get(event.get("log_level", LogLevel.info), "info")
    fields: MutableMapping[str, Any] = {"source": "twisted",
                                        "namespace": event.get("log_namespace", "")}
    failure = event.get("log_failure")
    if isinstance(failure, Failure):
        fields["error_type"] = failure.type.__qualname__ if failure.type else "unknown"
        fields["stack"] = _frames(failure)
    log = structlog.get_logger("twisted")
    getattr(log, level)(formatEvent(event) or "twisted-event", **fields)


_forwarding: list[bool] = []


def forward_twisted_logs() -> None:
    """Send Twisted's log events through structlog from now on (later calls do nothing)."""
    if _forwarding:
        return
    _forwarding.append(True)
    globalLogBeginner.beginLoggingTo([twisted_observer], redirectStandardIO=False)
