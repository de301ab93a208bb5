"""One live web app per test module (loopback TCP, real SQLite store, the app's own clock)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .live import Live, start_live


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A running web app on a fresh store, shared by the tests of one module."""
    yield from start_live(tmp_path_factory.mktemp("webapp"))
