"""Alembic migrations of the store; :func:`migrate` upgrades a database to head."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

HERE = Path(__file__).resolve().parent


def alembic_config(url: str) -> Config:
    """An Alembic configuration for ``url`` using these migrations (no ini file)."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str, revision: str = "head", engine: Engine | None = None) -> None:
    """Run ``alembic upgrade <revision>`` on the database at ``url``.

    Args:
        url: the SQLAlchemy URL.
        revision: target revision, ``head`` by default.
        engine: an engine to use instead of creating one (it keeps the
            store's connection settings, e.g. SQLite pragmas).
    """
    config = alembic_config(url)
    if engine is not None:
        config.attributes["engine"] = engine
    command.upgrade(config, revision)
