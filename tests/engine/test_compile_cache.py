"""OpenVINO's compiled models are kept in the home between processes, keyed so they cannot mix."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import zoo
from zoo.conversion.pipeline import convert
from zoo.core.hardware import Hardware

pytest.importorskip("openvino")
X86 = Hardware(arch="x86_64", flags=frozenset({"avx2"}))
TEXTS = ["the quick brown fox", "embedding models map sentences to vectors"]
LOAD = ("import sys, json, zoo; m = zoo.load('tiny', artifact='openvino-fp32', home=sys.argv[1], cache=False); "
        "print(json.dumps(m.embed(sys.argv[2:]).tolist()))")


def embed_in_a_fresh_process(home, env=None):
    out = subprocess.run([sys.executable, "-c", LOAD, str(home), *TEXTS], capture_output=True, text=True,
                         env={**os.environ, **(env or {})}, timeout=300, check=True)
    return np.array(json.loads(out.stdout))


def test_compiled_models_are_cached_keyed_and_collected(registry, tiny_model_dir):
    registry.register("tiny", str(tiny_model_dir))
    (o,) = convert(registry, "tiny", ["openvino-fp32"], hardware=X86)
    assert o.status == "ready"
    root = registry.home.root / "compiled"
    uncached = embed_in_a_fresh_process(registry.home.root, {"ZOO_COMPILE_CACHE": "off"})
    assert not root.exists()
    first = embed_in_a_fresh_process(registry.home.root)
    entries = [p for p in root.iterdir()]
    assert len(entries) == 1 and not entries[0].name.startswith("tmp-")
    identity = json.loads((entries[0] / "identity.json").read_text())
    digest = next(a for a in registry.resolve("tiny").revision.artifacts if a.target == "openvino-fp32").store_digest
    assert identity["artifact"] == digest and identity["hardware"] and identity["openvino"]
    assert any(p.suffix == ".blob" for p in entries[0].iterdir())
    stamp = {p.name: p.stat().st_mtime_ns for p in entries[0].iterdir()}
    second = embed_in_a_fresh_process(registry.home.root)  # from the cache: nothing rewritten
    assert {p.name: p.stat().st_mtime_ns for p in entries[0].iterdir()} == stamp
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, uncached, atol=1e-6)
    # another runtime setting is another entry, never the same blob
    zoo.load("tiny", artifact="openvino-fp32", registry=registry, cache=False, runtime_options={"mode": "throughput"})
    assert len(list(root.iterdir())) == 2
    # an entry OpenVINO cannot read is dropped and compiled afresh
    for blob in entries[0].glob("*.blob"):
        blob.write_bytes(b"garbage")
    np.testing.assert_allclose(embed_in_a_fresh_process(registry.home.root), uncached, atol=1e-6)
    # gc removes the entries of artifacts nobody references
    registry.remove("tiny")
    report = registry.gc()
    assert len(report.compiled) == 2 and list(root.iterdir()) == []
