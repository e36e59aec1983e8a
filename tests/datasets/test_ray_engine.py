"""The Ray engine on a real local Ray cluster (two CPUs, on 127.0.0.1): vectors equal the local
engine's, the identity is stamped, a worker SIGKILLed mid-shard is retried with every id exactly
once, --per-node-best stamps rows, and `zoo.ray.embed_dataset` serves a user's own Dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import zoo
from conftest import CORPUS
from zoo.datasets.worker import FAULT_ENV

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")

TEXTS = [f"{i}: " + CORPUS[i % len(CORPUS)] * (1 + i % 3) for i in range(120)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One local Ray for the module. The fault hook is armed by deleting its marker file, so the
    variable is in the workers' environment from the start, and only the kill test fires it."""
    marker = tmp_path_factory.mktemp("fault") / "fired"
    marker.touch()
    os.environ[FAULT_ENV] = f"{marker}:1"
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING",
             _node_ip_address="127.0.0.1")
    try:
        yield marker
    finally:
        ray.shutdown()
        os.environ.pop(FAULT_ENV, None)


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": TEXTS}), src)
    return src


def _vectors(folder):
    table = pq.read_table(folder)
    order = np.argsort(table.column("id").to_numpy())
    return table, np.stack(table.column("embedding").to_numpy(zero_copy_only=False))[order], \
        table.column("id").to_numpy()[order]


def test_ray_engine_equals_the_local_engine(cluster, zoohome, source, tmp_path):
    local = zoo.embed_dataset(source, tmp_path / "local", model="tiny", artifact="onnx-fp32", home=str(zoohome),
                              shard_rows=30, cache=False)
    remote = zoo.embed_dataset(source, tmp_path / "ray", model="tiny", artifact="onnx-fp32", home=str(zoohome),
                               shard_rows=30, engine="ray", workers=2, cache=False)
    _, a, ids_a = _vectors(tmp_path / "local")
    table, b, ids_b = _vectors(tmp_path / "ray")
    assert ids_a.tolist() == ids_b.tolist() == list(range(len(TEXTS)))
    assert np.abs(a - b).max() < 1e-4
    assert (remote.rows, remote.shards, remote.identity["store_digest"]) == (120, 4, local.identity["store_digest"])
    assert remote.digests == [local.identity["store_digest"]]
    assert remote.workers and all(100 < rss < 4000 for rss in remote.workers.values())  # peak RSS per worker, MB
    meta = pq.read_metadata(tmp_path / "ray" / "part-00003.parquet").metadata
    assert json.loads(meta[b"zoo.store_digest"]) == local.identity["store_digest"]
    assert json.loads(meta[b"zoo.artifact"]) == "onnx-fp32" and json.loads(meta[b"zoo.run_id"]) == remote.run_id


def test_a_killed_worker_is_retried_and_every_id_is_written_once(cluster, zoohome, source, tmp_path):
    cluster.unlink()  # arm: the first worker past one shard SIGKILLs itself with its next shard staged
    r = zoo.embed_dataset(source, tmp_path / "out", model="tiny", artifact="onnx-fp32", home=str(zoohome),
                          shard_rows=10, engine="ray", workers=1)
    assert cluster.exists()  # it fired
    table, got, ids = _vectors(tmp_path / "out")
    assert ids.tolist() == list(range(len(TEXTS))) and table.num_rows == len(TEXTS)
    assert (r.rows, r.shards) == (120, 12)
    assert len(r.workers) == 2  # the killed actor and its replacement each reported shards
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".tmp-")]
    ref = zoo.load("tiny", artifact="onnx-fp32", home=str(zoohome), cache=False).embed(TEXTS)
    assert np.abs(got - ref).max() < 1e-4


def test_per_node_best_stamps_every_row(cluster, zoohome, source, tmp_path, capsys):
    best = zoo.load("tiny", home=str(zoohome), cache=False).info["store_digest"]
    r = zoo.embed_dataset(source, tmp_path / "out", model="tiny", home=str(zoohome), shard_rows=60, engine="ray",
                          workers=2, per_node_best=True)
    assert "--per-node-best" in capsys.readouterr().err
    table = pq.read_table(tmp_path / "out")
    assert table.column_names == ["id", "embedding", "truncated", "artifact_digest"]
    assert set(table.column("artifact_digest").to_pylist()) == {best} and r.digests == [best]
    meta = pq.read_metadata(tmp_path / "out" / "part-00000.parquet").metadata
    assert json.loads(meta[b"zoo.per_node_best"]) is True and json.loads(meta[b"zoo.store_digest"]) == best
    assert r.identity["store_digest"] is None  # the job pins nothing; each file says what made it


def test_zoo_ray_embeds_a_users_dataset(cluster, zoohome):
    import zoo.ray

    ds = ray.data.from_items([{"text": t, "n": i} for i, t in enumerate(TEXTS[:40])])
    out = zoo.ray.embed_dataset(ds, model="tiny", artifact="onnx-fp32", home=str(zoohome), workers=1,
                                batch_size=16, prompt_name="query").take_all()
    m = zoo.load("tiny", artifact="onnx-fp32", home=str(zoohome), cache=False)
    ref = m.embed([r["text"] for r in out], prompt_name="query")
    assert sorted(r["n"] for r in out) == list(range(40))
    assert np.abs(np.stack([np.asarray(r["embedding"]) for r in out]) - ref).max() < 1e-4
    assert {r["artifact_digest"] for r in out} == {m.info["store_digest"]}


def test_an_unreachable_ray_address_is_one_error(zoohome, source, tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = subprocess.run([sys.executable, "-m", "zoo.cli", "--home", str(zoohome), "embed-dataset", str(source),
                        str(tmp_path / "o"), "-m", "tiny", "--artifact", "onnx-fp32", "--engine", "ray",
                        "--ray-address", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr[-1500:]
    assert r.stderr.strip() == (f"error: cannot reach the Ray cluster at 127.0.0.1:{port} (Connection refused); start "
                                "it with `ray start --head`, or drop --ray-address to start a local Ray for this job")
