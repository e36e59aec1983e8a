"""The fidelity floor: the minimums an artifact must reach against its reference to be served.

A value type, low in the layers: the registry stores a per-model floor, the build gate
applies it, the CLI parses it and selection filters by it. How the figures are measured
lives in ``zoo.build.fidelity``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional

__all__ = ["Floor", "DEFAULT_FLOOR"]


@dataclass(frozen=True)
class Floor:
    """Minimums an artifact must reach to be served. See README "Fidelity gate" for why these numbers."""

    mean_cosine: float = 0.99
    min_cosine: float = 0.95
    spearman: float = 0.98
    recall_at_10_drop: float = 0.05  # recall@10 may fall at most this much below the reference's

    def check(self, fig: dict[str, Any]) -> Optional[str]:
        """None when the figures pass, else the first reason they do not."""
        checks = [
            ("mean cosine", fig["mean_cosine"], self.mean_cosine),
            ("min cosine", fig["min_cosine"], self.min_cosine),
            ("pairwise-similarity Spearman", fig["spearman"], self.spearman),
            ("recall@10", fig["recall_at_10"], fig["reference_recall_at_10"] - self.recall_at_10_drop),
        ]
        for name, value, floor in checks:
            if not value >= floor:  # also catches NaN
                return f"{name} {value:.5f} < {floor:.5f}"
        return None

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "Floor":
        return cls(**{k: float(v) for k, v in (d or {}).items() if k in cls.__dataclass_fields__})


DEFAULT_FLOOR = Floor()
