"""Alembic environment: online migrations only, one transaction per run."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from lis_gateway.store.engine import make_engine
from lis_gateway.store.schema import metadata

config = context.config


def run_migrations_online() -> None:
    """Run the migrations with the store's engine settings."""
    engine: Engine | None = config.attributes.get("engine")
    owned = engine is None
    if engine is None:
        engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.begin() as connection:
            context.configure(connection=connection, target_metadata=metadata,
                              render_as_batch=connection.dialect.name == "sqlite",
                              compare_type=True)
            context.run_migrations()
    finally:
        if owned:
            engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported")
run_migrations_online()
