"""The peer venv (``bench/.venv-peers``) for the system benchmarks, and py-spy.

``bench/run.py`` creates the venv with python-astm 0.5.0 (and its shim). The
system benchmarks add, once, each with its own stamp file:

* ``labmcp-astm-lis==0.1.3``, an open Python ASTM receiver with storage
  (JSON lines), run by ``bench/peer_servers.py``;
* ``py-spy`` (for ``bench/system.py --profile``), a profiler that samples the
  running gateway from outside.

Nothing of this goes into the project's ``.venv``. Without network access
pip fails: the error says so and the scenarios needing it are reported as
not measured.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from procs import BenchError

BENCH = Path(__file__).resolve().parent
PEER_VENV = BENCH / ".venv-peers"
PEER_PYTHON = PEER_VENV / "bin" / "python"
LABMCP = "labmcp-astm-lis==0.1.3"
PY_SPY = "py-spy==0.4.3"


def peer_env() -> dict[str, str]:
    """Nothing of ours on the peer's path, and no -O (python-astm checks with assert)."""
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONOPTIMIZE")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _install(requirement: str, stamp: Path) -> None:
    if stamp.exists():
        return
    print(f"   installing {requirement} into {PEER_VENV.name} (first run only) ...", flush=True)
    proc = subprocess.run([str(PEER_PYTHON), "-m", "pip", "--disable-pip-version-check",
                           "install", "-q", requirement], capture_output=True, text=True,
                          env=peer_env(), check=False)
    if proc.returncode:
        raise BenchError(f"pip could not install {requirement} into {PEER_VENV} (offline? "
                         f"the registry unreachable?): {proc.stderr.strip()[-600:]}")
    stamp.write_text(requirement + "\n")


def ensure_ingest_peers() -> Path:
    """The peer interpreter with python-astm and labmcp-astm-lis installed."""
    from run import ensure_peer_venv

    try:
        python = ensure_peer_venv()
    except SystemExit as exc:
        raise BenchError(f"the python-astm peer venv could not be made: {exc}") from None
    _install(LABMCP, PEER_VENV / ".labmcp-astm-lis-0.1.3-installed")
    return python


def start_profile(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy record (collapsed stacks, every thread, 250 Hz) of ``pid`` until stopped."""
    ensure_ingest_peers()
    _install(PY_SPY, PEER_VENV / ".py-spy-installed")
    return subprocess.Popen([str(PEER_VENV / "bin" / "py-spy"), "record", "--pid", str(pid),
                             "--format", "raw", "--rate", "250", "--threads", "--nonblocking",
                             "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop_profile(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT makes py-spy write its output and exit."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
