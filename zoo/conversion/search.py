"""The one quantization search: the fastest configuration a converter offers that holds the floor.

A quantizing converter proposes a ``SearchSpace`` (``converters.base``): whole-model recipes, and
its matrix products ranked by measured int8 sensitivity. This module tries them in order of
expected speed, each one a real build judged end to end on the **validation** set
(``zoo.conversion.corpora.validation_set``), never on the gate's probe set nor the calibration texts:

1. each recipe with everything quantized; the first that passes wins;
2. otherwise the recipe that came closest keeps the k most sensitive products in float, for
   k = 1, 2, 4, ... (at most all but one) until a candidate passes; "most sensitive" as that
   recipe leaves them (``SearchSpace.ranked``: a smoothing recipe has repaired some already);
3. then k is bisected between the last failure and that pass, while the budget lasts: fewer
   products in float is faster.

Every attempt (its settings, figures, margin and seconds) is returned for provenance. The gate
still judges the chosen artifact on the probe set; the search only decides what to offer it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..core.floor import Floor, ScoreFloor

__all__ = ["Attempt", "SearchOutcome", "run_search", "DEFAULT_BUDGET"]

DEFAULT_BUDGET = {"attempts": 10, "seconds": 600.0}
# A candidate passes the search only with this much of the floor's headroom to spare (in the units
# of ``Floor.margin``: a quarter of 1 - floor beyond each floor), since the gate judges other texts.
# Measured on MiniLM: validation-to-probe drops of 0.13-0.25 of these units.
SAFETY = 0.25


@dataclass
class Attempt:
    recipe: str
    keep_float: list[str]
    figures: dict[str, Any]
    margin: float  # the floor's smallest margin on the validation set, less SAFETY (>= 0: passes)
    seconds: float
    result: Any = None  # what ``try_config`` built, kept for the winner only

    def record(self) -> dict[str, Any]:
        keys = ("mean_cosine", "min_cosine", "spearman", "recall_at_10",  # an embedding model's
                "mean_query_spearman", "min_query_spearman", "top_k_agreement", "max_score_diff")  # a reranker's
        return {"recipe": self.recipe, "kept_in_float": len(self.keep_float),
                "figures": {k: round(self.figures[k], 5) for k in keys if k in self.figures},
                "margin": round(self.margin, 5), "passed": self.margin >= 0, "seconds": round(self.seconds, 2)}


@dataclass
class SearchOutcome:
    chosen: Attempt  # the fastest passing attempt, else the closest one
    attempts: list[Attempt] = field(default_factory=list)
    seconds: float = 0.0
    stopped: Optional[str] = None  # why the search ended before a pass, if it did

    def record(self, sensitivity_seconds: float, nodes: list[dict]) -> dict[str, Any]:
        flops = {n["name"]: n.get("flops", 0.0) for n in nodes}
        total = sum(flops.values()) or 1.0
        return {
            "judged_on": "validation set (disjoint from calibration and probe texts)", "safety": SAFETY,
            "recipe": self.chosen.recipe, "passed": self.chosen.margin >= 0,
            "kept_in_float": self.chosen.keep_float,
            "float_flops_share": round(sum(flops.get(n, 0.0) for n in self.chosen.keep_float) / total, 4),
            "candidates": len(nodes), "sensitivity_seconds": sensitivity_seconds,
            "seconds": round(self.seconds, 2), "stopped": self.stopped,
            "attempts": [a.record() for a in self.attempts],
        }


def run_search(space, try_config: Callable[[dict[str, Any]], tuple[dict[str, Any], Any]], floor: "Floor | ScoreFloor",
               budget: Optional[dict[str, float]] = None, discard: Callable[[Any], None] = lambda r: None,
               progress: Callable[[str, Optional[float]], None] = lambda s, f: None) -> SearchOutcome:
    """Search ``space``; ``try_config(config)`` builds one candidate and returns (figures, result).

    The results of losing attempts are handed to ``discard`` as soon as they lose.
    """
    budget = {**DEFAULT_BUDGET, **(budget or {})}
    started = time.perf_counter()
    names = [n["name"] for n in space.nodes]  # re-ranked below for the recipe the prefix search uses
    attempts: list[Attempt] = []
    best: Optional[Attempt] = None  # the winner so far: the passing attempt with fewest nodes in float

    def out_of_budget() -> Optional[str]:
        if len(attempts) >= budget["attempts"]:
            return f"attempt budget ({int(budget['attempts'])}) spent"
        if time.perf_counter() - started >= budget["seconds"]:
            return f"time budget ({budget['seconds']:.0f} s) spent"
        return None

    def attempt(recipe, k: int) -> Attempt:
        nonlocal best
        progress(f"search: {recipe.label}, {k} of {len(names)} products in float", None)
        t = time.perf_counter()
        figures, result = try_config({"recipe": recipe.config, "keep_float": names[:k]})
        a = Attempt(recipe.label, names[:k], figures, floor.margin(figures) - SAFETY, time.perf_counter() - t, result)
        attempts.append(a)
        if best is None or (a.margin >= 0 and (best.margin < 0 or k < len(best.keep_float))) \
                or (a.margin < 0 and best.margin < 0 and a.margin > best.margin):
            if best is not None:
                discard(best.result)
            best = a
        else:
            discard(a.result)
        return a

    closest = None
    for recipe in space.recipes:
        a = attempt(recipe, 0)
        if a.margin >= 0:
            return _done(best, attempts, started, None)
        if closest is None or a.margin > closest[1]:
            closest = (recipe, a.margin)
        if why := out_of_budget():
            return _done(best, attempts, started, why)
    recipe = closest[0]
    names = space.ranked(recipe)
    # an "int8" artifact with every product in float is an fp32 one: at least one stays quantized
    most = len(names) - 1
    low, high, k = 0, None, 1
    while k <= most:
        if why := out_of_budget():
            return _done(best, attempts, started, why)
        if attempt(recipe, k).margin >= 0:
            high = k
            break
        low = k
        k = most if k < most < 2 * k else 2 * k
    if high is None:
        return _done(best, attempts, started, "no candidate passed, even with all but one product in float")
    while high - low > 1:
        if out_of_budget():
            break
        mid = (low + high) // 2
        if attempt(recipe, mid).margin >= 0:
            high = mid
        else:
            low = mid
    return _done(best, attempts, started, None)


def _done(best: Attempt, attempts: list[Attempt], started: float, stopped: Optional[str]) -> SearchOutcome:
    return SearchOutcome(best, attempts, time.perf_counter() - started, stopped if best.margin < 0 else None)
