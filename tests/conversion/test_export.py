"""`zoo export`: an artifact as a sentence-transformers folder, loaded by sentence-transformers itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import zoo
from conftest import CORPUS, DYNAMIC_INT8
from zoo.errors import ArtifactNotFound, InvalidInput

TEXTS = CORPUS + ["", "one"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory, tiny_model_dir):
    from zoo.conversion.pipeline import convert
    from zoo.registry.catalog import Registry
    from zoo.store.home import resolve_home

    reg = Registry(resolve_home(tmp_path_factory.mktemp("exp") / "zoo"))
    reg.register("tiny", str(tiny_model_dir))
    convert(reg, "tiny", ["onnx-fp32", "openvino-fp32", DYNAMIC_INT8])
    return reg


@pytest.mark.parametrize("target, backend, file_name, min_cos", [
    ("onnx-fp32", "onnx", "onnx/model.onnx", 0.99999),
    (DYNAMIC_INT8, "onnx", f"onnx/model_qint8_{DYNAMIC_INT8.rsplit('-', 1)[1]}.onnx", 0.99),
    ("openvino-fp32", "openvino", "openvino/openvino_model.xml", 0.9999),
])
def test_sentence_transformers_loads_the_export(converted, tmp_path, target, backend, file_name, min_cos):
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "export"
    done = subprocess.run([sys.executable, "-m", "zoo.cli", "--home", str(converted.home.root), "export", "tiny",
                           str(out), "--artifact", target], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f'model_kwargs={{"file_name": "{file_name}"}}' in done.stdout
    assert (out / file_name).is_file() and (out / "modules.json").is_file() and (out / "1_Pooling").is_dir()
    record = json.loads((out / "zoo-artifact.json").read_text())
    zoo_model = zoo.load("tiny", artifact=target, registry=converted, cache=False)
    assert (record["file_name"], record["artifact"]["store_digest"]) == (file_name, zoo_model.info["store_digest"])
    assert record["artifact"]["fidelity"]["mean_cosine"] > 0.9
    st = SentenceTransformer(str(out), backend=backend, model_kwargs={"file_name": file_name}, device="cpu")
    theirs, ours = st.encode(TEXTS, convert_to_numpy=True), zoo_model.embed(TEXTS)
    assert ((theirs * ours).sum(1) >= min_cos).all()
    # the defaults (no file_name) find the same artifact: an int8 export runs int8, never an fp32 re-export
    assert f'SentenceTransformer("{out}", backend="{backend}")' in done.stdout
    defaults = SentenceTransformer(str(out), backend=backend, device="cpu").encode(TEXTS, convert_to_numpy=True)
    assert np.abs(defaults - theirs).max() < 1e-6
    assert record["default_file_names"] == [d for d in {"onnx": ["onnx/model.onnx"], "openvino": [
        "openvino/openvino_model.xml", "openvino_model.xml"]}[backend] if d != file_name]
    if target == "onnx-fp32":  # the same graph, the same runtime: the same numbers
        assert np.abs(theirs - ours).max() < 1e-5
    # the ranges zoo serves int8 with, as the printed line passes them to sentence-transformers
    from sentence_transformers.util.quantization import quantize_embeddings

    ranges = np.load(out / "quantization_ranges.npy")
    assert f'ranges=numpy.load("{out}/quantization_ranges.npy")' in done.stdout
    assert ranges.dtype == np.float32 and np.array_equal(ranges, zoo_model.ranges())
    assert np.array_equal(quantize_embeddings(ours, "int8", ranges=ranges), zoo_model.embed(TEXTS, precision="int8"))
    plain = SentenceTransformer(str(out), device="cpu")  # the checkpoint is at the root too
    assert np.abs(plain.encode(TEXTS) - zoo.load("tiny", artifact="torch-fp32", registry=converted,
                                                 cache=False).embed(TEXTS)).max() < 1e-5


def test_llama_index_embedding_classes_load_the_export(converted, tmp_path):
    """LlamaIndex's HuggingFaceEmbedding (sentence-transformers underneath, any backend) and its
    OpenVINOEmbedding (optimum-intel underneath) embed with the exported files as zoo does."""
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.embeddings.huggingface_openvino import OpenVINOEmbedding
    from optimum.intel import OVModelForFeatureExtraction

    from zoo.conversion.portable import export_artifact

    for target in ("onnx-fp32", "openvino-fp32"):
        export_artifact(converted, "tiny", target, tmp_path / target)
    zoo_vectors = zoo.load("tiny", artifact="onnx-fp32", registry=converted, cache=False).embed(TEXTS)
    hf = HuggingFaceEmbedding(model_name=str(tmp_path / "onnx-fp32"), backend="onnx", device="cpu",
                              model_kwargs={"file_name": "onnx/model.onnx"})
    assert np.abs(np.array(hf.get_text_embedding_batch(TEXTS)) - zoo_vectors).max() < 1e-5
    # OpenVINOEmbedding finds an IR only at a folder's root (optimum's layout); sentence-transformers'
    # layout keeps it in openvino/, which optimum loads with subfolder=
    folder = tmp_path / "openvino-fp32"
    ir = OVModelForFeatureExtraction.from_pretrained(str(folder), subfolder="openvino", device="CPU",
                                                     ov_config={"INFERENCE_PRECISION_HINT": "f32"})
    ov = OpenVINOEmbedding(model_id_or_path=str(folder), model=ir, pooling="mean", normalize=True)
    theirs = np.array(ov.get_text_embedding_batch(TEXTS))
    assert ((theirs * zoo_vectors).sum(1) >= 0.9999).all()
    # as `zoo export` prints it: the IR at the root too, so OpenVINOEmbedding loads it (no re-export from
    # the checkpoint), with the model's pooling named (its default is cls: cosine 0.49 on a mean model once)
    before = sorted(p.name for p in folder.rglob("*"))
    ov = OpenVINOEmbedding(str(folder), pooling="mean")
    assert ((np.array(ov.get_text_embedding_batch(TEXTS)) * zoo_vectors).sum(1) >= 0.999).all()
    assert sorted(p.name for p in folder.rglob("*")) == before


def test_export_refusals(converted, tmp_path):
    from zoo.conversion.portable import export_artifact

    with pytest.raises(ArtifactNotFound, match=r"tiny has no artifact 'onnx-o4'"):
        export_artifact(converted, "tiny", "onnx-o4", tmp_path / "a")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(InvalidInput, match=r"exists and is not an empty folder"):
        export_artifact(converted, "tiny", "onnx-fp32", tmp_path / "full")
    assert sorted(os.listdir(tmp_path)) == ["full"]  # nothing staged left behind


def _cli(home, *args):
    return subprocess.run([sys.executable, "-m", "zoo.cli", "--home", str(home), *args], capture_output=True,
                          text=True, timeout=600)


def test_import_gates_a_sentence_transformers_export(tmp_path, tiny_model_dir):
    """sentence-transformers' own ONNX export (backend="onnx" exports, .save writes onnx/model.onnx),
    plus an OpenVINO one, registered and gated in a fresh home; a broken graph fails alone."""
    import shutil

    from sentence_transformers import SentenceTransformer

    folder = tmp_path / "st-export"
    shutil.copytree(tiny_model_dir, folder)
    SentenceTransformer(str(folder), backend="onnx", device="cpu").save(str(folder))
    SentenceTransformer(str(folder), backend="openvino", device="cpu").save(str(folder))
    (folder / "onnx" / "model_O2.onnx").write_bytes(b"not a graph")
    assert (folder / "onnx" / "model.onnx").is_file() and (folder / "openvino" / "openvino_model.xml").is_file()
    home = tmp_path / "zoo"
    r = _cli(home, "import", "st-tiny", str(folder))
    assert r.returncode == 1, r.stderr[-3000:]  # the broken graph
    status = {line.split()[1]: line.split()[0] for line in r.stdout.splitlines()[1:] if line.split()[0] != "skipped"}
    assert status == {"onnx-fp32": "ready", "onnx-o2": "failed", "openvino-fp32": "ready"}, r.stdout
    from zoo.registry.catalog import open_registry

    reg = open_registry(str(home))
    ref = zoo.load("st-tiny", artifact="torch-fp32", registry=reg, cache=False).embed(TEXTS)
    for target in ("onnx-fp32", "openvino-fp32"):
        m = zoo.load("st-tiny", artifact=target, registry=reg, cache=False)
        assert ((m.embed(TEXTS) * ref).sum(1) >= 0.9999).all(), target
        assert m.info["store_digest"] and reg.resolve("st-tiny").revision.artifacts
    (imported,) = [a for a in reg.resolve("st-tiny").revision.artifacts if a.target == "onnx-fp32"]
    assert imported.provenance["converter"] == "import"
    assert imported.provenance["settings"]["imported_from"] == "model.onnx"
    assert imported.fidelity["mean_cosine"] >= 0.9999


def test_a_round_trip_through_export_and_import(converted, tmp_path):
    out = tmp_path / "export"
    assert _cli(converted.home.root, "export", "tiny", str(out), "--artifact", "onnx-fp32").returncode == 0
    home = tmp_path / "other"
    r = _cli(home, "import", "again", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    from zoo.registry.catalog import open_registry

    a = zoo.load("tiny", artifact="onnx-fp32", registry=converted, cache=False).embed(TEXTS)
    b = zoo.load("again", artifact="onnx-fp32", registry=open_registry(str(home)), cache=False).embed(TEXTS)
    assert np.array_equal(a, b)  # the same graph back: the same vectors


@pytest.mark.parametrize("target, named, copies", [
    (DYNAMIC_INT8, f"onnx/model_qint8_{DYNAMIC_INT8.rsplit('-', 1)[1]}.onnx", ["onnx/model.onnx"]),
    ("openvino-fp32", "openvino/openvino_model.xml", ["openvino_model.xml"]),
])
def test_import_reads_the_default_copies_as_the_artifact_they_are(converted, tmp_path, target, named, copies):
    """An export's copies at the default names are its artifact, not others: an int8 graph at
    onnx/model.onnx is never imported as onnx-fp32."""
    from zoo.conversion.portable import export_artifact, found_artifacts

    out = tmp_path / "export"
    export_artifact(converted, "tiny", target, out)
    for copy in copies:
        assert os.path.samefile(out / copy, out / named)  # hard links: no second copy on disk
    found, skipped = found_artifacts(out)
    assert found == {target: out / named}
    assert skipped == [f"{copy} (the same graph as {named}, {target})" for copy in sorted(copies)]


def test_import_refuses_a_folder_without_a_checkpoint(tmp_path, converted):
    out = tmp_path / "export"
    assert _cli(converted.home.root, "export", "tiny", str(out), "--artifact", "onnx-fp32").returncode == 0
    (out / "model.safetensors").unlink()
    r = _cli(tmp_path / "zoo", "import", "nothing", str(out))
    assert r.returncode == 1 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    from zoo.registry.catalog import open_registry

    assert [m.name for m in open_registry(str(tmp_path / "zoo")).list_models()] == []
