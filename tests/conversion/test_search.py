"""The quantization search: its order, its bisection, its budget, and the three disjoint text sets.

``run_search`` takes a callback that builds one candidate; here it is a deterministic function of
how many products stay in float, so each test states exactly which candidates must be tried.
"""

import pytest

from converters.base import Recipe, SearchSpace
from zoo.conversion.corpora import calibration_texts, probe_set, validation_set
from zoo.conversion.search import SAFETY, run_search
from zoo.core.floor import Floor

FLOOR = Floor(mean_cosine=0.99, min_cosine=0.95, spearman=0.98)


def figures(mean: float) -> dict:
    return {"mean_cosine": mean, "min_cosine": 0.999, "spearman": 0.999, "recall_at_10": 1.0,
            "reference_recall_at_10": 1.0}


def space(n: int, recipes=("a",)) -> SearchSpace:
    return SearchSpace([Recipe(r, {"r": r}) for r in recipes],
                       [{"name": f"n{i}", "flops": 1.0} for i in range(n)])


def passing_from(k_needed: int, recipe_bonus=None):
    """A build that passes (with the search's safety to spare) once ``k_needed`` products are in float."""
    built = []

    def try_config(config):
        k = len(config["keep_float"])
        built.append((config["recipe"]["r"], k))
        bonus = (recipe_bonus or {}).get(config["recipe"]["r"], 0.0)
        ok = 0.99 + (SAFETY + 0.01) * 0.01
        mean = ok if k >= k_needed else 0.95 + 0.001 * k + bonus
        return figures(mean), f"dir-{len(built)}"
    return try_config, built


def test_margin_is_non_negative_exactly_when_the_floor_passes():
    assert FLOOR.margin(figures(0.99)) == pytest.approx(0.0)
    assert FLOOR.margin(figures(0.995)) == pytest.approx(0.5)
    assert FLOOR.margin(figures(0.98)) < 0 and FLOOR.check(figures(0.98)) is not None
    assert FLOOR.margin(figures(float("nan"))) == float("-inf")


def test_first_recipe_that_passes_whole_wins_without_exclusions():
    try_config, built = passing_from(0)
    out = run_search(space(8, ("a", "b")), try_config, FLOOR)
    assert built == [("a", 0)] and out.chosen.keep_float == [] and out.chosen.result == "dir-1"


def test_doubles_then_bisects_to_the_fewest_products_in_float():
    try_config, built = passing_from(5)
    discarded = []
    out = run_search(space(20), try_config, FLOOR, discard=discarded.append)
    assert [k for _, k in built] == [0, 1, 2, 4, 8, 6, 5]
    assert out.chosen.keep_float == ["n0", "n1", "n2", "n3", "n4"] and out.stopped is None
    # every loser's build is discarded, the winner's is kept
    assert sorted(discarded) == sorted(f"dir-{i}" for i in range(1, 8) if f"dir-{i}" != out.chosen.result)
    record = out.record(1.5, space(20).nodes)
    assert record["kept_in_float"] == out.chosen.keep_float and record["float_flops_share"] == 0.25
    assert [a["kept_in_float"] for a in record["attempts"]] == [0, 1, 2, 4, 8, 6, 5]
    assert [a["passed"] for a in record["attempts"]] == [False] * 4 + [True, True, True]


def test_exclusions_grow_on_the_recipe_that_came_closest():
    try_config, built = passing_from(2, recipe_bonus={"b": 0.02})
    out = run_search(space(10, ("a", "b")), try_config, FLOOR)
    assert built[:2] == [("a", 0), ("b", 0)] and {r for r, _ in built[2:]} == {"b"}
    assert out.chosen.recipe == "b" and len(out.chosen.keep_float) == 2


def test_never_keeps_every_product_in_float():
    try_config, built = passing_from(10)  # would need all 10
    out = run_search(space(10), try_config, FLOOR)
    assert max(k for _, k in built) == 9
    assert out.chosen.margin < 0 and "all but one" in out.stopped


def test_the_budget_stops_the_search_and_says_so():
    try_config, built = passing_from(50)
    out = run_search(space(100), try_config, FLOOR, budget={"attempts": 3})
    assert len(built) == 3 and out.stopped == "attempt budget (3) spent"
    assert out.chosen.margin < 0 and len(out.chosen.keep_float) == 2  # the closest attempt is what is gated


def test_the_three_text_sets_are_disjoint_and_have_short_texts():
    probe, validation, calibration = probe_set(), validation_set(), calibration_texts()
    sets = {"probe": set(probe.texts) | set(probe.queries) | set(probe.passages),
            "validation": set(validation.texts) | set(validation.queries) | set(validation.passages),
            "calibration": set(calibration)}
    assert not sets["probe"] & sets["validation"]
    assert not sets["probe"] & sets["calibration"]
    assert not sets["validation"] & sets["calibration"]
    for texts in (probe.texts, validation.texts, calibration):
        words = [t for t in texts if len(t.split()) == 1]
        short = [t for t in texts if len(t.split()) in (2, 3)]
        assert len(words) >= 20 and len(short) >= 20, (len(words), len(short))
    assert len(probe.texts) >= 500 and len(validation.texts) >= 200 and len(calibration) == 300
