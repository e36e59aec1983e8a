"""The embedding engine: batching, prompts, dimensions, normalisation, truncation, threads, async.

Every runtime is checked against sentence-transformers on the same tiny model, or
against itself text by text (the order-restoring property of length sorting).
"""

import asyncio
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest

import zoo
from conftest import TINY_PROMPTS, row_cosines
from zoo.engine.batching import CPU_BATCH_OVERHEAD, GPU_BATCH_OVERHEAD, plan_batches, plan_cost
from zoo.conversion.pipeline import convert
from zoo.errors import InvalidInput
from zoo.core.hardware import Hardware
from zoo.engine.model import Embeddings, TruncationWarning

X86 = Hardware(arch="x86_64", flags=frozenset({"avx2", "avx512f", "avx512_vnni"}))
MIXED = ["a", "a much longer text about the weather in the mountains and the sea " * 3, "",
         "mid length text here", "le chat dort sur le canapé", "x " * 40, "short one", "numbers 1 2 3 4 5 6 7"]
LONG = "word " * 200  # > 64 tokens: the tiny model's max length


@pytest.fixture(scope="module")
def reg(tmp_path_factory, tiny_model_dir):
    from zoo.store.home import resolve_home
    from zoo.registry.catalog import Registry

    registry = Registry(resolve_home(tmp_path_factory.mktemp("engine") / "zoo"))
    registry.register("tiny", str(tiny_model_dir))
    convert(registry, "tiny", ["onnx-fp32", "openvino-fp32"], hardware=X86)
    return registry


@pytest.fixture(scope="module")
def st_model(tiny_model_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(tiny_model_dir), device="cpu")


RUNTIMES = ["torch-fp32", "onnx-fp32", "openvino-fp32"]
pytestmark = pytest.mark.filterwarnings("ignore::zoo.engine.model.TruncationWarning")  # MIXED has one long text


@pytest.fixture(scope="module", params=RUNTIMES)
def model(request, reg):
    return zoo.load("tiny", artifact=request.param, registry=reg, cache=False)


def test_plan_batches_respects_rows_and_token_budget():
    lengths = [5, 60, 60, 3, 17, 64, 2, 30, 30, 9]
    batches = list(plan_batches(lengths, max_rows=4, max_tokens=100))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))  # every row exactly once
    assert [lengths[i] for i in flat] == sorted(lengths)  # shortest first
    for b in batches:
        assert len(b) <= 4
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 100
    assert [len(b) for b in plan_batches([300, 10], max_rows=8, max_tokens=100)] == [1, 1]  # too long alone: own batch
    assert all(len(b) <= 3 for b in plan_batches(lengths, max_rows=3, max_tokens=None))
    assert list(plan_batches([], max_rows=4)) == []
    with pytest.raises(ValueError, match="max_rows"):
        list(plan_batches(lengths, max_rows=0))


def test_plan_batches_cuts_where_padding_costs():
    # equal lengths: nothing to save by splitting, so full batches
    assert sorted(len(b) for b in plan_batches([40] * 10, max_rows=4, max_tokens=None)) == [2, 4, 4]
    # 15 short texts and one long one: the long one must not pad the short ones to 256
    lengths = [10] * 15 + [256]
    assert [len(b) for b in plan_batches(lengths, max_rows=16, max_tokens=None)] == [15, 1]
    # a GPU call costs far more than padding: there the same texts share one batch
    assert [len(b) for b in plan_batches(lengths, 16, None, overhead=GPU_BATCH_OVERHEAD)] == [16]


def test_plan_batches_is_optimal_for_its_cost_model():
    """The DP's plan costs no more than the greedy fixed-size cut, and equals brute force on small inputs."""
    rng = np.random.default_rng(3)
    for trial in range(30):
        n = int(rng.integers(1, 9))
        lengths = rng.integers(2, 257, n).tolist()
        max_rows = int(rng.integers(1, 5))
        got = plan_cost(lengths, list(plan_batches(lengths, max_rows, None)))
        ordered = sorted(lengths)
        best = min(  # every way to cut the sorted run into batches of at most max_rows
            sum(CPU_BATCH_OVERHEAD + (hi - lo) * ordered[hi - 1] * (1 + ordered[hi - 1] / 256)
                for lo, hi in zip((0,) + cuts, cuts + (n,)))
            for mask in range(2 ** (n - 1))
            for cuts in [tuple(i + 1 for i in range(n - 1) if mask >> i & 1)]
            if all(hi - lo <= max_rows for lo, hi in zip((0,) + cuts, cuts + (n,))))
        assert got == pytest.approx(best), (lengths, max_rows)
    # shape-limited plans (OpenVINO): only the allowed row counts and padded widths, still optimal among them
    for trial in range(30):
        n = int(rng.integers(1, 9))
        lengths = rng.integers(2, 257, n).tolist()
        sizes, multiple = (1, 2, 4), int(rng.choice([1, 8]))
        plan = list(plan_batches(lengths, 8, None, row_sizes=sizes, width_multiple=multiple))
        assert all(len(b) in sizes for b in plan)
        ordered = sorted(lengths)
        best = min(
            sum(CPU_BATCH_OVERHEAD + (hi - lo) * w * (1 + w / 256)
                for lo, hi in zip((0,) + cuts, cuts + (n,)) for w in [-(-ordered[hi - 1] // multiple) * multiple])
            for mask in range(2 ** (n - 1))
            for cuts in [tuple(i + 1 for i in range(n - 1) if mask >> i & 1)]
            if all(hi - lo in sizes for lo, hi in zip((0,) + cuts, cuts + (n,))))
        assert plan_cost(lengths, plan, width_multiple=multiple) == pytest.approx(best), (lengths, multiple)
    # a request as users send them: mostly short texts and a few long ones
    lengths = rng.integers(8, 41, 60).tolist() + rng.integers(200, 257, 4).tolist()
    order = np.argsort(lengths, kind="stable")
    greedy = [order[i:i + 32] for i in range(0, len(order), 32)]  # the fixed-size cut this replaced
    assert plan_cost(lengths, list(plan_batches(lengths, 32, None))) < 0.6 * plan_cost(lengths, greedy)


def test_openvino_keeps_to_few_shapes(reg):
    m = zoo.load("tiny", artifact="openvino-fp32", registry=reg, cache=False)
    backend = m.backend
    lengths = list(range(3, 60))
    plan = list(backend.plan(lengths, 16))
    assert all(len(b) in (1, 2, 4, 8, 16) for b in plan) and sum(len(b) for b in plan) == len(lengths)
    encodings = backend.encoder.encode(["x " * 9, "y"])
    assert backend.encoder.pad(encodings)["input_ids"].shape[1] % 8 == 0
    backend.encoder.avoid_widths = frozenset({8})  # a width a runtime gets wrong: one masked column more
    try:
        assert backend.encoder.pad(backend.encoder.encode(["y"]))["input_ids"].shape[1] == 9
    finally:
        backend.encoder.avoid_widths = frozenset()
    texts = [f"text {i} " + "word " * i for i in range(40)]
    np.testing.assert_allclose(m.embed(texts), np.concatenate([m.embed([t]) for t in texts]), atol=2e-5)


def test_order_restored_after_sorting_every_runtime(model):
    one_by_one = np.stack([model.embed([t])[0] for t in MIXED])
    for bs, budget in ((3, None), (2, 40), (32, 16384)):
        got = model.embed(MIXED, batch_size=bs, max_batch_tokens=budget)
        np.testing.assert_allclose(got, one_by_one, atol=2e-5)


def test_every_runtime_matches_sentence_transformers(model, st_model):
    ref = st_model.encode(MIXED)
    got = model.embed(MIXED)
    assert isinstance(got, Embeddings) and got.dtype == np.float32 and got.shape == (len(MIXED), 32)
    assert row_cosines(got, ref).min() > 0.9999


def test_prompts_change_the_vector_exactly_as_sentence_transformers_does(model, st_model):
    texts = ["where is the cat", "the cat sleeps on the sofa"]
    np.testing.assert_allclose(model.embed_query(texts), st_model.encode(texts, prompt_name="query"), atol=2e-5)
    np.testing.assert_allclose(model.embed_documents(texts), st_model.encode(texts, prompt_name="document"), atol=2e-5)
    np.testing.assert_allclose(model.embed(texts, prompt="custom: "), st_model.encode(texts, prompt="custom: "),
                               atol=2e-5)
    assert not np.allclose(model.embed_query(texts), model.embed(texts), atol=1e-3)  # the prompt did something
    single = model.embed_query("where is the cat")
    assert single.shape == (32,)
    np.testing.assert_allclose(single, model.embed_query(texts)[0], atol=1e-6)
    with pytest.raises(InvalidInput, match="unknown prompt_name 'summary'"):
        model.embed(texts, prompt_name="summary")


def test_dimensions_truncate_then_renormalize(model):
    full = np.asarray(model.embed(MIXED))
    cut = model.embed(MIXED, dimensions=8)
    expected = full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True)
    assert cut.shape == (len(MIXED), 8)
    np.testing.assert_allclose(cut, expected, atol=1e-5)
    raw = np.asarray(model.embed(MIXED, normalize=False))
    np.testing.assert_allclose(model.embed(MIXED, dimensions=8, normalize=False), raw[:, :8], atol=1e-5)
    for bad in (0, 33, 2.5, "8", True):
        with pytest.raises(InvalidInput, match="dimensions must be an integer from 1 to 32"):
            model.embed(MIXED, dimensions=bad)


def test_normalize_false_gives_the_pooled_vector_before_the_normalize_module(model, st_model):
    features = st_model.preprocess(MIXED)
    import torch

    with torch.inference_mode():
        pooled = st_model[1](st_model[0](features))["sentence_embedding"].numpy()
    raw = model.embed(MIXED, normalize=False)
    np.testing.assert_allclose(raw, pooled, atol=5e-5)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)


def test_normalize_true_on_a_model_without_normalize_module(reg, tiny_cls_dir):
    reg.register("tiny-cls", str(tiny_cls_dir))
    m = zoo.load("tiny-cls", registry=reg, cache=False)
    assert not np.allclose(np.linalg.norm(m.embed(MIXED), axis=1), 1.0, atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(m.embed(MIXED, normalize=True), axis=1), 1.0, atol=1e-5)


def test_truncation_is_counted_warned_and_refusable(model, tiny_model_dir):
    from tokenizers import Tokenizer

    texts = ["short", LONG, "also short", LONG + "tail"]
    with pytest.warns(TruncationWarning, match=r"2 of 4 texts were longer than tiny's max length \(64 tokens\)"):
        got = model.embed(texts)
    assert got.truncated == (1, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning when nothing is cut
        assert model.embed(["short", "also short"]).truncated == ()
    full = len(Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json")).encode(LONG).ids)
    assert full > 200 and model.backend.encoder.full_length(LONG) == full
    with pytest.raises(InvalidInput, match=f"text at index 1 has {full} tokens, more than tiny's max length of 64"):
        model.embed(texts, truncate=False)


def test_empty_string_is_a_consistent_vector_and_empty_list_is_empty(model):
    alone = model.embed([""])
    together = model.embed(["x", "", "a longer text"])
    np.testing.assert_allclose(alone[0], together[1], atol=2e-5)
    assert np.isfinite(alone).all()
    empty = model.embed([], dimensions=4)
    assert empty.shape == (0, 4) and empty.dtype == np.float32


def test_tokenized_texts_are_reused_not_tokenized_again(model):
    from zoo.engine.backends.lean import Prepared

    texts = ["hello there", "goodbye now", "hello there"]
    tokenized = model.tokenize(texts)
    assert tokenized.lengths == model.count_tokens(texts)
    np.testing.assert_allclose(model.embed(texts, tokenized=tokenized), model.embed(texts), atol=1e-6)
    if model.info["format"] == "torch":
        return  # sentence-transformers tokenizes inside its own preprocess: only the lean runtimes take encodings
    # proof of reuse: encodings of other text under this text's name are what gets embedded
    swapped = Prepared(["hello there"], tokenized.encodings[1:2], tokenized.lengths[1:2], tokenized.truncated[1:2])
    np.testing.assert_allclose(model.embed(["hello there"], tokenized=swapped, cache=False),
                               model.embed(["goodbye now"]), atol=1e-6)
    # a prompt changes the tokens: the given tokenization is ignored then
    np.testing.assert_allclose(model.embed(["hello there"], tokenized=swapped, prompt="query: "),
                               model.embed(["hello there"], prompt="query: "), atol=1e-6)


def test_threads_share_one_model(model):
    texts = [f"thread text number {i} " + "pad " * (i % 17) for i in range(96)]
    expected = model.embed(texts, batch_size=8)
    results, errors = {}, []

    def work(k):
        try:
            for _ in range(3):
                results[k] = model.embed(texts[k::8], batch_size=4)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for k in range(8):
        np.testing.assert_allclose(results[k], expected[k::8], atol=2e-5)


def test_async_twins_equal_the_sync_calls(model):
    async def main():
        return await asyncio.gather(model.aembed(MIXED), model.aembed_query("where"), model.aembed_documents(MIXED))

    a, q, d = asyncio.run(main())
    np.testing.assert_allclose(a, model.embed(MIXED), atol=1e-6)
    np.testing.assert_allclose(q, model.embed_query("where"), atol=1e-6)
    np.testing.assert_allclose(d, model.embed_documents(MIXED), atol=1e-6)


def test_similarity_and_aggregated_query(reg):
    m = zoo.load("tiny", artifact="onnx-fp32", registry=reg, cache=False)
    a, b = m.embed(["the cat sleeps", "a dog runs"])
    assert m.similarity(a, b) == pytest.approx(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)), abs=1e-6)
    assert m.similarity(a, b, mode="dot") == pytest.approx(float(a @ b), abs=1e-6)
    assert m.similarity(a, b, mode="euclidean") == pytest.approx(-float(np.linalg.norm(a - b)), abs=1e-6)
    assert m.similarity(a, a, mode="euclidean") == 0.0
    matrix = m.similarity(np.stack([a, b]), np.stack([a, b, a]))
    assert matrix.shape == (2, 3) and matrix[0, 0] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(InvalidInput, match="unknown similarity mode 'manhattan'"):
        m.similarity(a, b, mode="manhattan")
    queries = ["where is the cat", "cat location"]
    agg = m.embed_query_agg(queries)
    mean = m.embed_query(queries).mean(axis=0)
    np.testing.assert_allclose(agg, mean / np.linalg.norm(mean), atol=1e-6)
    with pytest.raises(InvalidInput, match="unknown aggregation"):
        m.embed_query_agg(queries, agg="median")


def test_sentence_transformers_style_encode(reg, st_model):
    m = zoo.load("tiny", registry=reg, cache=False)
    np.testing.assert_allclose(m.encode(MIXED, batch_size=4), st_model.encode(MIXED, batch_size=4), atol=2e-5)
    one = m.encode("where is the cat", prompt_name="query")
    np.testing.assert_allclose(one, st_model.encode("where is the cat", prompt_name="query"), atol=2e-5)
    tensor = m.encode(MIXED, convert_to_tensor=True)
    assert tuple(tensor.shape) == (len(MIXED), 32)
    with pytest.raises(InvalidInput, match="does not support output_value"):
        m.encode(MIXED, output_value="token_embeddings")


def test_prompts_set_in_the_registry(reg):
    reg.set_prompts("tiny", query="search: ")
    try:
        m = zoo.load("tiny", artifact="onnx-fp32", registry=reg, cache=False)
        np.testing.assert_allclose(m.embed_query(["cats"]), m.embed(["search: cats"]), atol=1e-6)
        np.testing.assert_allclose(m.embed_documents(["cats"]), m.embed(["passage: cats"]), atol=1e-6)
    finally:
        reg.set_prompts("tiny", query=TINY_PROMPTS["query"])


def test_lean_runtimes_never_import_torch_through_the_engine(reg):
    code = ("import sys, zoo; m = zoo.load('tiny', artifact='{a}', home=sys.argv[1]);"
            "v = m.embed_query(['x', 'y'], dimensions=8); v2 = m.embed_query(['x', 'y'], dimensions=8);"
            "assert v2.cache_hits == 2 and (v == v2).all();"
            "print('torch' in sys.modules)")
    for artifact in ("onnx-fp32", "openvino-fp32"):
        out = subprocess.run([sys.executable, "-c", code.format(a=artifact), str(reg.home.root)],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "False"
