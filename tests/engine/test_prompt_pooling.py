"""A Pooling module with ``include_prompt: false`` leaves the prompt's tokens out of the vector (the prompt still
conditions the others), in every runtime, as sentence-transformers' ``encode(prompt_name=...)`` does. Ignored, the
prompt's tokens stay in the mean: the premise below shows that gives different vectors, so these tests can fail."""

import json
import shutil

import numpy as np
import pytest

import zoo
from conftest import build_tiny_model, row_cosines

TEXTS = ["the quick brown fox jumps over the lazy dog", "a cat", "", "le chat dort sur le canapé " * 12]


@pytest.fixture(scope="module")
def excluding_dir(tmp_path_factory):
    out = build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-noprompt", seed=5)
    pooling = out / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    config["include_prompt"] = False
    pooling.write_text(json.dumps(config))
    return out


@pytest.fixture(scope="module")
def st_reference(excluding_dir, tmp_path_factory):
    from sentence_transformers import SentenceTransformer

    excluding = SentenceTransformer(str(excluding_dir), device="cpu")
    assert excluding[1].include_prompt is False
    ref = {name: excluding.encode(TEXTS, prompt_name=name) for name in ("query", "document")}
    including = tmp_path_factory.mktemp("models") / "including"
    shutil.copytree(excluding_dir, including)
    (including / "1_Pooling" / "config.json").write_text(
        (excluding_dir / "1_Pooling" / "config.json").read_text().replace('"include_prompt": false', '"include_prompt": true'))
    wrong = SentenceTransformer(str(including), device="cpu").encode(TEXTS, prompt_name="query")
    assert row_cosines(wrong, ref["query"]).min() < 0.99  # the premise: pooling the prompt in is another vector
    return ref


@pytest.fixture(scope="module")
def converted(excluding_dir, tmp_path_factory):
    from zoo.conversion.pipeline import convert
    from zoo.registry.catalog import Registry
    from zoo.store.home import resolve_home

    reg = Registry(resolve_home(tmp_path_factory.mktemp("noprompt") / "zoo"))
    reg.register("noprompt", str(excluding_dir))
    return reg, {o.target: o for o in convert(reg, "noprompt", ["onnx-fp32", "openvino-fp32"])}


def test_the_registry_records_it(converted):
    reg, _ = converted
    assert reg.describe("noprompt")["include_prompt"] is False


@pytest.mark.parametrize("artifact", ["torch-fp32", "onnx-fp32", "openvino-fp32"])
def test_every_runtime_leaves_the_prompt_out_as_sentence_transformers(converted, st_reference, artifact):
    reg, outcomes = converted
    if artifact != "torch-fp32":
        o = outcomes[artifact]
        assert o.status == "ready", o.error
        # the gate read the probe's queries and passages with the model's prompts
        assert o.fidelity["prompted_min_cosine"] >= 0.9999, o.fidelity
    m = zoo.load("noprompt", artifact=artifact, registry=reg, cache=False)
    for name in ("query", "document"):
        got = m.embed(TEXTS, prompt_name=name)
        assert row_cosines(got, st_reference[name]).min() >= 0.9999, (artifact, name)
    # without a prompt nothing is left out
    from sentence_transformers import SentenceTransformer

    plain = SentenceTransformer(str(reg.artifact_path(reg.resolve("noprompt").revision.artifacts[0])), device="cpu")
    assert row_cosines(m.embed(TEXTS), plain.encode(TEXTS)).min() >= 0.9999


def test_the_service_batches_keep_prompted_and_plain_apart(converted, st_reference):
    """TEI's /embed with prompt_name goes through the batcher with already-tokenized texts: the prompt's
    length travels with them, and the cache keys a prompted text apart from the same characters sent bare."""
    reg, _ = converted
    m = zoo.load("noprompt", artifact="onnx-fp32", registry=reg)
    prompt = m.resolve_prompt(prompt_name="query")
    tokenized = m.tokenize(TEXTS, prompt=prompt)
    assert tokenized.prompt_tokens > 0
    got = m.embed(tokenized.texts, tokenized=tokenized)
    assert row_cosines(got, st_reference["query"]).min() >= 0.9999
    bare = m.embed([prompt + t for t in TEXTS])  # the same characters, no prompt: every token pooled
    assert row_cosines(bare, st_reference["query"]).max() < 0.9999
