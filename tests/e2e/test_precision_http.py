"""Compact vectors over HTTP: `precision` on /v1/embeddings, raw bytes for bulk clients, the stored
ranges kept across a restart, and other servers' field names refused with the one to use."""

import base64

import numpy as np
import pytest

import zoo

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'zoo[serve]'")
from serving import AUTH, KEY, Server  # noqa: E402

TEXTS = ["a dog runs", "le chat dort sur le canapé", "x " * 30, "quarterly revenue"]
RAW = {**AUTH, "Accept": "application/octet-stream"}


@pytest.fixture(scope="module")
def home(tmp_path_factory, tiny_model_dir):
    from zoo.registry.catalog import Registry
    from zoo.store.home import resolve_home

    reg = Registry(resolve_home(tmp_path_factory.mktemp("precision") / "zoo"))
    reg.register("tiny", str(tiny_model_dir))
    return str(reg.home.root)


@pytest.fixture(scope="module")
def server(home):
    s = Server(home, "--api-key", KEY)
    yield s
    s.stop()


def post(server, headers=AUTH, **body):
    return httpx.post(server.url + "/v1/embeddings", headers=headers, json={"model": "tiny", "input": TEXTS, **body},
                      timeout=60)


def stored_ranges(home):
    from sqlalchemy import select

    from zoo.registry.catalog import Registry
    from zoo.registry.schema import Artifact
    from zoo.store.home import resolve_home

    with Registry(resolve_home(home)).session() as s:
        return s.scalar(select(Artifact).where(Artifact.target == "torch-fp32")).precision_ranges


def test_every_precision_as_json_and_as_raw_bytes(server, home):
    first = post(server, precision="int8")  # the server calibrates the artifact on this first compact request
    assert first.status_code == 200, first.text
    local = zoo.load("tiny", home=home, cache=False)  # reads the ranges the server stored
    for precision in ("float32", "float16", "int8", "uint8", "binary", "ubinary"):
        want = local.embed(TEXTS, precision=precision)
        r = post(server, precision=precision)
        assert r.status_code == 200 and r.headers["x-zoo-precision"] == precision
        got = np.array([d["embedding"] for d in r.json()["data"]])
        if precision == "float32":
            np.testing.assert_allclose(got, want, atol=1e-5)
        elif precision == "float16":
            np.testing.assert_allclose(got, want.astype(np.float32), atol=2e-3)
        else:  # integers, exactly the in-process rows
            assert all(isinstance(x, int) for x in r.json()["data"][0]["embedding"])
            assert np.array_equal(got, want), precision
        raw = post(server, RAW, precision=precision)
        assert raw.status_code == 200 and raw.headers["content-type"] == "application/octet-stream"
        rows, cols = map(int, raw.headers["x-zoo-shape"].split(","))
        assert raw.headers["x-zoo-dtype"] == want.dtype.name
        decoded = np.frombuffer(raw.content, dtype=np.dtype(raw.headers["x-zoo-dtype"]).newbyteorder("<"))
        decoded = decoded.reshape(rows, cols)
        if precision.startswith("float"):
            np.testing.assert_allclose(decoded.astype(np.float32), want.astype(np.float32),
                                       atol=1e-5 if precision == "float32" else 2e-3)
        else:
            assert np.array_equal(decoded, want), precision
        assert len(raw.content) == want.size * want.itemsize
    assert int(raw.headers["x-zoo-prompt-tokens"]) == sum(local.count_tokens(TEXTS))


def test_the_openai_client_gets_the_integers_whatever_it_decodes(server, home):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY)
    want = zoo.load("tiny", home=home, cache=False).embed(TEXTS, precision="int8")
    # the client asks for base64 by default and decodes it as float32: base64 stays float32, so it holds
    default = client.embeddings.create(model="tiny", input=TEXTS, extra_body={"precision": "int8"})
    assert np.array_equal(np.array([d.embedding for d in default.data]), want)
    floats = client.embeddings.create(model="tiny", input=TEXTS, encoding_format="float",
                                      extra_body={"precision": "int8"})
    assert np.array_equal(np.array([d.embedding for d in floats.data]), want)


def test_a_restart_keeps_the_stored_ranges(home, server):
    before = post(server, RAW, precision="uint8").content
    record = stored_ranges(home)
    assert record is not None and record["texts"] == 300
    again = Server(home, "--api-key", KEY)
    try:
        assert post(again, RAW, precision="uint8").content == before
        single = post(again, RAW, precision="uint8", input=TEXTS[1])  # another batch, the same row
        assert single.content == before[32:64]
    finally:
        again.stop()
    assert stored_ranges(home) == record


@pytest.mark.parametrize("body, param, message", [
    ({"precision": "int4"}, "precision", "precision"),
    ({"precision": ["int8"]}, "precision", "precision"),
    ({"precision": None}, "precision", "precision"),
    ({"embedding_types": ["int8"]}, "embedding_types", "Cohere's name for what zoo calls 'precision'"),
    ({"embed_dtype": "int8"}, "embed_dtype", "vLLM's name for what zoo calls 'precision'"),
    ({"embedding_dtype": "int8"}, "embedding_dtype", "send 'precision'"),
    ({"precision": "int8", "dimensions": 16}, "precision", "dimensions=16 needs calibration ranges"),
    ({"precision": "int8", "modality": "image", "input": ["data:image/png;base64,iVBORw0KGgo="]}, "precision",
     "text inputs"),
])
def test_hostile_precision_values_are_400s_naming_the_field(server, body, param, message):
    r = post(server, **body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and message in error["message"], error


def test_accept_negotiation_defaults_to_json(server):
    for accept in (None, "application/json", "*/*", "application/json, application/octet-stream;q=0.5",
                   "application/octet-stream;q=0"):
        headers = {**AUTH, **({"Accept": accept} if accept else {})}
        r = post(server, headers)
        assert r.headers["content-type"].startswith("application/json"), accept
    r = post(server, {**AUTH, "Accept": "application/json;q=0.5, application/octet-stream"})
    assert r.headers["content-type"] == "application/octet-stream"
    assert len(r.content) == len(TEXTS) * 32 * 4
