"""hf:// sources against a real HTTP server on 127.0.0.1 speaking the hub protocol.

huggingface_hub itself does the talking (model_info, snapshot_download, HEAD +
GET /resolve); zoo must pin the commit sha the hub resolves a branch, tag or
commit to, fetch only checkpoint files, and fail clearly when the hub is
unreachable or the revision does not exist.
"""

import hashlib
import socket

import numpy as np
import pytest

from conftest import table_counts
from fakehub import FakeHub, FakeRepo
from zoo.errors import RevisionNotFound, SourceUnavailable

C1 = hashlib.sha1(b"commit-1").hexdigest()
C2 = hashlib.sha1(b"commit-2").hexdigest()


@pytest.fixture(scope="module")
def hub(tiny_model_dir, tiny_cls_dir):
    def files(d):
        return {p.relative_to(d).as_posix(): p.read_bytes() for p in d.rglob("*") if p.is_file()}

    v2 = files(tiny_cls_dir)
    v2["onnx/model.onnx"] = b"an export zoo must not download"
    v2["tf_model.h5"] = b"tf weights zoo must not download"
    with FakeHub() as h:
        h.repos["acme/tiny"] = FakeRepo(commits={C1: files(tiny_model_dir), C2: v2},
                                        refs={"main": C2, "v1.0": C1, "dev": C1})
        h.repos["acme/huge"] = FakeRepo(commits={C2: v2}, refs={"main": C2}, hide_siblings=True)
        yield h


@pytest.fixture
def at_hub(hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    hub.requests.clear()
    return hub


@pytest.mark.parametrize("ref, sha, pooling", [(None, C2, "cls"), ("main", C2, "cls"), ("v1.0", C1, "mean"),
                                               ("dev", C1, "mean"), (C1, C1, "mean")])
def test_branch_tag_and_commit_pin_the_resolved_sha(registry, at_hub, ref, sha, pooling):
    r = registry.register("tiny", "hf://acme/tiny", revision=ref)
    assert r.revision.resolved_id == sha
    assert r.revision.requested_ref == ref
    assert r.model.source == "hf://acme/tiny" and r.model.pooling == pooling
    fetched = {p for m, p in at_hub.requests if m == "GET" and "/resolve/" in p}
    # files are fetched at the pinned commit, never at the moving ref
    assert fetched and all(f"/acme/tiny/resolve/{sha}/" in p for p in fetched)
    assert not any("onnx/" in p or p.endswith(".h5") for p in fetched)
    paths = [f["path"] for f in r.revision.manifest]
    assert "onnx/model.onnx" not in paths and "model.safetensors" in paths


def test_hub_model_embeds_like_the_local_folder(registry, at_hub, tiny_model_dir):
    import zoo

    registry.register("hubtiny", "hf://acme/tiny", revision="v1.0")
    registry.register("localtiny", str(tiny_model_dir))
    texts = ["hello hub", "a second sentence"]
    a = zoo.load("hubtiny", registry=registry).embed(texts)
    b = zoo.load("localtiny", registry=registry).embed(texts)
    np.testing.assert_array_equal(a, b)


def test_a_clip_model_from_the_hub_embeds_images_like_the_local_folder(registry, monkeypatch, tiny_clip_dir):
    """The real hub code path for a multimodal model: its processor comes along, images embed alike."""
    import zoo
    from PIL import Image

    with FakeHub() as h:
        h.repos["acme/clip"] = FakeRepo(commits={C1: {p.relative_to(tiny_clip_dir).as_posix(): p.read_bytes()
                                                      for p in tiny_clip_dir.rglob("*") if p.is_file()}},
                                        refs={"main": C1})
        monkeypatch.setenv("HF_ENDPOINT", h.url)
        r = registry.register("hubclip", "hf://acme/clip")
    assert "preprocessor_config.json" in [f["path"] for f in r.revision.manifest]
    assert registry.describe("hubclip")["modalities"] == ["text", "image"]
    registry.register("localclip", str(tiny_clip_dir))
    pictures = [Image.new("RGB", (40, 30), "red"), Image.new("RGB", (30, 40), "teal")]
    a = zoo.load("hubclip", registry=registry, cache=False).embed_images(pictures)
    np.testing.assert_array_equal(a, zoo.load("localclip", registry=registry, cache=False).embed_images(pictures))


def test_missing_revision(registry, at_hub):
    with pytest.raises(RevisionNotFound, match="revision 'nope' not found in hf://acme/tiny"):
        registry.register("tiny", "hf://acme/tiny", revision="nope")
    assert set(table_counts(registry).values()) == {0}


def test_missing_repo(registry, at_hub):
    with pytest.raises(SourceUnavailable, match="'acme/ghost' not found"):
        registry.register("ghost", "hf://acme/ghost")
    assert set(table_counts(registry).values()) == {0}


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """A Hugging Face cache of this test's own (huggingface_hub reads HF_HOME at import)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path / "hf-cache"


def dead_endpoint() -> str:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize("how", ["HF_HUB_OFFLINE=1", "hub unreachable"])
def test_a_model_in_the_hf_cache_registers_offline_by_hub_id(registry, hub, hf_cache, monkeypatch, tiny_model_dir,
                                                             how):
    """As sentence-transformers loads "org/name" from the cache offline: pinned to the cached commit."""
    from huggingface_hub import snapshot_download

    import zoo

    snapshot_download("acme/tiny", revision="v1.0", endpoint=hub.url)  # an earlier online session's download
    if how == "HF_HUB_OFFLINE=1":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
    else:
        monkeypatch.setenv("HF_ENDPOINT", dead_endpoint())
    hub.requests.clear()
    r = registry.register("cached", "acme/tiny", revision="v1.0")
    assert (r.revision.resolved_id, r.model.source, r.model.pooling) == (C1, "hf://acme/tiny", "mean")
    assert hub.requests == []  # nothing asked of the hub
    registry.register("local", str(tiny_model_dir))
    texts = ["from the cache", "offline"]
    np.testing.assert_array_equal(zoo.load("cached", registry=registry, cache=False).embed(texts),
                                  zoo.load("local", registry=registry, cache=False).embed(texts))
    with pytest.raises(SourceUnavailable, match=r"not in the Hugging Face cache .*HF_HUB_OFFLINE=1 reads only the cache"):
        registry.register("ghost", "acme/ghost")
    with pytest.raises(SourceUnavailable, match="not in the Hugging Face cache"):  # a revision the cache lacks
        registry.register("other", "acme/tiny", revision="main")


def test_unreachable_hub_suggests_local_sources(registry, monkeypatch, hf_cache):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(SourceUnavailable, match="cannot reach the Hugging Face hub.*pkg://"):
        registry.register("tiny", "hf://acme/tiny")
    assert set(table_counts(registry).values()) == {0}
    assert list(registry.store.tmp.iterdir()) == []


def test_repo_without_siblings_is_listed_through_the_tree_endpoint(registry, at_hub):
    r = registry.register("huge", "hf://acme/huge")
    assert r.revision.resolved_id == C2
    assert any(m == "GET" and p.startswith("/api/models/acme/huge/tree/") for m, p in at_hub.requests)
    paths = [f["path"] for f in r.revision.manifest]
    assert "model.safetensors" in paths and "onnx/model.onnx" not in paths
