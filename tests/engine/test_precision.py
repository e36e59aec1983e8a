"""Compact precisions: int8/uint8 from the artifact's stored ranges, equal to sentence-transformers'
``quantize_embeddings(..., ranges=)``, the same in every batch, process and restart."""

import warnings

import numpy as np
import pytest

import zoo
from zoo.engine.precision import (PRECISIONS, compute_ranges, precision_figures, quantize, range_widths,
                                  ranges_for)
from zoo.errors import InvalidInput
from zoo.registry.schema import Artifact

TEXTS = ["the quick brown fox", "le chat dort", "numbers 42 and 3.14 " * 5, "a", "zebra crossing at noon"]
OTHER = ["completely different words", "the quick brown fox", "x y z"]


def st_quantize(vectors, precision, ranges):
    from sentence_transformers.util.quantization import quantize_embeddings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_embeddings(vectors, precision, ranges=ranges)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_quantize_is_sentence_transformers_bit_for_bit(precision):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(64, 77)).astype(np.float32)  # 77: binary pads the last byte
    calibration = rng.normal(size=(300, 77)).astype(np.float32)
    ranges = np.vstack((calibration.min(axis=0), calibration.max(axis=0)))
    ranges[:, 5] = 0.25  # a constant dimension: a zero step is one, as sentence-transformers has it
    ours = quantize(vectors, precision, ranges)
    if precision == "float16":
        assert ours.dtype == np.float16 and np.array_equal(ours, vectors.astype(np.float16))
        return
    theirs = st_quantize(vectors, precision, ranges)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)
    if precision in ("binary", "ubinary"):
        assert ours.shape == (64, 10)


def test_stored_ranges_read_back_bit_for_bit_and_cover_the_usual_widths():
    assert range_widths(384) == [384, 256, 128, 64, 32]
    assert range_widths(768, (768, 512, 100)) == [768, 512, 256, 128, 100, 64, 32]
    raw = np.random.default_rng(1).normal(size=(50, 64)).astype(np.float32)
    record = compute_ranges(raw, range_widths(64), digest="d")
    np.testing.assert_array_equal(ranges_for(record, normalize=False, dims=64),
                                  np.vstack((raw.min(axis=0), raw.max(axis=0))))
    np.testing.assert_array_equal(ranges_for(record, normalize=False, dims=10), ranges_for(record, normalize=False,
                                                                                         dims=64)[:, :10])
    unit = raw[:, :32] / np.linalg.norm(raw[:, :32], axis=1, keepdims=True)
    np.testing.assert_allclose(ranges_for(record, normalize=True, dims=32),
                               np.vstack((unit.min(axis=0), unit.max(axis=0))), rtol=1e-6)
    with pytest.raises(InvalidInput, match=r"dimensions=48 .* widths 64, 32 only"):
        ranges_for(record, normalize=True, dims=48)
    with pytest.raises(InvalidInput, match="finite"):
        compute_ranges(np.full((4, 8), np.nan, np.float32), [8], digest="d")


def test_precision_figures_show_what_compact_search_costs():
    rng = np.random.default_rng(2)
    passages = rng.normal(size=(60, 64)).astype(np.float32)
    unit = passages / np.linalg.norm(passages, axis=1, keepdims=True)
    ranges = np.vstack((unit.min(axis=0), unit.max(axis=0)))
    # a query equal to its passage: every precision finds it, and rescoring gives float's own top 10 back
    # whenever float's top 10 is among the 40 the compact search kept
    fig = precision_figures(passages, passages, list(range(60)), ranges)
    assert fig["float32"] == {"recall_at_10": 1.0, "top10_agreement": 1.0}
    assert (fig["queries"], fig["passages"], fig["rescore_multiplier"]) == (60, 60, 4)
    for precision in ("int8", "binary"):
        assert fig[precision]["rescored_recall_at_10"] == 1.0, fig
    noisy = passages + 0.3 * rng.normal(size=passages.shape).astype(np.float32)
    fig = precision_figures(noisy, passages, list(range(60)), ranges)
    for precision in ("int8", "binary"):
        assert all(0.0 <= v <= 1.0 for v in fig[precision].values()), fig
        assert fig[precision]["top10_agreement"] < 1.0  # compact search is not free on noisy queries


@pytest.fixture
def tiny(registry, tiny_model_dir):
    registry.register("tiny", str(tiny_model_dir))
    return zoo.load("tiny", registry=registry)


def stored(registry, target="torch-fp32"):
    from sqlalchemy import select

    with registry.session() as s:
        return s.scalar(select(Artifact).where(Artifact.target == target)).precision_ranges


def test_int8_uses_the_stored_ranges_in_every_batch_and_process(tiny, registry):
    assert stored(registry) is None  # the registered reference is calibrated on its first compact request
    floats = np.asarray(tiny.embed(TEXTS))
    got = tiny.embed(TEXTS, precision="int8")
    record = stored(registry)
    assert record["texts"] == 300 and record["source"] == "bundled" and record["dim"] == 32
    ranges = ranges_for(record, normalize=True, dims=32)
    np.testing.assert_array_equal(tiny.ranges(), ranges)
    assert got.dtype == np.int8 and np.array_equal(got, st_quantize(floats, "int8", ranges))
    # another batch, another process's load, the same rows: the ranges do not depend on the batch
    again = zoo.load("tiny", registry=registry, cache=False)
    alone = again.embed([TEXTS[1]], precision="int8")
    assert np.array_equal(alone[0], got[1])
    mixed = again.embed(OTHER, precision="uint8")
    assert np.array_equal(mixed[1], st_quantize(floats[:1], "uint8", ranges)[0])
    assert stored(registry) == record  # computed once, kept
    # binary and ubinary need no ranges and pack bits as sentence-transformers does
    for precision in ("binary", "ubinary", "float16"):
        out = again.embed(TEXTS, precision=precision)
        expected = floats.astype(np.float16) if precision == "float16" else st_quantize(floats, precision, None)
        assert out.dtype == expected.dtype and np.array_equal(out, expected), precision


def test_the_cache_keeps_float32_and_quantizes_on_the_way_out(tiny):
    first = tiny.embed(TEXTS, precision="int8")
    assert first.cache_hits == 0
    floats = tiny.embed(TEXTS)
    assert floats.cache_hits == len(TEXTS) and floats.dtype == np.float32
    second = tiny.embed(TEXTS, precision="int8")
    assert second.cache_hits == len(TEXTS) and np.array_equal(first, second)


def test_raw_and_cut_vectors_use_their_own_ranges(tiny):
    raw = np.asarray(tiny.embed(TEXTS, normalize=False))
    got = tiny.embed(TEXTS, normalize=False, precision="int8")
    assert np.array_equal(got, st_quantize(raw, "int8", tiny.ranges(normalize=False)))
    cut = np.asarray(tiny.embed(TEXTS, normalize=False, dimensions=16))
    assert np.array_equal(tiny.embed(TEXTS, normalize=False, dimensions=16, precision="uint8"),
                          st_quantize(cut, "uint8", tiny.ranges(normalize=False)[:, :16]))
    # a normalised cut has other values: without stored ranges for that width it is refused, before any compute
    with pytest.raises(InvalidInput, match=r"dimensions=16 .* widths 32 only.*binary"):
        tiny.embed(TEXTS, dimensions=16, precision="int8")
    assert tiny.embed(TEXTS, dimensions=16, precision="ubinary").shape == (5, 2)


@pytest.mark.parametrize("bad", ["int4", "INT8", "", 8, ["int8"], "bfloat16"])
def test_unknown_precisions_are_refused(tiny, bad):
    with pytest.raises(InvalidInput, match="precision must be one of float32, float16, int8, uint8, binary, ubinary"):
        tiny.embed(TEXTS, precision=bad)


def test_the_gate_stores_ranges_with_a_converted_artifact(registry, tiny_model_dir):
    from zoo.conversion.pipeline import convert

    registry.register("tiny", str(tiny_model_dir))
    (outcome,) = convert(registry, "tiny", ["onnx-fp32"])
    assert outcome.status == "ready"
    record = stored(registry, "onnx-fp32")
    assert record["texts"] == 300 and set(record["normalized"]) == {"32"}
    fig = record["figures"]
    assert fig["queries"] == 78 and set(fig) >= {"float32", "int8", "binary"}
    assert all(0 <= v <= 1 for precision in ("int8", "binary") for v in fig[precision].values())
    m = zoo.load("tiny", artifact="onnx-fp32", registry=registry)
    floats = np.asarray(m.embed(TEXTS))
    assert np.array_equal(m.embed(TEXTS, precision="int8"),
                          st_quantize(floats, "int8", ranges_for(record, normalize=True, dims=32)))
    assert stored(registry) is None  # the reference's own ranges are its own, computed when first asked
