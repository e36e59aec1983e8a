"""The fidelity floor: the minimums an artifact must reach against its reference to be served.

A value type, low in the layers: the registry stores a per-model floor, the build gate
applies it, the CLI parses it and selection filters by it. How the figures are measured
lives in ``zoo.conversion.fidelity``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Optional

from ..errors import InvalidInput

__all__ = ["Floor", "DEFAULT_FLOOR"]


@dataclass(frozen=True)
class Floor:
    """Minimums an artifact must reach to be served. See README "Fidelity gate" for why these numbers."""

    mean_cosine: float = 0.99
    min_cosine: float = 0.95
    spearman: float = 0.98
    recall_at_10_drop: float = 0.05  # recall@10 may fall at most this much below the reference's

    # what each value may be: cosines and the recall drop are fractions, Spearman a correlation
    RANGES = {"mean_cosine": (0.0, 1.0), "min_cosine": (0.0, 1.0), "spearman": (-1.0, 1.0),
              "recall_at_10_drop": (0.0, 1.0)}

    def __post_init__(self):
        for name, (low, high) in self.RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not low <= value <= high:
                raise InvalidInput(f"fidelity floor {name} must be a finite number in [{low:g}, {high:g}], "
                                   f"not {value!r}")

    def _checks(self, fig: dict[str, Any]) -> list[tuple[str, float, float]]:
        checks = [
            ("mean cosine", fig["mean_cosine"], self.mean_cosine),
            ("min cosine", fig["min_cosine"], self.min_cosine),
            ("pairwise-similarity Spearman", fig["spearman"], self.spearman),
            ("recall@10", fig["recall_at_10"], fig["reference_recall_at_10"] - self.recall_at_10_drop),
        ]
        if "image_mean_cosine" in fig:  # a multimodal model: its images hold the same cosine floor
            checks += [("image mean cosine", fig["image_mean_cosine"], self.mean_cosine),
                       ("image min cosine", fig["image_min_cosine"], self.min_cosine)]
        return checks

    def check(self, fig: dict[str, Any]) -> Optional[str]:
        """None when the figures pass, else the first reason they do not. A NaN or an Inf in any vector fails
        whatever the other figures say (fastembed once served all-NaN EmbeddingGemma vectors without a word)."""
        if fig.get("non_finite"):
            return "its vectors hold NaN or Inf values (non-finite), whatever the cosines"
        for name, value, floor in self._checks(fig):
            if not value >= floor:  # also catches NaN
                return f"{name} {value:.5f} < {floor:.5f}"
        return None

    def margin(self, fig: dict[str, Any]) -> float:
        """The smallest of (figure - floor): >= 0 exactly when ``check`` passes; -inf for NaN figures.

        Each gap is scaled by what the floor leaves below perfect (1 - floor, at least 0.001), so a
        miss of 0.001 on a 0.999 floor weighs as much as a miss of 0.05 on a 0.95 floor."""
        gaps = [(value - floor) / max(1.0 - floor, 1e-3) if value == value else float("-inf")
                for _, value, floor in self._checks(fig)]
        return min(gaps)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "Floor":
        unknown = sorted(set(d or {}) - set(cls.__dataclass_fields__))
        if unknown:
            raise InvalidInput(f"unknown fidelity floor key(s) {', '.join(unknown)}; known: {', '.join(cls.RANGES)}")
        return cls(**(d or {}))


DEFAULT_FLOOR = Floor()
