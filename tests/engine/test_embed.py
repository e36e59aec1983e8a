"""zoo.load(...).embed equals sentence-transformers on the same folder; bad input is named."""

import numpy as np
import pytest

import zoo
from conftest import row_cosines
from zoo.errors import ArtifactNotFound, InvalidInput
from zoo.registry.schema import Artifact, ArtifactStatus

TEXTS = ["the quick brown fox", "", "le chat dort", "numbers 42 and 3.14 " * 20]


@pytest.fixture
def tiny(registry, tiny_model_dir):
    registry.register("tiny", str(tiny_model_dir))
    return zoo.load("tiny", registry=registry)


def test_embed_matches_sentence_transformers(tiny, tiny_model_dir):
    from sentence_transformers import SentenceTransformer

    ref = SentenceTransformer(str(tiny_model_dir), device="cpu").encode(TEXTS)
    got = tiny.embed(TEXTS)
    assert got.dtype == np.float32 and got.shape == (4, 32)
    cos = row_cosines(got, ref)
    assert cos.min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # Normalize module honoured


def test_order_single_string_and_empty_list(tiny):
    full = tiny.embed(TEXTS, batch_size=2)
    np.testing.assert_allclose(tiny.embed(TEXTS[::-1])[::-1], full, atol=1e-6)
    np.testing.assert_allclose(tiny.embed(TEXTS[0]), full[:1], atol=1e-6)
    empty = tiny.embed([])
    assert empty.shape == (0, 32) and empty.dtype == np.float32


@pytest.mark.parametrize("bad, match", [
    (["ok", None], "index 1 is NoneType"),
    (["ok", 3], "index 1 is int"),
    (["ok", "bad \ud800"], "index 1 is not valid Unicode"),
    (None, "must be a string or a list"),
    (b"bytes", "must be a string or a list"),
])
def test_bad_input_names_the_index(tiny, bad, match):
    with pytest.raises(InvalidInput, match=match):
        tiny.embed(bad)


def test_info_says_what_serves(registry, tiny_model_dir):
    registry.register("tiny", str(tiny_model_dir))
    info = zoo.load("tiny", device="cpu", registry=registry).info
    rev = registry.resolve("tiny").revision
    assert (info["model"], info["artifact"], info["format"], info["backend"], info["device"]) == (
        "tiny", "torch-fp32", "torch", "sentence-transformers/torch", "cpu")
    assert info["revision"] == rev.resolved_id and info["dim"] == 32


def test_explicit_artifact_and_rejected_artifacts_never_serve(registry, tiny_model_dir):
    r = registry.register("tiny", str(tiny_model_dir))
    with registry.session() as s:
        s.add(Artifact(revision_id=r.revision.id, target="onnx-int8-avx2", format="onnx", precision="int8",
                       status=ArtifactStatus.rejected, error="mean cosine 0.41 < 0.99",
                       store_digest=r.revision.artifacts[0].store_digest, provenance={}))
    assert zoo.load("tiny", registry=registry).info["artifact"] == "torch-fp32"
    assert zoo.load("tiny", artifact="torch-fp32", registry=registry).info["artifact"] == "torch-fp32"
    with pytest.raises(ArtifactNotFound, match=r"onnx-int8-avx2 \(id 2\) is rejected: mean cosine 0.41"):
        zoo.load("tiny", artifact="onnx-int8-avx2", registry=registry)
    with pytest.raises(ArtifactNotFound, match="no artifact 'openvino-int8'.*torch-fp32 \\(id 1, ready\\)"):
        zoo.load("tiny", artifact="openvino-int8", registry=registry)


def test_device_that_does_not_exist_is_refused(registry, tiny_model_dir):
    import torch

    from zoo.errors import ZooError

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU; tests/test_cuda.py covers it")

    registry.register("tiny", str(tiny_model_dir))
    with pytest.raises(ZooError, match="no CUDA GPU"):
        zoo.load("tiny", device="cuda", registry=registry)
