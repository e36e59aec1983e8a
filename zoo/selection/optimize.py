"""``zoo optimize``: convert every candidate for this machine, gate, benchmark, select.

Resumable by construction: conversion skips ready artifacts (``zoo convert`` is a
no-op for them) and benchmarking skips artifacts that already have figures for
this hardware fingerprint, so re-running after an interruption only fills gaps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

__all__ = ["candidates", "optimize", "OptimizeReport"]


def candidates(hardware) -> list[str]:
    """Targets worth building here: what can run, minus what is dominated on this hardware.

    - CUDA: onnx-o4 (with onnxruntime-gpu) and torch-fp16 run on the GPU; no CPU int8.
    - x86: the int8 preset for the best ISA present (vnni > avx512 > avx2), ONNX static int8 (AVX2
      or better), OpenVINO int8 and fp32, ONNX fp32 and O2 (exact, torch-free), and on bf16 CPUs
      openvino-bf16 and torch-bf16.
      fp16 on a CPU is skipped (0.24x fp32 in torch), as are O1/O3 (measured no faster than O2/fp32).
    - ARM: onnx-int8-arm64, ONNX static int8, ONNX fp32/O2, OpenVINO fp32/int8.
    - Any CPU with llama-cpp-python (the gguf extra): gguf-q8_0, as fast as gguf-f16 here in half the
      memory. The converter refuses what llama.cpp cannot run (``unavailable_reason``).
    """
    if hardware.cuda:
        out = ["onnx-fp32", "torch-fp16", "torch-bf16"]
        return (["onnx-o4"] if hardware.ort_cuda else []) + out
    gguf = ["gguf-q8_0"] if "gguf" in hardware.runtimes else []
    if hardware.is_arm:
        return ["onnx-fp32", "onnx-o2", "onnx-int8-arm64", "onnx-int8-static", "openvino-fp32", "openvino-int8"] + gguf
    isa = next((i for i, need in (("avx512_vnni", ("avx512f", "avx512_vnni")), ("avx512", ("avx512f",)),
                                  ("avx2", ("avx2",))) if hardware.has(*need)), None)
    out = ["onnx-fp32", "onnx-o2"] + ([f"onnx-int8-{isa}", "onnx-int8-static"] if isa else []) \
        + ["openvino-fp32", "openvino-int8"]
    if hardware.bf16:
        out += ["openvino-bf16", "torch-bf16"]
    return out + gguf


@dataclass
class OptimizeReport:
    built: list = field(default_factory=list)  # build Outcomes
    measured: dict = field(default_factory=dict)  # artifact id -> figures (new and old)
    selection: object = None


def optimize(registry, name: str, *, objective: str = "throughput", rebuild: bool = False, hardware=None,
             bench_config=None, progress: Optional[Callable[[str, Optional[float]], None]] = None) -> OptimizeReport:
    from converters import unavailable_reason

    from .benchmark import BenchConfig, bench_artifact
    from .figures import latest_figures
    from ..conversion.pipeline import convert
    from ..core.hardware import detect
    from .select import select

    hw = hardware or detect()
    progress = progress or (lambda step, frac: None)
    report = OptimizeReport()
    checkpoint = registry.artifact_path(next(a for a in registry.resolve(name).revision.artifacts
                                             if a.target == "torch-fp32"))
    targets = [t for t in candidates(hw) if unavailable_reason(t, hw, checkpoint) is None]
    progress(f"candidates here: {', '.join(targets)}", None)
    report.built = convert(registry, name, targets, rebuild=rebuild, hardware=hw, progress=progress)
    revision = registry.resolve(name).revision
    ready = [a for a in revision.artifacts if a.status.value == "ready"]
    known = latest_figures(registry, [a.id for a in ready], hw.fingerprint)
    rebuilt = {o.artifact_id for o in report.built if o.status == "ready"}
    for i, a in enumerate(ready):
        if a.id in known and a.id not in rebuilt:
            continue
        progress(f"benchmarking {a.target} ({i + 1}/{len(ready)})", None)
        known[a.id] = bench_artifact(registry, name, a, hw, bench_config or BenchConfig(), progress)
    report.measured = known
    report.selection = select(revision.artifacts, hw, known, objective=objective)
    return report
