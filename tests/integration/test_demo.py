"""``lis-gateway demo`` as a user runs it: one process, real ports, a real pty, Ctrl-C.

The demo is started with every port 0 (the banner names the ones bound) and
a state directory of the test's own. It must order samples, receive all
three analyzers' results, release the blood counts to the simulated HIS
(AA), serve the web app, and stop cleanly on SIGINT, leaving a store in
which the released results are delivered and the chemistry waits for people.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from sqlalchemy import create_engine, select

from lis_gateway.store import schema as s

TIMEOUT = 60.0


class Output:
    """Collects a process's standard output in a thread (the test polls it)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.text = ""
        self._lock = threading.Lock()
        assert proc.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._lock:
                self.text += line

    def wait_for(self, pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            with self._lock:
                found = re.search(pattern, self.text)
            if found:
                return found
            time.sleep(0.1)  # polling the output, not asserting on speed
        raise AssertionError(f"no {pattern!r} in the demo's output:\n{self.text}")


def test_make_demo_brings_the_whole_system_up_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lis_gateway", "demo", "--state-dir", str(state),
         "--web-port", "0", "--astm-port", "0", "--hl7-port", "0", "--orders-port", "0",
         "--his-port", "0", "--interval", "0.3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out = Output(proc)
        web = int(out.wait_for(r"web app: +http://127\.0\.0\.1:(\d+)/").group(1))
        assert "password:       demo-lis-2026" in out.text
        assert "ktv (technician), bacsi (doctor), admin (admin)" in out.text
        chem = out.wait_for(r"-> order (C\d+) \(GLU CREA UREA ALT NA K\): AA").group(1)
        out.wait_for(rf"chem-serial +-> sample {chem}: 6 results acknowledged")
        heme = out.wait_for(r"heme-tcp +-> sample (H\d+): 8 results acknowledged").group(1)
        count = out.wait_for(r"bc-hl7 +-> sample (B\d+): 15 results acknowledged").group(1)
        out.wait_for(rf"HIS +<- results of {heme}: \d+ ORU\^R01 \(\d+ OBX\), answered AA")
        out.wait_for(rf"HIS +<- results of {count}: \d+ ORU\^R01 \(\d+ OBX\), answered AA")
        with urllib.request.urlopen(f"http://127.0.0.1:{web}/login", timeout=10) as page:
            assert page.status == 200
            assert "Đăng nhập" in page.read().decode("utf-8")
        with urllib.request.urlopen(f"http://127.0.0.1:{web}/readyz", timeout=10) as ready:
            assert ready.status == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read() if proc.stderr is not None else ""
    assert "Traceback" not in stderr, stderr

    engine = create_engine(f"sqlite:///{state / 'lis.db'}")
    with engine.connect() as conn:
        users = set(conn.execute(select(s.users.c.username)).scalars())
        samples = set(conn.execute(select(s.samples.c.accession)).scalars())
        delivered = set(conn.execute(
            select(s.outbox.c.sample_id).where(s.outbox.c.state == "delivered")).scalars())
        delivered_samples = set(conn.execute(
            select(s.samples.c.accession).where(s.samples.c.id.in_(delivered))).scalars())
    engine.dispose()
    assert users == {"ktv", "bacsi", "admin"}
    assert {chem, heme, count} <= samples
    assert {heme, count} <= delivered_samples
    assert chem not in delivered_samples  # chemistry waits for a technician and a doctor
    assert (state / "lis-gateway.toml").is_file() and any((state / "wire").iterdir())
