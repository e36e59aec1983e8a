"""Token-id inputs on `/v1/embeddings` cannot give garbage.

By default they are OpenAI's: ids of a tiktoken encoding (cl100k_base), decoded to text. LangChain's
`OpenAIEmbeddings` at its defaults sends exactly those; it once got vectors at cosine 0.02-0.18 to the
right ones with HTTP 200. With `token_encoding: model` they are the model's own ids: framing and
padding are stripped or refused, never embedded as content. Real servers on 127.0.0.1, real clients,
values compared with in-process `embed`.
"""

import gzip
import hashlib
import os
from importlib import resources

import numpy as np
import pytest

import zoo

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'zoo[serve]'")
from serving import AUTH, KEY, Server  # noqa: E402

# texts LangChain users send: queries, a multilingual one, punctuation, code, an emoji
TEXTS = ["how do I reset my password?", "Où se trouve la gare la plus proche ?", "東京の天気は？",
         "def f(x):\n    return x ** 2", "best pizza in NYC 🍕", "The quick brown fox jumps over the lazy dog."]


@pytest.fixture(scope="module")
def tiktoken_offline(tmp_path_factory):
    """tiktoken reads its tables from OpenAI's site; here the same files, from the bpe-openai wheel,
    go where tiktoken caches them (TIKTOKEN_CACHE_DIR, named by the sha1 of the URL), as an offline
    deployment of LangChain provides them."""
    tiktoken = pytest.importorskip("tiktoken")
    cache = tmp_path_factory.mktemp("tiktoken")
    for name in ("cl100k_base", "o200k_base"):
        url = f"https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
        data = gzip.decompress((resources.files("bpe_openai.data") / f"{name}.tiktoken.gz").read_bytes())
        (cache / hashlib.sha1(url.encode()).hexdigest()).write_bytes(data)
    before = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    yield tiktoken
    if before is None:
        os.environ.pop("TIKTOKEN_CACHE_DIR")
    else:
        os.environ["TIKTOKEN_CACHE_DIR"] = before


@pytest.fixture(scope="module")
def home(tmp_path_factory, tiny_model_dir):
    from zoo.registry.catalog import Registry
    from zoo.store.home import resolve_home

    reg = Registry(resolve_home(tmp_path_factory.mktemp("tokens") / "zoo"))
    reg.register("tiny", str(tiny_model_dir))
    reg.register("tiny-o200k", str(tiny_model_dir))
    return str(reg.home.root)


@pytest.fixture(scope="module")
def server(home, tmp_path_factory):
    """The default (cl100k_base) for tiny; o200k_base for tiny-o200k, through the YAML deployment."""
    config = tmp_path_factory.mktemp("deploy") / "zoo.yaml"
    config.write_text(f"models:\n  - name: tiny\n    source: {zoo_source(home, 'tiny')}\n"
                      f"  - name: tiny-o200k\n    source: {zoo_source(home, 'tiny-o200k')}\n"
                      "    token_encoding: o200k_base\n")
    s = Server(home, "--api-key", KEY, "--config", str(config))
    yield s
    s.stop()


def zoo_source(home, name):
    from zoo.registry.catalog import open_registry

    return open_registry(home).resolve(name).model.source


@pytest.fixture(scope="module")
def local(home):
    return zoo.load("tiny", home=home, cache=False)


def _cos(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_langchain_openai_embeddings_at_its_defaults_gets_the_texts_vectors(server, local, tiktoken_offline):
    """`OpenAIEmbeddings` with only the server, key and model set: it sends cl100k_base ids
    (check_embedding_ctx_length=True), and each vector equals the text's."""
    lc = pytest.importorskip("langchain_openai")
    emb = lc.OpenAIEmbeddings(model="tiny", base_url=server.url + "/v1", api_key=KEY)
    assert emb.check_embedding_ctx_length and emb.tiktoken_enabled  # the defaults, so ids go on the wire
    docs = emb.embed_documents(TEXTS)  # "tiny" is no OpenAI model: LangChain falls back to cl100k_base
    assert _cos(docs, local.embed(TEXTS)).min() >= 0.9999
    assert _cos(emb.embed_query(TEXTS[0]), local.embed(TEXTS[:1])[0]) >= 0.9999


def test_openai_client_ids_of_each_encoding(server, local, tiktoken_offline):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY)
    for model, encoding in (("tiny", "cl100k_base"), ("tiny-o200k", "o200k_base")):
        ids = [tiktoken_offline.get_encoding(encoding).encode(t) for t in TEXTS]
        r = client.embeddings.create(model=model, input=ids)
        assert _cos([d.embedding for d in r.data], local.embed(TEXTS)).min() >= 0.9999, model
        assert r.usage.prompt_tokens == sum(local.count_tokens(TEXTS))  # the model's tokens, as for the texts
        one = client.embeddings.create(model=model, input=ids[2])  # a list of ints: one input
        assert _cos(one.data[0].embedding, local.embed(TEXTS[2:3])[0]) >= 0.9999
    # o200k ids read as cl100k would be another text: the model's setting is what decides
    o200k = tiktoken_offline.get_encoding("o200k_base").encode(TEXTS[1])
    wrong = client.embeddings.create(model="tiny", input=[o200k])
    assert _cos(wrong.data[0].embedding, local.embed(TEXTS[1:2])[0]) < 0.99


@pytest.mark.parametrize("ids, message", [
    ([[791], [100257]], "token input 1: id 100257 at position 0 is not a text token of cl100k_base"),  # <|endoftext|>
    ([[100256]], "id 100256 at position 0 is not a text token of cl100k_base (0 to 100255"),  # a hole in the table
    ([[791, 10 ** 9]], "id 1000000000 at position 1"),
])
def test_ids_outside_the_encoding_are_refused_naming_the_setting(server, ids, message):
    r = httpx.post(server.url + "/v1/embeddings", headers=AUTH, json={"model": "tiny", "input": ids})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert message in err["message"] and "token_encoding: model" in err["message"], err
    assert err["param"].startswith("input[") and err["code"] == "invalid_value"


def test_the_schema_declares_the_encodings_range(server):
    schema = httpx.get(server.url + "/openapi.json").json()["components"]["schemas"]["EmbeddingsRequest"]
    maxima = set()
    for option in schema["properties"]["input"]["anyOf"]:
        items = option.get("items", {})
        ids = items.get("items", items) if items.get("type") == "array" else items
        if ids.get("type") == "integer":
            maxima.add(ids["maximum"])
    assert maxima == {100255}  # cl100k_base's last text token; o200k_base goes further, the least bound is declared


def test_model_ids_framing_and_padding_never_embed_as_content(home, local):
    """`--token-encoding model`: the model's own ids. What `tokenizer.encode(text)` returns ([CLS] ...
    [SEP]) and padded encodings (MiniLM's tokenizer.json pads to 128) embed as the text; framing inside
    the content is refused. These once embedded at cosine 0.79 and 0.01-0.20."""
    from tokenizers import Tokenizer

    s = Server(home, "--api-key", KEY, "--models", "tiny", "--token-encoding", "model")
    try:
        tok = Tokenizer.from_str(local.backend.encoder.tokenizer.to_str())
        tok.no_truncation()
        texts = TEXTS[:3]
        want = local.embed(texts)

        def embed(ids):
            r = httpx.post(s.url + "/v1/embeddings", headers=AUTH, json={"model": "tiny", "input": ids})
            assert r.status_code == 200, r.text
            return np.array([d["embedding"] for d in r.json()["data"]])

        bare = [tok.encode(t, add_special_tokens=False).ids for t in texts]
        framed = [tok.encode(t).ids for t in texts]
        assert framed != bare and framed[0][0] != bare[0][0]
        tok.enable_padding(length=48, pad_id=0, pad_token="[PAD]")
        padded = [e.ids for e in tok.encode_batch(texts)]
        assert padded[0][-1] == 0
        left = [[0] * 5 + ids for ids in framed]
        for ids in (bare, framed, padded, left):
            assert _cos(embed(ids), want).min() >= 0.9999
        cls, sep = framed[0][0], framed[0][-1]
        for ids, message in (([bare[0][:2] + [sep] + bare[0][2:]], f"id {sep} ([SEP]) at position 2 is one of the "
                                                                     "model's special tokens inside the content"),
                             ([[cls, sep]], "holds only the model's special tokens or padding"),
                             ([[0, 0, 0]], "holds only the model's special tokens or padding")):
            r = httpx.post(s.url + "/v1/embeddings", headers=AUTH, json={"model": "tiny", "input": ids})
            assert r.status_code == 400 and message in r.json()["error"]["message"], r.text
    finally:
        s.stop()
