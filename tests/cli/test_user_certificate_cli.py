"""`user add --certificate` and `user certificate` on an SQLite file (audited)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lis_gateway.cli import main
from lis_gateway.config import load_config
from lis_gateway.store import repository as repo
from lis_gateway.store.engine import make_engine
from lis_gateway.store.users import certificate_number
from tests.cli.test_lifecycle_cli import setup_lab


def stored(config: Path, name: str) -> str:
    """The user's certificate number as the store keeps it."""
    engine = make_engine(load_config(config).database_url)
    try:
        with engine.begin() as conn:
            return repo.get_user(conn, name).certificate_number
    finally:
        engine.dispose()


def test_add_with_a_certificate_then_change_and_clear_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The number is kept trimmed, replaced, cleared with ""; each change is audited."""
    config = setup_lab(tmp_path)
    assert main(["user", "add", "minh", "--roles", "doctor", "--certificate",
                 " 0012345/HNO-CCHN ", "--config", str(config)]) == 0
    assert stored(config, "minh") == "0012345/HNO-CCHN"
    assert main(["user", "certificate", "minh", "0067890/BYT-CCHN",
                 "--config", str(config)]) == 0
    assert "certificate number of minh: 0067890/BYT-CCHN" in capsys.readouterr().out
    assert stored(config, "minh") == "0067890/BYT-CCHN"
    assert main(["user", "certificate", "minh", "", "--config", str(config)]) == 0
    assert stored(config, "minh") == ""
    engine = make_engine(load_config(config).database_url)
    with engine.begin() as conn:
        changes = [json.loads(e.detail) for e in repo.audit_entries(conn)
                   if e.action == "user.certificate"]
    engine.dispose()
    assert changes == [{"from": "0012345/HNO-CCHN", "to": "0067890/BYT-CCHN"},
                       {"from": "0067890/BYT-CCHN", "to": ""}]
    assert main(["audit", "verify", "--database", load_config(config).database_url]) == 0


def test_a_user_added_without_one_has_none(tmp_path: Path) -> None:
    """Without --certificate the number is empty (not known yet)."""
    config = setup_lab(tmp_path)
    assert main(["user", "add", "lan", "--roles", "technician", "--config", str(config)]) == 0
    assert stored(config, "lan") == ""


def test_unknown_user_and_bad_numbers_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No such user: exit 1. A ';' (the XML4 separator) or 51 characters: a usage error."""
    config = setup_lab(tmp_path)
    assert main(["user", "certificate", "nobody", "123", "--config", str(config)]) == 1
    assert "not found" in capsys.readouterr().err
    for bad in ("123;456", "9" * 51):
        with pytest.raises(SystemExit) as exit_:
            main(["user", "certificate", "nobody", bad, "--config", str(config)])
        assert exit_.value.code == 2
    assert "must not contain ';'" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "kept"), [("  ", ""), ("12/Ho\u0300-CCHN", "12/Hò-CCHN"),
                                            ("x" * 50, "x" * 50)])
def test_certificate_number_is_trimmed_and_kept(text: str, kept: str) -> None:
    """Blank means none; decomposed Vietnamese is kept composed (NFC); 50 characters fit."""
    assert certificate_number(text) == kept


def test_certificate_number_refuses_control_characters() -> None:
    """A tab or newline inside is refused (it would break the XML4 field)."""
    with pytest.raises(ValueError, match="control"):
        certificate_number("12\t34")
