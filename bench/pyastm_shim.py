"""Make python-astm 0.5.0 importable on Python >= 3.10.

``astm/codec.py`` does ``from collections import Iterable``; the alias was
removed from :mod:`collections` in Python 3.10, so ``import astm`` (and its
``setup.py``, which imports the package for its version) fail. This module
puts the alias back.

It is used twice, never in the project's ``.venv``:

* at install time, ``bench/run.py`` copies this file as ``sitecustomize.py``
  into a temporary directory on ``PYTHONPATH`` for
  ``pip install --no-build-isolation astm==0.5.0``;
* at run time, ``bench/pyastm_peer.py`` calls :func:`apply` before ``import astm``.
"""

from __future__ import annotations

import collections
import collections.abc


def apply() -> None:
    """Set ``collections.Iterable`` to ``collections.abc.Iterable`` (idempotent)."""
    if not hasattr(collections, "Iterable"):
        collections.Iterable = collections.abc.Iterable  # type: ignore[attr-defined]


apply()
