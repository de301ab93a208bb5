"""`user`, `validate`, `results`, `reprocess` and `rules test` on an SQLite file."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

import drivers
from lis_gateway.autoverify import Autoverification
from lis_gateway.cli import main
from lis_gateway.config import load_config
from lis_gateway.ingest import StoreSink, load_tables
from lis_gateway.store import repository as repo
from lis_gateway.store.engine import make_engine
from lis_gateway.store.migrations import migrate
from lis_gateway.store.pool import NonThreadPool
from lis_gateway.store.users import check_password, password_problem
from tests.store.test_ingest import ASTM, T0, fired, message

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "astm"
RULES = """
version = "cli-1"
[[rules]]
id = "always"
kind = "always-hold"
[[rules]]
id = "crit"
kind = "critical"
[[rules]]
id = "alt-limits"
kind = "limits"
low = 5
high = 30
"""


def setup_lab(tmp_path: Path, lifecycle: str = "") -> Path:
    """A configuration with a rules file, and the ALT 35 U/L result received (held)."""
    (tmp_path / "rules.toml").write_text(RULES, encoding="utf-8")
    config = tmp_path / "lis-gateway.toml"
    config.write_text(f"""
[database]
url = "sqlite:///{tmp_path / 'lis.db'}"

[rules]
file = "rules.toml"

[lifecycle]
{lifecycle}

[[analyzers]]
name = "chem1"
driver = "roche-cobas"
transport = "tcp-server"
listen = "127.0.0.1:0"
""", encoding="utf-8")
    loaded = load_config(config)
    engine = make_engine(loaded.database_url)
    migrate(loaded.database_url, engine=engine)
    spec = drivers.get("roche-cobas")
    table = load_tables([spec], loaded.mapping_directories)[spec.table_name]
    sink = StoreSink("chem1", spec, "tcp-server", table, NonThreadPool(engine),
                     utcnow=lambda: T0,
                     autoverification=Autoverification(loaded.rule_set, loaded.policy))
    fired(sink.message_received(message(ASTM)))
    engine.dispose()
    return config


def add_user(config: Path, name: str, roles: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """`user add NAME --roles R --password-stdin` with a password on standard input."""
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
    return main(["user", "add", name, "--roles", roles, "--password-stdin",
                 "--config", str(config)])


def results(config: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    """`results --json` parsed."""
    capsys.readouterr()
    assert main(["results", "--config", str(config), "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_results_show_the_real_state_and_reasons(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A value above the limits is shown held with the rule's reason; --state filters on it."""
    config = setup_lab(tmp_path)
    [row] = results(config, capsys)
    assert (row["state"], row["reasons"]) == ("held", ["alt-limits: 35 outside 5..30"])
    assert main(["results", "--config", str(config), "--state", "released"]) == 0
    assert capsys.readouterr().out == ""


def test_user_add_hashes_the_password_and_refuses_a_duplicate(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The password is kept as an argon2 hash; a second add of the name fails."""
    config = setup_lab(tmp_path)
    assert add_user(config, "lan", "technician", monkeypatch) == 0
    assert add_user(config, "lan", "technician", monkeypatch) == 1
    engine = make_engine(load_config(config).database_url)
    with engine.begin() as conn:
        user = repo.get_user(conn, "lan")
        assert check_password(conn, "lan", "correct horse")
    engine.dispose()
    assert (user.roles, user.has_password) == (("technician",), True)
    assert "already exists" in capsys.readouterr().err


def test_validate_then_approve_releases_and_passwd_disable_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Technician validates, her approval is refused, the doctor approves and it is released."""
    config = setup_lab(tmp_path)
    assert add_user(config, "lan", "technician", monkeypatch) == 0
    assert add_user(config, "minh", "doctor", monkeypatch) == 0
    capsys.readouterr()
    assert main(["validate", "S77", "--user", "lan", "--approve", "--json",
                 "--config", str(config)]) == 0
    [out] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (out["after"], out["done"], out["refused"]) == (
        "tech-validated", ["validate"], "user 'lan' may not approve")
    assert main(["validate", "S77", "--user", "minh", "--approve",
                 "--config", str(config)]) == 0
    assert "approve, release" in capsys.readouterr().out
    assert [r["state"] for r in results(config, capsys)] == ["released"]
    monkeypatch.setattr("sys.stdin", io.StringIO("new one\n"))
    assert main(["user", "passwd", "lan", "--config", str(config)]) == 2
    assert "at least 10 characters" in capsys.readouterr().err
    assert password_problem("nguyenthilan", " NguyenThiLan") == (
        "the password may not be the user name")
    monkeypatch.setattr("sys.stdin", io.StringIO("a new passphrase\n"))
    assert main(["user", "passwd", "lan", "--config", str(config)]) == 0
    assert main(["user", "disable", "lan", "--config", str(config)]) == 0
    assert main(["validate", "S77", "--user", "lan", "--config", str(config)]) == 1
    assert "disabled" in capsys.readouterr().err
    assert main(["user", "enable", "lan", "--config", str(config)]) == 0
    assert main(["user", "disable", "nobody", "--config", str(config)]) == 1
    engine = make_engine(load_config(config).database_url)
    with engine.begin() as conn:
        actions = [e.action for e in repo.audit_entries(conn)]
    engine.dispose()
    assert actions[-3:] == ["user.passwd", "user.disable", "user.enable"]
    assert main(["audit", "verify", "--database", load_config(config).database_url]) == 0


def test_one_step_policy_from_the_configuration(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With require_approval = false the technician's validation releases the result."""
    config = setup_lab(tmp_path, "require_approval = false")
    assert add_user(config, "lan", "technician", monkeypatch) == 0
    assert main(["validate", "S77", "--user", "lan", "--config", str(config)]) == 0
    assert [r["state"] for r in results(config, capsys)] == ["released"]


def test_reprocess_reports_each_held_result(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unchanged mapping adds no version; the held result is reported as still held."""
    config = setup_lab(tmp_path)
    capsys.readouterr()
    assert main(["reprocess", "--config", str(config)]) == 0
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert (line["new_version"], line["state"]) == (None, "held")


def test_bad_rules_file_is_a_configuration_problem(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A rules file without the mandatory rules stops the command with its key path."""
    config = setup_lab(tmp_path)
    (tmp_path / "rules.toml").write_text('version = "x"\n', encoding="utf-8")
    assert main(["results", "--config", str(config)]) == 2
    assert "rules.file" in capsys.readouterr().err


def test_rules_test_prints_a_decision_per_result(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """rules test replays a capture and prints the would-be state with every rule's outcome."""
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES, encoding="utf-8")
    assert main(["rules", "test", str(rules), "--driver", "roche-cobas",
                 str(FIXTURES / "roche_3.bin")]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows and all(r["rule_set_version"] == "cli-1" for r in rows)
    assert {r["state"] for r in rows} <= {"held", "autoverified"}
    assert all([o["rule"] for o in r["outcomes"]] == ["always", "crit", "alt-limits"]
               for r in rows)
