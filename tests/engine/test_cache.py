"""The persistent vector cache: exact keys, bit-identical hits, LRU cap, stats, processes, crashes, Redis."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import zoo
from cache_worker import CONFIG, DIM, vector_of
from zoo.conversion.pipeline import convert
from zoo.engine.cache import CacheConfig, open_cache, parse_size
from zoo.engine.cache.sqlite import SqliteCache
from zoo.cli import cli
from zoo.errors import InvalidInput
from zoo.core.hardware import Hardware

X86 = Hardware(arch="x86_64", flags=frozenset({"avx2", "avx512f"}))
TEXTS = ["the cat sleeps", "a dog runs", "", "the cat sleeps", "rain in spain " * 30]
WORKER = str(Path(__file__).parents[1] / "cache_worker.py")
pytestmark = pytest.mark.filterwarnings("ignore::zoo.engine.model.TruncationWarning")  # TEXTS has one long text


def items(texts, config=CONFIG):
    return [(k, vector_of(t), 0) for k, t in zip(config.keys(texts), texts)]


@pytest.fixture
def tiny_reg(registry, tiny_model_dir):
    registry.register("tiny", str(tiny_model_dir))
    return registry


def test_cached_vectors_are_bit_identical_and_counted(tiny_reg):
    m = zoo.load("tiny", registry=tiny_reg)
    first = m.embed(TEXTS)
    assert first.cache_hits == 0
    second = m.embed(TEXTS)
    assert second.cache_hits == len(TEXTS)
    assert np.array_equal(first, second)  # bit-identical, not just close
    assert second.truncated == first.truncated == (4,)  # remembered from the computing call
    stats = m.cache.stats()
    # 4 distinct texts: 4 misses, then 4 hits; one row per distinct text
    assert (stats["entries"], stats["hits"], stats["misses"]) == (4, 4, 4)
    assert stats["models"]["tiny"]["hit_rate"] == 0.5
    assert m.embed(TEXTS, cache=False).cache_hits == 0
    assert zoo.load("tiny", registry=tiny_reg, cache=False).cache is None


def test_a_configuration_never_gets_another_ones_vector(tiny_reg):
    convert(tiny_reg, "tiny", ["onnx-fp32"], hardware=X86)
    m = zoo.load("tiny", artifact="torch-fp32", registry=tiny_reg)
    texts = ["where is the cat", "the cat sleeps"]
    m.embed(texts)
    for options in ({"dimensions": 8}, {"prompt": "query: "}, {"prompt_name": "document"}, {"normalize": False}):
        got = m.embed(texts, **options)
        assert got.cache_hits == 0, options
        np.testing.assert_array_equal(got, m.embed(texts, cache=False, **options))
    other = zoo.load("tiny", artifact="onnx-fp32", registry=tiny_reg)
    assert other.embed(texts).cache_hits == 0  # another artifact
    assert other.embed(texts).cache_hits == 2
    query = m.embed_query(texts)  # same prompt as prompt="query: " above: shared
    assert query.cache_hits == 2


def test_a_failed_call_caches_nothing(tiny_reg):
    m = zoo.load("tiny", registry=tiny_reg)
    with pytest.raises(InvalidInput, match="index 1 has"):
        m.embed(["fine", "word " * 100], truncate=False)
    with pytest.raises(InvalidInput, match="index 2 is NoneType"):
        m.embed(["fine", "ok", None])
    assert m.cache.stats()["entries"] == 0
    assert m.embed(["fine"]).cache_hits == 0


def test_lru_eviction_keeps_the_recently_used(tmp_path, monkeypatch):
    import zoo.engine.cache.sqlite as sqlite_cache

    monkeypatch.setattr(sqlite_cache, "TOUCH_EVERY", 0.0)  # record every use (default: once a minute)
    row = 32 + 1 + 4 * DIM + sqlite_cache.ROW_OVERHEAD
    cache = SqliteCache(tmp_path / "c.db", max_bytes=10 * row)
    texts = [f"text {i}" for i in range(10)]
    for t in texts:  # ten rows, written in order
        cache.put_many(CONFIG, items([t]))
        time.sleep(0.002)
    assert cache.stats()["bytes"] == 10 * row
    assert len(cache.get_many(CONFIG, CONFIG.keys(texts[:3]))) == 3  # 0-2 are now the most recent
    cache.put_many(CONFIG, items(["new 1", "new 2"]))  # over the cap: evict down to 90 % (9 rows)
    left = cache.get_many(CONFIG, CONFIG.keys(texts))
    kept = sorted(texts.index(t) for t, k in zip(texts, CONFIG.keys(texts)) if k in left)
    assert kept == [0, 1, 2, 6, 7, 8, 9]  # 3, 4, 5 were the least recently used
    stats = cache.stats()
    assert (stats["entries"], stats["bytes"]) == (9, 9 * row)
    result = cache.prune(4 * row)
    assert (result["removed"], result["entries"], result["bytes"]) == (5, 4, 4 * row)


def test_clear_by_model_and_cli(tmp_path, tiny_reg):
    m = zoo.load("tiny", registry=tiny_reg)
    m.embed(["one", "two"])
    m.embed(["one"])
    m.cache.put_many(CONFIG, items(["other model row"]))
    runner = CliRunner()
    home = ["--home", str(tiny_reg.home.root)]
    import json

    del m  # its finalizer writes the pending hit counter
    out = runner.invoke(cli, home + ["cache", "stats", "--json"])
    assert out.exit_code == 0, out.output
    stats = json.loads(out.output)
    assert stats["entries"] == 3 and stats["models"]["tiny"] == {
        "entries": 2, "bytes": stats["models"]["tiny"]["bytes"], "hits": 1, "misses": 2, "hit_rate": 1 / 3}
    out = runner.invoke(cli, home + ["cache", "clear", "--model", "tiny"])
    assert out.exit_code == 0 and "removed 2 cached vectors of tiny" in out.output
    out = runner.invoke(cli, home + ["cache", "stats"])
    assert "entries 1," in out.output and "worker-model" in out.output
    out = runner.invoke(cli, home + ["cache", "prune", "--max-size", "lots"])
    assert out.exit_code == 1 and "cannot read size 'lots'" in out.output
    out = runner.invoke(cli, home + ["cache", "prune", "--max-size", "0"])
    assert out.exit_code == 0 and "removed 1 cached vectors; 0 remain" in out.output


def test_parse_size():
    assert parse_size("500MB") == 500_000_000 and parse_size("2GiB") == 2 * 1024 ** 3 and parse_size(12) == 12
    assert parse_size("1.5 kb") == 1500
    with pytest.raises(InvalidInput):
        parse_size("-3")


def test_eight_processes_write_at_once_without_loss(tmp_path):
    path = str(tmp_path / "shared.db")
    n = 200
    procs = [subprocess.Popen([sys.executable, WORKER, path, str(w), str(n)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for w in range(8)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and out.strip() == "done", err  # no "database is locked" surfaced
    cache = SqliteCache(path)
    texts = [f"private {w} {i}" for w in range(8) for i in range(n)] + [f"shared {i}" for i in range(n)]
    found = cache.get_many(CONFIG, CONFIG.keys(texts))
    assert len(found) == len(texts)  # no lost writes
    for k, t in zip(CONFIG.keys(texts), texts):
        assert np.array_equal(found[k].vector, vector_of(t))
    stats = cache.stats()
    assert stats["entries"] == 9 * n and stats["bytes"] == 9 * n * (32 + 1 + 4 * DIM + 64)
    assert stats["hits"] == 8 * 2 * n + len(texts)  # every worker read its writes back, plus this lookup
    assert cache.integrity() == "ok"


def test_a_process_killed_mid_write_leaves_the_cache_readable(tmp_path):
    path = str(tmp_path / "killed.db")
    proc = subprocess.Popen([sys.executable, WORKER, path, "0", "0", "--forever"], stdout=subprocess.PIPE, text=True)
    for _ in range(3):  # let it commit a few batches, then kill it in the middle of the next
        assert proc.stdout.readline()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    cache = SqliteCache(path)
    assert cache.integrity() == "ok"
    stats = cache.stats()
    assert stats["entries"] % 500 == 0 and stats["entries"] >= 1500  # whole batches only
    assert stats["bytes"] == stats["entries"] * (32 + 1 + 4 * DIM + 64)
    texts = [f"forever 0 {i} {j}" for i in range(stats["entries"] // 500) for j in range(500)]
    found = cache.get_many(CONFIG, CONFIG.keys(texts))
    assert len(found) == len(texts)
    assert all(np.array_equal(found[k].vector, vector_of(t)) for k, t in zip(CONFIG.keys(texts), texts))
    cache.put_many(CONFIG, items(["after the crash"]))  # and it still takes writes
    assert len(cache.get_many(CONFIG, CONFIG.keys(["after the crash"]))) == 1


def test_a_damaged_cache_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(zoo.ZooError, match="not a readable SQLite cache"):
        SqliteCache(bad)


# -- Redis: a real redis-server on 127.0.0.1 ------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server); the Redis cache is untested")
    pytest.importorskip("redis", reason="the redis extra is not installed: pip install 'zoo[redis]'")
    port = _free_port()
    work = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(work)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("redis-server did not start")
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


def test_redis_cache_round_trip_stats_clear_prune(redis_url):
    cache = open_cache(redis_url)
    cache.clear()
    other = CacheConfig(model="other", artifact_digest="x", runtime_precision="f32", prompt="", normalize=True,
                        dimensions=DIM)
    cache.put_many(CONFIG, items(["a", "b", "c"]))
    cache.put_many(other, items(["a"], other))
    found = cache.get_many(CONFIG, CONFIG.keys(["a", "b", "zzz"]))
    assert len(found) == 2
    assert np.array_equal(found[CONFIG.keys(["a"])[0]].vector, vector_of("a"))
    stats = cache.stats()
    assert stats["backend"] == "redis" and stats["entries"] == 4
    assert stats["models"]["worker-model"]["hits"] == 2 and stats["models"]["worker-model"]["misses"] == 1
    assert cache.clear("other") == 1
    assert cache.stats()["entries"] == 3
    time.sleep(1.1)  # Redis' idle clock has 1 s resolution
    cache.get_many(CONFIG, CONFIG.keys(["c"]))  # c is now the most recently used
    result = cache.prune(1)
    assert result["removed"] == 3 and result["entries"] == 0


def test_engine_on_the_redis_cache(redis_url, tiny_reg):
    m = zoo.load("tiny", registry=tiny_reg, cache=redis_url)
    m.cache.clear()
    first = m.embed(TEXTS)
    second = m.embed(TEXTS)
    assert (first.cache_hits, second.cache_hits) == (0, 5)
    assert np.array_equal(first, second) and second.truncated == (4,)


def test_unreachable_redis_is_a_clear_error(tiny_reg):
    with pytest.raises(zoo.ZooError, match="cannot reach the Redis cache at redis://127.0.0.1:1/0"):
        zoo.load("tiny", registry=tiny_reg, cache="redis://127.0.0.1:1/0")


@pytest.mark.parametrize("location", ["bogus://x", "bogus", "htp://cache.example/0"])
def test_a_mistyped_cache_location_is_refused_and_creates_nothing(tiny_reg, tmp_path, monkeypatch, location):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(InvalidInput, match="cache location"):
        zoo.load("tiny", registry=tiny_reg, cache=location)
    monkeypatch.setenv("ZOO_CACHE", location)
    r = subprocess.run([sys.executable, "-m", "zoo", "--home", str(tiny_reg.home.root), "embed", "-m", "tiny", "hi"],
                       capture_output=True, text=True, timeout=120, cwd=work)
    assert r.returncode == 1 and r.stderr.startswith("error: cache location") and r.stderr.count("\n") == 1, r.stderr
    assert list(work.iterdir()) == []  # no stray SQLite file named after the typo


FULL_DISK = """
import resource, signal, sys, warnings
import numpy as np
import zoo
from zoo.engine.model import CacheWriteWarning

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
home, cache = sys.argv[1], sys.argv[2]
texts = [f"sentence number {i} about rivers and stones" for i in range(400)]
m = zoo.load("tiny", home=home, cache=cache)
m.embed(["warm up"])  # the cache file exists, with its schema
expected = zoo.load("tiny", home=home, cache=False).embed(texts)
limit = 1 << 16
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    got = [m.embed(texts[i:i + 100]) for i in range(0, 400, 100)]
    again = m.embed(texts[:100])
assert np.array_equal(np.concatenate(got), expected)
assert np.array_equal(again, expected[:100])
kinds = {type(w.message).__name__ for w in caught}
print("warnings", sorted(kinds), sum(isinstance(w.message, CacheWriteWarning) for w in caught))
"""


def test_a_cache_that_cannot_write_serves_uncached_vectors(tiny_reg, tmp_path):
    """The disk under the cache fills up (the file may grow no more, so SQLite gets EFBIG, as from a full
    disk): every call still returns the right vectors, with a CacheWriteWarning, and reads keep working."""
    r = subprocess.run([sys.executable, "-c", FULL_DISK, str(tiny_reg.home.root), str(tmp_path / "cache.db")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    line = r.stdout.strip().splitlines()[-1]
    assert line.startswith("warnings ['CacheWriteWarning']") and int(line.split()[-1]) >= 1, r.stdout
