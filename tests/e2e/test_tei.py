"""TEI's native routes on `zoo serve`: TEI's own clients, unchanged, get zoo's vectors.

Each client is the real library at its defaults, pointed at a real server on 127.0.0.1: LlamaIndex's
`TextEmbeddingsInference` (POST /embed), LangChain's `HuggingFaceEndpointEmbeddings`, huggingface_hub's
`InferenceClient` and Haystack's `HuggingFaceAPITextEmbedder` (POST / through InferenceClient). Every
vector is compared with in-process `embed`; the TEI options, shapes and refusals are asserted by value.
"""

import os

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # Haystack reports usage to PostHog unless told not to

import numpy as np
import pytest

import zoo

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'zoo[serve]'")
from serving import AUTH, KEY, Server  # noqa: E402

TEXTS = ["how do I reset my password?", "Où se trouve la gare ?", "東京の天気", "", "word " * 300]


@pytest.fixture(scope="module")
def home(tmp_path_factory, tiny_model_dir, tiny_cls_dir):
    from zoo.registry.catalog import Registry
    from zoo.store.home import resolve_home

    reg = Registry(resolve_home(tmp_path_factory.mktemp("tei") / "zoo"))
    reg.register("tiny", str(tiny_model_dir))
    reg.register("other", str(tiny_cls_dir))
    reg.set_prompts("tiny", query="query: ", document="passage: ")
    return str(reg.home.root)


@pytest.fixture(scope="module")
def server(home):
    """One model served: TEI's shapes work unchanged."""
    s = Server(home, "--api-key", KEY, "--models", "tiny", "--max-inputs", "64",
               env={**os.environ, "HF_HUB_OFFLINE": "0"})
    yield s
    s.stop()


@pytest.fixture(scope="module")
def local(home):
    return zoo.load("tiny", home=home, cache=False)


def _close(got, want, tol=1e-5):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, atol=tol)


def test_llamaindex_text_embeddings_inference(server, local):
    tei = pytest.importorskip("llama_index.embeddings.text_embeddings_inference")
    emb = tei.TextEmbeddingsInference(model_name="tiny", base_url=server.url, auth_token=KEY)
    _close(emb.get_text_embedding_batch(TEXTS), local.embed(TEXTS, normalize=True))
    _close(emb.get_query_embedding(TEXTS[0]), local.embed(TEXTS[:1], normalize=True)[0])


def test_huggingface_hub_and_langchain_post_to_the_root(server, local):
    hub = pytest.importorskip("huggingface_hub")
    client = hub.InferenceClient(model=server.url, token=KEY)
    _close(client.feature_extraction(TEXTS[0])[0], local.embed(TEXTS[:1], normalize=True)[0])
    # langchain-huggingface 1.x refuses a URL as `model` ("must be a HuggingFace repo ID"), so it reaches no
    # self-hosted TEI by its own options; its client is the InferenceClient above, set in its place here
    lc = pytest.importorskip("langchain_huggingface")
    emb = lc.HuggingFaceEndpointEmbeddings(model="tiny", huggingfacehub_api_token=KEY)
    emb.client = client
    _close(emb.embed_documents(TEXTS[:3]), local.embed(TEXTS[:3], normalize=True))
    _close(emb.embed_query(TEXTS[1]), local.embed(TEXTS[1:2], normalize=True)[0])


def test_haystack_tei_embedder_at_its_defaults(server, local):
    """Haystack asks for normalize=false by default: the model's raw pooled output, as TEI gives it."""
    embedders = pytest.importorskip("haystack.components.embedders")
    from haystack.utils import Secret

    emb = embedders.HuggingFaceAPITextEmbedder(api_type="text_embeddings_inference", api_params={"url": server.url},
                                               token=Secret.from_token(KEY))
    got = emb.run(text=TEXTS[2])["embedding"]
    _close(got, local.embed(TEXTS[2:3], normalize=False)[0])
    assert abs(np.linalg.norm(got) - 1) > 1e-3  # really not normalised: the tiny model's pooling is not unit length


def _embed(server, body, status=200, headers=AUTH):
    r = httpx.post(server.url + "/embed", headers=headers, json=body)
    assert r.status_code == status, r.text
    return r.json()


def test_embed_options_follow_tei(server, local):
    # one text, a list, the model's prompt, dimensions
    _close(_embed(server, {"inputs": TEXTS[0]}), local.embed(TEXTS[:1], normalize=True))
    _close(_embed(server, {"inputs": TEXTS[:2], "prompt_name": "query"}),
           local.embed(TEXTS[:2], prompt_name="query", normalize=True))
    _close(_embed(server, {"inputs": TEXTS[:2], "dimensions": 8}), local.embed(TEXTS[:2], dimensions=8, normalize=True))
    _close(_embed(server, {"inputs": TEXTS[:2], "normalize": False}), local.embed(TEXTS[:2], normalize=False))
    # token ids of the model's own vocabulary, bare or as tokenizer.encode gives them (TEI's clients send the latter)
    tok = local.backend.encoder.untruncated()
    framed = [tok.encode(t).ids for t in TEXTS[:2]]
    _close(_embed(server, {"inputs": framed}), local.embed(TEXTS[:2], normalize=True))
    _close(_embed(server, {"inputs": [TEXTS[0], framed[1]]}), local.embed(TEXTS[:2], normalize=True))
    _close(_embed(server, {"inputs": framed[1]}), local.embed(TEXTS[1:2], normalize=True))
    # with a prompt, as TEI: the ids' text with the prompt before it
    _close(_embed(server, {"inputs": [framed[0]], "prompt_name": "query"}),
           local.embed([tok.decode(framed[0], skip_special_tokens=True)], prompt_name="query", normalize=True))


def test_truncation_follows_tei_and_left_keeps_the_end(server, local):
    long = "how do I reset my password? " * 20 + "le chat dort sur le canapé. " * 20  # its ends differ
    _close(_embed(server, {"inputs": [long]}), local.embed([long], normalize=True))  # truncate by default
    full = len(local.backend.encoder.untruncated().encode(long).ids)
    for direction in ("right", "left"):
        err = _embed(server, {"inputs": [long], "truncate": False, "truncation_direction": direction}, status=422)
        assert err["error_type"] == "validation" and f"must have less than 64 tokens. Given: {full} " in err["error"]
    # left: the last tokens that fit, framed once; equal to embedding those ids
    tok = local.backend.encoder.untruncated()
    content = tok.encode(long, add_special_tokens=False).ids
    room = 64 - (len(tok.encode("a").ids) - len(tok.encode("a", add_special_tokens=False).ids))
    want = local.embed_tokens([content[-room:]], normalize=True)
    left = _embed(server, {"inputs": [long, TEXTS[0]], "truncation_direction": "Left"})
    _close(left[0], want[0])
    _close(left[1], local.embed(TEXTS[:1], normalize=True)[0])  # short inputs are untouched
    assert np.dot(left[0], _embed(server, {"inputs": [long]})[0]) < 0.99  # the other end: another vector
    # and the left vector never came from (or went to) the right one's cache entry
    _close(_embed(server, {"inputs": [long]}), local.embed([long], normalize=True))


@pytest.mark.parametrize("body, status, error_type, says", [
    ({"inputs": []}, 400, "empty", "`inputs` cannot be empty"),
    ({"inputs": ["x"] * 65}, 422, "validation", "batch size 65 > maximum allowed batch size 64"),
    ({"inputs": "x", "prompt_name": "nope"}, 422, "validation", "unknown prompt_name 'nope'"),
    ({"inputs": "x", "dimensions": 33}, 422, "validation", "dimensions must be at most 32"),
    ({"inputs": "x", "truncation_direction": "middle"}, 422, "validation", "truncation_direction"),
    ({"inputs": "x", "normalize": "yes"}, 422, "validation", "normalize"),
    ({"inputs": [[5, 10 ** 6]]}, 422, "validation", "outside this model's vocabulary"),
    ({"inputs": [[0, 0]]}, 422, "validation", "holds only the model's special tokens or padding"),
    ({"inputs": "x", "model": "nope"}, 404, "validation", "nope"),
    ({"inputs": "x", "colour": 1}, 422, "validation", "unknown field 'colour'"),
])
def test_bad_embed_requests_get_tei_errors(server, body, status, error_type, says):
    err = _embed(server, body, status=status)
    assert err["error_type"] == error_type and says in err["error"], err


def test_tokenize_decode_and_info(server, local):
    text = "Où est 東京?"
    (tokens,) = httpx.post(server.url + "/tokenize", headers=AUTH, json={"inputs": text}).json()
    enc = local.backend.encoder.untruncated().encode(text)
    assert [t["id"] for t in tokens] == enc.ids
    assert tokens[0]["special"] and tokens[0]["start"] is None and tokens[-1]["special"]
    raw = text.encode()
    for t in tokens[1:-1]:  # TEI's offsets are UTF-8 bytes
        assert not t["special"] and raw[t["start"]:t["stop"]].decode() == t["text"]
    bare = httpx.post(server.url + "/tokenize", headers=AUTH,
                      json={"inputs": [text, "a"], "add_special_tokens": False}).json()
    assert [t["id"] for t in bare[0]] == enc.ids[1:-1] and len(bare) == 2
    decoded = httpx.post(server.url + "/decode", headers=AUTH, json={"ids": [enc.ids, [enc.ids[1]]]}).json()
    assert decoded == [local.backend.encoder.tokenizer.decode(enc.ids), local.backend.encoder.tokenizer.decode([enc.ids[1]])]
    kept = httpx.post(server.url + "/decode", headers=AUTH, json={"ids": enc.ids, "skip_special_tokens": False}).json()
    assert kept[0].startswith("[CLS]")
    info = httpx.get(server.url + "/info", headers=AUTH).json()
    assert (info["model_id"], info["max_input_length"], info["max_client_batch_size"], info["auto_truncate"]) == \
        ("tiny", 64, 64, True)
    assert info["model_type"] == {"embedding": {"pooling": local.spec.pooling}}
    assert info["zoo"]["artifact"] == local.info["artifact"] and info["zoo"]["dim"] == 32
    assert httpx.post(server.url + "/decode", headers=AUTH, json={"ids": []}).json()["error_type"] == "empty"


def test_the_key_guards_every_tei_route(server):
    for method, path, body in (("POST", "/embed", {"inputs": "x"}), ("POST", "/", {"inputs": "x"}),
                               ("POST", "/tokenize", {"inputs": "x"}), ("POST", "/decode", {"ids": [5]}),
                               ("GET", "/info", None)):
        r = httpx.request(method, server.url + path, json=body)
        assert r.status_code == 401, (path, r.text)
    assert httpx.get(server.url + "/health").status_code == 200


def test_several_models_need_a_name(home, local):
    s = Server(home, "--api-key", KEY, "--models", "tiny,other")
    try:
        err = httpx.post(s.url + "/embed", headers=AUTH, json={"inputs": "x"})
        assert err.status_code == 422 and "serves 2 models; name one" in err.json()["error"]
        _close(httpx.post(s.url + "/embed", headers={**AUTH, "X-Zoo-Model": "tiny"}, json={"inputs": "x"}).json(),
               local.embed(["x"], normalize=True))
        _close(httpx.post(s.url + "/embed", headers=AUTH, json={"inputs": "x", "model": "tiny"}).json(),
               local.embed(["x"], normalize=True))
        assert httpx.get(s.url + "/info?model=other", headers=AUTH).json()["model_id"] == "other"
    finally:
        s.stop()
