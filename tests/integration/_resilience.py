"""Parts shared by the crash and outage tests: a resending analyzer, an HIS that keeps
control IDs, the configuration that releases results without people, store readers.

Real parts only: the gateway is ``lis-gateway run --config`` in a subprocess
(:class:`tests.integration.test_crash.Gateway`), the analyzer is the sans-IO
``LinkConnection`` in the instrument role over a blocking socket or a pty
master, and the HIS is an MLLP listener on plain sockets that shares no code
with the gateway.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import select as select_module
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lis_gateway.astm.constants import STX
from lis_gateway.astm.events import MessageSent, SendFailed
from lis_gateway.astm.link import LinkConfig, LinkConnection, Role
from lis_gateway.store import outbox
from lis_gateway.store.engine import make_engine
from lis_gateway.store.repository import results_for_sample

from .test_outbox_delivery import MAPPING

CLI = [sys.executable, "-m", "lis_gateway"]

#: Autoverifies what has no problem and no critical value (the two mandatory rules).
RULES = """version = "crash-1"
[[rules]]
id = "problems"
kind = "always-hold"
[[rules]]
id = "critical"
kind = "critical"
"""


def write_config(tmp: Path, url: str, *, his_port: int | None = None,
                 analyzers: str = "", retry_first: int = 1, retry_cap: int = 1,
                 ack_timeout: int = 2) -> Path:
    """A configuration in ``tmp`` releasing autoverified results to an MLLP HIS.

    Args:
        tmp: where the configuration, the rules and the site mapping table go.
        url: the database URL.
        his_port: the HIS's MLLP port on 127.0.0.1 (None: no destination).
        analyzers: ``[[analyzers]]`` tables (default: ``chem1``, ASTM over TCP,
            unsolicited so the simulator's P record names the patient).
        retry_first, retry_cap, ack_timeout: the destination's retry and ACK timing.
    """
    (tmp / "site-mappings").mkdir(exist_ok=True)
    (tmp / "site-mappings" / "generic-astm.csv").write_text(MAPPING, encoding="utf-8")
    (tmp / "rules.toml").write_text(RULES, encoding="utf-8")
    analyzers = analyzers or """
[[analyzers]]
name = "chem1"
driver = "generic-astm"
transport = "tcp-server"
listen = "127.0.0.1:0"
unsolicited = true
"""
    destination = "" if his_port is None else f"""
[[destinations]]
name = "his"
type = "hl7-mllp"
host = "127.0.0.1"
port = {his_port}
ack_timeout = {ack_timeout}
retry_first = {retry_first}
retry_cap = {retry_cap}
hospital = "BV_TEST"
"""
    config = tmp / "lis-gateway.toml"
    config.write_text(f"""
[database]
url = "{url}"
[mappings]
directories = ["{tmp / 'site-mappings'}"]
[rules]
file = "{tmp / 'rules.toml'}"
[lifecycle]
require_approval = false
autoverified_skips_technician = true
release_autoverified = true
{analyzers}
{destination}
""", encoding="utf-8")
    return config


# ------------------------------------------------------------------ the analyzer


@dataclass
class Exchange:
    """What one session of :func:`send_messages` saw.

    Attributes:
        acked: messages whose last frame the gateway acknowledged, in order.
        acked_at: when each was acknowledged (``time.monotonic()``).
        failed: messages handed back by the link (refused six times, timed out).
        received: every byte the gateway sent.
        frames: frames written.
        closed: the gateway went away (connection closed or reset, pty hung up).
    """

    acked: list[bytes] = field(default_factory=list)
    acked_at: list[float] = field(default_factory=list)
    failed: list[bytes] = field(default_factory=list)
    received: bytearray = field(default_factory=bytearray)
    frames: int = 0
    closed: bool = False


class SocketLine:
    """A blocking TCP socket as the analyzer's line."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self, wait: float) -> bytes | None:
        """Bytes within ``wait`` seconds (b"" if none); None when the peer is gone."""
        self.sock.settimeout(max(wait, 0.001))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return b""
        return data or None


class PtyLine:
    """A pseudo-terminal master as the analyzer's serial line."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def read(self, wait: float) -> bytes | None:
        ready, _, _ = select_module.select([self.fd], [], [], max(wait, 0.001))
        if not ready:
            return b""
        try:
            return os.read(self.fd, 65536)
        except OSError:  # EIO: no process has the slave open
            return b""


def send_messages(line: SocketLine | PtyLine, messages: list[bytes], *, timeout: float,
                  config: LinkConfig | None = None,
                  on_frame: Callable[[int], None] | None = None) -> Exchange:
    """Send ``messages`` in the instrument role until each is acknowledged or handed back.

    Args:
        line: the connection to the gateway.
        messages: E1394 texts, distinct.
        timeout: overall limit (an AssertionError past it).
        config: the instrument's link settings (default: E1381 timers, 0.5 s busy retry).
        on_frame: called with the number of frames written so far after each write.

    Returns:
        The exchange; it ends early when the gateway goes away.
    """
    link = LinkConnection(config or LinkConfig(role=Role.INSTRUMENT, busy_retry_delay=0.5))
    for message in messages:
        link.send(message, time.monotonic())
    result = Exchange()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for event in link.events():  # before writing: a write may find the peer gone
                if isinstance(event, MessageSent):
                    result.acked.append(event.message)
                    result.acked_at.append(time.monotonic())
                elif isinstance(event, SendFailed):
                    result.failed.extend(event.messages)
            if len(result.acked) + len(result.failed) == len(messages):
                line.write(link.data_to_send())  # the closing EOT
                return result
            out = link.data_to_send()
            if out:
                line.write(out)
                result.frames += out.count(STX)
                if on_frame is not None:
                    on_frame(result.frames)
            timer = link.get_timer()
            now = time.monotonic()
            data = line.read(0.2 if timer is None else min(0.2, timer - now))
            now = time.monotonic()
            if data is None:
                result.closed = True
                return result
            if data:
                result.received += data
                link.receive_data(data, now)
            link.handle_timer(now)
    except (ConnectionResetError, BrokenPipeError):
        result.closed = True
        return result
    raise AssertionError(f"the exchange did not end within {timeout} s")


# ------------------------------------------------------------------ the HIS


def control_id(message: bytes) -> str:
    """MSH-10 of an HL7 message."""
    return message.split(b"\r", 1)[0].split(b"|")[9].decode()


def sample_and_test(message: bytes) -> tuple[str, str]:
    """(OBR-3 filler number, OBX-3 identifier) of a one-result ORU^R01."""
    segments = {seg.split(b"|", 1)[0]: seg.split(b"|") for seg in message.split(b"\r") if seg}
    return (segments[b"OBR"][3].split(b"^")[0].decode(),
            segments[b"OBX"][3].split(b"^")[0].decode())


def outbox_entries(url: str) -> list[outbox.OutboxEntry]:
    """The outbox of the store at ``url``, read with an engine of its own."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            return outbox.entries(conn)
    finally:
        engine.dispose()


def in_sample_order(received: list[bytes], url: str) -> bool:
    """Each sample's control IDs first reached the HIS in the order of their entries."""
    order = {e.control_id: e.id for e in outbox_entries(url)}
    per_sample: dict[str, list[str]] = defaultdict(list)
    for message in received:
        sample, _test = sample_and_test(message)
        if control_id(message) not in per_sample[sample]:
            per_sample[sample].append(control_id(message))
    return all([order[c] for c in ids] == sorted(order[c] for c in ids)
               for ids in per_sample.values())


def free_port() -> int:
    """A port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------ the store


def stored_tests(url: str, samples: list[str]) -> dict[str, list[str]]:
    """The stored test codes of each sample (every result row, so a double shows)."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            return {s: [r.test_code for r in results_for_sample(conn, s)] for s in samples}
    finally:
        engine.dispose()


def cli_json(config: Path, *args: str) -> list[dict[str, object]]:
    """Run ``lis-gateway ARGS --config CONFIG --json``; one dict per output line."""
    done = subprocess.run([*CLI, *args, "--config", str(config), "--json"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll ``check`` until it holds (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)  # polling, not asserting on speed
    raise AssertionError(f"{what} did not happen within {timeout} s")


# ------------------------------------------------------------------ PostgreSQL


class PgCluster:
    """A throwaway PostgreSQL cluster (Debian's initdb and pg_ctl) that can be stopped and
    started again; as the ``postgres`` system user when we are root (initdb refuses root).

    Same approach as ``tests/store/conftest.py``: a temporary directory, a free port on
    127.0.0.1, the Unix socket in that directory, trust authentication.
    """

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        initdb = found[-1] if found else shutil.which("initdb")
        assert initdb, "PostgreSQL server binaries not found: `make test` installs them"
        self.bindir = Path(initdb).parent
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = "postgres"
            try:
                pwd.getpwnam(self.user)
            except KeyError:
                self._run(["useradd", "--system", "--no-create-home", "--shell",
                           "/bin/false", self.user], as_user=False)
        self.base = Path(tempfile.mkdtemp(prefix="lis-pg-outage-"))
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        self.base.chmod(0o700)
        self.data = self.base / "data"
        self.port = free_port()
        self._run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                   "-A", "trust", "-E", "UTF8", "--no-sync"])
        self.start()

    @property
    def admin_url(self) -> str:
        """The ``postgres`` database, for creating others."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, argv: list[str], *, as_user: bool = True) -> None:
        if as_user and self.user is not None:
            argv = ["runuser", "-u", self.user, "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"{' '.join(argv)}: {done.stdout}\n{done.stderr}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        opts = (f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c full_page_writes=off")
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l",
                   str(self.base / "log"), "-w", "-t", "60", "start"])

    def stop(self) -> None:
        """Stop the server (fast shutdown: connections are cut, as in an outage)."""
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                   "stop"])

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        from sqlalchemy import text

        admin = make_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        return self.admin_url.rsplit("/", 1)[0] + f"/{name}"

    def remove(self) -> None:
        """Stop (if running) and delete the cluster."""
        argv = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                "stop"]
        if self.user is not None:
            argv = ["runuser", "-u", self.user, "--", *argv]
        subprocess.run(argv, capture_output=True, timeout=60, check=False)
        shutil.rmtree(self.base, ignore_errors=True)
