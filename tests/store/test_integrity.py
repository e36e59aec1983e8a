"""Damage on disk: a changed blob is refused on use, and register --force / verify --repair restore it."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import zoo
from zoo.errors import InvalidSource, StoreCorruption

TEXTS = ["the quick brown fox", "embedding models map sentences to vectors"]


def flip(path, offset: int = 4096, length: int = 4096) -> None:
    """Overwrite a region in place (the file's inode and size stay; its bytes do not)."""
    st = os.stat(path)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(min(offset, max(0, st.st_size - length)))
        chunk = bytearray(f.read(length))
        f.seek(-len(chunk), os.SEEK_CUR)
        f.write(bytes(b ^ 0xFF for b in chunk))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the mtime put back
    os.chmod(path, 0o444)


def weights(registry, name="tiny", target="torch-fp32"):
    art = next(a for a in registry.resolve(name).revision.artifacts if a.target == target)
    tree = registry.artifact_path(art)
    return next(p for p in sorted(tree.rglob("*")) if p.suffix in (".safetensors", ".onnx")), art


def test_a_flipped_region_is_refused_not_served(registry, tiny_model_dir):
    registry.register("tiny", str(tiny_model_dir))
    before = zoo.load("tiny", registry=registry, artifact="torch-fp32", cache=False).embed(TEXTS)
    path, _ = weights(registry)
    flip(path)
    with pytest.raises(StoreCorruption, match=r"does not match its recorded sha256.*zoo verify --repair"):
        zoo.load("tiny", registry=registry, artifact="torch-fp32", cache=False)
    # the same source, registered again with --force, puts the right bytes back
    registry.register("tiny", str(tiny_model_dir), force=True)
    after = zoo.load("tiny", registry=registry, artifact="torch-fp32", cache=False).embed(TEXTS)
    assert np.array_equal(before, after)
    assert registry.verify("tiny")[1] == []


def test_a_tree_missing_its_tokenizer_names_the_repair(registry, tiny_model_dir):
    registry.register("tiny", str(tiny_model_dir))
    _, art = weights(registry)
    tree = registry.artifact_path(art)
    (tree / "tokenizer.json").unlink()
    env = {**os.environ, "ZOO_HOME": str(registry.home.root)}
    r = subprocess.run([sys.executable, "-m", "zoo.cli", "embed", "-m", "tiny", "--no-cache", "hello"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "tokenizer.json is missing" in r.stderr and "zoo verify --repair" in r.stderr


def test_verify_repair_restores_checkpoint_and_rebuilds_converted(registry, tmp_path, tiny_model_dir):
    from zoo.conversion.pipeline import convert

    src = shutil.copytree(tiny_model_dir, tmp_path / "src")
    registry.register("tiny", str(src))
    convert(registry, "tiny", ["onnx-fp32"])
    expected = zoo.load("tiny", registry=registry, artifact="onnx-fp32", cache=False).embed(TEXTS)
    checkpoint, _ = weights(registry)
    onnx, _ = weights(registry, target="onnx-fp32")
    flip(checkpoint)
    flip(onnx, offset=1000, length=64)
    env = {**os.environ, "ZOO_HOME": str(registry.home.root)}
    cli = [sys.executable, "-m", "zoo.cli"]
    r = subprocess.run([*cli, "verify"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 1 and "zoo verify --repair" in r.stderr
    r = subprocess.run([*cli, "verify", "--repair"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "restored tiny torch-fp32 from its pinned source" in r.stdout and "rebuilt  tiny onnx-fp32" in r.stdout
    assert registry.verify()[1] == []
    got = zoo.load("tiny", registry=registry, artifact="onnx-fp32", cache=False).embed(TEXTS)
    assert np.allclose(got, expected, atol=1e-6)
    # a source that changed since it was pinned cannot repair: it says so, and exits 1
    flip(weights(registry)[0])
    flip(src / "model.safetensors")
    r = subprocess.run([*cli, "verify", "--repair"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 1 and "has changed since it was pinned" in r.stdout


def test_registration_walks_only_what_a_checkpoint_can_hold(tmp_path, tiny_model_dir):
    from zoo.store.sources import list_checkpoint_files

    src = shutil.copytree(tiny_model_dir, tmp_path / "m")
    (src / "data").mkdir()
    for i in range(50):
        (src / "data" / f"{i}.txt").write_text("x")
    listed = list_checkpoint_files(src)
    assert "config.json" in listed and not any(p.startswith("data/") for p in listed)
    assert any(p.startswith("1_Pooling/") for p in listed)
    with pytest.raises(InvalidSource, match="more than 5 entries"):
        list_checkpoint_files(src, max_files=5)
    with pytest.raises(InvalidSource, match="more than 0 GiB"):
        list_checkpoint_files(src, max_bytes=100)
    os.mkfifo(src / "pipe")
    with pytest.raises(InvalidSource, match="pipe in the source folder is not a regular file"):
        list_checkpoint_files(src)


def test_gc_counts_what_a_killed_build_left(registry, tiny_model_dir):
    registry.register("tiny", str(tiny_model_dir))
    staging = registry.store.tmp / "build-123"
    staging.mkdir()
    (staging / "model.onnx").write_bytes(b"\0" * 12345)
    report = registry.gc()
    assert report.staging == ["build-123"] and report.bytes_freed >= 12345
    assert not staging.exists()


def test_storing_shared_files_again_keeps_other_trees_stamped(registry, tiny_model_dir, monkeypatch):
    """A conversion stores the checkpoint's configs and tokenizer again (the same blobs): the
    checkpoint's tree must stay stamped, not be hashed again at its next open in another process."""
    from zoo.conversion.pipeline import convert
    from zoo.store.blobs import Store

    registry.register("tiny", str(tiny_model_dir))
    _, art = weights(registry)
    registry.artifact_path(art)  # stamped
    convert(registry, "tiny", ["onnx-fp32"])
    hashed = []
    original = Store._check_file
    monkeypatch.setattr(Store, "_check_file", lambda self, path, e: hashed.append(path) or original(self, path, e))
    Store(registry.store.root).tree(art.store_digest)  # a fresh store object: nothing verified in memory
    assert hashed == []
