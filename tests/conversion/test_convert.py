"""zoo convert on the tiny model: every target for real, the gate, provenance, and robustness."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from sqlalchemy import select

import zoo
from conftest import X86_FLAGS, add_module_stack, row_cosines, table_counts
from zoo.conversion.pipeline import convert
from zoo.conversion.corpora import calibration_texts, corpus_digest
from zoo.errors import ArtifactNotFound, InvalidInput, ZooError
from zoo.core.hardware import Hardware
from zoo.registry.schema import Artifact

CPU_TARGETS = ["onnx-fp32", "onnx-o1", "onnx-o2", "onnx-o3", "onnx-int8-avx2", "onnx-int8-avx512",
               "onnx-int8-avx512_vnni", "onnx-int8-static", "openvino-fp32", "openvino-bf16", "openvino-fp16", "openvino-int8",
               "torch-bf16"]
X86 = Hardware("x86_64", X86_FLAGS, cuda=False)
TEXTS = ["the quick brown fox", "le chat dort sur le canapé", "numbers 42 and 3.14 " * 30, ""]


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_model_dir):
    """One home with every CPU target (plus torch-fp16) built from the tiny model."""
    from zoo.store.home import resolve_home
    from zoo.registry.catalog import Registry

    reg = Registry(resolve_home(tmp_path_factory.mktemp("conv") / "zoo"))
    reg.register("tiny", str(tiny_model_dir))
    outcomes = {o.target: o for o in convert(reg, "tiny", ["all-cpu", "torch-fp16"], hardware=X86)}
    return reg, outcomes


def artifact(reg, target):
    from sqlalchemy.orm import selectinload

    with reg.session() as s:
        return s.scalar(select(Artifact).where(Artifact.target == target).options(selectinload(Artifact.revision)))


def test_every_target_builds_and_passes_the_gate(built):
    reg, outcomes = built
    assert sorted(outcomes) == sorted(CPU_TARGETS + ["torch-fp16"])
    for target, o in outcomes.items():
        assert o.status == "ready", (target, o.error)
        fid = o.fidelity
        # random tiny weights keep every format essentially exact: the band is narrow
        assert fid["mean_cosine"] >= 0.999 and fid["min_cosine"] >= 0.999, (target, fid)
        assert fid["spearman"] >= 0.999 and fid["probe_texts"] >= 500
        assert fid["top10_agreement"] >= 0.9 and fid["recall_at_10"] >= fid["reference_recall_at_10"] - 0.05
        row = artifact(reg, target)
        assert row.status.value == "ready" and row.fidelity == fid and row.store_digest
        assert row.size_bytes == sum(e.size for e in reg.store.manifest(row.store_digest))


def test_each_artifact_embeds_like_the_reference_through_its_runtime(built):
    reg, _ = built
    ref = zoo.load("tiny", artifact="torch-fp32", registry=reg).embed(TEXTS)
    for target in CPU_TARGETS + ["torch-fp16"]:
        m = zoo.load("tiny", artifact=target, registry=reg)
        got = m.embed(TEXTS)
        assert got.shape == (4, 32) and got.dtype == np.float32
        cos = row_cosines(got, ref)
        assert cos.min() >= 0.999, (target, cos)
        assert m.info["artifact"] == target and m.info["format"] == target.split("-")[0]
        if target == "openvino-fp32":
            assert m.info["runtime_precision"] == "f32"


def test_files_and_graphs_are_what_the_target_says(built):
    import onnx
    import openvino as ov

    reg, _ = built
    for target in CPU_TARGETS:  # only what a runtime reads: no export or search records
        paths = [e.path for e in reg.store.manifest(artifact(reg, target).store_digest)]
        assert not [p for p in paths if p.rsplit("/", 1)[-1].startswith(".")], (target, paths)
    tree = reg.artifact_path(artifact(reg, "onnx-fp32"))
    assert {"model.onnx", "tokenizer.json", "config.json", "modules.json", "1_Pooling/config.json"} <= {
        p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()}
    graph = onnx.load(str(tree / "model.onnx"))
    assert [i.name for i in graph.graph.input] == ["input_ids", "token_type_ids", "attention_mask"]
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    q_ops = {n.op_type for n in onnx.load(str(reg.artifact_path(artifact(reg, "onnx-int8-avx512_vnni")) / "model.onnx")).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= q_ops
    static = onnx.load(str(reg.artifact_path(artifact(reg, "onnx-int8-static")) / "model.onnx")).graph.node
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in static}
    # each quantized input has a Q/DQ pair of its own: no dequantized tensor feeds anything but one MatMul
    consumers = {}
    for n in static:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for dq in (n for n in static if n.op_type == "DequantizeLinear" and not n.input[0].endswith("_quantized")):
        assert [c.op_type for c in consumers[dq.output[0]]] == ["MatMul"], dq.name
    ov_int8 = ov.Core().read_model(str(reg.artifact_path(artifact(reg, "openvino-int8")) / "openvino_model.xml"))
    assert any(op.get_type_name() == "FakeQuantize" for op in ov_int8.get_ops())
    fp16 = ov.Core().read_model(str(reg.artifact_path(artifact(reg, "openvino-fp16")) / "openvino_model.xml"))
    assert any(op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.f16 for op in fp16.get_ops())
    torch_tree = reg.artifact_path(artifact(reg, "torch-bf16"))
    assert json.loads((torch_tree / "config.json").read_text())["torch_dtype"] == "bfloat16"


def test_provenance_records_how_it_was_built(built):
    import openvino as ov

    reg, _ = built
    ref = artifact(reg, "torch-fp32")
    p = artifact(reg, "openvino-int8").provenance
    assert (p["converter"], p["target"], p["source_revision"], p["reference_digest"]) == (
        "zoo.openvino", "openvino-int8", ref.revision.resolved_id, ref.store_digest)
    assert p["calibration"] == {"source": "bundled", "texts": 300, "digest": corpus_digest(calibration_texts())}
    assert p["settings"]["quantization"]["subset_size"] == 300
    # the search behind it: the tiny model passes whole, with SmoothQuant, on the first attempt
    search = p["search"]
    assert (search["recipe"], search["kept_in_float"], search["passed"]) == ("SmoothQuant 0.95", [], True)
    assert len(search["attempts"]) == 1 and search["attempts"][0]["figures"]["mean_cosine"] > 0.999
    assert search["candidates"] == 2 * 8  # q, k, v, QK, AV, attention output, FFN up and down, per layer
    assert p["settings"]["quantization"]["smooth_quant"] == 0.95
    assert {"openvino", "nncf", "onnx", "torch"} <= set(p["libraries"]) and p["build_seconds"] > 0
    assert artifact(reg, "openvino-fp32").provenance["runtime_precision"] == "f32"
    # bf16 where OpenVINO's CPU plugin has bf16 arithmetic; a CPU without it computes the bf16 hint in f32
    bf16_here = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert artifact(reg, "openvino-bf16").provenance["runtime_precision"] == ("bf16" if bf16_here else "f32")
    q = artifact(reg, "onnx-int8-avx2").provenance["settings"]["quantization"]
    assert (q["preset"], q["per_channel"], q["operators"]) == ("avx2", True, ["MatMul", "Attention"])


def test_lean_runtimes_do_not_import_torch(built):
    reg, _ = built
    code = ("import sys, zoo; r = zoo.open_registry(sys.argv[1]);"
            "[zoo.load('tiny', artifact=a, registry=r).embed(['hi']) for a in ('onnx-int8-avx2', 'openvino-int8')];"
            "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(reg.home.root)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_converting_again_is_a_noop_and_rebuild_rebuilds(built):
    reg, _ = built
    before = artifact(reg, "onnx-fp32")
    (o,) = convert(reg, "tiny", ["onnx-fp32"], hardware=X86)
    assert (o.status, o.artifact_id) == ("exists", before.id)
    assert artifact(reg, "onnx-fp32").updated_at == before.updated_at
    (o,) = convert(reg, "tiny", ["onnx-fp32"], rebuild=True, hardware=X86)
    assert (o.status, o.artifact_id) == ("ready", before.id)
    assert artifact(reg, "onnx-fp32").store_digest is not None


@pytest.mark.parametrize("targets, hw, match", [
    (["onnx-o4"], X86, "onnx-o4 needs a CUDA GPU"),
    (["onnx-o4"], Hardware("x86_64", frozenset({"avx2"}), cuda=True, ort_cuda=False), "needs onnxruntime-gpu"),
    (["onnx-int8-avx512_vnni"], Hardware("x86_64", frozenset({"avx2"})), "lacks: avx512f, avx512_vnni"),
    (["onnx-int8-arm64"], X86, "needs an ARM64 CPU"),
    (["openvino-bf16"], Hardware("x86_64", frozenset({"avx2"})), "needs CPU bf16 support"),
    (["onnx-fp32", "tensorrt-int4"], X86, "unknown target 'tensorrt-int4'"),
    ([], X86, "no target given"),
])
def test_impossible_requests_change_nothing(registry, tiny_model_dir, targets, hw, match):
    registry.register("tiny", str(tiny_model_dir))
    before = table_counts(registry)
    with pytest.raises(ZooError, match=match):
        convert(registry, "tiny", targets, hardware=hw)
    assert table_counts(registry) == before


def test_all_cuda_expands_to_gpu_targets_on_an_injected_gpu_machine(tiny_model_dir):
    from converters import expand_targets

    gpu = Hardware("x86_64", frozenset({"avx2", "avx512f"}), cuda=True, ort_cuda=True)
    assert expand_targets(["all-cuda"], gpu, tiny_model_dir) == ["onnx-fp32", "onnx-o4", "torch-fp16", "torch-bf16"]
    assert expand_targets(["all-cuda"], X86, tiny_model_dir) == ["onnx-fp32", "torch-fp16", "torch-bf16"]
    cpu_only = expand_targets(["all-cpu"], X86, tiny_model_dir)
    assert "onnx-o4" not in cpu_only and "torch-fp16" not in cpu_only and "onnx-int8-arm64" not in cpu_only
    arm = expand_targets(["all-cpu"], Hardware("aarch64", frozenset({"neon", "asimd"})), tiny_model_dir)
    assert "onnx-int8-arm64" in arm and "torch-bf16" in arm
    assert not [t for t in arm if "avx" in t or t == "openvino-bf16"]


def test_a_module_the_lean_runtimes_do_not_run(registry, tiny_model_dir, tmp_path):
    d = tmp_path / "layernorm"
    shutil.copytree(tiny_model_dir, d)
    add_module_stack(d, [("LayerNorm", {"dimension": 32})])
    registry.register("layernorm", str(d))
    before = table_counts(registry)
    with pytest.raises(ZooError, match=r"modules.json has 2_LayerNorm \(sentence_transformers.models.LayerNorm\), "
                                       r"which only sentence-transformers runs.*torch-fp32"):
        convert(registry, "layernorm", ["onnx-fp32"], hardware=X86)
    assert table_counts(registry) == before
    # all-cpu leaves out what cannot represent the model
    assert [o.target for o in convert(registry, "layernorm", ["all-cpu"], hardware=X86)] == ["torch-bf16"]


def test_below_the_floor_is_rejected_kept_and_never_served(registry, tiny_model_dir):
    registry.register("tiny", str(tiny_model_dir))
    (o,) = convert(registry, "tiny", ["onnx-int8-avx2"], floor={"mean_cosine": 1.0}, hardware=X86)
    assert o.status == "rejected" and "mean cosine" in o.error and "< 1.00000" in o.error
    row = artifact(registry, "onnx-int8-avx2")
    assert row.status.value == "rejected" and row.fidelity["mean_cosine"] > 0.999 and row.store_digest is None
    assert row.fidelity["floor"]["mean_cosine"] == 1.0
    with pytest.raises(ArtifactNotFound, match="is rejected: below the fidelity floor"):
        zoo.load("tiny", artifact="onnx-int8-avx2", registry=registry)
    assert zoo.load("tiny", registry=registry).info["artifact"] == "torch-fp32"


def test_per_model_floor_applies_and_per_call_overrides(registry, tiny_model_dir):
    registry.register("tiny", str(tiny_model_dir))
    assert registry.set_floor("tiny", {"spearman": 1.0}) == {"spearman": 1.0}
    (o,) = convert(registry, "tiny", ["onnx-int8-avx2"], hardware=X86)
    assert o.status == "rejected" and "Spearman" in o.error
    (o,) = convert(registry, "tiny", ["onnx-int8-avx2"], floor={"spearman": 0.9}, hardware=X86)
    assert o.status == "ready"
    assert registry.set_floor("tiny", None, reset=True) == {}


def test_fp16_overflow_is_rejected(registry, tiny_model_dir, tmp_path):
    """A checkpoint whose activations exceed float16's range: the fp16 cast must not pass."""
    from safetensors.torch import load_file, save_file

    d = tmp_path / "hot"
    shutil.copytree(tiny_model_dir, d)
    weights = load_file(str(d / "model.safetensors"))
    # ~2e5 > float16 max (65504): finite in fp32 (LayerNorm follows), inf once cast to fp16
    weights = {k: (v * 1e7 if "word_embeddings" in k else v) for k, v in weights.items()}
    save_file(weights, str(d / "model.safetensors"))
    registry.register("hot", str(d))
    (o,) = convert(registry, "hot", ["torch-fp16"], hardware=X86)
    assert o.status == "rejected", o
    if o.fidelity.get("non_finite"):  # the recorded reason says so, and the registry row too
        assert o.error == "below the fidelity floor: its vectors hold NaN or Inf values (non-finite), whatever the cosines"
        row = registry.describe("hot")["revisions"][0]["artifacts"][-1]
        assert (row["target"], row["status"], row["fidelity"]["non_finite"]) == ("torch-fp16", "rejected", True)
    else:
        assert o.fidelity["mean_cosine"] < 0.99


def test_custom_calibration_is_recorded(registry, tiny_model_dir, tmp_path):
    registry.register("tiny", str(tiny_model_dir))
    calib = tmp_path / "calib.jsonl"
    texts = [f"calibration sentence number {i} about search" for i in range(20)]
    calib.write_text("\n".join(json.dumps({"text": t}) for t in texts))
    (o,) = convert(registry, "tiny", ["openvino-int8"], calibration=str(calib), hardware=X86)
    assert o.status == "ready"
    assert o.provenance["calibration"] == {"source": str(calib.resolve()), "texts": 20, "digest": corpus_digest(texts)}


@pytest.mark.parametrize("content, match", [("just\nthree\nlines\n", "has 3 texts"), (None, "cannot read")])
def test_bad_calibration_file_changes_nothing(registry, tiny_model_dir, tmp_path, content, match):
    registry.register("tiny", str(tiny_model_dir))
    path = tmp_path / "calib.txt"
    if content is not None:
        path.write_text(content)
    before = table_counts(registry)
    with pytest.raises(InvalidInput, match=match):
        convert(registry, "tiny", ["openvino-int8"], calibration=str(path), hardware=X86)
    assert table_counts(registry) == before


CONVERT = """
import sys
from zoo.conversion.pipeline import convert
from zoo.store.home import resolve_home
from zoo.registry import Registry
o, = convert(Registry(resolve_home(sys.argv[1])), "tiny", [sys.argv[2]])
print(o.status, flush=True)
"""


def test_two_processes_build_once(registry, tiny_model_dir):
    registry.register("tiny", str(tiny_model_dir))
    procs = [subprocess.Popen([sys.executable, "-c", CONVERT, str(registry.home.root), "openvino-fp32"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert sorted(o[0].strip() for o in outs) == ["exists", "ready"], [o[1][-400:] for o in outs]
    with registry.session() as s:
        assert len(list(s.scalars(select(Artifact).where(Artifact.target == "openvino-fp32")))) == 1


def test_sigkill_mid_build_leaves_nothing_ready_and_the_next_run_rebuilds(registry, tiny_model_dir):
    registry.register("tiny", str(tiny_model_dir))
    p = subprocess.Popen([sys.executable, "-c", CONVERT, str(registry.home.root), "openvino-int8"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until the build is under way
        row = artifact(registry, "openvino-int8")
        if row is not None and row.status.value == "building" and any(registry.store.tmp.iterdir()):
            break
        time.sleep(0.05)
    time.sleep(0.5)
    p.send_signal(signal.SIGKILL)
    p.wait()
    row = artifact(registry, "openvino-int8")
    assert row.status.value == "building" and row.store_digest is None
    with pytest.raises(ArtifactNotFound, match="is building"):
        zoo.load("tiny", artifact="openvino-int8", registry=registry)
    (o,) = convert(registry, "tiny", ["openvino-int8"], hardware=X86)
    assert o.status == "ready" and o.artifact_id == row.id
    assert registry.verify("tiny")[1] == []
    registry.gc()
    assert list(registry.store.tmp.iterdir()) == []


def test_cli_convert_list_and_show(tmp_path, tiny_model_dir):
    env = {**os.environ, "ZOO_HOME": str(tmp_path / "zh")}
    zoo_cli = [sys.executable, "-m", "zoo.cli"]
    subprocess.run([*zoo_cli, "register", "tiny", str(tiny_model_dir)], env=env, check=True, capture_output=True)
    r = subprocess.run([*zoo_cli, "convert", "--list"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "openvino-int8" in r.stdout and "onnx-o4" in r.stdout
    r = subprocess.run([*zoo_cli, "convert", "tiny", "--to", "onnx-fp32"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("onnx-fp32") and " ready " in r.stdout and "mean cos 1.00000" in r.stdout
    r = subprocess.run([*zoo_cli, "convert", "tiny", "--to", "onnx-int8-avx2", "--min-mean-cosine", "1.0",
                        "--search-attempts", "3"], env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "rejected: below the fidelity floor: mean cosine" in r.stdout
    assert r.stderr.strip().splitlines()[-1].startswith("error: 1 target(s) not ready")
    show = subprocess.run([*zoo_cli, "show", "tiny"], env=env, capture_output=True, text=True).stdout
    assert "onnx-fp32" in show and "rejected" in show and "below the fidelity floor" in show
    # the rejected int8 build shows its search: every attempt, none passing a floor of 1.0
    assert "search: avx2, " in show and show.count("fail  avx2") == 3 and "pass  " not in show
    assert "attempt budget (3) spent" in show
    assert "products in float" in show and "kept in float: /inner/encoder/layer." in show
    r = subprocess.run([*zoo_cli, "embed", "-m", "tiny", "--artifact", "onnx-fp32", "--json", "hi"], env=env,
                       capture_output=True, text=True)
    assert json.loads(r.stdout)["artifact"] == "onnx-fp32"


def test_openvino_throughput_mode_and_onnx_threads_give_the_same_vectors(built):
    reg, _ = built
    texts = TEXTS * 20  # more than a batch, so the async queue / the parallel runs really have batches in flight
    for target, option in (("openvino-int8", {"mode": "throughput"}), ("onnx-int8-avx2", {"threads": 1}),
                           ("onnx-int8-avx2", {"parallel": 2}), ("onnx-fp32", {"parallel": 3, "threads": 1})):
        base = zoo.load("tiny", artifact=target, registry=reg, runtime_options={}).embed(texts, batch_size=8)
        other = zoo.load("tiny", artifact=target, registry=reg, runtime_options=option)
        assert other.info["runtime_options"] == option
        np.testing.assert_allclose(other.embed(texts, batch_size=8), base, atol=1e-5)


def test_dynamic_int8_is_judged_alone_and_in_batches(registry, tiny_model_dir):
    """Dynamic int8 scales activations per padded batch, so a text's vector depends on its neighbours: the gate
    reads each probe text alone too and judges the worse reading; static int8 and float targets need not."""
    import numpy as np

    from conftest import DYNAMIC_INT8

    registry.register("tiny", str(tiny_model_dir))
    outcomes = {o.target: o for o in convert(registry, "tiny", [DYNAMIC_INT8, "onnx-int8-static"])}
    dynamic, static = outcomes[DYNAMIC_INT8].fidelity, outcomes["onnx-int8-static"].fidelity
    assert 0.9 < dynamic["alone_min_cosine"] <= 1.0 and dynamic["min_cosine"] <= dynamic["alone_min_cosine"]
    assert "alone_min_cosine" not in static
    # the premise: the same text, alone and beside a long neighbour, gives different vectors here
    from zoo.engine.backends.lean import Prepared

    backend = zoo.load("tiny", artifact=DYNAMIC_INT8, registry=registry, cache=False).backend
    text, neighbour = "a cat sat on the mat", "numbers like 42 and 3.14 appear in text too " * 6
    one, two = Prepared.of(backend.encoder, [text]), Prepared.of(backend.encoder, [text, neighbour])
    alone = backend.embed_batch(one.texts, one.encodings, True)[0]
    batched = backend.embed_batch(two.texts, two.encodings, True)[0]  # one padded batch of both
    assert not np.array_equal(alone, batched)
