"""What the registry refuses, before it takes a lock or writes a row."""

import math

import pytest

from conftest import table_counts
from zoo.errors import InvalidInput, InvalidSource, NotAModel
from zoo.core.floor import Floor


@pytest.mark.parametrize("name", ["tiny\n", "tiny\n\n", "\ntiny", "ti ny", "", "-tiny", "a" * 201, "tïny"])
def test_names_are_matched_whole(registry, tiny_model_dir, name):
    with pytest.raises(InvalidInput, match="invalid model name"):
        registry.register(name, str(tiny_model_dir))
    registry.register("tiny", str(tiny_model_dir))
    with pytest.raises(InvalidInput, match="invalid alias"):
        registry.add_alias(name, "tiny")


def test_a_refused_registration_leaves_no_lock(registry, tiny_model_dir):
    before = sorted(p.name for p in registry.home.locks_dir.iterdir())
    counts = table_counts(registry)
    for source in ("/no/such/dir", "ftp://x/y", "hf://bad repo"):
        with pytest.raises(InvalidSource):
            registry.register("ghost", source)
    with pytest.raises(InvalidInput):
        registry.register("ghost", str(tiny_model_dir), revision="main")  # --revision is hf:// only
    with pytest.raises(NotAModel):  # a folder that is no model: refused inside the lock, which goes too
        registry.register("ghost", str(registry.home.root / "store"))
    assert sorted(p.name for p in registry.home.locks_dir.iterdir()) == before
    assert table_counts(registry) == counts


@pytest.mark.parametrize("values", [{"mean_cosine": 5}, {"mean_cosine": -1}, {"mean_cosine": math.nan},
                                    {"min_cosine": math.inf}, {"spearman": -1.5}, {"recall_at_10_drop": 2},
                                    {"mean_cosine": "0.9"}, {"mean_cosine": True}, {"colour": 0.5}])
def test_floor_values_are_finite_and_in_range(registry, tiny_model_dir, values):
    registry.register("tiny", str(tiny_model_dir))
    with pytest.raises(InvalidInput, match="fidelity floor"):
        registry.set_floor("tiny", values)
    assert registry.describe("tiny")["fidelity_floor"] is None


def test_floor_bounds_are_inclusive():
    assert Floor(mean_cosine=1, min_cosine=0, spearman=-1, recall_at_10_drop=0).spearman == -1
