"""Manifests are checked on every read: safe paths only, the digest they are named by, one line when
damaged. A manifest path that escapes the store once overwrote a file outside the home (through a pull
from a shared store); an edited manifest naming other valid blobs was served until `zoo verify`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import zoo
from zoo.errors import StoreCorruption, ZooError
from zoo.store.blobs import ManifestDamaged, ManifestEntry, Store, manifest_digest, parse_manifest

SHA = "a" * 64


def _entries(*paths: str) -> list[dict]:
    return [{"path": p, "sha256": SHA, "size": 1} for p in paths]


def _digest(items: list[dict]) -> str:
    return manifest_digest(ManifestEntry(**d) for d in items)


@pytest.mark.parametrize("path", [
    "../victim.txt", "a/../../victim.txt", "/etc/passwd", "a//b", "./a", "a/.", "a\\..\\b", "a\x00b", "", "..",
])
def test_an_unsafe_manifest_path_is_refused_on_read(path):
    items = _entries("config.json", path)
    with pytest.raises(ManifestDamaged, match="names an unsafe path") as info:
        parse_manifest(json.dumps(items), _digest(items), "here")
    assert info.value.issue == "manifest unsafe path"


@pytest.mark.parametrize("items, why", [
    (_entries("a", "a/b"), "as a file and as a folder"),
    ([{"path": "a", "sha256": "A" * 64, "size": 1}], "malformed entry"),
    ([{"path": "a", "sha256": SHA, "size": True}], "malformed entry"),
    ([{"path": "a", "sha256": SHA, "size": -1}], "malformed entry"),
    ([{"path": "a", "sha256": SHA, "size": 1, "mode": "0777"}], "malformed entry"),
    ([], "not a list of files"),
    ({"path": "a"}, "not a list of files"),
])
def test_a_malformed_manifest_is_refused(items, why):
    body = json.dumps(items)
    digest = _digest(items) if isinstance(items, list) and items and "mode" not in items[0] else "b" * 64
    with pytest.raises(ManifestDamaged, match=why):
        parse_manifest(body, digest, "here")


def test_deep_nesting_and_garbage_are_one_line():
    for raw in (b"[" * 100_000, b"\xff\xfe garbage", b'{"path": '):
        with pytest.raises(ManifestDamaged, match="is not valid JSON"):
            parse_manifest(raw, SHA, "here")


def test_a_manifest_is_the_one_its_digest_names():
    items = _entries("config.json")
    with pytest.raises(ManifestDamaged, match="does not hash to that digest"):
        parse_manifest(json.dumps(items), "c" * 64, "here")
    assert parse_manifest(json.dumps(items), _digest(items), "here") == [ManifestEntry("config.json", SHA, 1)]


def test_the_store_refuses_unsafe_paths_and_digests_on_write(tmp_path):
    store = Store(tmp_path / "store")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ZooError, match="unsafe path"):
        store.add_file(tmp_path / "f", "../f")
    with pytest.raises(ZooError, match="unsafe path"):
        store.write_manifest([ManifestEntry("../../x", SHA, 1)])
    with pytest.raises(StoreCorruption, match="is not an artifact digest"):
        store.tree("../../etc")
    assert store.add_file(tmp_path / "f", "./sub//f").path == "sub/f"  # normalised before it is recorded


def _tiny(registry, tiny_model_dir):
    registry.register("tiny", str(tiny_model_dir))
    m = zoo.load("tiny", registry=registry, cache=False)
    return m, m.info["store_digest"]


def test_an_edited_manifest_naming_other_valid_blobs_is_not_served(registry, tiny_model_dir):
    m, digest = _tiny(registry, tiny_model_dir)
    path = registry.store.manifests / f"{digest}.json"
    items = json.loads(path.read_text())
    # swap two files' blobs: every blob named still exists and hashes right, only the manifest lies
    a, b = sorted(items, key=lambda d: d["size"])[:2]
    a["sha256"], b["sha256"], a["size"], b["size"] = b["sha256"], a["sha256"], b["size"], a["size"]
    os.chmod(path, 0o644)
    path.write_text(json.dumps(items, indent=1))
    with pytest.raises(StoreCorruption, match=rf"the manifest of artifact {digest[:12]} does not hash to that "
                                              r"digest .*run `zoo verify --repair`"):
        zoo.load("tiny", registry=registry, cache=False).embed(["hello"])


def _cli(home, *args, env=None):
    return subprocess.run([sys.executable, "-m", "zoo", "--home", str(home), *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def _one_line_error(r, *, match: str) -> None:
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert match in r.stderr, r.stderr


def test_a_garbage_manifest_is_one_line_and_repair_restores_it(registry, tiny_model_dir):
    _, digest = _tiny(registry, tiny_model_dir)
    home = registry.home.root
    path = registry.store.manifests / f"{digest}.json"
    os.chmod(path, 0o644)
    path.write_bytes(b"\x00garbage{")
    _one_line_error(_cli(home, "embed", "-m", "tiny", "--no-cache", "hello"), match="is not valid JSON")
    r = _cli(home, "verify")
    assert r.returncode == 1 and f"{digest[:12]} (manifest): manifest unreadable" in r.stdout, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    fixed = _cli(home, "verify", "--repair")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "restored tiny torch-fp32 from its pinned source" in fixed.stdout
    assert _cli(home, "verify").returncode == 0
    assert _cli(home, "embed", "-m", "tiny", "--no-cache", "hello").returncode == 0


def test_a_deleted_checkpoint_manifest_is_restored_by_repair(registry, tiny_model_dir):
    _, digest = _tiny(registry, tiny_model_dir)
    home = registry.home.root
    (registry.store.manifests / f"{digest}.json").unlink()
    r = _cli(home, "verify")
    assert r.returncode == 1 and "manifest missing" in r.stdout
    fixed = _cli(home, "verify", "--repair")
    assert fixed.returncode == 0 and "restored tiny torch-fp32" in fixed.stdout, fixed.stdout + fixed.stderr
    assert json.loads((registry.store.manifests / f"{digest}.json").read_text())  # back, and it is the pinned one
    assert _cli(home, "embed", "-m", "tiny", "--no-cache", "hello").returncode == 0


def test_a_manifest_path_out_of_the_store_overwrites_nothing_through_a_pull(registry, tiny_model_dir, tmp_path):
    """The reported attack: a shared registry row names a manifest in the shared store whose extra entry
    climbs out of the pulling home's staging tree onto an existing file. Refused before any file is made."""
    from sqlalchemy import update

    from zoo.registry.schema import Artifact

    _, digest = _tiny(registry, tiny_model_dir)
    a = registry.home.root
    shared = tmp_path / "shared"
    assert _cli(a, "push", "tiny", "--store-url", f"file://{shared}").returncode == 0
    victim = tmp_path / "victim" / "victim.txt"
    victim.parent.mkdir()
    victim.write_text("precious")
    items = json.loads((shared / "manifests" / f"{digest}.json").read_text())
    # staging is <home>/store/tmp/tree-*/: four levels up is tmp_path, beside the victim's folder
    climb = "../" * (len((tmp_path / "b" / "store" / "tmp" / "x").relative_to(tmp_path).parts)) + "victim/victim.txt"
    items.append({**items[0], "path": climb})
    hostile = _digest(items)
    (shared / "manifests" / f"{hostile}.json").write_text(json.dumps(items))
    with registry.session() as s:
        s.execute(update(Artifact).where(Artifact.store_digest == digest).values(store_digest=hostile))

    r = _cli(tmp_path / "b", "--registry-url", registry.home.registry_url, "embed", "-m", "tiny", "--no-cache",
             "hello", env={"ZOO_STORE_URL": f"file://{shared}"})
    _one_line_error(r, match="names an unsafe path")
    assert victim.read_text() == "precious"
    assert not (tmp_path / "b" / "store" / "manifests" / f"{hostile}.json").exists()
