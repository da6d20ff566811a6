"""Alembic environment: migrations run on the connection Cumulo hands over (see db.migrate)."""

from __future__ import annotations

from alembic import context

from cumulo.db import (
    metadata,
    models,  # noqa: F401  (registers every table)
)

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through cumulo.db.Database.migrate()")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
