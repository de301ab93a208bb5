"""Processes the system benchmarks start: the gateway, a throwaway PostgreSQL, peers.

Everything here reads ``/proc`` for what it reports (CPU time, RSS), and
every process is started by us and stopped by its own PID.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
STARTUP_TIMEOUT = 60.0
#: Where the gateway under test is imported from (``--source``; None: this checkout).
#: Lets a run measure a clean export of a commit while the working tree is being edited.
SOURCE: Path | None = None


def gateway_env() -> tuple[Path, dict[str, str] | None]:
    """The working directory and environment of a ``python -m lis_gateway`` child."""
    if SOURCE is None:
        return ROOT, None
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SOURCE), env.get("PYTHONPATH")]))
    return SOURCE, env


class BenchError(RuntimeError):
    """A benchmark could not run; the message says why (printed and kept in the JSON)."""


# ------------------------------------------------------------------ /proc

def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size now (VmRSS)."""
    return _status_kib(pid, "VmRSS") * 1024


def peak_rss_bytes(pid: int) -> int:
    """Highest resident set size so far (VmHWM)."""
    return _status_kib(pid, "VmHWM") * 1024


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise BenchError(f"no {key} for process {pid}")


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (PostgreSQL's backends and workers)."""
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue
        if int(text.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(stat.split("/")[2]))
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its living children (processes that exited are lost)."""
    total = 0.0
    for p in [pid, *children_of(pid)]:
        try:
            total += cpu_seconds(p)
        except OSError:
            continue
    return total


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------ the gateway

@dataclass
class Analyzer:
    """One ``[[analyzers]]`` entry of the generated configuration."""

    name: str
    transport: str = "tcp-server"
    device: str = ""
    unsolicited: bool = False

    def toml(self) -> str:
        lines = ["[[analyzers]]", f'name = "{self.name}"', 'driver = "generic-astm"',
                 f'transport = "{self.transport}"']
        if self.transport == "tcp-server":
            lines.append('listen = "127.0.0.1:0"')
        else:
            lines.append(f'device = "{self.device}"')
        if self.unsolicited:
            lines.append("unsolicited = true")
        return "\n".join(lines)


@dataclass
class GatewaySetup:
    """What the generated configuration holds."""

    database_url: str
    analyzers: Sequence[Analyzer]
    his_port: int | None = None  # an hl7-mllp destination on 127.0.0.1
    release_autoverified: bool = False
    log_level: str = "info"
    extra: str = ""

    def toml(self, directory: Path) -> str:
        parts = [f'[database]\nurl = "{self.database_url}"',
                 '[mappings]\ndirectories = ["mappings"]',
                 '[rules]\nfile = "rules.toml"',
                 f'[logging]\nformat = "json"\nlevel = "{self.log_level}"']
        if self.release_autoverified:
            parts.append("[lifecycle]\nrequire_approval = false\n"
                         "autoverified_skips_technician = true\nrelease_autoverified = true")
        if self.his_port is not None:
            parts.append('[[destinations]]\nname = "his"\ntype = "hl7-mllp"\n'
                         f'host = "127.0.0.1"\nport = {self.his_port}\nhospital = "BV_BENCH"\n'
                         "ack_timeout = 10\nretry_first = 1\nretry_cap = 5")
        if self.extra:
            parts.append(self.extra)
        parts += [a.toml() for a in self.analyzers]
        del directory
        return "\n\n".join(parts) + "\n"


LISTENING = re.compile(r"lis-gateway: (\S+) listening on 127\.0\.0\.1:(\d+)")
OPENED = re.compile(r"lis-gateway: (\S+) opened (\S+)")


class Gateway:
    """``lis-gateway run --config FILE`` in a subprocess; its output goes to a file.

    Args:
        setup: the configuration to write.
        directory: where the configuration, mapping table, rules and log go.
        mapping_csv, rules_toml: the files the configuration names.
    """

    def __init__(self, setup: GatewaySetup, directory: Path, mapping_csv: str,
                 rules_toml: str, *, check: bool = True) -> None:
        self.setup = setup
        # ``check-config`` first (False: the same setup was checked already; it loads the
        # mapping table once per analyzer, ~55 ms each, 14 s for 256 analyzers)
        self.check = check
        self.directory = directory
        (directory / "mappings").mkdir(parents=True, exist_ok=True)
        (directory / "mappings" / "generic-astm.csv").write_text(mapping_csv, "utf-8")
        (directory / "rules.toml").write_text(rules_toml, "utf-8")
        self.config = directory / "lis-gateway.toml"
        self.config.write_text(setup.toml(directory), "utf-8")
        self.log = directory / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}
        self.startup_seconds = 0.0

    def start(self) -> None:
        """Start it and wait until every analyzer listens (or its device is open)."""
        cwd, env = gateway_env()
        check = subprocess.run([sys.executable, "-m", "lis_gateway", "check-config",
                                str(self.config)], capture_output=True, text=True,
                               cwd=cwd, env=env, check=False) if self.check else None
        if check is not None and check.returncode != 0:
            raise BenchError("the generated configuration is refused:\n" + check.stdout
                             + check.stderr)
        out = self.log.open("ab")
        offset = out.tell()  # this run's status lines only (a log may be appended to)
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lis_gateway", "run", "--config", str(self.config)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        out.close()
        want = {a.name for a in self.setup.analyzers}
        ready: set[str] = set()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            text = self.log.read_bytes()[offset:].decode("utf-8", "replace")
            for name, port in LISTENING.findall(text):
                self.ports[name] = int(port)
                ready.add(name)
            ready |= {name for name, _dev in OPENED.findall(text)}
            if ready >= want:
                self.startup_seconds = time.perf_counter() - started
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)  # polling a file for the status lines
        self.stop()
        raise BenchError("the gateway did not start; its log:\n" + self.log.read_text(
            "utf-8", "replace")[-4000:])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> int | None:
        """SIGTERM (SIGKILL after 30 s); the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        return self.proc.returncode

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text("utf-8", "replace")[-chars:]


# ------------------------------------------------------------------ PostgreSQL

def pg_bindir() -> Path | None:
    """Debian's PostgreSQL server binaries (``make postgresql`` installs them)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[4]) if Path(p).parts[4].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class PgCluster:
    """A throwaway PostgreSQL cluster as ``tests/store/conftest.py`` starts one,
    but durable like a production one: ``fsync``, ``synchronous_commit`` and
    ``full_page_writes`` keep their defaults (on)."""

    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="lis-bench-pg-")))
    port: int = 0
    user: str | None = None
    bindir: Path | None = None
    pid: int = 0

    def start(self) -> str:
        """Start it; the admin URL (database ``postgres``)."""
        self.bindir = pg_bindir()
        if self.bindir is None:
            raise BenchError("PostgreSQL server binaries (initdb, pg_ctl) not found: "
                             "run `make postgresql` (Debian's postgresql package)")
        if os.geteuid() == 0:
            self.user = "postgres"
            try:
                pwd.getpwnam(self.user)
            except KeyError:
                self._run(["useradd", "--system", "--no-create-home", "--shell",
                           "/bin/false", self.user], "user creation", as_user=False)
            entry = pwd.getpwnam(self.user)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        self.base.chmod(0o700)
        data = self.base / "data"
        self._run([str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A",
                   "trust", "-E", "UTF8"], "initdb")
        self.port = free_port()
        opts = (f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
                "-c max_connections=200")
        self._run([str(self.bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l",
                   str(self.base / "log"), "-w", "-t", "60", "start"], "start")
        self.pid = int((data / "postmaster.pid").read_text().split()[0])
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        assert self.bindir is not None
        self._run([str(self.bindir / "psql"), "-h", str(self.base), "-p", str(self.port),
                   "-U", "postgres", "-c", f'CREATE DATABASE "{name}"'], "create database")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def version(self) -> str:
        assert self.bindir is not None
        return subprocess.run([str(self.bindir / "postgres"), "--version"],
                              capture_output=True, text=True, check=False).stdout.strip()

    def stop(self) -> None:
        if self.bindir is not None and (self.base / "data" / "postmaster.pid").exists():
            subprocess.run(self._as_user([str(self.bindir / "pg_ctl"), "-D",
                                          str(self.base / "data"), "-m", "fast", "-w",
                                          "stop"]),
                           capture_output=True, timeout=60, check=False)
        shutil.rmtree(self.base, ignore_errors=True)

    def _as_user(self, argv: list[str]) -> list[str]:
        return argv if self.user is None else ["runuser", "-u", self.user, "--", *argv]

    def _run(self, argv: list[str], what: str, *, as_user: bool = True) -> None:
        cmd = self._as_user(argv) if as_user else argv
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise BenchError(f"PostgreSQL {what} failed ({proc.returncode}): "
                             f"{proc.stdout}{proc.stderr}")
