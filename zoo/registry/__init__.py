"""The registry layer: models, aliases, pinned revisions and every artifact with its provenance,
in SQLAlchemy (``schema``) over SQLite or PostgreSQL, migrated by Alembic (``migrations``);
``catalog`` is the API over it.

May import the engine (a model's spec), store and core layers; nothing above.
"""

from .catalog import DEFAULT_MODEL, Registry, Resolved, open_registry

__all__ = ["DEFAULT_MODEL", "Registry", "Resolved", "open_registry"]
