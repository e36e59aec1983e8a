"""Load plans: a lazy load by name in a fresh process skips the registry only while it is unchanged."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import zoo
from zoo.conversion.pipeline import convert
from zoo.core.hardware import Hardware, detect
from zoo.selection.benchmark import BenchConfig, bench_artifact
from zoo.selection.plans import PLANS_DIR

X86 = Hardware(arch="x86_64", flags=frozenset({"avx2"}))
TINY_BENCH = BenchConfig(texts=16, batch_sizes=(16,), rounds=1, latency_runs=2, load_runs=1)
PROBE = ("import sys, json, zoo; cache = False if sys.argv[2] == 'off' else sys.argv[2]; "
         "m = zoo.load('tiny', home=sys.argv[1], cache=cache, lazy_runtime=True); "
         "v = m.embed(sys.argv[3:]); "
         "print(json.dumps({'plan': m.info.get('plan', False), 'sqlalchemy': 'sqlalchemy' in sys.modules, "
         "'artifact': m.info['artifact'], 'hits': v.cache_hits, 'v': v.tolist()}))")


@pytest.fixture
def benched(registry, tiny_model_dir):
    registry.register("tiny", str(tiny_model_dir))
    convert(registry, "tiny", ["onnx-fp32"], hardware=X86)
    for art in registry.resolve("tiny").revision.artifacts:
        bench_artifact(registry, "tiny", art, detect(), TINY_BENCH)
    return registry


def fresh(registry, cache, *texts, check=True):
    out = subprocess.run([sys.executable, "-c", PROBE, str(registry.home.root), str(cache), *texts],
                         capture_output=True, text=True, timeout=300, env=os.environ)
    if check:
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])
    return out


def plans(registry):
    return sorted((registry.home.root / PLANS_DIR).glob("*.json"))


def test_an_unchanged_registry_is_not_opened_and_the_vectors_are_the_same(benched, tmp_path):
    cache = tmp_path / "c.db"
    first = fresh(benched, cache, "a text")
    assert (first["plan"], first["sqlalchemy"]) == (False, True) and len(plans(benched)) == 1
    second = fresh(benched, cache, "a text", "another text")
    assert (second["plan"], second["sqlalchemy"], second["hits"]) == (True, False, 1)
    assert second["artifact"] == first["artifact"]
    eager = zoo.load("tiny", registry=benched, cache=False).embed(["a text", "another text"])
    np.testing.assert_array_equal(np.asarray(second["v"], dtype=np.float32), eager)


def test_without_the_vector_cache_the_plan_opens_the_runtime_at_once(benched):
    assert fresh(benched, "off", "a text")["plan"] is False
    planned = fresh(benched, "off", "a text")
    assert (planned["plan"], planned["sqlalchemy"], planned["hits"]) == (True, False, 0)
    eager = zoo.load("tiny", registry=benched, cache=False).embed(["a text"])
    np.testing.assert_array_equal(np.asarray(planned["v"], dtype=np.float32), eager)


def test_load_plans_can_be_turned_off(benched, tmp_path, monkeypatch):
    cache = tmp_path / "c.db"
    fresh(benched, cache, "a text")
    monkeypatch.setenv("ZOO_LOAD_PLANS", "off")
    assert fresh(benched, cache, "a text")["plan"] is False


def test_any_registry_write_voids_the_plan(benched, tmp_path):
    cache = tmp_path / "c.db"
    fresh(benched, cache, "a text")
    assert fresh(benched, cache, "a text")["plan"] is True
    benched.set_prompts("tiny", query="q: ")  # a write that does not even change the selection
    again = fresh(benched, cache, "a text")
    assert (again["plan"], again["sqlalchemy"]) == (False, True)
    assert fresh(benched, cache, "a text")["plan"] is True  # re-planned
    benched.remove("tiny")
    gone = fresh(benched, cache, "a text", check=False)
    assert gone.returncode != 0 and "tiny" in gone.stderr  # a removed model is never served from a plan


def test_a_damaged_foreign_or_unreadable_plan_is_ignored(benched, tmp_path):
    cache = tmp_path / "c.db"
    fresh(benched, cache, "a text")
    (path,) = plans(benched)
    plan = json.loads(path.read_text())
    path.write_text(json.dumps({**plan, "fingerprint": "another machine"}))
    assert fresh(benched, cache, "a text")["plan"] is False
    path.write_text("{not json")
    assert fresh(benched, cache, "a text")["plan"] is False
    assert fresh(benched, cache, "a text")["plan"] is True  # rewritten whole


def test_the_plan_path_still_checks_the_artifact_files(benched, tmp_path):
    cache = tmp_path / "c.db"
    fresh(benched, cache, "a text")
    (path,) = plans(benched)
    tree = benched.store.trees / json.loads(path.read_text())["digest"]
    (tree / "tokenizer.json").unlink()
    out = fresh(benched, cache, "a text", check=False)
    assert out.returncode != 0 and "zoo verify --repair" in out.stderr
