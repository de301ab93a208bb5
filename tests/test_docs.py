"""Generated documentation stays in step with the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_link_state_table_doc_is_current() -> None:
    """docs/link-states.md equals what docs/make_state_table.py renders from the code."""
    out = subprocess.run([sys.executable, str(ROOT / "docs" / "make_state_table.py")],
                         capture_output=True, text=True, check=True).stdout
    assert (ROOT / "docs" / "link-states.md").read_text() == out


def test_readme_lists_every_driver() -> None:
    """The README's table of supported analyzers names every registered driver."""
    import drivers

    readme = (ROOT / "README.md").read_text()
    for name in drivers.REGISTRY:
        assert f"| `{name}` |" in readme, name


def test_readme_configuration_example_loads(tmp_path: Path) -> None:
    """The TOML example in the README is a valid configuration."""
    import re

    from lis_gateway.config import load_config

    example = re.search(r"```toml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert example is not None
    path = tmp_path / "lis-gateway.toml"
    path.write_text(example.group(1))
    for token in ("his-api.token", "his-orders.token"):  # the secrets it names
        (tmp_path / token).write_text("a-token-of-at-least-16-chars\n")
    config = load_config(path)
    assert [link.name for link in config.links()] == ["chem1", "heme1"]
