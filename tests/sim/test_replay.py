"""``lis-gateway replay``: a fixture wire recording decoded offline, and sent to a gateway.

The recordings in ``tests/fixtures/wire`` were assembled from the ASTM and
HL7 fixtures (see the README there). The gateway runs as ``lis-gateway
receive`` in a subprocess, on real loopback TCP.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from lis_gateway.cli import build_parser
from lis_gateway.sim import replay
from tests.integration._harness import GatewayProcess

from ._processes import replay as replay_command

WIRE = Path(__file__).resolve().parent.parent / "fixtures" / "wire"
ASTM = Path(__file__).resolve().parent.parent / "fixtures" / "astm"
ROCHE = WIRE / "roche_c311.wire.jsonl"
MINDRAY = WIRE / "mindray_cl.wire.jsonl"


def _dry_run(*argv: str) -> tuple[int, list[dict[str, Any]], str]:
    args = build_parser().parse_args(["replay", "--dry-run", *argv])
    out, err = io.StringIO(), io.StringIO()
    status = replay.run(args, out, err)
    return status, [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


def _key(row: dict[str, Any]) -> tuple[str, str, str, str]:
    return row["sample_id"], row["test"], row["value"], row["unit"]


def test_dry_run_decodes_the_recording_and_reports_the_cut_transfer() -> None:
    """The cobas message's eleven results as roche_3 holds them; the transfer cut by the
    lost connection is a problem, never a result."""
    status, rows, err = _dry_run("--driver", "roche-cobas", str(ROCHE))
    assert status == 0
    expected = json.loads((ASTM / "roche_3.expected.json").read_text())["results"]
    assert [_key(r) for r in rows] == [
        (e["sample_id"], e["test"].rstrip("/"), e["value"], e["unit"]) for e in expected]
    assert "incomplete transmission" in err
    assert "1 messages (results), 11 results" in err


def test_dry_run_of_a_raw_capture_and_refusals() -> None:
    """A raw capture reads as the analyzer's bytes; tx of a raw capture is refused."""
    status, rows, _err = _dry_run("--driver", "roche-cobas", str(ASTM / "roche_3.bin"))
    assert status == 0 and len(rows) == 11
    status, rows, err = _dry_run("--driver", "roche-cobas", "--direction", "tx",
                                 str(ASTM / "roche_3.bin"))
    assert (status, rows) == (1, []) and "not a wire recording" in err


@pytest.mark.integration
def test_replay_to_a_gateway_gives_what_the_dry_run_decodes() -> None:
    """ASTM: re-framed through a fresh E1381 link; the gateway's rows equal the dry run's."""
    _status, expected, _err = _dry_run("--driver", "roche-cobas", str(ROCHE))
    gateway = GatewayProcess(["--tcp-listen", "127.0.0.1:0", "--driver", "roche-cobas",
                              "--name", "chem1"])
    try:
        port = gateway.wait_for_status(r"chem1 listening on 127\.0\.0\.1:(\d+)").group(1)
        status, lines, err = replay_command(["--to", f"127.0.0.1:{port}", "--driver",
                                             "roche-cobas", str(ROCHE)]).finish()
        assert status == 0, err
        assert [(x["kind"], x["sample_id"], x["outcome"]) for x in lines] == [
            ("message", "41356-S", "acknowledged")]
        assert "replay: 1/1 messages" in err
        rows = gateway.rows(len(expected))
    finally:
        gateway.stop()
    assert [_key(r) for r in rows] == [_key(r) for r in expected]


@pytest.mark.integration
def test_replay_of_an_hl7_recording_with_a_query() -> None:
    """HL7: the QRY^Q02 is answered (no order, QAK NF), the ORU^R01 acknowledged."""
    gateway = GatewayProcess(["--tcp-listen", "127.0.0.1:0", "--driver", "mindray-bs",
                              "--name", "cl1"])
    try:
        port = gateway.wait_for_status(r"cl1 listening on 127\.0\.0\.1:(\d+)").group(1)
        status, lines, err = replay_command(["--to", f"127.0.0.1:{port}", "--driver",
                                             "mindray-bs", str(MINDRAY)]).finish()
        assert status == 0, err
        assert [(x["kind"], x["sample_id"], x["outcome"], x["detail"]) for x in lines] == [
            ("query", "0019", "answered", "no order (QAK NF)"),
            ("message", "12345678", "acknowledged", "")]
        rows = gateway.rows(3)
    finally:
        gateway.stop()
    assert [(r["sample_id"], r["test"], r["value"]) for r in rows] == [
        ("12345678", "TBil", "100"), ("12345678", "ALT", "98.2"), ("12345678", "AST", "26.4")]
