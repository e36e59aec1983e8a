"""Any sentence-transformers stack of Transformer, Pooling, Dense and Normalize runs in every runtime, equal to
sentence-transformers: two Dense modules as EmbeddingGemma has them (the first with bias and Tanh, the second
without bias, Identity), each artifact judged by the gate. Other modules are refused by name before any work."""

import shutil

import numpy as np
import pytest

import zoo
from conftest import DYNAMIC_INT8, add_module_stack, build_tiny_model, row_cosines

TEXTS = ["the quick brown fox jumps over the lazy dog", "a cat", "", "der hund spielt im garten " * 20]
TARGETS = ["onnx-fp32", "openvino-fp32", DYNAMIC_INT8]


@pytest.fixture(scope="module")
def dense_dir(tmp_path_factory):
    d = build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-dense", seed=6)
    return add_module_stack(d, [
        ("Dense", dict(in_features=32, out_features=48)),  # Tanh, with bias: Dense's defaults
        ("Dense", dict(in_features=48, out_features=24, bias=False, activation_function=None)),  # Identity
    ])


@pytest.fixture(scope="module")
def converted(dense_dir, tmp_path_factory):
    from zoo.conversion.pipeline import convert
    from zoo.registry.catalog import Registry
    from zoo.store.home import resolve_home

    reg = Registry(resolve_home(tmp_path_factory.mktemp("dense") / "zoo"))
    reg.register("dense", str(dense_dir))
    return reg, {o.target: o for o in convert(reg, "dense", TARGETS)}


@pytest.fixture(scope="module")
def reference(dense_dir):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(dense_dir), device="cpu")
    assert [type(m).__name__ for m in st] == ["Transformer", "Pooling", "Dense", "Dense", "Normalize"]
    raw = SentenceTransformer(modules=list(st)[:-1], device="cpu").encode(TEXTS)  # before the Normalize
    return st.encode(TEXTS), raw


@pytest.mark.parametrize("target", TARGETS)
def test_every_runtime_runs_the_dense_stack_like_sentence_transformers(converted, reference, target):
    reg, outcomes = converted
    o = outcomes[target]
    assert o.status == "ready", (target, o.error)
    floor = 0.99 if "int8" in target else 0.9999
    assert o.fidelity["min_cosine"] >= floor, o.fidelity
    m = zoo.load("dense", artifact=target, registry=reg, cache=False)
    assert m.dim == 24
    normalized, raw = reference
    got = m.embed(TEXTS)
    assert got.shape == (4, 24) and row_cosines(got, normalized).min() >= floor
    if "int8" not in target:
        np.testing.assert_allclose(got, normalized, atol=2e-5)
        # raw vectors (no Normalize): the Dense output itself, magnitudes included
        np.testing.assert_allclose(m.embed(TEXTS, normalize=False), raw, rtol=1e-4, atol=1e-5)


def test_the_artifact_carries_the_dense_weights(converted):
    reg, _ = converted
    art = next(a for a in reg.resolve("dense").revision.artifacts if a.target == "onnx-fp32")
    folder = reg.artifact_path(art)
    for dense in ("2_Dense", "3_Dense"):
        assert sorted(p.name for p in (folder / dense).iterdir()) == ["config.json", "model.safetensors"]


def test_gguf_refuses_a_stack_its_converter_would_drop(converted):
    from zoo.conversion.pipeline import convert
    from zoo.errors import InvalidInput

    reg, _ = converted
    pytest.importorskip("llama_cpp", reason="the gguf extra is not installed: pip install 'zoo[gguf]'")
    with pytest.raises(InvalidInput, match=r"does not carry sentence-transformers Dense modules \(2_Dense, 3_Dense\)"):
        convert(reg, "dense", ["gguf-f16"])


@pytest.mark.parametrize("name", ["Identity", "Tanh", "ReLU", "Sigmoid", "GELU", "SiLU"])
def test_each_activation_equals_torch(name):
    import torch

    from zoo.engine.module_stack import ACTIVATIONS

    module = getattr(torch.nn, name)()
    x = np.random.default_rng(0).normal(0, 3, (8, 64)).astype(np.float32)
    key = f"{type(module).__module__}.{name}"
    np.testing.assert_allclose(ACTIVATIONS[key](x), module(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-6)


def test_an_activation_zoo_does_not_run_is_refused_by_name(dense_dir, tmp_path):
    import json

    from zoo.engine.module_stack import stack_reason

    d = tmp_path / "custom-act"
    shutil.copytree(dense_dir, d)
    config = json.loads((d / "2_Dense" / "config.json").read_text())
    config["activation_function"] = "torch.nn.modules.activation.Softplus"
    (d / "2_Dense" / "config.json").write_text(json.dumps(config))
    assert stack_reason(d) == ("its Dense module 2_Dense uses the activation torch.nn.modules.activation.Softplus; "
                               "zoo runs Identity, Tanh, ReLU, Sigmoid, GELU, SiLU (the torch targets serve it)")
