"""``section`` on an analyzer: loaded, checked, located by ``check-config`` (all or none)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lis_gateway.cli import main
from lis_gateway.config import ConfigError, parse_config

BASE = """
[database]
url = "sqlite:///lis.db"
"""


def analyzer(name: str, port: int, extra: str = "") -> str:
    """One ``[[analyzers]]`` table."""
    return (f'[[analyzers]]\nname = "{name}"\ndriver = "roche-cobas"\n'
            f'transport = "tcp-server"\nlisten = "127.0.0.1:{port}"\n{extra}')


def problems(text: str, tmp_path: Path) -> tuple[str, ...]:
    """What parse_config refuses ``text`` with."""
    with pytest.raises(ConfigError) as caught:
        parse_config(text.encode(), tmp_path / "gw.toml")
    return caught.value.problems


def test_sections_load_trimmed_and_normalised(tmp_path: Path) -> None:
    """Each analyzer's section reaches its link spec (NFC, trimmed); without any, ""."""
    config = parse_config((BASE + analyzer("chem1", 1, 'section = " hoa\u0301 sinh "\n')
                           + analyzer("heme1", 2, 'section = "huyết học"\n')).encode(),
                          tmp_path / "gw.toml")
    assert [(a.name, a.section) for a in config.links()] == [
        ("chem1", "hoá sinh"), ("heme1", "huyết học")]
    plain = parse_config((BASE + analyzer("chem1", 1)).encode(), tmp_path / "gw.toml")
    assert [a.section for a in plain.analyzers] == [""]


@pytest.mark.parametrize("extra,expected", [
    ('section = ""\n', "analyzers[0].section: expected a non-empty string, got a string ('')"),
    ("section = 3\n", "analyzers[0].section: expected a non-empty string, got an integer (3)"),
    ('section = "a,b"\n', "analyzers[0].section: a section name must not contain ','"),
])
def test_bad_section_values_are_located(tmp_path: Path, extra: str, expected: str) -> None:
    """An empty, non-string or comma-holding section is named with its key path."""
    [problem] = problems(BASE + analyzer("chem1", 1, extra), tmp_path)
    assert problem.startswith(expected), problem


def test_sections_are_for_every_analyzer_or_none(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Once one analyzer has a section, one without is an error at its own key path, so no
    analyzer's results silently escape the sections; check-config says so (exit 2)."""
    text = (BASE + analyzer("chem1", 1, 'section = "hoá sinh"\n') + analyzer("heme1", 2)
            + analyzer("urine1", 3))
    assert problems(text, tmp_path) == tuple(
        f"analyzers[{i}].section: missing: other analyzers have a section (chem1), so every "
        "analyzer needs one (its results are seen only by people holding it)" for i in (1, 2))
    path = tmp_path / "gw.toml"
    path.write_text(text, encoding="utf-8")
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "analyzers[1].section: missing" in err and "analyzers[2].section: missing" in err
