"""`user add --section` and `user sections` on an SQLite file (audited)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lis_gateway.cli import main
from lis_gateway.config import load_config
from lis_gateway.store import repository as repo
from lis_gateway.store.engine import make_engine
from lis_gateway.store.sections import user_sections
from tests.cli.test_lifecycle_cli import setup_lab


def held(config: Path, name: str) -> tuple[str, ...]:
    """The user's sections as the store keeps them."""
    engine = make_engine(load_config(config).database_url)
    try:
        with engine.begin() as conn:
            return user_sections(conn, name)
    finally:
        engine.dispose()


def test_add_with_sections_then_replace_and_clear_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--section is repeatable; `user sections` replaces them whole, none clears them;
    every change is audited and the chain still verifies."""
    config = setup_lab(tmp_path)
    assert main(["user", "add", "lan", "--roles", "technician", "--section", "huyết học",
                 "--section", " hoa\u0301 sinh ", "--config", str(config)]) == 0
    assert "added with roles technician and sections hoá sinh, huyết học" in (
        capsys.readouterr().out)
    assert held(config, "lan") == ("hoá sinh", "huyết học")
    assert main(["user", "sections", "lan", "miễn dịch", "--config", str(config)]) == 0
    assert "sections of lan: miễn dịch" in capsys.readouterr().out
    assert main(["user", "sections", "lan", "--config", str(config)]) == 0
    assert "sections of lan: (none)" in capsys.readouterr().out
    assert held(config, "lan") == ()
    engine = make_engine(load_config(config).database_url)
    with engine.begin() as conn:
        changes = [(e.actor.startswith("cli:"), json.loads(e.detail))
                   for e in repo.audit_entries(conn) if e.action == "user.sections"]
    engine.dispose()
    assert changes == [(True, {"from": [], "to": ["hoá sinh", "huyết học"]}),
                       (True, {"from": ["hoá sinh", "huyết học"], "to": ["miễn dịch"]}),
                       (True, {"from": ["miễn dịch"], "to": []})]
    assert main(["audit", "verify", "--database", load_config(config).database_url]) == 0


def test_unknown_user_and_bad_section_names_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No such user: exit 1, nothing kept. A comma or an empty name: a usage error."""
    config = setup_lab(tmp_path)
    assert main(["user", "sections", "nobody", "huyết học", "--config", str(config)]) == 1
    assert "not found" in capsys.readouterr().err
    for bad in ("hoá sinh,huyết học", " "):
        with pytest.raises(SystemExit) as exit_:
            main(["user", "sections", "lan", bad, "--config", str(config)])
        assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "must not contain ','" in err and "must not be empty" in err
