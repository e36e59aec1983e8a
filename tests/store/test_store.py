"""Content-addressed store: dedupe, atomic writes, verify, gc, crash leftovers."""

import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest

from zoo.errors import StoreCorruption
from zoo.store.blobs import Store, manifest_digest


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "store")


@pytest.fixture
def src(tmp_path):
    d = tmp_path / "src"
    (d / "1_Pooling").mkdir(parents=True)
    (d / "config.json").write_text('{"a": 1}')
    (d / "weights.bin").write_bytes(os.urandom(100_000))
    (d / "1_Pooling" / "config.json").write_text('{"a": 1}')  # same bytes as config.json
    return d


FILES = ["config.json", "weights.bin", "1_Pooling/config.json"]


def sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_add_tree_dedupes_and_digest_is_content_only(store, src, tmp_path):
    digest = store.add_tree(src, FILES)
    assert len(list(store.blobs.iterdir())) == 2  # two identical config.json files share one blob
    entries = store.manifest(digest)
    assert [e.path for e in entries] == sorted(FILES)
    assert manifest_digest(entries) == digest
    for e in entries:
        assert sha(src / e.path) == e.sha256 and (src / e.path).stat().st_size == e.size
    # the same content elsewhere has the same digest; the store does not grow
    other = tmp_path / "copy"
    import shutil

    shutil.copytree(src, other)
    assert store.add_tree(other, FILES) == digest
    assert len(list(store.blobs.iterdir())) == 2


def test_tree_materialises_read_only_identical_files(store, src):
    digest = store.add_tree(src, FILES)
    tree = store.tree(digest)
    assert tree == store.trees / digest
    for f in FILES:
        assert (tree / f).read_bytes() == (src / f).read_bytes()
        assert not os.access(store.blob_path(sha(src / f)), os.W_OK) or os.geteuid() == 0
        assert (store.blob_path(sha(src / f)).stat().st_mode & 0o222) == 0
    assert store.tree(digest) == tree  # idempotent
    assert list(store.tmp.iterdir()) == []


def test_verify_reports_corruption_and_missing(store, src):
    digest = store.add_tree(src, FILES)
    store.tree(digest)
    assert store.verify([digest]) == []
    blob = store.blob_path(sha(src / "weights.bin"))
    os.chmod(blob, 0o644)
    data = bytearray(blob.read_bytes())
    data[10] ^= 0xFF
    blob.write_bytes(bytes(data))
    problems = store.verify([digest])
    assert [(p.path, p.issue) for p in problems] == [("weights.bin", "hash mismatch")]
    blob.unlink()
    assert [(p.path, p.issue) for p in store.verify([digest])] == [("weights.bin", "missing")]
    assert [p.issue for p in store.verify(["0" * 64])] == ["manifest missing"]


def test_tree_of_missing_blob_is_a_clear_error(store, src):
    digest = store.add_tree(src, FILES)
    store.blob_path(sha(src / "weights.bin")).unlink()
    with pytest.raises(StoreCorruption, match="weights.bin"):
        store.tree(digest)
    assert not (store.trees / digest).exists()


def test_gc_removes_only_unreferenced_and_counts_bytes(store, src, tmp_path):
    keep = store.add_tree(src, ["config.json"])
    drop = store.add_tree(src, ["weights.bin", "config.json"])
    store.tree(drop)
    (store.tmp / "blob-leftover").write_bytes(b"x" * 10)  # a crashed writer's temp file
    report = store.gc({keep}, dry_run=True)
    # the unreferenced weights blob, plus the staging bytes a killed build left
    assert report.bytes_freed == 100_010 and report.manifests == [drop] and report.trees == [drop]
    assert report.staging == ["blob-leftover"]
    assert store.has(drop) and (store.tmp / "blob-leftover").exists()  # dry run changed nothing
    report = store.gc({keep})
    assert report.bytes_freed == 100_010
    assert not store.has(drop) and not (store.trees / drop).exists()
    assert list(store.tmp.iterdir()) == []
    assert store.verify([keep]) == []
    assert store.gc({keep}).bytes_freed == 0


WRITER = """
import os, sys
from pathlib import Path
from zoo.store.blobs import Store
s = Store(Path(sys.argv[1]))
src = Path(sys.argv[2])
print("ready", flush=True)
while True:
    s.add_file(src, "big.bin")
"""


def test_sigkill_mid_write_leaves_no_corrupt_blob(store, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(40_000_000))
    expected = sha(big)
    for delay in (0.05, 0.15, 0.3):
        for b in store.blobs.iterdir():
            os.chmod(b, 0o644)
            b.unlink()
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(store.root), str(big)], stdout=subprocess.PIPE)
        assert p.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        names = [b.name for b in store.blobs.iterdir()]
        assert names in ([], [expected])  # never a partial blob under a final name
        for name in names:
            assert sha(store.blobs / name) == name
    store.gc(set())
    assert list(store.tmp.iterdir()) == []


def test_unsafe_paths_are_refused(store, src):
    from zoo.errors import ZooError

    with pytest.raises(ZooError, match="unsafe path"):
        store.add_file(src / "config.json", "../escape.json")
