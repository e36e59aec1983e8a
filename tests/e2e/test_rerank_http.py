"""Reranking over HTTP on a real `zoo serve`: Cohere's SDK and plain httpx on /v1/rerank, TEI's /rerank, and the
hostile requests every route must refuse with a 4xx that names the field. Every score is compared with
sentence-transformers' CrossEncoder on the same folder."""

import os

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'zoo[serve]'")
from serving import AUTH, KEY, Server  # noqa: E402

from tests.conftest import build_cross_encoder  # noqa: E402

QUERY = "how is the weather today"
DOCS = ["the weather today is sunny with a light breeze", "a cat sat on the mat", "",
        "search engines rank documents by similarity", "le chat dort sur le canapé", "weather",
        " ".join(["the quick brown fox jumps over the lazy dog"] * 40)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_cross_encoder(tmp_path_factory.mktemp("ce") / "ms", "bert")


@pytest.fixture(scope="module")
def server(tmp_path_factory, folder, tiny_model_dir):
    from zoo.conversion.pipeline import convert
    from zoo.registry.catalog import Registry
    from zoo.store.home import resolve_home

    reg = Registry(resolve_home(tmp_path_factory.mktemp("rerank-http") / "zoo"))
    reg.register("ms", str(folder))
    reg.register("tiny", str(tiny_model_dir))
    convert(reg, "ms", ["onnx-fp32"])
    s = Server(str(reg.home.root), "--api-key", KEY, "--models", "ms,tiny", "--max-inputs", "64", env={**os.environ})
    yield s
    s.stop()


@pytest.fixture(scope="module")
def reference(folder):
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(str(folder), device="cpu")
    return ce.predict([(QUERY, d) for d in DOCS]), [r["corpus_id"] for r in ce.rank(QUERY, DOCS)]


def test_cohere_sdk_reranks_like_cross_encoder(server, reference):
    cohere = pytest.importorskip("cohere")
    scores, order = reference
    for client in (cohere.Client(api_key=KEY, base_url=server.url), cohere.ClientV2(api_key=KEY, base_url=server.url)):
        got = client.rerank(model="ms", query=QUERY, documents=DOCS, top_n=3)
        assert [r.index for r in got.results] == order[:3]
        np.testing.assert_allclose([r.relevance_score for r in got.results], scores[order[:3]], atol=1e-4)


def test_v1_rerank_shape_documents_and_usage(server, reference):
    scores, order = reference
    r = httpx.post(server.url + "/v1/rerank", headers=AUTH, json={
        "model": "ms", "query": QUERY, "documents": [{"text": d} for d in DOCS], "return_documents": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["index"] for x in body["results"]] == order
    assert [x["document"]["text"] for x in body["results"]] == [DOCS[i] for i in order]
    np.testing.assert_allclose([x["relevance_score"] for x in body["results"]], scores[order], atol=1e-4)
    assert body["model"] == "ms" and body["usage"]["total_tokens"] > len(DOCS)
    assert r.headers["x-zoo-truncated"] == "1"
    # top_n past the documents: all of them, as Cohere answers
    r = httpx.post(server.url + "/v1/rerank", headers=AUTH, json={"model": "ms", "query": QUERY, "documents": DOCS[:2],
                                                                  "top_n": 50})
    assert [x["index"] for x in r.json()["results"]] == [i for i in order if i < 2]
    assert httpx.post(server.url + "/v1/rerank", json={"model": "ms", "query": "q", "documents": ["d"]}).status_code == 401


@pytest.mark.parametrize("body, status, param, words", [
    ({"model": "ms", "query": "q", "documents": ["d"] * 10_000}, 400, "documents", "at most 64"),
    ({"model": "ms", "query": "q", "documents": ["word " * 25_000]}, 400, "documents[0]", "at most 100000 per"),
    ({"model": "ms", "query": "q", "documents": ["d"], "top_n": 0}, 400, "top_n", "greater than or equal to 1"),
    ({"model": "ms", "query": "q", "documents": ["d"], "top_n": -3}, 400, "top_n", "greater than or equal to 1"),
    ({"model": "ms", "query": "q", "documents": ["d"], "top_n": 10**30}, 400, "top_n", "less than or equal"),
    ({"model": "ms", "query": "q", "documents": []}, 400, "documents", "at least 1"),
    ({"model": "ms", "query": 7, "documents": ["d"]}, 400, "query", "string"),
    ({"model": "tiny", "query": "q", "documents": ["d"]}, 400, "model", "tiny is an embedding model"),
    ({"model": "nope", "query": "q", "documents": ["d"]}, 404, "model", "nope"),
    ({"model": "ms", "query": "q", "documents": ["d"], "rank_fields": ["x"]}, 400, "rank_fields", "rank_fields"),
])
def test_hostile_rerank_requests_get_a_4xx_naming_the_field(server, body, status, param, words):
    r = httpx.post(server.url + "/v1/rerank", headers=AUTH, json=body, timeout=30)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == param and words in error["message"], error
    assert "/tmp" not in r.text and "Traceback" not in r.text


def test_a_reranker_named_for_embeddings_is_refused(server):
    r = httpx.post(server.url + "/v1/embeddings", headers=AUTH, json={"model": "ms", "input": "hello"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    assert "ms is a reranker model; /v1/embeddings needs an embedding model" in r.json()["error"]["message"]
    r = httpx.post(server.url + "/embed", headers={**AUTH, "X-Zoo-Model": "ms"}, json={"inputs": "hello"})
    assert r.status_code == 422 and "ms is a reranker model" in r.json()["error"]


def test_tei_rerank(server, reference):
    scores, order = reference
    headers = {**AUTH, "X-Zoo-Model": "ms"}
    r = httpx.post(server.url + "/rerank", headers=headers, json={"query": QUERY, "texts": DOCS, "return_text": True})
    assert r.status_code == 200, r.text
    assert [x["index"] for x in r.json()] == order and r.json()[0]["text"] == DOCS[order[0]]
    np.testing.assert_allclose([x["score"] for x in r.json()], scores[order], atol=1e-4)
    r = httpx.post(server.url + "/rerank", headers=headers, json={"query": QUERY, "texts": DOCS, "truncate": False})
    assert r.status_code == 422 and "query and text 6 together" in r.json()["error"]
    r = httpx.post(server.url + "/rerank", headers=headers, json={"query": QUERY, "texts": DOCS, "raw_scores": True})
    assert r.status_code == 422 and "sigmoid activation" in r.json()["error"]
    r = httpx.post(server.url + "/rerank", headers=headers, json={"query": QUERY, "texts": []})
    assert r.status_code == 400 and r.json()["error_type"] == "empty"
    info = httpx.get(server.url + "/info", headers=headers).json()
    assert info["model_type"] == {"reranker": {"id2label": {"0": "LABEL_0"}}} and info["zoo"]["kind"] == "reranker"
    metrics = httpx.get(server.url + "/metrics").text
    assert 'zoo_inputs_total{model="ms"}' in metrics
