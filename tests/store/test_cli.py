"""`lis-gateway migrate` and `lis-gateway audit verify` on a real SQLite file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from lis_gateway.cli import main
from lis_gateway.store.audit import append_audit
from lis_gateway.store.engine import make_engine


def test_migrate_then_verify_an_intact_and_a_tampered_log(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """migrate creates the schema; verify says intact, then names the row edited behind its back."""
    url = f"sqlite:///{tmp_path / 'lis.db'}"
    assert main(["migrate", "--database", url]) == 0
    engine = make_engine(url)
    with engine.begin() as conn:
        for n in range(3):
            append_audit(conn, actor="tech1", action="validate", target=f"result/{n}",
                         detail={"n": n}, at=datetime(2026, 1, 1, tzinfo=UTC), source="cli")
    assert main(["audit", "verify", "--database", url]) == 0
    assert "intact" in capsys.readouterr().out
    with engine.begin() as conn:  # tamper: drop the trigger that forbids it, edit a row
        conn.execute(text("DROP TRIGGER IF EXISTS audit_log_no_update"))
        conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2"))
    engine.dispose()
    assert main(["audit", "verify", "--database", url]) == 1
    assert "BROKEN" in capsys.readouterr().err
