"""Which dataset outputs were made by something other than what serves now (``zoo runs --stale``).

A run is stale when its model is gone, has a new current revision, or now selects an artifact
with another store digest on this machine. Re-embedding is then a decision with a reason, not a
guess.
"""

from __future__ import annotations

from typing import Optional

from ..errors import ZooError

__all__ = ["stale_reason"]


def stale_reason(reg, run, serving: dict) -> Optional[str]:
    """Why ``run``'s output is out of date, or None. ``serving`` memoises model -> (revision, target, digest)."""
    from ..selection.loader import choose

    if run.model not in serving:
        try:
            resolved, _hw, _figures, selection = choose(reg, run.model, objective=run.params.get("objective", "throughput"))
            chosen = selection.chosen
            serving[run.model] = (resolved.revision.resolved_id, chosen.target, chosen.store_digest)
        except ZooError as exc:
            serving[run.model] = exc
    now = serving[run.model]
    if isinstance(now, ZooError):
        return f"model unavailable: {now}"
    revision, target, digest = now
    if revision != run.revision:
        return f"new revision {revision[:16]} (run used {run.revision[:16]})"
    made = [run.store_digest] if run.store_digest else (run.timings or {}).get("digests", [])
    if any(d != digest for d in made):
        return f"now serves {target} ({digest[:12]}); run used {', '.join(d[:12] for d in made)}"
    return None
