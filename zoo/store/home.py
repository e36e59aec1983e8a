"""Where a zoo lives.

A zoo home is one directory: ``registry.db`` (unless the registry is elsewhere),
``store/`` (artifacts, content-addressed) and, later, ``cache.db``. Resolution
order, first match wins:

1. an explicit ``home`` argument (CLI ``--home``);
2. ``$ZOO_HOME``;
3. the nearest directory upward from the working directory holding ``registry.db``;
4. the per-user data directory (``platformdirs.user_data_dir("zoo")``).

The registry URL is ``--registry-url`` / ``$ZOO_REGISTRY_URL`` if given (any
SQLAlchemy URL, e.g. PostgreSQL for a team), else SQLite in the home.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ZooError

__all__ = ["Home", "resolve_home", "REGISTRY_FILE"]

REGISTRY_FILE = "registry.db"


@dataclass(frozen=True)
class Home:
    root: Path
    registry_url: str
    how: str  # which rule found it, for `zoo show-home`/doctor output

    @property
    def store_dir(self) -> Path:
        return self.root / "store"

    @property
    def locks_dir(self) -> Path:
        return self.root / "locks"

    @property
    def cache_path(self) -> Path:
        return self.root / "cache.db"

    def ensure(self) -> "Home":
        """Create the directory layout (idempotent)."""
        try:
            for d in (self.root, self.store_dir, self.locks_dir):
                d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ZooError(f"cannot create zoo home at {self.root}: {exc.strerror}; "
                           "pass --home DIR or set ZOO_HOME to a writable directory") from exc
        return self


def _find_upward(start: Path) -> Path | None:
    for d in (start, *start.parents):
        if (d / REGISTRY_FILE).is_file():
            return d
    return None


def resolve_home(home: str | os.PathLike | None = None,
                 registry_url: str | None = None,
                 cwd: Path | None = None) -> Home:
    """Resolve the zoo home and registry URL (see module docstring for the order)."""
    if home is not None:
        root, how = Path(home), "--home"
    elif os.environ.get("ZOO_HOME"):
        root, how = Path(os.environ["ZOO_HOME"]), "$ZOO_HOME"
    elif (found := _find_upward((cwd or Path.cwd()).resolve())) is not None:
        root, how = found, "registry.db found upward from the working directory"
    else:
        import platformdirs

        root, how = Path(platformdirs.user_data_dir("zoo", appauthor=False)), "per-user data directory"
    root = root.expanduser().resolve()
    url = registry_url or os.environ.get("ZOO_REGISTRY_URL") or f"sqlite:///{root / REGISTRY_FILE}"
    return Home(root=root, registry_url=url, how=how)
