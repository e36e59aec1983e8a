"""Dataset jobs in the registry: each ``zoo embed-dataset`` run as one ``runs`` row.

Why in the registry: the row outlives the process and is shared with every host of a team
registry, so "which outputs were made by something other than what serves now" (``zoo runs
--stale``) is a query, not an archaeology of Parquet files.
"""

from __future__ import annotations

import uuid
from typing import Any, Optional

from ..errors import ZooError

__all__ = ["start_run", "update_run", "list_runs", "get_run", "run_dict"]

FIELDS = ("model", "revision", "artifact_target", "store_digest", "runtime_precision", "input_path",
          "input_digest", "output_path", "rows", "shards_total", "shards_done", "params", "timings")


def start_run(reg, run_id: Optional[str] = None, **fields: Any) -> str:
    """Record a run as running (a resumed run keeps its id and row); return its id."""
    from .schema import JobStatus, Run

    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown run fields {sorted(unknown)}")
    with reg.session() as s:
        row = s.get(Run, run_id) if run_id else None
        if row is None:
            row = Run(id=run_id or str(uuid.uuid4()), shards_done=0)
            s.add(row)
        for k, v in fields.items():
            setattr(row, k, v)
        row.status, row.error = JobStatus.running, None
        s.flush()
        return row.id


def update_run(reg, run_id: str, *, status: Optional[str] = None, error: Optional[str] = None,
               **fields: Any) -> None:
    from .schema import JobStatus, Run

    with reg.session() as s:
        row = s.get(Run, run_id)
        if row is None:
            return  # a run row removed meanwhile (another host's registry): the output still stands
        for k, v in fields.items():
            if k not in FIELDS:
                raise ValueError(f"unknown run field {k!r}")
            setattr(row, k, v)
        if status is not None:
            row.status = JobStatus(status)
        if error is not None:
            row.error = error


def get_run(reg, run_id: str):
    from .schema import Run

    with reg.session() as s:
        row = s.get(Run, run_id)
    if row is None:
        raise ZooError(f"no run {run_id!r} in the registry; `zoo runs` lists them")
    return row


def list_runs(reg, model: Optional[str] = None) -> list:
    from sqlalchemy import select
    from .schema import Run

    with reg.session() as s:
        q = select(Run).order_by(Run.created_at, Run.id)
        if model is not None:
            q = q.where(Run.model == model)
        return list(s.scalars(q))


def run_dict(r) -> dict:
    return {"id": r.id, "model": r.model, "revision": r.revision, "artifact": r.artifact_target,
            "store_digest": r.store_digest, "runtime_precision": r.runtime_precision, "input": r.input_path,
            "input_digest": r.input_digest, "output": r.output_path, "rows": r.rows, "status": r.status.value,
            "shards_total": r.shards_total, "shards_done": r.shards_done, "params": r.params, "timings": r.timings,
            "error": r.error, "created_at": r.created_at.isoformat(), "updated_at": r.updated_at.isoformat()}
