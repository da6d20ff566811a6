"""Alembic migrations: the environment and one revision per schema change (versions/)."""
