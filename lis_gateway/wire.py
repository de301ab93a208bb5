"""Wire recordings: every byte in and out of a link, with time and direction.

Written before any repair or decoding, so a field problem can be replayed
exactly. One JSON object per line::

    {"format": "lis-gateway-wire/1", "link": "chem1", "t": 1700000000.0}
    {"t": 1700000000.12, "dir": "rx", "b64": "BQ=="}
    {"t": 1700000000.12, "dir": "tx", "b64": "Bg=="}
    {"t": 1700000001.50, "dir": "note", "text": "connection lost"}

Recordings hold patient data: they are kept under the gateway's state
directory with the same protection as the database, never in logs.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

FORMAT = "lis-gateway-wire/1"


class Recorder(Protocol):
    """Where a link's bytes go before anything else looks at them (files, the store)."""

    def record(self, direction: str, data: bytes, t: float) -> None:
        """Bytes received (``rx``) or sent (``tx``) at time ``t``."""

    def note(self, text: str, t: float) -> None:
        """A transport event (connected, connection lost)."""

    def close(self) -> None:
        """The connection is over; flush and release."""


class TeeRecorder:
    """Gives every call to several recorders (a file and the store, say)."""

    def __init__(self, *recorders: Recorder) -> None:
        self._recorders = recorders

    def record(self, direction: str, data: bytes, t: float) -> None:
        """Record on each."""
        for r in self._recorders:
            r.record(direction, data, t)

    def note(self, text: str, t: float) -> None:
        """Note on each."""
        for r in self._recorders:
            r.note(text, t)

    def close(self) -> None:
        """Close each."""
        for r in self._recorders:
            r.close()


@dataclass(frozen=True, slots=True)
class WireChunk:
    """One recorded chunk: ``direction`` is ``rx``, ``tx`` or ``note``."""

    t: float
    direction: str
    data: bytes
    text: str = ""


class WireRecorder:
    """Appends chunks to a binary stream, one JSON line each, flushed at once."""

    def __init__(self, stream: BinaryIO, link: str, t: float) -> None:
        self._stream = stream
        self._write({"format": FORMAT, "link": link, "t": t})

    def record(self, direction: str, data: bytes, t: float) -> None:
        """Record bytes received (``rx``) or sent (``tx``)."""
        if data:
            self._write({"t": t, "dir": direction, "b64": base64.b64encode(data).decode()})

    def note(self, text: str, t: float) -> None:
        """Record a transport event (connected, connection lost)."""
        self._write({"t": t, "dir": "note", "text": text})

    def close(self) -> None:
        """Close the underlying stream."""
        self._stream.close()

    def _write(self, obj: dict[str, object]) -> None:
        self._stream.write(json.dumps(obj, separators=(",", ":")).encode() + b"\n")
        self._stream.flush()


def open_recorder(directory: Path, link: str, t: float) -> WireRecorder:
    """Create ``<directory>/<link>-<UTC time>-<pid>.wire.jsonl`` and return its recorder."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(t))
    path = directory / f"{link}-{stamp}-{os.getpid()}-{int(t * 1e6) % 1000000:06d}.wire.jsonl"
    return WireRecorder(path.open("ab"), link, t)


def is_recording(head: bytes) -> bool:
    """Does a file starting with ``head`` look like a wire recording?"""
    return head.lstrip().startswith(b'{"format":"' + FORMAT.encode())


def read_recording(data: bytes) -> Iterator[WireChunk]:
    """Parse a wire recording's content.

    Raises:
        ValueError: a line is not valid JSON or lacks its fields (with the line number).
    """
    for lineno, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if "format" in obj:
                continue
            direction = obj["dir"]
            payload = base64.b64decode(obj["b64"]) if "b64" in obj else b""
            yield WireChunk(float(obj["t"]), direction, payload, obj.get("text", ""))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"line {lineno}: not a wire-recording entry ({exc})") from None
