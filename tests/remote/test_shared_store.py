"""The shared artifact store: `zoo push` from one home, pull by digest on load in another that shares
only the registry URL and the store URL. Through a shared folder (file://) and through a real
S3-compatible server (moto's server mode, a separate process on 127.0.0.1)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import zoo
from conftest import CORPUS
from zoo.errors import ArtifactNotFound, StoreCorruption

TEXTS = CORPUS + ["", "one", " ".join(["long"] * 200)]


@pytest.fixture
def homes(tmp_path, tiny_model_dir):
    """Home A holds the tiny model and its ONNX artifact; home B has nothing but A's registry URL."""
    from zoo.conversion.pipeline import convert
    from zoo.registry.catalog import Registry
    from zoo.store.home import resolve_home

    a, b = tmp_path / "a", tmp_path / "b"
    reg = Registry(resolve_home(a))
    reg.register("tiny", str(tiny_model_dir))
    convert(reg, "tiny", ["onnx-fp32"])
    return a, b, reg.home.registry_url


def _cli(home, *args, env=None, registry_url=None):
    extra = ["--registry-url", registry_url] if registry_url else []
    return subprocess.run([sys.executable, "-m", "zoo.cli", "--home", str(home), *extra, *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=300)


def _embed(home, url, store_url=None):
    m = zoo.load("tiny", artifact="onnx-fp32", home=str(home), registry_url=url, store_url=store_url, cache=False)
    return m, m.embed(TEXTS)


def _store(home):
    from zoo.store.blobs import Store

    return Store(home / "store")


def _blobs(home: Path) -> set[str]:
    return {p.name for p in (home / "store" / "blobs").iterdir()}


def test_push_and_pull_through_a_shared_folder(homes, tmp_path):
    a, b, url = homes
    store = f"file://{tmp_path / 'shared'}"
    pushed = _cli(a, "push", "tiny", "--store-url", store)
    assert pushed.returncode == 0, pushed.stderr
    lines = pushed.stdout.splitlines()
    assert [line.split(" (")[0] for line in lines[:2]] == ["pushed tiny torch-fp32", "pushed tiny onnx-fp32"]
    assert lines[2].startswith(f"2 artifact(s) to {store}: ") and "0 already there" in lines[2]
    again = _cli(a, "push", "tiny", "--store-url", store)
    assert again.returncode == 0 and ": 0 blob(s) uploaded (0.0 MB), " in again.stdout

    with pytest.raises(ArtifactNotFound, match=r"has no files in this home; set --store-url / ZOO_STORE_URL"):
        _embed(b, url)
    m_a, v_a = _embed(a, url)
    m_b, v_b = _embed(b, url, store_url=store)
    assert np.array_equal(v_a, v_b)  # the very same bytes, so the very same vectors
    assert m_b.info["store_digest"] == m_a.info["store_digest"] and m_b.info["home"] == str(b.resolve())
    onnx = {e.sha256 for e in _store(b).manifest(m_a.info["store_digest"])}
    assert onnx <= _blobs(b) and not list((b / "store" / "tmp").iterdir())
    assert _embed(b, url)[1].tolist() == v_a.tolist()  # pulled once: later loads need no store URL


def test_a_damaged_shared_blob_is_refused_and_nothing_is_kept(homes, tmp_path):
    a, b, url = homes
    shared = tmp_path / "shared"
    assert _cli(a, "push", "tiny", "--artifact", "onnx-fp32", "--store-url", f"file://{shared}").returncode == 0
    digest = _embed(a, url)[0].info["store_digest"]
    entry = max(_store(a).manifest(digest), key=lambda e: e.size)  # model.onnx
    blob = shared / "blobs" / entry.sha256
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    os.chmod(blob, 0o644)
    blob.write_bytes(bytes(data))
    with pytest.raises(StoreCorruption, match=rf"holds a damaged blob for artifact {digest[:12]}: model.onnx"):
        _embed(b, url, store_url=f"file://{shared}")
    assert entry.sha256 not in _blobs(b)
    assert not _store(b).has(digest) and not list((b / "store" / "tmp").iterdir())


def test_an_artifact_missing_from_the_store_is_named(homes, tmp_path):
    a, b, url = homes
    shared = f"file://{tmp_path / 'shared'}"
    assert _cli(a, "push", "tiny", "--artifact", "torch-fp32", "--store-url", shared).returncode == 0
    with pytest.raises(ArtifactNotFound, match=r"is not in the shared store .*zoo push NAME --store-url"):
        _embed(b, url, store_url=shared)
    r = _cli(a, "push", "tiny", "--artifact", "onnx-int8-avx2", "--store-url", shared)
    assert r.returncode == 1 and r.stderr.startswith("error: tiny has no artifact 'onnx-int8-avx2'; its artifacts: ")


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3-compatible server in its own process on a free loopback port, with a bucket."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed (the test extra brings it)")
    boto3 = pytest.importorskip("boto3")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("moto's server did not start")
                time.sleep(0.2)
        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket="zoo-artifacts")
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_push_and_pull_through_s3(homes, s3_server, monkeypatch):
    a, b, url = homes
    pushed = _cli(a, "push", "--store-url", "s3://zoo-artifacts/team", env=s3_server)
    assert pushed.returncode == 0, pushed.stderr[-2000:]
    assert "2 artifact(s) to s3://zoo-artifacts/team: " in pushed.stdout
    for k, v in s3_server.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("ZOO_STORE_URL", "s3://zoo-artifacts/team")
    m_b, v_b = _embed(b, url)  # the store URL from the environment
    assert np.array_equal(v_b, _embed(a, url)[1])
    import boto3

    keys = {o["Key"] for o in boto3.client("s3", endpoint_url=s3_server["AWS_ENDPOINT_URL"]).list_objects_v2(
        Bucket="zoo-artifacts", Prefix="team/manifests/")["Contents"]}
    assert f"team/manifests/{m_b.info['store_digest']}.json" in keys


def test_an_unreachable_store_is_one_error(homes):
    a, _, _ = homes
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_MAX_ATTEMPTS": "1"}
    r = _cli(a, "push", "tiny", "--store-url", "s3://nowhere/x", env=env)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr[-2000:]
    assert r.stderr.startswith("error: shared store s3://nowhere/x: cannot write (")


def test_push_replaces_a_damaged_shared_blob_of_the_same_size(homes, tmp_path):
    import hashlib

    a, _, url = homes
    shared = tmp_path / "shared"
    assert _cli(a, "push", "tiny", "--artifact", "onnx-fp32", "--store-url", f"file://{shared}").returncode == 0
    digest = _embed(a, url)[0].info["store_digest"]
    entry = max(_store(a).manifest(digest), key=lambda e: e.size)
    blob = shared / "blobs" / entry.sha256
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    os.chmod(blob, 0o644)
    blob.write_bytes(bytes(data))
    again = _cli(a, "push", "tiny", "--artifact", "onnx-fp32", "--store-url", f"file://{shared}")
    assert again.returncode == 0 and ": 1 blob(s) uploaded" in again.stdout, again.stdout + again.stderr
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == entry.sha256
