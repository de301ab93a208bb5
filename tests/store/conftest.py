"""Store fixtures: every store test runs on SQLite (WAL, file) and PostgreSQL.

PostgreSQL is a throwaway cluster started once per session with initdb and
pg_ctl (Debian's ``postgresql`` package; ``make test`` installs it). It runs
as the ``postgres`` system user when we are root (initdb refuses root), in a
temporary directory, listening on a free port on 127.0.0.1 with its Unix
socket in that directory. If it cannot be started the tests fail; they are
never skipped. Each test gets a fresh database migrated to head.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from lis_gateway.store.engine import make_engine
from lis_gateway.store.migrations import migrate

_counter = itertools.count()


def _pg_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[4]) if Path(p).parts[4].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) not found: run `make test`, "
                "which installs the Debian `postgresql` package, or apt-get install postgresql",
                pytrace=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_user(user: str | None, argv: list[str]) -> list[str]:
    return argv if user is None else ["runuser", "-u", user, "--", *argv]


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        pytest.fail(f"PostgreSQL {what} failed ({proc.returncode}): {' '.join(argv)}\n"
                    f"{proc.stdout}\n{proc.stderr}", pytrace=False)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A running throwaway PostgreSQL; yields the admin URL (database ``postgres``)."""
    bindir = _pg_bindir()
    user: str | None = None
    if os.geteuid() == 0:
        user = "postgres"
        try:
            pwd.getpwnam(user)
        except KeyError:
            _run(["useradd", "--system", "--no-create-home", "--shell", "/bin/false", user],
                 "user creation")
    base = Path(tempfile.mkdtemp(prefix="lis-pg-"))
    data = base / "data"
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    base.chmod(0o700)
    _run(_as_user(user, [str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                         "-A", "trust", "-E", "UTF8", "--no-sync"]), "initdb")
    port = _free_port()
    opts = (f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c synchronous_commit=off")
    _run(_as_user(user, [str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l",
                         str(base / "log"), "-w", "-t", "60", "start"]), "start")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_user(user, [str(bindir / "pg_ctl"), "-D", str(data), "-m",
                                       "immediate", "-w", "stop"]),
                       capture_output=True, timeout=60, check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database URL on each backend (not yet migrated)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'lis.db'}"
        return
    admin_url = request.getfixturevalue("pg_server")
    name = f"lis_test_{os.getpid()}_{next(_counter)}"
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a database migrated to head."""
    eng = make_engine(db_url)
    migrate(db_url, engine=eng)
    try:
        yield eng
    finally:
        eng.dispose()
