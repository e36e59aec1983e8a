"""The gate reads a model's whole length range. A long-context model (a tiny XLM-R of 2,048 tokens, laid out like
bge-m3 / multilingual-e5 with 8,192) gets probe texts up to and past its max length, and every artifact's minimum
cosine is reported per band of lengths, so an int8 scheme that collapses on long texts (a static-int8 softmax
zeroes the small attention weights long texts spread out) fails the gate where it happens."""

import pytest

import zoo
from conftest import build_tiny_model, row_cosines
from zoo.conversion.corpora import LENGTH_BANDS, band_of, length_targets


def test_the_bands_and_targets():
    assert [band_of(n) for n in (1, 128, 129, 512, 513, 2048, 2049, 8192, 8193)] == [
        "1-128", "1-128", "129-512", "129-512", "513-2048", "513-2048", "2049-8192", "2049-8192", ">8192"]
    assert length_targets(256) == [] and length_targets(512) == []  # MiniLM, BERT: the set already reaches them
    assert length_targets(2048) == [2048 + 64]  # cut at 2,048, as served
    assert length_targets(8192) == [1843, 8192 + 64]
    assert length_targets(32768) == [1843, 7372, 32768 + 64]
    assert LENGTH_BANDS[0] == (1, 128)


@pytest.fixture(scope="module")
def long_model(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-xlmr-2k", arch="xlm-roberta", max_length=2048,
                            seed=8)


def test_every_artifact_is_judged_per_length_band(registry, long_model):
    from sentence_transformers import SentenceTransformer

    from zoo.conversion.pipeline import convert

    registry.register("long", str(long_model))
    assert registry.describe("long")["max_seq_length"] == 2048
    outcomes = {o.target: o for o in convert(registry, "long", ["onnx-fp32", "onnx-int8-static"])}
    for target, o in outcomes.items():
        assert o.status == "ready", (target, o.error)
        bands = o.fidelity["min_cosine_by_length"]
        assert list(bands) == ["1-128", "129-512", "513-2048"], bands  # texts at the max length were read
        assert o.fidelity["probe_texts"] == 583 + 2
        assert min(bands.values()) == pytest.approx(o.fidelity["min_cosine"])
        assert min(bands.values()) >= (0.9999 if target == "onnx-fp32" else 0.95)
    # and each serves a text at the max length as sentence-transformers does
    text = "der hund spielt im garten und der kater schläft " * 300
    reference = SentenceTransformer(str(long_model), device="cpu")
    assert reference.tokenize([text])["input_ids"].shape[1] == 2048
    for target in outcomes:
        got = zoo.load("long", artifact=target, registry=registry, cache=False).embed([text])
        assert row_cosines(got, reference.encode([text])).min() >= 0.95, target


def test_minilm_sized_models_keep_their_probe_set(registry, tiny_model_dir):
    """A model of 512 tokens or fewer gets no new text: its recorded figures are those of before."""
    from zoo.conversion.pipeline import convert

    registry.register("tiny", str(tiny_model_dir))
    (o,) = convert(registry, "tiny", ["onnx-fp32"])
    assert o.fidelity["probe_texts"] == 583 and list(o.fidelity["min_cosine_by_length"]) == ["1-128"]
