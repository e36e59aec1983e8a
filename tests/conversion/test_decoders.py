"""Decoder embedding models (Qwen3-Embedding and its kin), each a tiny random model laid out like the published one
(conftest's ``build_decoder_model``: a causal ``{Family}Model``, EOS appended by the tokenizer's post-processor,
``padding_side`` left, last-token Pooling, Normalize, a query-only instruction prompt). Every target is checked
against sentence-transformers' ``encode`` on one batch of mixed lengths: a one-token text, the empty string,
non-ASCII text, a long text and one past the max length, with and without the query prompt."""

import json
import struct

import numpy as np
import pytest

import zoo
from conftest import DECODER_FAMILIES, QWEN3_QUERY_PROMPT, X86_FLAGS, build_decoder_model, row_cosines
from zoo.core.hardware import Hardware

TEXTS = ["a", "", "the quick brown fox jumps over the lazy dog", "Straße, café, 東京 and naïve façades",
         "der hund spielt im garten und der kater schläft " * 4,
         "der hund spielt im garten und der kater schläft " * 12]  # the last: past the 128-token max length
# what each family is converted to here: Qwen3 to every CPU target that suits a decoder, the kin to the exact
# exports and the weight-only int8 that is their main speed-up
QWEN3_TARGETS = ("onnx-fp32", "openvino-fp32", "onnx-int8w", "openvino-int8w", "openvino-int4w", "onnx-int8-static")
KIN_TARGETS = ("onnx-fp32", "openvino-fp32", "openvino-int8w")
EXACT = {"onnx-fp32", "openvino-fp32"}


@pytest.fixture(scope="module", params=DECODER_FAMILIES)
def decoder(request, tmp_path_factory):
    from zoo.conversion.pipeline import convert
    from zoo.registry.catalog import Registry
    from zoo.store.home import resolve_home

    family = request.param
    folder = build_decoder_model(tmp_path_factory.mktemp("models") / f"tiny-{family}", family)
    reg = Registry(resolve_home(tmp_path_factory.mktemp(family) / "zoo"))
    reg.register(family, str(folder))
    targets = QWEN3_TARGETS if family == "qwen3" else KIN_TARGETS
    outcomes = {o.target: o for o in convert(reg, family, list(targets))}
    return family, folder, reg, outcomes


def test_the_layout_is_the_published_one(decoder):
    """The premise of every other test: left padding, EOS appended to every text, a query-only prompt."""
    from sentence_transformers import SentenceTransformer

    _, folder, _, _ = decoder
    st = SentenceTransformer(str(folder), device="cpu")
    assert st.tokenizer.padding_side == "left"
    eos = st.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    batch = st.tokenize(TEXTS)
    assert batch["input_ids"].shape[1] == 128  # the longest text is cut at the max length
    assert (batch["input_ids"][:, -1] == eos).all() and batch["attention_mask"][:, -1].all()
    assert batch["attention_mask"][0].sum() == 2  # "a" and its EOS
    assert st.prompts["query"] == QWEN3_QUERY_PROMPT and not st.prompts.get("document")
    # the vectors differ by text: a cosine to the reference below measures something
    vectors = st.encode(TEXTS)
    assert (vectors @ vectors.T - np.eye(len(TEXTS))).max() < 0.95


def test_every_target_embeds_like_sentence_transformers(decoder):
    from sentence_transformers import SentenceTransformer

    family, folder, reg, outcomes = decoder
    st = SentenceTransformer(str(folder), device="cpu")
    for target, o in outcomes.items():
        if o.status != "ready":
            # the gate refused it: with the reason, and nothing serves from it
            assert target not in EXACT | {"onnx-int8w", "openvino-int8w"}, (family, target, o.error)
            assert "below the fidelity floor" in o.error
            with pytest.raises(Exception, match="rejected"):
                zoo.load(family, artifact=target, registry=reg, cache=False)
            continue
        floor = 0.9999 if target in EXACT else 0.95
        assert o.fidelity["min_cosine"] >= floor and o.fidelity["prompted_min_cosine"] >= floor, (target, o.fidelity)
        m = zoo.load(family, artifact=target, registry=reg, cache=False)
        for prompt_name in (None, "query"):
            got, want = m.embed(TEXTS, prompt_name=prompt_name), st.encode(TEXTS, prompt_name=prompt_name)
            assert got.shape == want.shape and np.isfinite(got).all()
            assert row_cosines(got, want).min() >= floor, (family, target, prompt_name, row_cosines(got, want))
            # each text alone as in the batch: no vector depends on its neighbours' padding
            alone = np.stack([m.embed([t], prompt_name=prompt_name)[0] for t in TEXTS])
            assert row_cosines(alone, got).min() >= 0.9999, (family, target, prompt_name)
        with pytest.warns(UserWarning, match="1 of 6 texts were longer"):  # truncation is reported, never hidden
            assert m.embed(TEXTS).truncated == (len(TEXTS) - 1,)


def test_weight_only_targets_record_what_they_did(decoder):
    import re

    family, _, reg, outcomes = decoder
    ov = outcomes["openvino-int8w"]
    assert ov.status == "ready", ov.error
    record = ov.provenance["settings"]
    assert record["compression"]["tool"] == "nncf.compress_weights" and record["compression"]["mode"] == "int8_asym"
    # searched: OpenVINO's run-time int8 activations (groups of 32) first, f32 activations if those miss the floor;
    # the group size the gate judged is the one pinned for serving
    search = ov.provenance["search"]
    assert search["attempts"][0]["recipe"] == "activations int8 per 32"
    group = 32 if search["recipe"] == "activations int8 per 32" else 0
    assert record["inference_precision"] == "f32" and record["dynamic_quantization_group_size"] == group
    assert record["compression"]["dynamic_group"] == group
    art = next(a for a in reg.resolve(family).revision.artifacts if a.target == "openvino-int8w")
    xml = (reg.artifact_path(art) / "openvino_model.xml").read_text()
    assert 'element_type="u8"' in xml  # the weights are stored in 8 bits
    if family != "qwen3":
        return
    import onnx

    art = next(a for a in reg.resolve(family).revision.artifacts if a.target == "onnx-int8w")
    graph = onnx.load(str(reg.artifact_path(art) / "model.onnx")).graph
    # 2 layers x 7 weight products (q, k, v, o, gate, up, down): each a MatMulNBits, none left as a float MatMul
    assert sum(n.op_type == "MatMulNBits" for n in graph.node) == 14
    assert outcomes["onnx-int8w"].provenance["settings"]["compression"]["products"] == 14
    # int4: searched on the share of layers in int4, most compressed first, with run-time int8 activations and then
    # without, until the floor holds (or none does; the gate then judges the closest)
    int4 = outcomes["openvino-int4w"].provenance
    labels = [a["recipe"] for a in int4["search"]["attempts"]]
    assert labels[0] == "int4 ratio 1.0, activations int8 per 32"
    ratios = [float(re.search(r"ratio ([0-9.]+)", x).group(1)) for x in labels if x.endswith("per 32")]
    assert ratios == sorted(ratios, reverse=True)
    chosen = int4["search"]["recipe"]
    assert f"int4 ratio {int4['settings']['compression']['ratio']}," in chosen
    assert int4["settings"]["dynamic_quantization_group_size"] == (32 if chosen.endswith("per 32") else 0)
    assert (outcomes["openvino-int4w"].status == "ready") == (outcomes["openvino-int4w"].fidelity["min_cosine"] >= 0.95)


@pytest.mark.parametrize("decoder", ["qwen3"], indirect=True)
def test_the_gate_rejects_the_padded_position(decoder):
    """Right padding with the last *column* taken pools padding for every shorter text: the gate's own figures
    on its probe set refuse it, while the last real token (what zoo's runtimes take) passes."""
    from sentence_transformers import SentenceTransformer

    from zoo.conversion.corpora import probe_set
    from zoo.conversion.fidelity import ProbeEmbeddings, measure
    from zoo.core.floor import Floor
    from zoo.engine.backends import load_backend
    from zoo.engine.backends.lean import Prepared, normalize_rows
    from zoo.engine.model_config import spec_of

    family, folder, reg, _ = decoder
    art = next(a for a in reg.resolve(family).revision.artifacts if a.target == "onnx-fp32")
    backend = load_backend("onnx", reg.artifact_path(art), spec_of(reg.resolve(family).model))

    def last_column(texts):
        out = []
        for start in range(0, len(texts), 16):
            prepared = Prepared.of(backend.encoder, texts[start:start + 16])
            feed = backend.encoder.pad(prepared.encodings)
            out.append(normalize_rows(backend.session.run(None, feed)[0][:, -1]))
        return np.concatenate(out)

    probe = probe_set()
    st = SentenceTransformer(str(folder), device="cpu")
    ref = ProbeEmbeddings(st.encode(probe.texts), st.encode(probe.queries), st.encode(probe.passages))
    wrong = ProbeEmbeddings(last_column(probe.texts), last_column(probe.queries), last_column(probe.passages))
    right = ProbeEmbeddings(backend.embed(probe.texts, 16), backend.embed(probe.queries, 16),
                            backend.embed(probe.passages, 16))
    assert Floor().check(measure(ref, wrong, probe.relevant)) is not None
    assert Floor().check(measure(ref, right, probe.relevant)) is None


def test_what_a_decoder_is_offered(decoder, tmp_path):
    """all-cpu offers the exact exports and the int8 search for a small decoder, and leaves the weight-only
    targets out by size, saying so; from 100M parameters (1B for int4) they are offered and `zoo optimize`
    builds them. The size is read from the safetensors header, so a header alone stands in for a large model."""
    from converters import expand_targets, unavailable_reason
    from converters.support import parameter_count, weight_only_left_out
    from zoo.selection.optimize import candidates

    family, folder, _, _ = decoder
    x86 = Hardware("x86_64", X86_FLAGS)
    cpu = expand_targets(["all-cpu"], x86, folder)
    assert {"onnx-fp32", "openvino-fp32", "openvino-int8", "onnx-int8-static"} <= set(cpu)
    assert not {"openvino-int8w", "onnx-int8w", "openvino-int4w"} & set(cpu)
    small = parameter_count(folder)
    assert 0 < small < 1_000_000
    assert f"{small / 1e6:.0f}M parameters; weight-only int8 pays from 100M" in weight_only_left_out("int8w", folder)
    assert unavailable_reason("openvino-int8w", x86, folder) is None  # by name it is built
    big = tmp_path / "big"
    big.mkdir()
    (big / "config.json").write_text((folder / "config.json").read_text())
    for name, size in (("int8", 150_000_000), ("int4", 1_500_000_000)):
        header = json.dumps({"embed.weight": {"dtype": "F32", "shape": [size], "data_offsets": [0, 0]}}).encode()
        (big / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
        assert parameter_count(big) == size
        offered = expand_targets(["all-cpu"], x86, big)
        assert {"openvino-int8w", "onnx-int8w"} <= set(offered)
        assert ("openvino-int4w" in offered) == (name == "int4")
        assert ("openvino-int4w" in candidates(x86, big)) == (name == "int4")
        assert "onnx-int8w" in candidates(x86, big) and "onnx-int8w" not in candidates(x86, folder)


@pytest.mark.parametrize("decoder", ["qwen3"], indirect=True)
def test_dimensions_and_the_query_prompt_over_http(decoder, tmp_path):
    """`zoo serve` answers /v1/embeddings for the decoder with ``dimensions=32`` and the query prompt by name, as
    sentence-transformers' ``encode(prompt_name="query", truncate_dim=32)`` (renormalised)."""
    import httpx
    from sentence_transformers import SentenceTransformer

    from serving import AUTH, KEY, Server

    family, folder, reg, _ = decoder
    server = Server(str(reg.home.root), "--models", family, "--api-key", KEY)
    try:
        r = httpx.post(server.url + "/v1/embeddings", headers=AUTH, timeout=60,
                       json={"model": family, "input": TEXTS, "dimensions": 32, "prompt_name": "query"})
        assert r.status_code == 200, r.text
        got = np.array([d["embedding"] for d in r.json()["data"]])
    finally:
        server.stop()
    st = SentenceTransformer(str(folder), device="cpu", truncate_dim=32)
    want = st.encode(TEXTS, prompt_name="query", normalize_embeddings=True)
    assert got.shape == (len(TEXTS), 32)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # the server serves the artifact selection picks (one of the gated ones): its vectors, exactly, and within the
    # gate's floor of sentence-transformers'
    served = zoo.load(family, registry=reg, objective="latency", cache=False)
    assert row_cosines(got, served.embed(TEXTS, prompt_name="query", dimensions=32)).min() >= 0.9999
    assert row_cosines(got, want).min() >= 0.95


@pytest.mark.parametrize("decoder", ["qwen3"], indirect=True)
@pytest.mark.parametrize("target, backend, file_name", [
    ("onnx-int8w", "onnx", "onnx/model_int8w.onnx"),
    ("openvino-int8w", "openvino", "openvino/openvino_model_int8w.xml"),
])
def test_a_weight_only_export_loads_in_sentence_transformers(decoder, tmp_path, target, backend, file_name):
    """`zoo export` writes a weight-only artifact where sentence-transformers' backends find it by ``file_name``,
    and that graph, run by sentence-transformers itself (its own padding: left), gives zoo's vectors."""
    import subprocess
    import sys

    from sentence_transformers import SentenceTransformer

    family, _, reg, _ = decoder
    out = tmp_path / "export"
    done = subprocess.run([sys.executable, "-m", "zoo.cli", "--home", str(reg.home.root), "export", family, str(out),
                           "--artifact", target], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / file_name).is_file() and f'"file_name": "{file_name}"' in done.stdout
    st = SentenceTransformer(str(out), backend=backend, model_kwargs={"file_name": file_name}, device="cpu")
    ours = zoo.load(family, artifact=target, registry=reg, cache=False).embed(TEXTS[:5], prompt_name="query")
    theirs = st.encode(TEXTS[:5], prompt_name="query")
    assert row_cosines(theirs, ours).min() >= 0.99, row_cosines(theirs, ours)


@pytest.mark.parametrize("decoder", ["qwen3"], indirect=True)
def test_a_dataset_job_embeds_queries_like_the_model(decoder, tmp_path):
    """`zoo.embed_dataset` with the decoder's weight-only artifact, its query prompt and 32 dimensions writes the
    vectors the model gives in Python, and says which texts were cut."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    family, _, reg, _ = decoder
    texts = TEXTS * 5
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": texts}), src)
    r = zoo.embed_dataset(src, tmp_path / "out", model=family, artifact="openvino-int8w", home=str(reg.home.root),
                          prompt_name="query", dimensions=32, shard_rows=16, batch_rows=8)
    table = pq.read_table(tmp_path / "out")
    order = np.argsort(table.column("id").to_numpy())
    got = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))[order]
    want = zoo.load(family, artifact="openvino-int8w", registry=reg, cache=False).embed(
        texts, prompt_name="query", dimensions=32)
    assert got.shape == (len(texts), 32) and np.abs(got - want).max() < 1e-4
    assert (r.rows, r.truncated) == (len(texts), len(want.truncated)) and len(want.truncated) >= 5


def test_a_graph_with_external_weights_leaves_them_behind(tiny_model_dir, tmp_path):
    """A model past protobuf's 2 GB is exported with its weights in files beside the graph. A target that rewrites
    the graph (weight-only, int8, OpenVINO) copies the export's tokenizer and configs but not those fp32 weights:
    on the 0.6B stand-in they had made onnx-int8w 3.4 GB. Here a tiny export is re-saved that way."""
    import onnx
    import onnxruntime as ort

    from converters.export import export_onnx
    from converters.quantization import copy_export, external_data_files, record_export

    export = tmp_path / "export"
    export.mkdir()
    info = export_onnx(tiny_model_dir, export)
    graph = onnx.load(str(export / "model.onnx"))
    onnx.save_model(graph, str(export / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=False,
                    size_threshold=0)
    record_export(export, info)  # as fp32_export records every export
    weights = external_data_files(export)
    assert len(weights) > 10 and not any(f.suffix == ".onnx" for f in weights)  # one file per tensor
    rewritten, whole = tmp_path / "rewritten", tmp_path / "whole"
    rewritten.mkdir(), whole.mkdir()
    assert copy_export(export, rewritten, with_model=False) == info  # the provenance is the exporter's record
    assert (rewritten / "tokenizer.json").is_file() and not {f.name for f in weights} & {
        f.name for f in rewritten.iterdir()}
    copy_export(export, whole)
    assert {f.name for f in weights} <= {f.name for f in whole.iterdir()}
    ort.InferenceSession(str(whole / "model.onnx"))  # the copied graph finds its weights
