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

__all__ = ["Floor", "DEFAULT_FLOOR", "ScoreFloor", "floor_for"]


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


@dataclass(frozen=True)
class ScoreFloor:
    """What a reranker's artifact must reach against its reference: it is judged on its scores of generated
    query/document sets (``zoo.conversion.rerank_fidelity``), not on vectors.

    - ``mean_query_spearman`` / ``min_query_spearman``: the rank correlation of the documents' scores within each
      query, averaged and at the worst query (does it order a query's documents as the reference does?);
    - ``top_k_agreement``: the share of the reference's top 3 documents per query that the artifact also puts in
      its top 3, averaged (what a search that keeps the top hits sees);
    - ``max_score_diff``: the largest absolute difference of one score, after the model's activation (a
      dropped activation or a scale error keeps the order and is caught here).
    """

    mean_query_spearman: float = 0.97
    min_query_spearman: float = 0.8
    top_k_agreement: float = 0.9
    max_score_diff: float = 0.1

    RANGES = {"mean_query_spearman": (-1.0, 1.0), "min_query_spearman": (-1.0, 1.0), "top_k_agreement": (0.0, 1.0),
              "max_score_diff": (0.0, 1e6)}

    __post_init__ = Floor.__post_init__

    def _checks(self, fig: dict[str, Any]) -> list[tuple[str, float, float, float]]:
        """(name, value, floor, what the floor leaves below perfect); max_score_diff is a ceiling, negated."""
        return [("mean per-query Spearman", fig["mean_query_spearman"], self.mean_query_spearman,
                 1.0 - self.mean_query_spearman),
                ("min per-query Spearman", fig["min_query_spearman"], self.min_query_spearman,
                 1.0 - self.min_query_spearman),
                ("top-3 agreement", fig["top_k_agreement"], self.top_k_agreement, 1.0 - self.top_k_agreement),
                ("max score difference (negated)", -fig["max_score_diff"], -self.max_score_diff, self.max_score_diff)]

    def check(self, fig: dict[str, Any]) -> Optional[str]:
        if fig.get("non_finite"):
            return "its scores hold NaN or Inf values (non-finite), whatever the rankings"
        for name, value, floor, _ in self._checks(fig):
            if not value >= floor:
                if name.startswith("max score"):
                    return f"max score difference {-value:.5f} > {-floor:.5f}"
                return f"{name} {value:.5f} < {floor:.5f}"
        return None

    def margin(self, fig: dict[str, Any]) -> float:
        """As ``Floor.margin``: the smallest gap to a floor, scaled by what the floor leaves (at least 0.001)."""
        gaps = [(value - floor) / max(room, 1e-3) if value == value else float("-inf")
                for _, value, floor, room in self._checks(fig)]
        return min(gaps)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "ScoreFloor":
        unknown = sorted(set(d or {}) - set(cls.__dataclass_fields__))
        if unknown:
            raise InvalidInput(f"unknown reranker fidelity floor key(s) {', '.join(unknown)}; known: "
                               f"{', '.join(cls.RANGES)}")
        return cls(**(d or {}))


def floor_for(kind: Optional[str], values: Optional[dict] = None):
    """The floor of a model of ``kind`` (``zoo.engine.kinds``) with ``values`` over its defaults."""
    return (ScoreFloor if kind == "reranker" else Floor).from_dict(values)
