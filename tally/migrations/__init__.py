"""Alembic migrations for the store; they run on SQLite and PostgreSQL."""
