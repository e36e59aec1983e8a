"""Load plans: a cold ``zoo embed`` that skips the registry when nothing in it has changed.

Resolving a name, reading the measured figures and selecting an artifact needs the registry, and
opening it costs a cold process about a third of a second (SQLAlchemy's import, the schema check).
For one request that is most of the time. So a full ``load(..., lazy_runtime=True)`` that opens
the runtime lazily also writes down what it decided: the artifact's digest, format and settings,
the model's spec, the measured runtime facts that key the vector cache, and the ``info`` it
reports. The next process with the same request reads that plan instead, if:

- the registry is a SQLite file whose state is unchanged: ``registry.db`` and its write-ahead log
  have the same size and mtime as when the plan was made (any registration, conversion, bench or
  removal writes one of them, so any of them voids every plan);
- the machine has the same hardware fingerprint (a home on shared storage, read elsewhere);
- the artifact's tree still passes the store's integrity check, as on the full path.

A plan is written only when the registry did not change while the full path ran, by rename, so a
reader sees a whole plan or none. A PostgreSQL registry never gets plans: its state has no stamp
here. A plan that cannot be read or no longer fits is ignored and replaced.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any, Optional

from ..store.home import Home

__all__ = ["registry_stamp", "plan_key", "read_plan", "write_plan", "PLANS_DIR"]

PLANS_DIR = "plans"
VERSION = 1


def registry_stamp(home: Home) -> Optional[list]:
    """(size, mtime) of ``registry.db`` and its WAL; None when the registry is not a local SQLite file."""
    prefix = "sqlite:///"
    if not home.registry_url.startswith(prefix):
        return None
    db = Path(home.registry_url[len(prefix):])
    out = []
    for path in (db, db.with_name(db.name + "-wal")):
        try:
            st = path.stat()
            out.append([st.st_size, st.st_mtime_ns])
        except FileNotFoundError:
            out.append(None)
    return out if out[0] is not None else None


def plan_key(request: dict[str, Any]) -> str:
    """The plan's file name: the request's options, exactly."""
    return hashlib.sha256(json.dumps({"v": VERSION, **request}, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _path(home: Home, request: dict[str, Any]) -> Path:
    return home.root / PLANS_DIR / f"{plan_key(request)}.json"


def read_plan(home: Home, request: dict[str, Any], fingerprint: str) -> Optional[dict[str, Any]]:
    """The plan for ``request`` if it still holds here, else None."""
    stamp = registry_stamp(home)
    if stamp is None:
        return None
    try:
        plan = json.loads(_path(home, request).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(plan, dict) or plan.get("stamp") != stamp or plan.get("fingerprint") != fingerprint \
            or plan.get("request") != json.loads(json.dumps(request, default=str)):
        return None
    return plan


def write_plan(home: Home, request: dict[str, Any], plan: dict[str, Any], stamp_before: Optional[list]) -> None:
    """Write ``plan`` for ``request`` if the registry is as it was before the full path ran."""
    if stamp_before is None or registry_stamp(home) != stamp_before:
        return
    folder = home.root / PLANS_DIR
    try:
        folder.mkdir(exist_ok=True)
        tmp = folder / f".tmp-{uuid.uuid4().hex}"
        tmp.write_text(json.dumps({**plan, "stamp": stamp_before, "request": request}, default=str),
                       encoding="utf-8")
        os.replace(tmp, _path(home, request))
    except OSError:  # a read-only home still serves, through the full path each time
        pass
