"""A cold start whose texts are all cached never opens the runtime (`load(..., lazy_runtime=True)`)."""

import os
import subprocess
import sys

import numpy as np
import pytest

import zoo
from zoo.conversion.pipeline import convert
from zoo.core.hardware import Hardware, detect
from zoo.errors import ZooError
from zoo.selection.benchmark import BenchConfig, bench_artifact

X86 = Hardware(arch="x86_64", flags=frozenset({"avx2"}))
TINY_BENCH = BenchConfig(texts=16, batch_sizes=(16,), rounds=1, latency_runs=2, load_runs=1)
PROBE = ("import sys, zoo; m = zoo.load('tiny', artifact='onnx-fp32', home=sys.argv[1], cache=sys.argv[2], "
         "lazy_runtime=True); v = m.embed(sys.argv[3:]); "
         "print(m.backend.opened, 'onnxruntime' in sys.modules, v.cache_hits)")


@pytest.fixture
def benched(registry, tiny_model_dir):
    registry.register("tiny", str(tiny_model_dir))
    (o,) = convert(registry, "tiny", ["onnx-fp32"], hardware=X86)
    art = next(a for a in registry.resolve("tiny").revision.artifacts if a.target == "onnx-fp32")
    bench_artifact(registry, "tiny", art, detect(), TINY_BENCH)
    return registry


def fresh(registry, cache, *texts):
    out = subprocess.run([sys.executable, "-c", PROBE, str(registry.home.root), str(cache), *texts],
                         capture_output=True, text=True, timeout=300, env=os.environ, check=True)
    return out.stdout.split()


def test_cached_texts_never_open_the_runtime(benched, tmp_path):
    cache = tmp_path / "cache.db"
    assert fresh(benched, cache, "first text") == ["True", "True", "0"]  # a miss opens it
    assert fresh(benched, cache, "first text") == ["False", "False", "1"]  # all cached: never imported
    assert fresh(benched, cache, "first text", "a new one") == ["True", "True", "1"]
    lazy = zoo.load("tiny", artifact="onnx-fp32", registry=benched, cache=str(cache), lazy_runtime=True)
    eager = zoo.load("tiny", artifact="onnx-fp32", registry=benched, cache=False)
    assert lazy.info["runtime_precision"] == eager.info["runtime_precision"]
    assert (lazy.info["backend"], lazy.info["device"]) == (eager.info["backend"], eager.info["device"])
    np.testing.assert_array_equal(lazy.embed(["first text", "a new one"]), eager.embed(["first text", "a new one"]))


def test_lazy_needs_figures_from_this_machine_and_a_cache(registry, tiny_model_dir, tmp_path):
    registry.register("tiny", str(tiny_model_dir))
    convert(registry, "tiny", ["onnx-fp32"], hardware=X86)
    unmeasured = zoo.load("tiny", artifact="onnx-fp32", registry=registry, cache=str(tmp_path / "c.db"),
                          lazy_runtime=True)
    assert not hasattr(unmeasured.backend, "opened")  # nothing measured here: opened at once


def test_a_runtime_that_changed_precision_is_refused(benched, tmp_path):
    from zoo.registry.schema import Benchmark

    with benched.session() as s:
        for row in s.query(Benchmark).all():
            row.figures = {**row.figures, "runtime_precision": "bf16"}
    m = zoo.load("tiny", artifact="onnx-fp32", registry=benched, cache=str(tmp_path / "c.db"), lazy_runtime=True)
    with pytest.raises(ZooError, match="now computes in fp32, not the bf16 measured here"):
        m.embed(["a text that misses"])
