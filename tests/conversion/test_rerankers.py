"""Rerankers (cross-encoders) through the registry, the converters, the gate and the engine.

Tiny random cross-encoders laid out as the published ones (``build_cross_encoder``): ms-marco-MiniLM's
``BertForSequenceClassification`` with its activation in ``config.json``, bge-reranker-v2-m3's
``XLMRobertaForSequenceClassification`` with no sentence-transformers file, and sentence-transformers 5's own
save. Every artifact is compared with sentence-transformers' ``CrossEncoder`` on the same folder; the gate must
refuse artifacts whose ranking or scale is broken.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DYNAMIC_INT8, build_cross_encoder, build_tiny_model

TARGETS = ["onnx-fp32", "openvino-fp32", DYNAMIC_INT8, "onnx-int8-static", "openvino-int8"]
EXACT = ("torch-fp32", "onnx-fp32", "openvino-fp32")
QUERY = "how is the weather today"
DOCUMENTS = [
    "the weather today is sunny with a light breeze",
    "a cat sat on the mat while it rained outside",
    "",
    "le chat dort sur le canapé",
    "der hund spielt im garten",
    "search engines rank documents by similarity",
    "weather",
    " ".join(["the quick brown fox jumps over the lazy dog"] * 40),  # past the 128-token max length
    "numbers like 42 and 3.14 appear in text too",
]


@pytest.fixture(scope="module")
def rerankers(tmp_path_factory):
    from zoo.conversion.pipeline import convert
    from zoo.registry.catalog import Registry
    from zoo.store.home import resolve_home

    root = tmp_path_factory.mktemp("rerankers")
    folders = {"ms": build_cross_encoder(root / "ms", "bert"), "bge": build_cross_encoder(root / "bge", "xlm-roberta")}
    reg = Registry(resolve_home(root / "zoo"))
    outcomes = {}
    for name, folder in folders.items():
        reg.register(name, str(folder))
        outcomes[name] = {o.target: o for o in convert(reg, name, TARGETS)}
    return reg, folders, outcomes


def _cross_encoder(folder: Path):
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(folder), device="cpu")


def test_the_layouts_read_as_rerankers(tmp_path, rerankers, tiny_model_dir):
    from zoo.engine.kinds import detect_kind
    from zoo.engine.model_config import read_model_spec

    reg, folders, _ = rerankers
    st5 = build_cross_encoder(tmp_path / "st5", "bert", layout="st5")
    assert json.loads((st5 / "config_sentence_transformers.json").read_text())["model_type"] == "CrossEncoder"
    nli = build_cross_encoder(tmp_path / "nli", "bert", labels=3)
    assert [detect_kind(f) for f in (folders["ms"], folders["bge"], st5, nli, tiny_model_dir)] == [
        "reranker", "reranker", "reranker", "reranker", "embedding"]
    spec = read_model_spec(nli)
    assert (spec.kind, spec.dim, spec.activation, spec.pooling) == ("reranker", 3, "identity", "logits")
    for name in ("ms", "bge"):
        d = reg.describe(name)
        assert (d["kind"], d["activation"], d["dim"], d["task"], d["max_seq_length"]) == (
            "reranker", "sigmoid", 1, "text-ranking", 128)
    assert "gguf" not in " ".join(t for t in TARGETS)


@pytest.mark.parametrize("name", ["ms", "bge"])
def test_every_target_ranks_like_cross_encoder(rerankers, name):
    """fp32 artifacts give CrossEncoder's scores (|diff| < 1e-4) and its order; an int8 artifact is served only if
    the gate found it within the floor on the probe pairs, and then stays close on these too."""
    import zoo
    from zoo.core.floor import ScoreFloor

    reg, folders, outcomes = rerankers
    ce = _cross_encoder(folders[name])
    reference = ce.predict([(QUERY, d) for d in DOCUMENTS])
    spread = np.ptp(reference)
    assert spread > 0.05, "the fixture's scores must differ, or a ranking proves nothing"
    expected_order = [r["corpus_id"] for r in ce.rank(QUERY, DOCUMENTS)]
    # dynamic int8 scales activations per padded batch: the gate also scored each pair alone and judged the worse
    dynamic = outcomes[name][DYNAMIC_INT8].fidelity
    assert dynamic["max_score_diff"] >= dynamic["alone_max_score_diff"] and "alone_mean_query_spearman" in dynamic
    for target in ["torch-fp32"] + TARGETS:
        o = outcomes[name].get(target)
        if o is not None and o.status != "ready":
            assert o.status == "rejected" and "below the fidelity floor" in o.error, (target, o.error)
            assert target not in EXACT, f"{target} must pass: {o.error}"
            continue
        m = zoo.load(name, artifact=target, registry=reg, cache=False)
        assert type(m).__name__ == "RerankModel"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ranking = m.rerank(QUERY, DOCUMENTS, return_documents=True)
        assert ranking.truncated == (7,), target
        assert any("truncated" in str(w.message) for w in caught)
        scores = np.empty(len(DOCUMENTS))
        for r in ranking:
            scores[r.index] = r.score
            assert r.document == DOCUMENTS[r.index]
        if target in EXACT:
            assert np.abs(scores - reference).max() < 1e-4, target
            assert [r.index for r in ranking] == expected_order, target
        else:
            figures = o.fidelity
            assert ScoreFloor().check(figures) is None, (target, figures)
            assert figures["probe_pairs"] >= 300 and figures["queries"] == 32
            assert np.abs(scores - reference).max() < 2 * ScoreFloor().max_score_diff, target


def test_predict_top_n_truncation_and_the_cache(rerankers, tmp_path):
    import zoo
    from zoo.engine.model import TruncationWarning
    from zoo.errors import InvalidInput

    reg, folders, _ = rerankers
    ce = _cross_encoder(folders["ms"])
    m = zoo.load("ms", artifact="onnx-fp32", registry=reg, cache=str(tmp_path / "cache.db"))
    pairs = [(QUERY, d) for d in DOCUMENTS]
    with pytest.warns(TruncationWarning, match=r"1 of 9 pairs .* \(indices 7\)"):
        first = m.predict(pairs)
    assert first.shape == (9,) and np.abs(first - ce.predict(pairs)).max() < 1e-4
    top = m.rerank(QUERY, DOCUMENTS[:7], top_n=3)
    assert [r.index for r in top] == [r["corpus_id"] for r in ce.rank(QUERY, DOCUMENTS[:7], top_k=3)]
    again = m.rerank(QUERY, DOCUMENTS[:7], top_n=3)
    assert again.cache_hits == 7 and [(r.index, r.score) for r in again] == [(r.index, r.score) for r in top]
    assert m.rank(QUERY, DOCUMENTS[:2], top_k=1)[0].keys() == {"corpus_id", "score"}
    with pytest.raises(InvalidInput, match="pair at index 7 is longer than ms's max length of 128"):
        m.predict(pairs, truncate=False)
    for bad, message in [(dict(top_n=0), "top_n must be an integer >= 1"), (dict(top_n=True), "top_n"),
                         (dict(batch_size=0), "batch_size")]:
        with pytest.raises(InvalidInput, match=message):
            m.rerank(QUERY, DOCUMENTS, **bad)
    with pytest.raises(InvalidInput, match="text at index 1 is int"):
        m.rerank(QUERY, ["ok", 3])
    with pytest.raises(InvalidInput, match="pair at index 0 is not a"):
        m.predict(["just a string"])
    # another artifact of the same model keys its own scores
    other = zoo.load("ms", artifact="openvino-fp32", registry=reg, cache=str(tmp_path / "cache.db"))
    assert other.rerank(QUERY, DOCUMENTS[:7]).cache_hits == 0


def test_a_huge_document_costs_its_window_and_scores_as_the_whole(rerankers):
    """A 300 KB document is tokenized from a prefix that already overflows the max length: the pair's tokens (and
    so its score) are exactly those of the whole text truncated longest-first."""
    import zoo
    from tokenizers import Tokenizer

    reg, folders, _ = rerankers
    m = zoo.load("bge", artifact="onnx-fp32", registry=reg, cache=False)
    huge = ("weather reports from the coast " * 10_000)[:300_000]
    query = "what did the weather report say " * 30  # long too: both sides are cut
    encoder = m.backend.encoder
    whole = Tokenizer.from_file(str(folders["bge"] / "tokenizer.json"))
    whole.enable_truncation(max_length=128)
    for q, d in [(QUERY, huge), (query, huge), (huge, "short document")]:
        (windowed,) = encoder.encode_pairs([(q, d)])
        assert windowed.ids == whole.encode(q, d).ids and bool(windowed.overflowing)
    ce = _cross_encoder(folders["bge"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert abs(m.predict([(QUERY, huge)])[0] - ce.predict([(QUERY, huge[:20_000])])[0]) < 1e-4


def _edited_export(reg, name: str, out: Path, edit) -> Path:
    """The model's onnx-fp32 graph with ``edit(graph, logits_name)`` applied: a broken artifact to import."""
    import onnx

    art = next(a for a in reg.artifacts_of(name) if a.target == "onnx-fp32")
    model = onnx.load(str(reg.artifact_path(art) / "model.onnx"))
    edit(model.graph)
    onnx.save(model, str(out))
    return out


def _rename_output(graph, op: str) -> None:
    """Put ``op`` after the graph's logits: the head's output renamed, the op writes ``logits``."""
    import onnx

    for node in graph.node:
        node.output[:] = ["raw_logits" if o == "logits" else o for o in node.output]
    graph.node.append(onnx.helper.make_node(op, ["raw_logits"], ["logits"]))


def test_the_gate_refuses_a_broken_ranking_and_a_doubled_activation(rerankers, tmp_path):
    """Labels swapped (the logits negated) reverse every ranking; an activation applied twice (sigmoid inside the
    graph, then the runtime's) keeps the order and squeezes the scores. Both are refused with the reason, the
    artifact is never served, and a fresh import of the faithful graph passes."""
    from zoo.conversion.pipeline import convert
    from zoo.errors import ArtifactNotFound
    import zoo

    reg, _, _ = rerankers
    negated = _edited_export(reg, "ms", tmp_path / "negated.onnx", lambda g: _rename_output(g, "Neg"))
    doubled = _edited_export(reg, "ms", tmp_path / "doubled.onnx", lambda g: _rename_output(g, "Sigmoid"))
    (o,) = convert(reg, "ms", ["onnx-int8-static"], imports={"onnx-int8-static": negated}, rebuild=True)
    assert o.status == "rejected" and "per-query Spearman" in o.error and o.fidelity["mean_query_spearman"] < 0
    with pytest.raises(ArtifactNotFound, match="rejected"):
        zoo.load("ms", artifact="onnx-int8-static", registry=reg)
    (o,) = convert(reg, "ms", ["onnx-int8-static"], imports={"onnx-int8-static": doubled}, rebuild=True)
    assert o.status == "rejected" and o.error.startswith("below the fidelity floor: max score difference")
    assert o.fidelity["mean_query_spearman"] > 0.99  # the order held: only the scale shows it
    faithful = _edited_export(reg, "ms", tmp_path / "same.onnx", lambda g: None)
    (o,) = convert(reg, "ms", ["onnx-int8-static"], imports={"onnx-int8-static": faithful}, rebuild=True)
    assert o.status == "ready" and o.fidelity["max_score_diff"] < 1e-5


def test_kinds_are_refused_where_they_cannot_serve(rerankers, tmp_path, tiny_model_dir):
    import zoo
    from zoo.errors import InvalidInput, NotAModel
    from zoo.registry.catalog import Registry
    from zoo.store.home import resolve_home

    reg, folders, _ = rerankers
    m = zoo.load("ms", artifact="onnx-fp32", registry=reg, cache=False)
    with pytest.raises(InvalidInput, match="ms is a reranker model; embedding needs an embedding model"):
        m.embed(["hello"])
    fresh = Registry(resolve_home(tmp_path / "zoo"))
    fresh.register("tiny", str(tiny_model_dir))
    with pytest.raises(InvalidInput, match="tiny is an embedding model; reranking needs a reranker model"):
        zoo.load("tiny", registry=fresh, cache=False).rerank("q", ["d"])
    with pytest.raises(NotAModel, match="laid out as a reranker model, not an embedding one"):
        fresh.register("ms", str(folders["ms"]), kind="embedding")
    from zoo.datasets.job import embed_dataset

    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "a"}\n{"text": "b"}\n')
    with pytest.raises(InvalidInput, match="ms is a reranker model; embed-dataset needs an embedding model"):
        embed_dataset(rows, tmp_path / "out", model="ms", home=str(reg.home.root), artifact="onnx-fp32")
    assert not (tmp_path / "out").exists()
    # a SPLADE folder: a sparse encoder, which zoo does not serve yet, refused by its kind
    sparse = shutil.copytree(tiny_model_dir, tmp_path / "splade")
    (sparse / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.sparse_encoder.models.MLMTransformer"},
        {"idx": 1, "name": "1", "path": "1_SpladePooling",
         "type": "sentence_transformers.sparse_encoder.models.SpladePooling"}]))
    with pytest.raises(InvalidInput, match="splade is a sparse model; registration needs an embedding or reranker"):
        fresh.register("splade", str(sparse))
    assert [m.name for m in fresh.list_models()] == ["tiny"]
    # the GGUF targets leave a reranker out, with the reason
    from converters import converter_for
    from zoo.core.hardware import detect

    target, conv = converter_for("gguf-f16")
    art = next(a for a in reg.artifacts_of("ms") if a.target == "torch-fp32")
    reason = conv.unavailable_reason(target, detect(), reg.artifact_path(art))
    assert "zoo builds GGUFs of embedding models; this is a reranker model" in reason


def test_a_registry_from_before_kinds_reads_every_model_as_an_embedding_model(tmp_path, tiny_model_dir):
    """Migration 0009 on a registry at 0008 with a model in it: the row becomes kind embedding."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, text

    from zoo.registry.catalog import Registry
    from zoo.store.home import resolve_home

    home = resolve_home(tmp_path / "zoo")
    Registry(home).register("tiny", str(tiny_model_dir))
    engine = create_engine(home.registry_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__import__("zoo").__file__).parent / "registry" / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0008")
    with engine.connect() as conn:
        columns = [r[1] for r in conn.execute(text("PRAGMA table_info(models)"))]
        assert "kind" not in columns
    engine.dispose()
    reg = Registry(home)  # migrates on open
    assert reg.describe("tiny")["kind"] == "embedding"
    assert reg.resolve("tiny").model.kind == "embedding"


def test_the_cli_registers_lists_shows_and_reranks(rerankers, tmp_path):
    """`zoo register` says the kind, `zoo list` / `zoo show` print it, `zoo rerank` orders as CrossEncoder.rank,
    and `zoo embed` refuses the reranker in one line, with a non-zero exit."""
    import subprocess
    import sys

    _, folders, _ = rerankers
    home = str(tmp_path / "zoo")

    def zoo(*args, check=True):
        out = subprocess.run([sys.executable, "-m", "zoo", "--home", home, *args], capture_output=True, text=True,
                             timeout=300)
        if check:
            assert out.returncode == 0, out.stderr
        return out

    registered = zoo("register", "bge", str(folders["bge"])).stdout
    assert "registered bge (reranker)" in registered and "1 label(s), sigmoid activation" in registered
    assert json.loads(zoo("list", "--json").stdout)[0]["kind"] == "reranker"
    shown = zoo("show", "bge").stdout
    assert "bge  (reranker model, text-ranking" in shown and "1 label(s), sigmoid activation" in shown
    docs = DOCUMENTS[:7]
    got = json.loads(zoo("rerank", "-m", "bge", QUERY, *docs, "--top-n", "3", "--json", "--no-cache").stdout)
    ranked = _cross_encoder(folders["bge"]).rank(QUERY, docs, top_k=3)
    assert [r["index"] for r in got["results"]] == [r["corpus_id"] for r in ranked]
    assert got["artifact"] == "torch-fp32"
    np.testing.assert_allclose([r["relevance_score"] for r in got["results"]], [r["score"] for r in ranked], atol=1e-4)
    refused = zoo("embed", "-m", "bge", "hello", check=False)
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines()[-1] == (
        "error: bge is a reranker model; embedding needs an embedding model (a reranker model is served by "
        "zoo rerank / /v1/rerank)")


def test_an_export_loads_in_cross_encoder(rerankers, tmp_path):
    """`zoo export` of a reranker's ONNX and OpenVINO artifacts: sentence-transformers' CrossEncoder loads each with
    its backend and scores as zoo does."""
    import zoo
    from sentence_transformers import CrossEncoder
    from zoo.conversion.portable import export_artifact

    reg, _, _ = rerankers
    pairs = [(QUERY, d) for d in DOCUMENTS[:6]]
    for target, backend in (("onnx-fp32", "onnx"), ("openvino-fp32", "openvino")):
        done = export_artifact(reg, "ms", target, tmp_path / target)
        kwargs = {"file_name": done["file_name"]}
        if backend == "openvino":  # as zoo pins it: OpenVINO's CPU plugin picks bf16 by default where the CPU has it
            kwargs["ov_config"] = {"INFERENCE_PRECISION_HINT": "f32"}
        ce = CrossEncoder(done["path"], backend=backend, model_kwargs=kwargs, device="cpu")
        ours = zoo.load("ms", artifact=target, registry=reg, cache=False).predict(pairs)
        assert np.abs(ce.predict(pairs) - ours).max() < 1e-4, target
