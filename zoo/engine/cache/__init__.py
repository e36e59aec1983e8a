"""The persistent vector cache (engine layer): the same text is never embedded twice by the same configuration.

Backends: ``SqliteCache`` (``cache.db`` in the zoo home, WAL; the default) and
``RedisCache`` (``redis://`` URLs, the ``redis`` extra) for a cache shared by hosts.
Both store ``base``'s entry format under ``base.CacheConfig`` keys; this module only
chooses one. It may import the store layer (the home's ``cache.db``) and nothing above.
"""

from __future__ import annotations

import os
from typing import Optional

from .base import (DEFAULT_MAX_BYTES, TRUNCATED, CacheConfig, Entry, VectorCache, decode_entry, encode_entry,
                   parse_size, summarize)

__all__ = ["VectorCache", "CacheConfig", "Entry", "open_cache", "parse_size", "DEFAULT_MAX_BYTES", "TRUNCATED",
           "encode_entry", "decode_entry", "summarize", "cache_disabled_by_env"]


def open_cache(location: Optional[str] = None, *, home=None, max_bytes: Optional[int] = None) -> VectorCache:
    """The cache at ``location``: a ``redis://``/``rediss://`` URL, a SQLite file path, or
    (default) ``$ZOO_CACHE`` or the zoo home's ``cache.db``."""
    if not location and not cache_disabled_by_env():
        location = os.environ.get("ZOO_CACHE") or None
    if max_bytes is None and os.environ.get("ZOO_CACHE_MAX_BYTES"):
        max_bytes = parse_size(os.environ["ZOO_CACHE_MAX_BYTES"])
    max_bytes = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    if location:
        check_location(location)
    if location and location.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisCache

        return RedisCache(location)
    from .sqlite import SqliteCache

    if not location:
        if home is None:
            from ...store.home import resolve_home

            home = resolve_home()
        location = str(home.cache_path)
    return SqliteCache(location.removeprefix("sqlite:///"), max_bytes=max_bytes)


SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def check_location(location: str) -> None:
    """Refuse what looks like a mistyped location rather than create a stray file named after it
    (``bogus://x`` or ``ZOO_CACHE=bogus`` once made a SQLite file in the working directory)."""
    from ...errors import InvalidInput

    scheme, sep, _ = location.partition("://")
    if sep:
        if scheme not in ("redis", "rediss", "unix", "sqlite"):
            raise InvalidInput(f"cache location {location[:80]!r}: unknown scheme {scheme!r}; use redis://, "
                               "rediss://, unix://, sqlite:/// or a file path ending in .db")
        return
    if not (location.endswith(SQLITE_SUFFIXES) or os.sep in location or os.path.exists(location)):
        raise InvalidInput(f"cache location {location[:80]!r} is neither a URL nor a SQLite file path; use a path "
                           f"ending in {', '.join(SQLITE_SUFFIXES)} (or containing a folder), a redis:// URL, or "
                           "off to disable the cache")


def cache_disabled_by_env() -> bool:
    return os.environ.get("ZOO_CACHE", "").strip().lower() in ("0", "off", "false", "no", "none")
