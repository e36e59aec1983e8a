"""`zoo serve` embeds images: base64 data URIs with ``"modality": "image"`` (as infinity takes them),
remote URLs refused, hostile images a 400 from their header, all in one space with the texts."""

import base64
import io
import threading
import time

import numpy as np
import pytest

import zoo

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'zoo[serve]'")
from serving import AUTH, KEY, Server  # noqa: E402


def _uri(image, fmt="PNG") -> str:
    buf = io.BytesIO()
    image.save(buf, fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def home(tmp_path_factory, tiny_clip_dir, tiny_model_dir):
    from zoo.registry.catalog import Registry
    from zoo.store.home import resolve_home

    reg = Registry(resolve_home(tmp_path_factory.mktemp("serve-img") / "zoo"))
    reg.register("clip", str(tiny_clip_dir))
    reg.register("tiny", str(tiny_model_dir))
    return str(reg.home.root)


@pytest.fixture(scope="module")
def server(home):
    s = Server(home, "--api-key", KEY, "--max-image-pixels", "250000")
    yield s
    s.stop()


def _post(server, body):
    return httpx.post(server.url + "/v1/embeddings", headers=AUTH, json=body, timeout=60)


def test_images_and_texts_over_http(server, home):
    from PIL import Image

    pictures = [Image.new("RGB", (64, 48), c) for c in ("red", "navy")]
    pictures.append(Image.fromarray((np.random.RandomState(1).rand(30, 30, 3) * 255).astype("uint8")))
    body = _post(server, {"model": "clip", "modality": "image", "input": [_uri(p) for p in pictures[:2]]
                          + [_uri(pictures[2], "JPEG")]}).json()
    local = zoo.load("clip", home=home, cache=False)
    decoded = [Image.open(io.BytesIO(base64.b64decode(_uri(p, f).split(",", 1)[1])))
               for p, f in zip(pictures, ("PNG", "PNG", "JPEG"))]
    expected = local.embed_images(decoded)
    got = np.array([d["embedding"] for d in body["data"]])
    assert np.abs(got - expected).max() < 1e-5 and body["usage"] == {"prompt_tokens": 0, "total_tokens": 0}
    text = _post(server, {"model": "clip", "input": ["a red square"]}).json()
    assert np.abs(np.array(text["data"][0]["embedding"]) - local.embed(["a red square"])[0]).max() < 1e-5
    one = _post(server, {"model": "clip", "modality": "image", "input": _uri(pictures[0]), "dimensions": 8,
                         "encoding_format": "base64"}).json()
    assert np.frombuffer(base64.b64decode(one["data"][0]["embedding"]), "<f4").shape == (8,)


@pytest.mark.parametrize("body, param, code, message", [
    ({"model": "clip", "modality": "image", "input": ["http://169.254.169.254/latest/meta-data"]},
     "input[0]", "url_not_allowed", "does not fetch images"),
    ({"model": "clip", "modality": "image", "input": ["https://example.com/cat.png"]},
     "input[0]", "url_not_allowed", "does not fetch images"),
    ({"model": "clip", "modality": "image", "input": ["file:///etc/passwd"]}, "input[0]", "invalid_value",
     "not an image data URI"),
    ({"model": "clip", "modality": "image", "input": ["data:image/png;base64,@@@"]}, "input[0]", "invalid_value",
     "not valid base64"),
    ({"model": "clip", "modality": "image", "input": ["data:image/png;base64," + base64.b64encode(b"GIF89a junk").decode()]},
     "input[0]", "invalid_value", "not an image"),
    ({"model": "clip", "modality": "image", "input": [7]}, "input[0]", "invalid_type", "data URI string"),
    ({"model": "tiny", "modality": "image", "input": ["data:image/png;base64,AAAA"]}, "modality", "invalid_value",
     "embeds text only"),
    ({"model": "clip", "modality": "audio", "input": ["x"]}, "modality", "invalid_value", ""),
])
def test_hostile_image_requests_get_400(server, body, param, code, message):
    r = _post(server, body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert (err["param"], err["code"]) == (param, code) and message in err["message"], err
    assert "/tmp" not in err["message"] and "Traceback" not in err["message"]


def test_decode_bombs_and_truncated_files_get_400_from_the_header(server):
    from PIL import Image

    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, "PNG")  # 60 kB that would decode to 400 M pixels
    big = Image.new("RGB", (600, 600), "white")  # 360,000 pixels: over this server's --max-image-pixels
    good = _uri(Image.new("RGB", (40, 40), "green"))
    png = base64.b64decode(good.split(",", 1)[1])
    cut = "data:image/png;base64," + base64.b64encode(png[: len(png) // 2]).decode()  # half a file
    for uri, needle in (("data:image/png;base64," + base64.b64encode(bomb.getvalue()).decode(), "more pixels"),
                        (_uri(big), "600x600 pixels, more than the 250,000 allowed"),
                        (cut, "truncated or damaged")):
        r = _post(server, {"model": "clip", "modality": "image", "input": [good, uri]})
        assert r.status_code == 400 and needle in r.json()["error"]["message"], r.text
        assert r.json()["error"]["param"] == "input[1]"
    assert _post(server, {"model": "clip", "modality": "image", "input": [good]}).status_code == 200


@pytest.fixture(scope="module")
def image_site(tmp_path_factory):
    """A web server on 127.0.0.1 with one PNG, a redirect and a 404, for the operator-allowed fetch."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (50, 40), "orange").save(buf, "PNG")
    png = buf.getvalue()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path == "/cat.png":
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(png)))
                self.end_headers()
                self.wfile.write(png)
            elif self.path == "/slow.png":  # a byte every second, forever: the whole-fetch deadline ends it
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", "100000")
                self.end_headers()
                try:
                    for _ in range(120):
                        self.wfile.write(b"\x89")
                        self.wfile.flush()
                        time.sleep(1)
                except OSError:
                    pass
            elif self.path == "/moved.png":
                self.send_response(302)
                self.send_header("Location", "http://169.254.169.254/latest/meta-data")
                self.end_headers()
            else:
                self.send_response(404)
                self.end_headers()

    site = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{site.server_address[1]}", png
    site.shutdown()


def test_image_urls_only_from_the_hosts_the_operator_allows(home, image_site):
    url, png = image_site
    s = Server(home, "--api-key", KEY, "--allow-image-host", "127.0.0.1")
    try:
        ok = _post(s, {"model": "clip", "modality": "image", "input": [url + "/cat.png"]})
        assert ok.status_code == 200, ok.text
        expected = zoo.load("clip", home=home, cache=False).embed_images([png])[0]
        assert np.abs(np.array(ok.json()["data"][0]["embedding"]) - expected).max() < 1e-5
        for item, status, code, needle in (
                (url + "/moved.png", 400, "fetch_failed", "got HTTP 302"),  # redirects are not followed
                (url + "/missing.png", 400, "fetch_failed", "got HTTP 404"),
                (url.replace("127.0.0.1", "localhost") + "/cat.png", 400, "url_not_allowed", "--allow-image-host"),
                (url.replace("http://", "http://127.0.0.1@") + "/cat.png", 400, "url_not_allowed", "allows")):
            r = _post(s, {"model": "clip", "modality": "image", "input": [item]})
            assert r.status_code == status and (r.json()["error"]["code"], needle in r.json()["error"]["message"]) \
                == (code, True), r.text
    finally:
        s.stop()


def test_a_slow_image_host_is_cut_at_the_deadline_and_text_does_not_wait(home, image_site):
    """Eight requests for an image a host sends a byte a second: each is a 400 at the whole-fetch deadline
    (3 s here), not kept alive read by read, and a text request sent meanwhile is answered while all
    eight are still waiting on the host (image work has threads of its own)."""
    url, _ = image_site
    s = Server(home, "--api-key", KEY, "--allow-image-host", "127.0.0.1", "--models", "clip",
               "--image-fetch-timeout-s", "3")
    try:
        results = {}

        def slow(n):
            t0 = time.monotonic()
            r = _post(s, {"model": "clip", "modality": "image", "input": [url + "/slow.png"]})
            results[n] = (r.status_code, r.json()["error"]["code"], time.monotonic() - t0)

        threads = [threading.Thread(target=slow, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        time.sleep(1.0)  # four slow requests are reading from the host, four wait for an image thread
        text = _post(s, {"model": "clip", "input": ["a red square"]})
        pending_after_text = sum(t.is_alive() for t in threads)
        for t in threads:
            t.join(120)
        assert text.status_code == 200 and pending_after_text == 8, (text.status_code, pending_after_text, results)
        assert {(status, code) for status, code, _ in results.values()} == {(400, "fetch_timeout")}, results
        # four image threads: the eight finish in two rounds of one deadline each, never one read at a time
        assert max(seconds for _, _, seconds in results.values()) < 2 * (3 + 1) + 5, results
    finally:
        s.stop()
