"""Writing each payload as a file in a directory, for an HIS that polls a folder.

Some HIS take results from a shared folder rather than a socket. Each outbox
entry becomes ``<directory>/<control ID>.<ext>``: written to a temporary
name in the same directory, flushed to disk, then renamed, so the HIS never
reads half a file. A file that is already there with the same bytes counts
as delivered (the resend after a crash between the rename and the record);
one with other bytes is refused, never overwritten. What the HIS does with
the file afterwards (moves, deletes) is its business.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool

from lis_gateway.outbound.delivery import DeliveryStatus
from lis_gateway.outbound.sender import DeliveryReport


def write_once(directory: Path, name: str, payload: bytes) -> tuple[DeliveryStatus, str]:
    """Write ``payload`` as ``directory/name`` atomically; what became of it."""
    target = directory / name
    try:
        if target.exists():
            if target.read_bytes() == payload:
                return DeliveryStatus.DELIVERED, f"{name} was already written"
            return DeliveryStatus.REJECTED, f"{name} exists with other content; not overwritten"
        temporary = directory / f".{name}.tmp"
        with open(temporary, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, target)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        return DeliveryStatus.RETRY, f"cannot write {target}: {exc.strerror or exc}"
    return DeliveryStatus.DELIVERED, f"written as {name}"


class FileChannel(Service):
    """Drops one file per entry into a directory.

    Args:
        directory: where files go (must exist and be writable by the gateway).
        extension: file name extension (``hl7``, ``json``).
        build: makes the payload of one outbox entry (raises BuildError).
        reactor: runs the writes in its thread pool.
    """

    def __init__(self, directory: Path, extension: str, build: Callable[..., bytes],
                 reactor: Any) -> None:
        self.directory, self.extension, self.build = directory, extension, build
        self._reactor = reactor

    def reachable(self) -> None:
        """A directory has no connection: the worker's back-off alone decides."""
        return None

    def send(self, payload: bytes, control_id: str) -> Deferred[DeliveryReport]:
        """Write the file in a thread; fires with a report."""
        name = f"{control_id}.{self.extension}"

        def report(got: tuple[DeliveryStatus, str]) -> DeliveryReport:
            return DeliveryReport(control_id, got[0], detail=got[1])

        d: Deferred[tuple[DeliveryStatus, str]] = deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), write_once, self.directory, name,
            payload)
        return d.addCallback(report)

    def stopService(self) -> Deferred[None]:
        """Nothing to close."""
        super().stopService()
        return succeed(None)
