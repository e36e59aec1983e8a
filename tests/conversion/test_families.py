"""The modern encoder families, each a tiny random model laid out like the published one (conftest's
``build_family_model``): ModernBERT (gte-modernbert / modernbert-embed: local and global attention, prompts),
Gemma 3 text with bidirectional attention and EmbeddingGemma's two Dense modules and prompts, and the T5 encoder
with sentence-t5's Dense. Each exports, quantizes and serves like sentence-transformers' ``encode`` on a batch of
mixed lengths with the empty string, non-ASCII text and a text past the max length; with its prompts too."""

import numpy as np
import pytest

import zoo
from conftest import MODERN_FAMILIES, X86_FLAGS, build_family_model, row_cosines
from zoo.core.hardware import Hardware

TEXTS = ["the quick brown fox jumps over the lazy dog", "", "Straße, café, 東京 and naïve façades",
         "a cat", "der hund spielt im garten und der kater schläft " * 12]  # the last: past 64 tokens
TARGETS = {"onnx-fp32": 0.9999, "openvino-fp32": 0.9999, "onnx-int8-static": 0.99}


@pytest.fixture(scope="module", params=MODERN_FAMILIES)
def family(request, tmp_path_factory):
    from zoo.conversion.pipeline import convert
    from zoo.registry.catalog import Registry
    from zoo.store.home import resolve_home

    folder = build_family_model(tmp_path_factory.mktemp("models") / f"tiny-{request.param}", request.param)
    reg = Registry(resolve_home(tmp_path_factory.mktemp(request.param) / "zoo"))
    reg.register(request.param, str(folder))
    outcomes = {o.target: o for o in convert(reg, request.param, list(TARGETS))}
    return request.param, folder, reg, outcomes


def test_every_target_embeds_like_sentence_transformers(family):
    from sentence_transformers import SentenceTransformer

    name, folder, reg, outcomes = family
    st = SentenceTransformer(str(folder), device="cpu")
    assert st.tokenize([TEXTS[-1]])["input_ids"].shape[1] == 64  # the long text is cut at the max length
    prompt_names = [None, *sorted(st.prompts)]
    for target, floor in TARGETS.items():
        o = outcomes[target]
        assert o.status == "ready", (name, target, o.error)
        assert o.fidelity["min_cosine"] >= floor, (name, target, o.fidelity)
        m = zoo.load(name, artifact=target, registry=reg, cache=False)
        for prompt_name in prompt_names:
            got = m.embed(TEXTS, prompt_name=prompt_name)
            want = st.encode(TEXTS, prompt_name=prompt_name)
            assert got.shape == want.shape and np.isfinite(got).all()
            assert row_cosines(got, want).min() >= floor, (name, target, prompt_name, row_cosines(got, want))
    if name == "gemma3_text":  # EmbeddingGemma's layout: two Dense modules, each carried into the artifact
        art = next(a for a in reg.resolve(name).revision.artifacts if a.target == "onnx-fp32")
        assert len(list(reg.artifact_path(art).glob("[0-9]_Dense/model.safetensors"))) == 2


def test_what_each_family_is_offered(family):
    """all-cpu / all-cuda offer what each family's tools support, and leave out the rest with a reason."""
    from converters import expand_targets, unavailable_reason

    name, folder, _, _ = family
    x86 = Hardware("x86_64", X86_FLAGS)
    cpu = expand_targets(["all-cpu"], x86, folder)
    assert {"onnx-fp32", "openvino-fp32", "openvino-int8", "onnx-int8-static", "torch-bf16"} <= set(cpu)
    gpu = expand_targets(["all-cuda"], Hardware("x86_64", X86_FLAGS, cuda=True, ort_cuda=True), folder)
    if name == "gemma3_text":
        # optimum has no graph fusions for Gemma 3: the O-levels are left out, named
        assert not {"onnx-o1", "onnx-o2", "onnx-o3"} & set(cpu)
        assert "no graph fusions for gemma3_text" in unavailable_reason("onnx-o2", x86, folder)
        # Gemma 3 activations overflow fp16: no fp16 arithmetic offered on CUDA (asked by name, the gate decides)
        assert not {"torch-fp16", "onnx-o4"} & set(gpu)
    else:
        assert {"onnx-o1", "onnx-o2", "onnx-o3"} <= set(cpu) and "torch-fp16" in gpu
    # llama.cpp's converter knows none of these families as an encoder here: refused by name
    with_gguf = Hardware("x86_64", X86_FLAGS, runtimes=frozenset({"torch", "onnx", "openvino", "gguf"}))
    why = unavailable_reason("gguf-f16", with_gguf, folder)
    assert why is not None and name in why
