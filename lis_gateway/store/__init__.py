"""The store: SQLAlchemy Core tables, repository functions, the DB thread pool.

Nothing here creates an engine at import time: call
:func:`lis_gateway.store.engine.make_engine` and
:func:`lis_gateway.store.migrations.migrate` from the composition root.
"""
