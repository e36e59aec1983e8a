"""Hardware-aware selection, benchmarks and `zoo optimize`, with injected hardware profiles."""

import json
import os
import re
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select as sql_select

import zoo
from zoo.selection.benchmark import BenchConfig, bench_artifact
from zoo.selection.figures import latest_figures
from zoo.errors import ArtifactNotFound, InvalidInput
from zoo.core.hardware import Gpu, Hardware, detect, doctor_warnings
from converters import unavailable_reason
from zoo.selection.optimize import candidates, contenders, optimize
from zoo.registry.schema import Artifact, ArtifactStatus, Benchmark
from zoo.selection.select import select, static_ranking

BF16_X86 = Hardware("x86_64", frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}), physical_cores=2)
PLAIN_X86 = Hardware("x86_64", frozenset({"avx2", "fma"}), physical_cores=8)
ARM = Hardware("aarch64", frozenset({"neon", "asimd"}))
H100 = Hardware("x86_64", frozenset({"avx2", "avx512f"}), cuda=True, ort_cuda=True, gpus=(Gpu("NVIDIA H100", "9.0"),))
GPU_CPU_ORT = Hardware("x86_64", frozenset({"avx2"}), cuda=True, ort_cuda=False, gpus=(Gpu("NVIDIA H100", "9.0"),))
SMALL = BenchConfig(texts=32, batch_sizes=(8, 16), gpu_batch_sizes=(8, 16), rounds=1, latency_runs=5, load_runs=1)


def art(i, target, status="ready", mean=1.0, fmt=None, precision="fp32"):
    fidelity = {"reference": True} if target == "torch-fp32" else {"mean_cosine": mean}
    return Artifact(id=i, target=target, format=fmt or target.split("-")[0], precision=precision,
                    status=ArtifactStatus(status), fidelity=fidelity, provenance={})


ARTS = [art(1, "torch-fp32"), art(2, "onnx-fp32"), art(3, "onnx-int8-avx512_vnni", mean=0.9904, precision="int8"),
        art(4, "openvino-int8", mean=0.9966, precision="int8"), art(5, "openvino-fp32"),
        art(6, "torch-fp16", precision="fp16", mean=0.99999), art(7, "onnx-o4", precision="fp16", mean=0.9999),
        art(8, "onnx-int8-avx2", status="rejected", mean=0.95, precision="int8")]


def fig(throughput, p50, batch=32):
    return {"throughput": throughput, "latency_p50_ms": p50, "batch_size": batch}


def test_static_rankings_follow_the_hardware():
    assert static_ranking(H100)[:3] == ("onnx-o4", "torch-fp16", "torch-bf16")
    assert static_ranking(ARM)[0] == "onnx-int8-arm64"
    assert static_ranking(BF16_X86)[:5] == ("openvino-int8", "openvino-int4w", "openvino-int8w", "onnx-int8w",
                                            "openvino-fp16")  # weight-only: after static int8, before float
    assert static_ranking(PLAIN_X86)[:2] == ("openvino-int8", "onnx-int8-avx512_vnni")
    assert "torch-bf16" not in static_ranking(PLAIN_X86)[:8]  # bf16 is slow without hardware bf16


def test_without_measurements_the_static_ranking_decides():
    s = select(ARTS, BF16_X86, {})
    assert (s.chosen.target, s.how) == ("openvino-int8", "static ranking")
    assert "x86 CPU with bf16" in s.reason and "zoo optimize" in s.reason
    on_gpu = select(ARTS, H100, {})
    assert on_gpu.chosen.target == "onnx-o4"
    assert select(ARTS, GPU_CPU_ORT, {}).chosen.target == "torch-fp16"  # onnxruntime cannot use the GPU


def test_measured_figures_decide_by_objective():
    figures = {2: fig(213, 1.9), 3: fig(420, 1.3), 4: fig(726, 1.6, batch=16), 5: fig(243, 2.1)}
    s = select(ARTS, BF16_X86, figures)
    assert (s.chosen.target, s.how) == ("openvino-int8", "measured")
    assert "726 texts/s at batch 16" in s.reason and "not benchmarked here" in s.reason
    lat = select(ARTS, BF16_X86, figures, objective="latency")
    assert lat.chosen.target == "onnx-int8-avx512_vnni" and "1.30 ms" in lat.reason
    with pytest.raises(InvalidInput, match="unknown objective 'cost'"):
        select(ARTS, BF16_X86, figures, objective="cost")


def test_fidelity_exactness_and_device_filters():
    figures = {2: fig(213, 1.9), 3: fig(420, 1.3), 4: fig(726, 1.6), 5: fig(243, 2.1)}
    assert select(ARTS, BF16_X86, figures, min_fidelity=0.995).chosen.target == "openvino-int8"
    assert select(ARTS, BF16_X86, figures, min_fidelity=0.999).chosen.target == "openvino-fp32"
    exact = select(ARTS, BF16_X86, figures, exact=True)
    assert exact.chosen.target == "openvino-fp32"
    assert {c.target for c in exact.candidates if c.eligible} == {"torch-fp32", "onnx-fp32", "openvino-fp32"}
    cpu = select(ARTS, H100, {}, device="cpu")
    assert cpu.chosen.target == "openvino-int8"
    reasons = {c.target: c.reason for c in cpu.candidates}
    assert reasons["torch-fp16"] == "CUDA target; device=cpu"
    assert reasons["onnx-int8-avx2"].startswith("rejected")
    gpu = select(ARTS, H100, {}, device="cuda")
    assert gpu.chosen.target == "onnx-o4"
    assert {c.target: c.reason for c in gpu.candidates}["openvino-int8"] == "OpenVINO serves on the CPU; device=cuda"
    cpu_only = {c.target: c.reason for c in select(ARTS, BF16_X86, {}).candidates}
    assert cpu_only["onnx-o4"] == "needs a CUDA GPU"


def test_max_memory_passes_over_what_was_measured_too_large():
    """A large model's fp32 artifacts may not fit beside the server's other models: with ``max_memory_mb`` the
    pick keeps to artifacts whose peak RSS measured here fits, and says why the others were passed over."""
    figures = {2: {**fig(213, 1.9), "peak_rss_mb": 2900}, 3: {**fig(420, 1.3), "peak_rss_mb": 900},
               4: {**fig(726, 1.6), "peak_rss_mb": 1400}, 5: {**fig(243, 2.1), "peak_rss_mb": 2800}}
    assert select(ARTS, BF16_X86, figures).chosen.target == "openvino-int8"
    s = select(ARTS, BF16_X86, figures, max_memory_mb=1000)
    assert s.chosen.target == "onnx-int8-avx512_vnni"
    reasons = {c.target: c.reason for c in s.candidates}
    assert reasons["openvino-int8"] == "measured peak RSS 1400 MB > max_memory 1000 MB"
    assert reasons["torch-fp32"] == "eligible"  # not measured here: no figure to refuse it on
    with pytest.raises(InvalidInput, match="max_memory must be a positive number of MB"):
        select(ARTS, BF16_X86, figures, max_memory_mb=0)


def test_a_runtime_that_is_not_installed_is_passed_over():
    no_openvino = Hardware("x86_64", BF16_X86.flags, physical_cores=2, runtimes=frozenset({"torch", "onnx"}))
    s = select(ARTS, no_openvino, {})
    assert s.chosen.target == "onnx-int8-avx512_vnni"
    assert {c.target: c.reason for c in s.candidates}["openvino-int8"] == (
        "openvino not installed (pip install 'zoo[openvino]')")
    assert no_openvino.fingerprint == BF16_X86.fingerprint


def test_nothing_eligible_lists_every_reason():
    with pytest.raises(ArtifactNotFound, match="onnx-int8-avx2: rejected.*torch-fp16: needs a CUDA GPU"):
        select([ARTS[7], ARTS[5]], BF16_X86, {})


def test_candidates_per_machine():
    assert candidates(H100) == ["onnx-o4", "onnx-fp32", "torch-fp16", "torch-bf16"]
    assert candidates(GPU_CPU_ORT) == ["onnx-fp32", "torch-fp16", "torch-bf16"]
    x86 = candidates(BF16_X86)
    assert "onnx-int8-avx512_vnni" in x86 and "openvino-bf16" in x86 and "torch-fp16" not in x86
    plain = candidates(PLAIN_X86)
    assert "onnx-int8-avx2" in plain and "onnx-int8-static" in plain
    assert not any("bf16" in t or "fp16" in t for t in plain)
    assert candidates(ARM) == ["onnx-fp32", "onnx-o2", "onnx-int8-arm64", "onnx-int8-static", "openvino-fp32",
                               "openvino-int8"]
    with_llama = Hardware("x86_64", BF16_X86.flags, runtimes=frozenset({"torch", "onnx", "openvino", "gguf"}))
    assert candidates(with_llama) == candidates(BF16_X86) + ["gguf-q8_0"]


def test_fingerprint_is_stable_and_hardware_specific():
    assert BF16_X86.fingerprint == Hardware("x86_64", frozenset({"avx512_bf16", "avx512_vnni", "avx512f", "avx2"}),
                                            physical_cores=2).fingerprint
    assert len({BF16_X86.fingerprint, PLAIN_X86.fingerprint, H100.fingerprint, ARM.fingerprint}) == 4
    assert detect().fingerprint == detect().fingerprint


def test_doctor_warns_when_a_gpu_is_unusable():
    rt = {"onnxruntime": {"version": "1.31.1", "package": "onnxruntime", "providers": ["CPUExecutionProvider"]},
          "torch": {"version": "2.13.0+cpu", "cuda": False}}
    warnings = doctor_warnings(GPU_CPU_ORT, rt)
    assert any("onnxruntime cannot use it" in w and "onnxruntime-gpu" in w for w in warnings)
    assert any("torch is a CPU build" in w for w in warnings)
    assert doctor_warnings(BF16_X86, rt) == []
    both = {"onnxruntime": {"package": "onnxruntime + onnxruntime-gpu", "providers": ["CUDAExecutionProvider"]}}
    assert any("both onnxruntime and onnxruntime-gpu" in w for w in doctor_warnings(H100, both))


def test_bench_stores_sane_figures(registry, tiny_model_dir):
    from zoo.conversion.pipeline import convert

    registry.register("tiny", str(tiny_model_dir))
    (o,) = convert(registry, "tiny", ["onnx-fp32"], hardware=BF16_X86)
    artifact = next(a for a in registry.resolve("tiny").revision.artifacts if a.target == "onnx-fp32")
    f = bench_artifact(registry, "tiny", artifact, BF16_X86, SMALL)
    # every runtime variant measured at the best batch; the fastest is kept
    assert set(f["throughput_by_options"]) == {'{"threads": 0}', '{"parallel": 2}'}
    assert f["throughput"] == max(f["throughput_by_options"].values()) >= max(f["throughput_by_batch"].values()) > 0
    assert json.dumps(f["runtime_options"], sort_keys=True) == max(f["throughput_by_options"],
                                                                   key=f["throughput_by_options"].get)
    assert f["batch_size"] in (8, 16) and 0 < f["latency_p50_ms"] <= f["latency_p95_ms"]
    assert 0 < f["load_s"] < 60 and 50 < f["peak_rss_mb"] < 4000 and f["backend"] == "onnxruntime"
    assert latest_figures(registry, [artifact.id], BF16_X86.fingerprint) == {artifact.id: f}
    assert latest_figures(registry, [artifact.id], PLAIN_X86.fingerprint) == {}


def test_optimize_measures_selects_and_resumes(registry, tiny_model_dir):
    hw = detect()
    registry.register("tiny", str(tiny_model_dir))
    lines, warnings = [], []
    busy = iter(["the machine is busy (load 5.0 on 2 cores)"])  # while the first artifact is benchmarked
    report = optimize(registry, "tiny", hardware=hw, bench_config=SMALL, progress=lambda s, f: lines.append(s),
                      warn=warnings.append, load=lambda: next(busy, None))
    built = {o.target: o.status for o in report.built}
    # each target's end and each benchmark's start say how long is left; the busy machine is named
    for target in built:
        assert any(re.fullmatch(rf"{re.escape(target)}: ready \(about \d+ (s|min) left\)", line) for line in lines)
    screens = [line for line in lines if re.fullmatch(r"screening \S+ \(\d+/\d+\) \(about \d+ (s|min) left\)", line)]
    full = [line for line in lines if re.fullmatch(r"benchmarking \S+ \(\d+/\d+\) \(about \d+ (s|min) left\)", line)]
    assert len(screens) == len(report.measured) and 1 <= len(full) <= len(report.measured)
    # the screen's first look, then the full measurement of what it left in contention, which decides
    assert sum(not f["screened"] for f in report.measured.values()) == len(full)
    assert report.measured[report.selection.chosen.id]["screened"] is False
    assert len(warnings) == 1 and warnings[0].endswith("the machine is busy (load 5.0 on 2 cores)")
    assert report.busy == [warnings[0].split(":")[0].removeprefix("benchmarking ")]
    assert report.seconds["total"] + 0.2 >= report.seconds["convert"] + report.seconds["bench"] > 0  # each rounded to 0.1 s
    checkpoint = registry.artifact_path(registry.resolve("tiny").revision.artifacts[0])
    # what the model can be built as here (llama.cpp refuses the tiny model's toy tokenizer)
    assert set(built) == {t for t in candidates(hw) if unavailable_reason(t, hw, checkpoint) is None}
    # and every candidate left out is named with its reason
    for target in set(candidates(hw)) - set(built):
        assert f"left out {target}: {unavailable_reason(target, hw, checkpoint)}" in lines, lines
    assert all(s == "ready" for s in built.values()), report.built
    ready = [a for a in registry.resolve("tiny").revision.artifacts if a.status.value == "ready"]
    assert set(report.measured) == {a.id for a in ready}  # torch-fp32 is measured too
    best = max(report.measured, key=lambda i: report.measured[i]["throughput"])
    assert report.selection.chosen.id == best and report.selection.how == "measured"

    with registry.session() as s:
        rows = s.scalar(sql_select(func.count()).select_from(Benchmark))
    again = optimize(registry, "tiny", hardware=hw, bench_config=SMALL)
    assert {o.status for o in again.built} == {"exists"}  # nothing rebuilt
    with registry.session() as s:
        assert s.scalar(sql_select(func.count()).select_from(Benchmark)) == rows  # nothing re-measured
    assert again.selection.chosen.id == best

    m = zoo.load("tiny", registry=registry)
    assert (m.info["artifact_id"], m.info["selection"]) == (best, "measured")
    assert m.default_batch_size == report.measured[best]["batch_size"]
    assert "picked" in m.info["explanation"]
    # the service's load: the latency pick, run with that artifact's measured best batch settings
    fast = zoo.load("tiny", objective="latency", registry=registry)
    assert fast.info["runtime_options"] == {}  # one request at a time: the runtime's default, every core on it
    served = zoo.load("tiny", objective="latency", runtime_objective="throughput", registry=registry)
    assert served.info["artifact_id"] == fast.info["artifact_id"]
    assert served.info["runtime_options"] == report.measured[fast.info["artifact_id"]]["runtime_options"]
    with pytest.raises(InvalidInput, match="runtime_objective"):
        zoo.load("tiny", runtime_objective="fastest", registry=registry)
    exact = zoo.load("tiny", exact=True, registry=registry)
    assert exact.info["artifact"] in ("torch-fp32", "onnx-fp32", "onnx-o2", "openvino-fp32")


def test_cli_select_bench_doctor(tmp_path, tiny_model_dir):
    env = {**os.environ, "ZOO_HOME": str(tmp_path / "zh")}
    cli = [sys.executable, "-m", "zoo.cli"]

    def run(*args):
        return subprocess.run([*cli, *args], env=env, capture_output=True, text=True)

    assert run("register", "tiny", str(tiny_model_dir)).returncode == 0
    assert run("convert", "tiny", "--to", "onnx-fp32").returncode == 0
    r = run("select", "tiny", "--explain")
    assert r.returncode == 0 and "picked onnx-fp32 (static ranking" in r.stdout
    r = run("bench", "tiny", "--artifact", "onnx-fp32", "--texts", "16", "--rounds", "1")
    assert r.returncode == 0 and r.stdout.splitlines()[1].startswith("onnx-fp32")
    body = json.loads(run("select", "tiny", "--json").stdout)
    assert (body["artifact"], body["how"]) == ("onnx-fp32", "measured")
    assert body["hardware_fingerprint"] == detect().fingerprint
    r = run("select", "tiny", "--min-fidelity", "1.5")
    assert r.returncode == 1 and r.stderr.startswith("error: min_fidelity must be a mean cosine in (0, 1]")
    # the peak RSS measured here is shown, and --max-memory passes over what does not fit
    rss = body["candidates"][[c["target"] for c in body["candidates"]].index("onnx-fp32")]["figures"]["peak_rss_mb"]
    assert f"peak RSS {rss:.0f} MB" in run("show", "tiny").stdout
    r = run("select", "tiny", "--max-memory", str(rss / 2), "--explain")
    assert r.returncode == 0 and "picked torch-fp32" in r.stdout
    assert f"measured peak RSS {rss:.0f} MB > max_memory {rss / 2:.0f} MB" in r.stdout
    doc = json.loads(run("doctor", "--json").stdout)
    assert doc["hardware"]["fingerprint"] == detect().fingerprint and "onnxruntime" in doc["runtimes"]
    assert run("doctor").stdout.startswith("machine ")


def test_the_estimate_learns_from_the_units_done():
    from zoo.selection.optimize import PRIOR_SECONDS, Estimate, busy_reason

    now = [0.0]
    eta = Estimate({"convert": 3, "bench": 2}, clock=lambda: now[0])
    assert eta.seconds_left() == 3 * PRIOR_SECONDS["convert"] + 2 * PRIOR_SECONDS["bench"]
    eta.start("convert")
    now[0] = 40.0
    assert eta.finish() == 40.0
    assert eta.seconds_left() == 2 * 40.0 + 2 * PRIOR_SECONDS["bench"] and eta.line() == "about 2 min left"
    eta.set_units("convert", 0)
    assert eta.line() == f"about {round(2 * PRIOR_SECONDS['bench'] / 5) * 5} s left"
    assert busy_reason(others=0.3, cores=2) is None
    assert busy_reason(others=1.5, cores=2).startswith("the machine is busy (other processes use 1.5 of 2 cores)")


def test_a_busy_machine_is_seen():
    """Another process spinning on a core is measured as such; this process's own work is not counted."""
    import multiprocessing
    from zoo.selection.optimize import _others_cores

    stop = multiprocessing.Event()
    spinner = multiprocessing.Process(target=_spin, args=(stop,))
    spinner.start()
    try:
        time.sleep(0.5)
        assert _others_cores(os.cpu_count() or 1) >= 0.7
    finally:
        stop.set()
        spinner.join(10)


def _spin(stop):
    while not stop.is_set():
        pass


def test_contention_keeps_the_fast_and_the_quick():
    figures = {1: {"throughput": 400.0, "latency_p50_ms": 3.0}, 2: {"throughput": 290.0, "latency_p50_ms": 9.0},
               3: {"throughput": 270.0, "latency_p50_ms": 4.2}, 4: {"throughput": 100.0, "latency_p50_ms": 40.0}}
    assert contenders(figures) == {1, 2}  # >= 0.7 x 400 sent/s
    assert contenders(figures, "latency") == {1, 3}  # 4.2 ms x 0.7 <= 3 ms
    assert contenders({**figures, 5: {"throughput": 50.0, "latency_p50_ms": 2.2}}, "latency") == {1, 5}  # 4.2 > 2.2 / 0.7
