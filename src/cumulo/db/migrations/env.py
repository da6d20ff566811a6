"""Alembic environment: migrations run on the connection Cumulo hands over (see db.migrate)."""

from __future__ import annotations

from alembic import context

from cumulo.db import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through cumulo.db.Database.migrate()")
# The tables register themselves in `metadata` when cumulo.schema is imported (the migration tests
# and autogenerate do); running the migrations needs only the scripts.
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
