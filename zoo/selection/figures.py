"""The figures ``zoo bench`` measured on this machine, as selection reads them.

Kept apart from ``benchmark`` (which writes them) so that the loader can read figures
without depending on the code that measures by loading.
"""

from __future__ import annotations

__all__ = ["latest_figures"]


def latest_figures(registry, artifact_ids: list[int], fingerprint: str) -> dict[int, dict]:
    """The newest figures per artifact measured on this fingerprint."""
    from sqlalchemy import select

    from ..registry.schema import Benchmark

    if not artifact_ids:
        return {}
    with registry.session() as s:
        rows = s.scalars(select(Benchmark).where(Benchmark.artifact_id.in_(artifact_ids),
                                                 Benchmark.hardware_fingerprint == fingerprint)
                         .order_by(Benchmark.measured_at, Benchmark.id))
        return {b.artifact_id: b.figures for b in rows}
