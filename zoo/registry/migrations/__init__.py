"""Alembic migrations for the registry schema, applied automatically on open."""
