"""``lis-gateway simulate`` against the gateway's own receiving side, end to end.

Real loopback TCP and a real pseudo-terminal; the gateway runs as ``lis-gateway
receive`` (results printed as JSON lines) or ``lis-gateway run`` (stored in
SQLite) in a subprocess. Seeds are fixed, so each run injects the same faults.
"""

from __future__ import annotations

import argparse
import io
import json
import queue
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from lis_gateway.cli import build_parser
from lis_gateway.sim import astm_styles, hl7_styles, replay
from lis_gateway.sim.cli import UsageError, check
from tests.integration._harness import GatewayProcess

from ._processes import TIMEOUT, simulate

ROCHE_CODES = [a.code for a in astm_styles.ROCHE_PANEL]
SYSMEX_CODES = [a.code for a in astm_styles.SYSMEX_PANEL]
BS_CODES = [a.code for a in hl7_styles.MINDRAY_BS_PANEL]


def _tests_by_sample(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for row in rows:
        out.setdefault(row["sample_id"], []).append(row["test"])
    return out


def _no_more_rows(gateway: GatewayProcess) -> None:
    """The gateway prints a message's rows before its ACK: after the simulator ends, none is
    still on its way."""
    try:
        extra = gateway.stdout.get(timeout=0.3)
    except queue.Empty:
        return
    raise AssertionError(f"a row more than expected: {extra}")


def _faults(lines: list[dict[str, Any]]) -> Counter[str]:
    seen: Counter[str] = Counter()
    for line in lines:
        seen.update(line["faults"])
    return seen


@pytest.mark.integration
def test_astm_tcp_with_bad_checksums_garbage_and_drops(tmp_path: Path) -> None:
    """cobas c 311 over TCP: every fault injected and survived, each sample arrives once
    with its ten codes; the simulator's own recording decodes to the same samples."""
    gateway = GatewayProcess(["--tcp-listen", "127.0.0.1:0", "--driver", "roche-cobas",
                              "--name", "chem1"])
    try:
        port = gateway.wait_for_status(r"chem1 listening on 127\.0\.0\.1:(\d+)").group(1)
        sim = simulate(["--driver", "roche-cobas", "--connect", f"127.0.0.1:{port}",
                        "--count", "4", "--interval", "0.1", "--seed", "2", "--no-queries",
                        "--first-sample", "C0001", "--reply-timeout", "1",
                        "--fault", "bad-checksum:0.3", "--fault", "garbage:0.3",
                        "--fault", "drop:0.08", "--record-dir", str(tmp_path / "sim")])
        status, lines, err = sim.finish()
        assert status == 0, err
        assert [(x["kind"], x["sample_id"], x["outcome"]) for x in lines] == [
            ("results", f"C000{n}", "acknowledged") for n in range(1, 5)]
        assert set(_faults(lines)) == {"bad-checksum", "garbage", "drop"}, lines
        assert any(x["tries"] > 1 for x in lines)  # a drop made the analyzer send again
        rows = gateway.rows(4 * len(ROCHE_CODES))
        _no_more_rows(gateway)
    finally:
        gateway.stop()
    assert _tests_by_sample(rows) == {f"C000{n}": ROCHE_CODES for n in range(1, 5)}
    assert {r["link"] for r in rows} == {"chem1"}

    args = build_parser().parse_args(["replay", "--dry-run", "--driver", "roche-cobas",
                                      "--direction", "tx",
                                      *map(str, (tmp_path / "sim").glob("*.wire.jsonl"))])
    out, err_text = io.StringIO(), io.StringIO()
    assert replay.run(args, out, err_text) == 0
    decoded = [json.loads(line) for line in out.getvalue().splitlines()]
    assert _tests_by_sample(decoded) == _tests_by_sample(rows)


class _RunGateway:
    """``lis-gateway run --config FILE`` in a subprocess, its output in a file."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        self._out = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "lis_gateway", "--log-format", "json", "run",
             "--config", str(config)],
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT)

    def port(self, name: str) -> int:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            match = re.search(name + r" listening on 127\.0\.0\.1:(\d+)",
                              self.log.read_text("utf-8", "replace"))
            if match:
                return int(match.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)  # polling a file, not asserting on speed
        raise AssertionError("the gateway did not start:\n" + self.log.read_text("utf-8"))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=15)
        self._out.close()
        return self.proc.returncode


@pytest.mark.integration
def test_lost_acks_are_sent_again_and_stored_once(tmp_path: Path) -> None:
    """Sysmex XN (one frame per message) against ``lis-gateway run``: the lost ACKs make the
    analyzer send whole messages again, the store keeps each result once; the host queries
    are answered from the store ("no order", L|1|I)."""
    config = tmp_path / "lis-gateway.toml"
    config.write_text(f"""
[database]
url = "sqlite:///{tmp_path / 'lis.db'}"

[[analyzers]]
name = "heme1"
driver = "sysmex-xn"
transport = "tcp-server"
listen = "127.0.0.1:0"
""", encoding="utf-8")
    gateway = _RunGateway(config, tmp_path / "gateway.log")
    try:
        port = gateway.port("heme1")
        sim = simulate(["--driver", "sysmex-xn", "--connect", f"127.0.0.1:{port}",
                        "--count", "3", "--interval", "0.1", "--seed", "8",
                        "--first-sample", "H0001", "--reply-timeout", "2",
                        "--answer-timeout", "5", "--fault", "lost-ack:0.5"])
        status, lines, err = sim.finish()
    finally:
        assert gateway.stop() == 0, gateway.log.read_text("utf-8")
    assert status == 0, err
    queries = [x for x in lines if x["kind"] == "query"]
    results = [x for x in lines if x["kind"] == "results"]
    assert [(x["outcome"], x["detail"]) for x in queries] == [
        ("answered", "no order (L|1|I)")] * 3
    assert [x["outcome"] for x in results] == ["acknowledged"] * 3
    assert _faults(lines)["lost-ack"] >= 1
    assert any(x["tries"] > 1 for x in results), lines  # a message went twice
    out = subprocess.run([sys.executable, "-m", "lis_gateway", "results", "--config",
                          str(config), "--json"], capture_output=True, text=True,
                         timeout=TIMEOUT, check=True).stdout
    stored = [json.loads(line) for line in out.splitlines()]
    assert _tests_by_sample(stored) == {f"H000{n}": SYSMEX_CODES for n in (1, 2, 3)}


@pytest.mark.integration
def test_hl7_analyzer_listening_with_queries_and_faults() -> None:
    """Mindray BS as the TCP server (the gateway connects): QRY^Q02 answered NF, results
    decoded with their codes through lost ACKs, drops and garbage."""
    sim = simulate(["--driver", "mindray-bs", "--listen", "127.0.0.1:0", "--count", "3",
                    "--interval", "0.1", "--seed", "1", "--first-sample", "B0001",
                    "--ack-timeout", "2", "--answer-timeout", "3",
                    "--fault", "lost-ack:0.2", "--fault", "drop:0.1",
                    "--fault", "garbage:0.3"])
    port = sim.wait_for(r"listening on 127\.0\.0\.1:(\d+)").group(1)
    gateway = GatewayProcess(["--tcp-connect", f"127.0.0.1:{port}", "--driver", "mindray-bs",
                              "--name", "bs1"])
    try:
        status, lines, err = sim.finish()
        assert status == 0, err
        results = [x for x in lines if x["kind"] == "results"]
        queries = [x for x in lines if x["kind"] == "query"]
        assert [x["outcome"] for x in results] == ["acknowledged"] * 3
        assert {(x["outcome"], x["detail"]) for x in queries} == {
            ("answered", "no order (QAK NF)")}
        seen = _faults(lines)
        assert set(seen) == {"lost-ack", "drop", "garbage"}, lines
        # a lost ACK makes the analyzer send the same message again: rows may repeat
        resent = sum(x["tries"] - 1 for x in results)
        rows = gateway.rows(3 * len(BS_CODES))
        while True:
            try:
                rows.append(json.loads(gateway.stdout.get(timeout=0.3)))
            except queue.Empty:
                break
    finally:
        gateway.stop()
    by_sample = _tests_by_sample(rows)
    assert set(by_sample) == {"B0001", "B0002", "B0003"}
    for tests in by_sample.values():
        assert len(tests) % len(BS_CODES) == 0 and set(tests) == set(BS_CODES)
    assert len(rows) <= (3 + resent) * len(BS_CODES)


@pytest.mark.integration
def test_serial_on_a_pty_with_bad_checksums_cut_frames_and_noise() -> None:
    """Roche over a pseudo-terminal the gateway opens as a serial port: checksum errors,
    a frame cut short (a pulled cable) and noise; each sample arrives once."""
    sim = simulate(["--driver", "roche-cobas", "--pty", "--count", "3", "--interval", "0.1",
                    "--seed", "26", "--no-queries", "--first-sample", "P0001",
                    "--reply-timeout", "1", "--fault", "bad-checksum:0.3",
                    "--fault", "drop:0.05", "--fault", "garbage:0.2"])
    path = sim.wait_for(r"serial line on (/dev/\S+)").group(1)
    gateway = GatewayProcess(["--serial", path, "--driver", "roche-cobas", "--name", "pty"])
    try:
        gateway.wait_for_status(r"pty opened /dev/")
        status, lines, err = sim.finish()
        assert status == 0, err
        assert "the gateway opened the port" in err, err[:3000]
        assert [x["outcome"] for x in lines] == ["acknowledged"] * 3
        assert set(_faults(lines)) == {"bad-checksum", "drop", "garbage"}, lines
        rows = gateway.rows(3 * len(ROCHE_CODES))
        _no_more_rows(gateway)
    finally:
        gateway.stop()
    assert _tests_by_sample(rows) == {f"P000{n}": ROCHE_CODES for n in (1, 2, 3)}


def _check(argv: list[str]) -> str:
    args = build_parser().parse_args(["simulate", *argv])
    assert isinstance(args, argparse.Namespace)
    with pytest.raises(UsageError) as caught:
        check(args)
    return str(caught.value)


def test_options_that_do_not_fit_the_driver_are_refused() -> None:
    """Each refusal names the reason; nothing is started."""
    assert "no AU style yet" in _check(["--driver", "beckman-au", "--connect", "h:1"])
    assert "MLLP carries no checksum" in _check(["--driver", "mindray-bs", "--connect", "h:1",
                                                 "--fault", "bad-checksum"])
    assert "TCP only" in _check(["--driver", "mindray-bc", "--pty"])
    assert "--connect HOST:PORT is needed" in _check(["--driver", "sysmex-xn"])
    assert "unknown driver" in _check(["--driver", "nope", "--pty"])


def test_a_refused_driver_exits_2_with_its_reason() -> None:
    """The command line says why and exits 2."""
    done = subprocess.run([sys.executable, "-m", "lis_gateway", "simulate", "--driver",
                           "beckman-au", "--connect", "127.0.0.1:1"], capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert done.returncode == 2
    assert "cannot simulate beckman-au" in done.stderr and "no AU style yet" in done.stderr
