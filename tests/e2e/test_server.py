"""`zoo serve` for real: a uvicorn server on 127.0.0.1, called with the openai client and raw HTTP."""

import base64
import json
import os
import socket
import time
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import zoo

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'zoo[serve]'")
from serving import AUTH, KEY, Server, wait_for  # noqa: E402


@pytest.fixture(scope="module")
def home(tmp_path_factory, tiny_model_dir):
    from zoo.registry.catalog import Registry
    from zoo.store.home import resolve_home

    reg = Registry(resolve_home(tmp_path_factory.mktemp("serve") / "zoo"))
    reg.register("tiny", str(tiny_model_dir))
    reg.add_alias("tiny-alias", "tiny")
    return str(reg.home.root)


@pytest.fixture(scope="module")
def server(home):
    # `python -m zoo`, and one limit from the environment, as a container would set it
    s = Server(home, "--api-key", KEY, "--models", "tiny", "--max-inputs", "64",
               env={**os.environ, "ZOO_MAX_INPUT_CHARS": "2000"})
    yield s
    s.stop()


@pytest.fixture(scope="module")
def local(home):
    return zoo.load("tiny", home=home, cache=False)


def test_openai_client_float_base64_list_and_dimensions(server, local):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY)
    one = client.embeddings.create(model="tiny", input="the cat sleeps")
    np.testing.assert_allclose(one.data[0].embedding, local.embed(["the cat sleeps"])[0], atol=1e-5)
    assert one.model == "tiny" and one.usage.prompt_tokens == local.count_tokens(["the cat sleeps"])[0]
    texts = ["a dog runs", "", "le chat dort sur le canapé", "x " * 30]
    many = client.embeddings.create(model="tiny-alias", input=texts, encoding_format="float")
    assert [d.index for d in many.data] == [0, 1, 2, 3]
    np.testing.assert_allclose(np.array([d.embedding for d in many.data]), local.embed(texts), atol=1e-5)
    assert many.usage.total_tokens == sum(local.count_tokens(texts))
    # base64 on the wire: little-endian float32, as OpenAI sends it
    raw = httpx.post(server.url + "/v1/embeddings", headers=AUTH,
                     json={"model": "tiny", "input": texts, "encoding_format": "base64"}).json()
    decoded = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in raw["data"]])
    np.testing.assert_allclose(decoded, local.embed(texts), atol=1e-5)
    b64 = client.embeddings.create(model="tiny", input=texts, encoding_format="base64")  # the client passes it through
    got = np.stack([np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in b64.data])
    np.testing.assert_array_equal(got, decoded)
    small = client.embeddings.create(model="tiny", input=texts, dimensions=8)
    np.testing.assert_allclose(np.array([d.embedding for d in small.data]), local.embed(texts, dimensions=8), atol=1e-5)


def test_models_retrieve_answers_as_openai_does(server):
    """`client.models.retrieve`: the model object, by name or alias; 404 model_not_found otherwise, and a
    GET never registers the default model on first use."""
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY)
    card = client.models.retrieve("tiny")
    assert (card.id, card.object, card.owned_by) == ("tiny", "model", "zoo") and card.created > 0
    listed = httpx.get(server.url + "/v1/models", headers=AUTH).json()["data"][0]
    assert httpx.get(server.url + "/v1/models/tiny", headers=AUTH).json() == listed
    assert client.models.retrieve("tiny-alias").id == "tiny"
    for name in ("nope", "all-minilm-l6-v2"):
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve(name)
        r = httpx.get(server.url + f"/v1/models/{name}", headers=AUTH)
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert [m.id for m in client.models.list()] == ["tiny"]  # the default was not registered by the GET
    assert httpx.get(server.url + "/v1/models/tiny").status_code == 401


def test_models_health_and_metrics(server):
    models = httpx.get(server.url + "/v1/models", headers=AUTH).json()
    assert models["object"] == "list"
    (entry,) = models["data"]
    assert entry["id"] == "tiny" and entry["object"] == "model"
    assert entry["zoo"]["dim"] == 32 and entry["zoo"]["aliases"] == ["tiny-alias"]
    assert entry["zoo"]["prompts"] == {"query": "query: ", "document": "passage: "}
    assert entry["zoo"]["serving_artifact"] == "torch-fp32"
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["models_loaded"] == ["tiny"]
    for _ in range(2):  # the second request is served from the cache (whatever ran before this test)
        httpx.post(server.url + "/v1/embeddings", headers=AUTH, json={"model": "tiny", "input": ["metric probe"] * 3})
    metrics = httpx.get(server.url + "/metrics").text
    assert 'zoo_requests_total{endpoint="/v1/embeddings",status="200"}' in metrics
    assert "zoo_request_seconds_bucket" in metrics and 'zoo_batch_size_count{model="tiny"}' in metrics
    assert 'zoo_queue_depth{model="tiny"} 0.0' in metrics
    hits = float(metrics.split('zoo_cache_hits_total{model="tiny"} ')[1].split()[0])
    assert hits >= 1  # "metric probe": computed once, then from the cache
    assert float(metrics.split('zoo_tokens_total{model="tiny"} ')[1].split()[0]) > 0
    # the process and the build, as prometheus_client's default registry would show them
    values = {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines() if line and line[0] != "#"}
    assert values["process_resident_memory_bytes"] > 10e6 and values["process_cpu_seconds_total"] > 0
    build = next(line for line in metrics.splitlines() if line.startswith("zoo_build_info{"))
    assert f'version="{zoo.__version__}"' in build and "onnxruntime=" in build and build.endswith(" 1.0")


@pytest.mark.parametrize("body, status, param, code", [
    (b"{not json", 400, None, "invalid_json"),
    ({"model": "tiny"}, 400, "input", "missing_required_parameter"),
    ({"model": "tiny", "input": 5}, 400, "input", "invalid_type"),
    ({"model": "tiny", "input": ["ok", 7]}, 400, "input[1]", "invalid_type"),
    ({"model": "tiny", "input": [[1, "2", 3]]}, 400, "input[0]", "invalid_type"),
    ({"model": "tiny", "input": [[1, 2], []]}, 400, "input[1]", "invalid_value"),
    ({"model": "tiny", "input": [[1, 2], "text"]}, 400, "input[0]", "invalid_type"),
    ({"model": "tiny", "input": [[1, 2], 3]}, 400, "input[1]", "invalid_type"),
    ({"model": "tiny", "input": [5, -1]}, 400, "input[0]", "invalid_value"),
    ({"model": "tiny", "input": [[7], [100257]]}, 400, "input[1]", "invalid_value"),  # cl100k_base's <|endoftext|>
    ({"model": "tiny", "input": []}, 400, "input", "invalid_value"),
    ({"input": "x"}, 400, "model", "missing_required_parameter"),
    ({"model": "tiny", "input": "x", "encoding_format": "int8"}, 400, "encoding_format", "invalid_value"),
    ({"model": "tiny", "input": "x", "dimensions": 0}, 400, "dimensions", "invalid_value"),
    ({"model": "tiny", "input": "x", "dimensions": 33}, 400, "dimensions", "invalid_value"),
    ({"model": "tiny", "input": "x", "temperature": 1}, 400, "temperature", "unknown_parameter"),
    ({"model": "tiny", "input": ["x"] * 65}, 400, "input", "too_many_inputs"),  # as OpenAI: BadRequestError
    ({"model": "tiny", "input": ["y" * 2001]}, 400, "input[0]", "input_too_long"),  # past the declared maxLength
    ({"model": "nope", "input": "x"}, 404, "model", "model_not_found"),
])
def test_bad_requests_get_openai_style_errors(server, body, status, param, code):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = httpx.post(server.url + "/v1/embeddings", headers={**AUTH, "content-type": "application/json"}, content=content)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert (err["param"], err["code"]) == (param, code) and err["message"]


def test_api_key_is_required_and_checked(server):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        r = httpx.post(server.url + "/v1/embeddings", headers=headers, json={"model": "tiny", "input": "x"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(server.url + "/v1/models").status_code == 401
    assert httpx.post(server.url + "/v1/zoo/models", json={"name": "a", "source": "/tmp"}).status_code == 401
    assert httpx.get(server.url + "/health").status_code == 200  # probes stay open
    # and the server keeps serving after all of that
    assert httpx.post(server.url + "/v1/embeddings", headers=AUTH, json={"model": "tiny", "input": "x"}).status_code == 200


def test_many_parallel_clients_each_get_their_own_vectors(server, local):
    texts = [f"client {i} says " + "word " * (i % 23) for i in range(200)]
    expected = local.embed(texts)

    def call(i):
        chunk = list(range(i, min(i + 1 + i % 5, len(texts))))
        r = httpx.post(server.url + "/v1/embeddings", headers=AUTH,
                       json={"model": "tiny", "input": [texts[j] for j in chunk]}, timeout=60)
        assert r.status_code == 200, r.text
        return chunk, np.array([d["embedding"] for d in r.json()["data"]])

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(call, range(len(texts))))
    for chunk, got in results:
        np.testing.assert_allclose(got, expected[chunk], atol=1e-5)
    sizes = httpx.get(server.url + "/metrics").text.split('zoo_batch_size_sum{model="tiny"} ')[1].split()[0]
    count = httpx.get(server.url + "/metrics").text.split('zoo_batch_size_count{model="tiny"} ')[1].split()[0]
    assert float(sizes) / float(count) > 1.0  # concurrent requests were coalesced


def test_full_queue_answers_429_with_retry_after(home):
    s = Server(home, "--models", "tiny", "--max-queue", "8", "--max-wait-ms", "20")
    try:
        body = {"model": "tiny", "input": [f"busy text {i} " + "long " * 50 for i in range(8)]}

        def call(i):
            return httpx.post(s.url + "/v1/embeddings", json={**body, "input": [t + str(i) for t in body["input"]]},
                              timeout=60)

        with ThreadPoolExecutor(12) as pool:
            responses = list(pool.map(call, range(12)))
        codes = [r.status_code for r in responses]
        assert set(codes) <= {200, 429} and 429 in codes and 200 in codes, codes
        refused = next(r for r in responses if r.status_code == 429)
        assert refused.headers["retry-after"] == "1" and refused.json()["error"]["code"] == "queue_full"
        too_big = httpx.post(s.url + "/v1/embeddings", json={"model": "tiny", "input": ["x"] * 9})
        assert too_big.status_code == 413
        assert httpx.post(s.url + "/v1/embeddings", json={"model": "tiny", "input": "x"}).status_code == 200
    finally:
        s.stop()


def test_register_convert_job_and_restart_recovery(tmp_path, tiny_model_dir):
    from zoo.registry.catalog import Registry
    from zoo.store.home import resolve_home
    from zoo.registry.schema import Job, JobStatus

    reg = Registry(resolve_home(tmp_path / "zoo"))
    home = str(reg.home.root)
    s = Server(home, "--api-key", KEY, "--allow-source-dir", str(tiny_model_dir.parent))
    try:
        r = httpx.post(s.url + "/v1/zoo/models", headers=AUTH, json={"name": "tiny", "source": str(tiny_model_dir)})
        assert r.status_code == 202 and r.json()["kind"] == "register", r.text
        job = wait_for(s, r.json())
        assert job["status"] == "succeeded" and job["result"]["model"]["name"] == "tiny", job
        again = httpx.post(s.url + "/v1/zoo/models", headers=AUTH, json={"name": "tiny", "source": str(tiny_model_dir)})
        assert again.status_code == 409 and again.json()["error"]["code"] == "model_exists"
        bad = httpx.post(s.url + "/v1/zoo/models/tiny/convert", headers=AUTH, json={"targets": ["onnx-fp64"]})
        assert bad.status_code == 400 and "onnx-fp64" in bad.json()["error"]["message"]
        missing = httpx.post(s.url + "/v1/zoo/models/ghost/convert", headers=AUTH, json={"targets": ["onnx-fp32"]})
        assert missing.status_code == 404
        job = httpx.post(s.url + "/v1/zoo/models/tiny/convert", headers=AUTH, json={"targets": ["onnx-fp32"]}).json()
        assert job["status"] in ("queued", "running") and job["object"] == "zoo.job"
        job = wait_for(s, job)
        assert job["status"] == "succeeded", job
        assert job["progress"] == 1.0 and job["result"]["outcomes"][0]["status"] == "ready"
        assert httpx.get(s.url + "/v1/zoo/jobs/nope", headers=AUTH).status_code == 404
        # the artifact serves at once
        r = httpx.post(s.url + "/v1/embeddings", headers=AUTH, json={"model": "tiny", "input": "x"})
        assert r.status_code == 200
    finally:
        s.stop()
    # a job whose worker died with the server: after a restart it is marked interrupted, and can be retried
    dead = subprocess.Popen(["true"])
    dead.wait()
    with reg.session() as session:
        session.add(Job(id="j-interrupted", kind="convert", model="tiny", params={"targets": ["openvino-fp32"]},
                        status=JobStatus.running, pid=dead.pid, host=socket.gethostname()))
    s = Server(home, "--api-key", KEY)
    try:
        job = httpx.get(s.url + "/v1/zoo/jobs/j-interrupted", headers=AUTH).json()
        assert job["status"] == "interrupted"
        job = wait_for(s, httpx.post(s.url + "/v1/zoo/jobs/j-interrupted/retry", headers=AUTH, json={}).json())
        assert job["status"] == "succeeded" and job["attempts"] == 1, job
        again = httpx.post(s.url + "/v1/zoo/jobs/j-interrupted/retry", headers=AUTH, json={})
        assert again.status_code == 400  # only failed or interrupted jobs are retried
    finally:
        s.stop()


def test_management_jobs_run_within_the_bound_and_queue_in_order(tmp_path, tiny_model_dir):
    """Four conversions submitted at once, with one worker allowed and two waiting: the fourth is a 429,
    the three others run one at a time, in the order submitted, and all succeed."""
    from zoo.registry.catalog import Registry
    from zoo.store.home import resolve_home

    reg = Registry(resolve_home(tmp_path / "zoo"))
    reg.register("tiny", str(tiny_model_dir))
    s = Server(str(reg.home.root), "--api-key", KEY,
               env={**os.environ, "ZOO_MAX_JOBS": "1", "ZOO_MAX_WAITING_JOBS": "2"})
    try:
        jobs, refused = [], None
        for target in ("onnx-fp32", "onnx-o1", "openvino-fp32", "onnx-o2"):
            r = httpx.post(s.url + "/v1/zoo/models/tiny/convert", headers=AUTH, json={"targets": [target]})
            if r.status_code == 429:
                refused = r
            else:
                assert r.status_code == 202, r.text
                jobs.append(r.json()["id"])
        assert len(jobs) == 3 and refused is not None
        assert refused.json()["error"]["code"] == "jobs_busy" and refused.headers["retry-after"] == "30"
        most, started, deadline = 0, [], time.time() + 300
        while time.time() < deadline:
            states = {j: httpx.get(s.url + f"/v1/zoo/jobs/{j}", headers=AUTH).json() for j in jobs}
            running = [j for j, st in states.items() if st["status"] == "running"]
            most = max(most, len(running))
            started += [j for j in running if j not in started]
            if all(st["status"] not in ("queued", "running") for st in states.values()):
                break
            time.sleep(0.2)
        assert [st["status"] for st in states.values()] == ["succeeded"] * 3, states
        assert most == 1 and started == [j for j in jobs if j in started]  # one at a time, oldest first
    finally:
        s.stop()


MATRYOSHKA_CARD = """---
tags:
- sentence-transformers
- loss:MatryoshkaLoss
---
# tiny

#### MatryoshkaLoss
```json
{
    "loss": "MultipleNegativesRankingLoss",
    "matryoshka_dims": [
        32,
        16,
        8
    ],
    "n_dims_per_step": -1
}
```
"""


def test_dimensions_say_when_the_model_declares_no_matryoshka_training(server, home, tmp_path, tiny_model_dir):
    """A cut below the width is served, and the response says when the model declares no Matryoshka
    training, or not that width (LocalAI once served a quarter of the dims without a word)."""
    import shutil

    from zoo.registry.catalog import open_registry

    r = httpx.post(server.url + "/v1/embeddings", headers=AUTH, json={"model": "tiny", "input": "x", "dimensions": 8})
    assert r.status_code == 200 and r.headers["x-zoo-matryoshka"] == "not-declared"
    for body in ({"dimensions": 32}, {}):
        r = httpx.post(server.url + "/v1/embeddings", headers=AUTH, json={"model": "tiny", "input": "x", **body})
        assert "x-zoo-matryoshka" not in r.headers
    assert httpx.get(server.url + "/v1/models/tiny", headers=AUTH).json()["zoo"]["matryoshka_dims"] is None

    trained = tmp_path / "trained"
    shutil.copytree(tiny_model_dir, trained)
    (trained / "README.md").write_text(MATRYOSHKA_CARD)
    other = tmp_path / "zoo"
    reg = open_registry(str(other))
    reg.register("mrl", str(trained))
    assert reg.describe("mrl")["matryoshka_dims"] == [32, 16, 8]
    shown = subprocess.run([sys.executable, "-m", "zoo", "--home", str(other), "show", "mrl"], capture_output=True,
                           text=True, timeout=120).stdout
    assert "matryoshka      declared, widths 32, 16, 8" in shown
    s = Server(str(other), "--models", "mrl")
    try:
        for dims, header in ((16, None), (8, None), (12, "not-a-trained-width")):
            r = httpx.post(s.url + "/v1/embeddings", json={"model": "mrl", "input": "x", "dimensions": dims})
            assert r.status_code == 200 and r.headers.get("x-zoo-matryoshka") == header, (dims, r.headers)
        r = httpx.post(s.url + "/embed", json={"inputs": "x", "dimensions": 12})
        assert r.status_code == 200 and r.headers.get("x-zoo-matryoshka") == "not-a-trained-width"
    finally:
        s.stop()
