"""The service's dynamic batcher on a real model: coalescing, the token budget, fairness, failures."""

import asyncio

import numpy as np
import pytest

import zoo
from zoo.service.batcher import DynamicBatcher, Overloaded
from zoo.conversion.pipeline import convert
from zoo.errors import InvalidInput
from zoo.core.hardware import Hardware

X86 = Hardware(arch="x86_64", flags=frozenset({"avx2"}))
TEXTS = [f"text number {i} " + "about the sea " * (i % 9) for i in range(64)]
pytestmark = pytest.mark.filterwarnings("ignore::zoo.engine.model.TruncationWarning")  # some exceed the tiny max length


@pytest.fixture(scope="module")
def model(tmp_path_factory, tiny_model_dir):
    from zoo.store.home import resolve_home
    from zoo.registry.catalog import Registry

    registry = Registry(resolve_home(tmp_path_factory.mktemp("batcher") / "zoo"))
    registry.register("tiny", str(tiny_model_dir))
    convert(registry, "tiny", ["onnx-fp32"], hardware=X86)
    return zoo.load("tiny", artifact="onnx-fp32", registry=registry, cache=False)


def run(model, body, **settings):
    """Run ``body(batcher)`` on a fresh batcher; returns (result, [(rows, tokens) per engine call])."""
    calls = []

    async def main():
        batcher = DynamicBatcher(model, on_batch=lambda rows, tokens, hits, s: calls.append((rows, tokens)),
                                 **settings)
        try:
            return await body(batcher)
        finally:
            batcher.close()

    return asyncio.run(main()), calls


def test_concurrent_requests_are_coalesced_and_get_their_own_rows(model):
    parts = [TEXTS[i:i + 4] for i in range(0, len(TEXTS), 4)]

    async def body(b):
        return await asyncio.gather(*(b.embed(model.tokenize(p)) for p in parts))

    outs, calls = run(model, body, max_batch_rows=256, max_batch_tokens=100_000, max_wait_ms=20)
    np.testing.assert_allclose(np.concatenate(outs), model.embed(TEXTS), atol=1e-6)
    assert calls == [(64, sum(model.count_tokens(TEXTS)))]  # 16 requests, one engine call



def test_batches_keep_within_the_token_budget(model):
    tokens = model.count_tokens(TEXTS)
    budget = 3 * max(tokens)

    async def body(b):
        return await asyncio.gather(*(b.embed(model.tokenize([t])) for t in TEXTS))

    outs, calls = run(model, body, max_batch_rows=256, max_batch_tokens=budget, max_wait_ms=20)
    np.testing.assert_allclose(np.concatenate(outs), model.embed(TEXTS), atol=1e-6)
    assert sum(rows for rows, _ in calls) == len(TEXTS)
    assert all(n <= budget for _, n in calls)  # the sum of a batch's tokens, not rows x longest
    assert max(rows for rows, _ in calls) > budget // max(tokens)  # more rows than a padded bound would allow


def test_a_huge_request_does_not_starve_a_small_one(model):
    huge = TEXTS * 8  # 512 texts, 16 engine calls of 32

    async def body(b):
        big = asyncio.ensure_future(b.embed(model.tokenize(huge)))
        await asyncio.sleep(0.01)  # the huge request is queued and its first batch is running
        small = await b.embed(model.tokenize(["a quick query"]))
        assert not big.done()  # the query rode in an early batch, not after 512 texts
        return small, await big

    (small, big), calls = run(model, body, max_batch_rows=32, max_wait_ms=0)
    np.testing.assert_allclose(small, model.embed(["a quick query"]), atol=1e-6)
    np.testing.assert_allclose(big, model.embed(huge), atol=1e-6)
    assert len(calls) >= 16


def test_a_failed_batch_fails_its_requests_and_the_batcher_keeps_serving(model):
    async def body(b):
        with pytest.raises(InvalidInput, match="dimensions"):
            await b.embed(model.tokenize(["x"]), dimensions=10 ** 6)  # the engine refuses it
        return await b.embed(model.tokenize(["still here"]))

    out, _ = run(model, body, max_wait_ms=0)
    np.testing.assert_allclose(out, model.embed(["still here"]), atol=1e-6)


def test_a_full_queue_refuses_instead_of_growing(model):
    async def body(b):
        first = asyncio.ensure_future(b.embed(model.tokenize(TEXTS[:8])))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded, match="busy"):
            await b.embed(model.tokenize(["one more"]))
        with pytest.raises(ValueError, match="exceed this server's queue"):
            await b.embed(model.tokenize(TEXTS[:9]))
        return await first

    out, _ = run(model, body, max_queue_texts=8, max_wait_ms=50)
    np.testing.assert_allclose(out, model.embed(TEXTS[:8]), atol=1e-6)


def test_the_queue_counts_tokens_after_truncation_not_texts(model):
    """Two texts of 100,000 characters cost the model's max length each, not their size; a queue of
    tokens refuses what would not fit, and frees them as rows come back."""
    huge = ["word " * 20_000, "text " * 20_000]
    tokenized = model.tokenize(huge)
    cost = sum(tokenized.lengths)
    assert cost == 2 * model.max_seq_length  # truncated: the model's max, whatever the characters

    async def body(b):
        first = asyncio.ensure_future(b.embed(tokenized))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded, match=f"{cost} tokens"):
            await b.embed(model.tokenize(["one more text"]))
        with pytest.raises(ValueError, match="tokens \\(after truncation\\) exceed"):
            await b.embed(model.tokenize(huge + ["a third"]))
        out = await first
        assert b._queued_tokens == 0 and b.queue_depth == 0
        await b.embed(model.tokenize(["fits now"]))
        return out

    out, _ = run(model, body, max_queue_tokens=cost, max_wait_ms=50)
    np.testing.assert_allclose(out, model.embed(huge), atol=1e-6)
