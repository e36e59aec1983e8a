"""Which artifact of a revision serves a request on this machine.

The decision, in order:

1. An explicit ``artifact`` (a target name such as ``openvino-int8``, or an artifact id)
   wins; it must be ready (a rejected, failed or building one is refused, saying why).
2. Otherwise every artifact is checked for eligibility: ready (so it passed its
   fidelity gate); mean cosine >= ``min_fidelity`` when given; a measured peak RSS (``zoo bench``'s
   fresh-process load and embed) within ``max_memory_mb`` when given; an fp32-exact format
   when ``exact`` (torch-fp32, onnx-fp32/o1/o2, openvino-fp32); runnable here (a CUDA
   target needs a GPU, and onnxruntime-gpu for ONNX; ``device`` narrows to cpu or cuda);
   its runtime installed (``hardware.runtimes``).
3. Among eligible artifacts measured on this machine's fingerprint (``zoo bench``),
   the best for the objective wins: highest throughput (``throughput``, the
   default), lowest p50 single-text latency (``latency``), or, for a multimodal
   model, highest image throughput (``images``).
4. With no measurements, the first eligible artifact in the static ranking for the
   detected hardware (``static_ranking``), written from the speeds measured on the
   development machine (README, Benchmarks).
5. Nothing eligible: an error that lists every artifact and why it was passed over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from ..errors import ArtifactNotFound, InvalidInput

__all__ = ["Selection", "Candidate", "select", "static_ranking", "OBJECTIVES", "pick_artifact"]

OBJECTIVES = ("throughput", "latency", "images")  # images: a multimodal model's measured images/s
EXACT_TARGETS = {"torch-fp32", "onnx-fp32", "onnx-o1", "onnx-o2", "openvino-fp32"}
CUDA_ONLY = {"onnx-o4", "torch-fp16"}
# Artifacts built for any device that serve on the GPU when one is usable (the CPU-tuned ONNX
# graphs, O1-O3 and int8, stay on the CPU: their fused/quantized ops fall back with copies).
GPU_CAPABLE = {"onnx-fp32", "torch-fp32", "torch-bf16"}

# Fastest first, from the measured CPU table (README) and the usual GPU order. The weight-only targets follow
# static int8: built only where asked for or for large models, whose weights set the speed (docs: benchmarks).
WEIGHT_ONLY = ("openvino-int4w", "openvino-int8w", "onnx-int8w")
RANK_CUDA = ("onnx-o4", "torch-fp16", "torch-bf16", "onnx-fp32", "torch-fp32")
RANK_CPU_BF16 = ("openvino-int8", *WEIGHT_ONLY, "openvino-fp16", "openvino-bf16", "torch-bf16",
                 "onnx-int8-avx512_vnni", "onnx-int8-avx512", "openvino-fp32", "onnx-fp32", "onnx-o1", "onnx-o2",
                 "onnx-o3", "onnx-int8-avx2", "torch-fp32")
RANK_CPU_X86 = ("openvino-int8", "onnx-int8-avx512_vnni", "onnx-int8-avx512", "onnx-int8-avx2", *WEIGHT_ONLY,
                "openvino-fp32", "openvino-fp16", "onnx-o2", "onnx-o1", "onnx-fp32", "onnx-o3", "torch-bf16",
                "torch-fp32")
RANK_CPU_ARM = ("onnx-int8-arm64", "openvino-int8", *WEIGHT_ONLY, "onnx-o2", "onnx-fp32", "openvino-fp32",
                "torch-bf16", "torch-fp32")


def _cpu_side(hardware):
    """The same machine seen without its GPU (for device='cpu')."""
    return type(hardware)(hardware.arch, hardware.flags, runtimes=hardware.runtimes)


def static_ranking(hardware) -> tuple[str, ...]:
    if hardware.cuda:
        cpu = static_ranking(_cpu_side(hardware))
        return RANK_CUDA + tuple(t for t in cpu if t not in RANK_CUDA)
    if hardware.is_arm:
        return RANK_CPU_ARM
    return RANK_CPU_BF16 if hardware.bf16 else RANK_CPU_X86


@dataclass
class Candidate:
    target: str
    artifact_id: int
    status: str
    eligible: bool
    reason: str  # why it is (not) eligible
    mean_cosine: Optional[float] = None
    figures: Optional[dict[str, Any]] = None


@dataclass
class Selection:
    chosen: Any  # the Artifact row
    objective: str
    how: str  # "explicit" | "measured" | "static ranking"
    reason: str
    candidates: list[Candidate] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"artifact": self.chosen.target, "artifact_id": self.chosen.id, "objective": self.objective,
                "how": self.how, "reason": self.reason,
                "candidates": [c.__dict__ for c in self.candidates]}

    def explain(self) -> str:
        lines = [f"{'':2}{'TARGET':<24} {'ELIGIBLE':<9} {'MEAN COS':>9} {'SENT/S':>8} {'P50 MS':>7}  WHY"]
        for c in self.candidates:
            f = c.figures or {}
            mark = "*" if c.artifact_id == self.chosen.id else " "
            cos = f"{c.mean_cosine:.5f}" if c.mean_cosine is not None else "-"
            tput = f"{f['throughput']:.0f}" if "throughput" in f else "-"
            p50 = f"{f['latency_p50_ms']:.1f}" if "latency_p50_ms" in f else "-"
            lines.append(f"{mark:2}{c.target:<24} {'yes' if c.eligible else 'no':<9} {cos:>9} {tput:>8} {p50:>7}  {c.reason}")
        lines.append(f"picked {self.chosen.target} ({self.how}, objective {self.objective}): {self.reason}")
        return "\n".join(lines)


def _runtime_missing(fmt: str, hardware) -> Optional[str]:
    from ..core.hardware import RUNTIME_MODULES

    module = RUNTIME_MODULES.get(fmt)
    if module and fmt not in hardware.runtimes:  # each runtime's pip extra is named after its format
        return f"{module} not installed (pip install 'zoo[{fmt}]')"
    return None


def _fidelity_key(fid: dict) -> tuple[str, str]:
    """The one figure ``min_fidelity`` reads: an embedding artifact's mean cosine, a reranker's mean per-query
    Spearman (``zoo.conversion.rerank_fidelity``)."""
    if "mean_query_spearman" in fid:
        return "mean_query_spearman", "mean per-query Spearman"
    return "mean_cosine", "mean cos"


def _ineligible(a, hardware, *, min_fidelity, exact, device) -> Optional[str]:
    if a.status.value != "ready":
        return a.status.value + (f": {a.error}" if a.error else "")
    fid = a.fidelity or {}
    key, label = _fidelity_key(fid)
    if min_fidelity is not None and not fid.get("reference") and not fid.get(key, 0) >= min_fidelity:
        return f"{label} {fid.get(key, float('nan')):.5f} < min_fidelity {min_fidelity}"
    if exact and a.target not in EXACT_TARGETS:
        return "not fp32-exact"
    if a.target in CUDA_ONLY:
        if not hardware.cuda:
            return "needs a CUDA GPU"
        if a.format == "onnx" and not hardware.ort_cuda:
            return "needs onnxruntime-gpu"
        if device == "cpu":
            return "CUDA target; device=cpu"
    if device and device.startswith("cuda") and a.format == "openvino":
        return "OpenVINO serves on the CPU; device=cuda"
    return _runtime_missing(a.format, hardware)


def select(artifacts: Sequence, hardware, figures: dict[int, dict], *, objective: str = "throughput",
           min_fidelity: Optional[float] = None, exact: bool = False, artifact: Optional[str | int] = None,
           device: Optional[str] = None, max_memory_mb: Optional[float] = None) -> Selection:
    if objective not in OBJECTIVES:
        raise InvalidInput(f"unknown objective {objective!r}; use one of {', '.join(OBJECTIVES)}")
    if min_fidelity is not None and not 0 < min_fidelity <= 1:
        raise InvalidInput(f"min_fidelity must be a mean cosine in (0, 1], got {min_fidelity}")
    if max_memory_mb is not None and not max_memory_mb > 0:
        raise InvalidInput(f"max_memory must be a positive number of MB, got {max_memory_mb}")
    if artifact is not None:
        return Selection(pick_artifact(artifacts, artifact), objective, "explicit", "asked for by name")
    ranking = static_ranking(_cpu_side(hardware) if device == "cpu" else hardware)
    order = {t: i for i, t in enumerate(ranking)}
    candidates = []
    for a in sorted(artifacts, key=lambda a: (order.get(a.target, len(order)), a.id)):
        why = _ineligible(a, hardware, min_fidelity=min_fidelity, exact=exact, device=device)
        rss = (figures.get(a.id) or {}).get("peak_rss_mb")
        if why is None and max_memory_mb is not None and rss is not None and rss > max_memory_mb:
            why = f"measured peak RSS {rss:.0f} MB > max_memory {max_memory_mb:.0f} MB"
        fid = a.fidelity or {}
        cos = 1.0 if fid.get("reference") else fid.get(_fidelity_key(fid)[0])
        candidates.append(Candidate(a.target, a.id, a.status.value, why is None, why or "eligible", cos,
                                    figures.get(a.id)))
    eligible = [c for c in candidates if c.eligible]
    if not eligible:
        have = "; ".join(f"{c.target}: {c.reason}" for c in candidates) or "no artifacts"
        raise ArtifactNotFound(f"no artifact can serve with these options ({have})")
    by_id = {a.id: a for a in artifacts}
    key = "image_throughput" if objective == "images" else "throughput"
    measured = [c for c in eligible if c.figures and key in c.figures]
    if measured:
        if objective == "images":
            best = max(measured, key=lambda c: c.figures["image_throughput"])
            reason = f"highest measured image throughput here, {best.figures['image_throughput']:.0f} images/s"
        elif objective == "throughput":
            best = max(measured, key=lambda c: c.figures["throughput"])
            reason = (f"highest measured throughput here, {best.figures['throughput']:.0f} "
                      f"{best.figures.get('unit', 'texts')}/s at batch "
                      f"{best.figures['batch_size']}")
        else:
            best = min(measured, key=lambda c: c.figures["latency_p50_ms"])
            reason = f"lowest measured p50 latency here, {best.figures['latency_p50_ms']:.2f} ms"
        unmeasured = len(eligible) - len(measured)
        if unmeasured:
            reason += f" ({unmeasured} eligible artifact(s) not benchmarked here; run `zoo bench`)"
        return Selection(by_id[best.artifact_id], objective, "measured", reason, candidates)
    best = eligible[0]
    kind = "CUDA" if hardware.cuda else ("ARM CPU" if hardware.is_arm else
                                         "x86 CPU with bf16" if hardware.bf16 else "x86 CPU")
    return Selection(by_id[best.artifact_id], objective, "static ranking",
                     f"first eligible in the static ranking for a {kind} (no benchmarks on this machine; "
                     "run `zoo optimize` or `zoo bench` to measure)", candidates)


def pick_artifact(artifacts: Sequence, artifact: str | int):
    """An explicitly named artifact (target name or id), which must be ready."""
    key = str(artifact)
    match = [a for a in artifacts if a.target == key or str(a.id) == key]
    if not match:
        have = ", ".join(f"{a.target} (id {a.id}, {a.status.value})" for a in artifacts) or "none"
        raise ArtifactNotFound(f"no artifact {key!r} for this revision; available: {have}")
    chosen = match[0]
    if chosen.status.value != "ready":
        why = f": {chosen.error}" if chosen.error else ""
        raise ArtifactNotFound(f"artifact {chosen.target} (id {chosen.id}) is {chosen.status.value}"
                               f"{why}; it cannot serve")
    return chosen
