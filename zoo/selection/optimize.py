"""``zoo optimize``: convert every candidate for this machine, gate, benchmark, select.

Resumable by construction: conversion skips ready artifacts (``zoo convert`` is a
no-op for them) and benchmarking skips artifacts that already have figures for
this hardware fingerprint, so re-running after an interruption only fills gaps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

__all__ = ["candidates", "optimize", "OptimizeReport", "Estimate", "busy_reason", "contenders"]


def candidates(hardware, checkpoint=None) -> list[str]:
    """Targets worth building here: what can run, minus what is dominated on this hardware.

    - CUDA: onnx-o4 (with onnxruntime-gpu) and torch-fp16 run on the GPU; no CPU int8.
    - x86: the int8 preset for the best ISA present (vnni > avx512 > avx2), ONNX static int8 (AVX2
      or better), OpenVINO int8 and fp32, ONNX fp32 and O2 (exact, torch-free), and on bf16 CPUs
      openvino-bf16 and torch-bf16.
      fp16 on a CPU is skipped (0.24x fp32 in torch), as are O1/O3 (measured no faster than O2/fp32).
    - ARM: onnx-int8-arm64, ONNX static int8, ONNX fp32/O2, OpenVINO fp32/int8.
    - Any CPU with llama-cpp-python (the gguf extra): gguf-q8_0, as fast as gguf-f16 here in half the
      memory. The converter refuses what llama.cpp cannot run (``unavailable_reason``).
    - Any CPU, for a ``checkpoint`` large enough that its weights set the speed (``converters.support.
      WEIGHT_ONLY_MIN_PARAMS``: 100M for int8, 1B for int4): openvino-int8w, onnx-int8w, openvino-int4w.
    """
    if hardware.cuda:
        out = ["onnx-fp32", "torch-fp16", "torch-bf16"]
        return (["onnx-o4"] if hardware.ort_cuda else []) + out
    extra = ["gguf-q8_0"] if "gguf" in hardware.runtimes else []
    if checkpoint is not None:
        from converters import all_targets
        from converters.support import WEIGHT_ONLY_MIN_PARAMS, parameter_count

        size = parameter_count(checkpoint) or 0
        extra += [t.name for t, _ in all_targets()
                  if t.precision in WEIGHT_ONLY_MIN_PARAMS and size >= WEIGHT_ONLY_MIN_PARAMS[t.precision]]
    if hardware.is_arm:
        return ["onnx-fp32", "onnx-o2", "onnx-int8-arm64", "onnx-int8-static", "openvino-fp32", "openvino-int8"] + extra
    isa = next((i for i, need in (("avx512_vnni", ("avx512f", "avx512_vnni")), ("avx512", ("avx512f",)),
                                  ("avx2", ("avx2",))) if hardware.has(*need)), None)
    out = ["onnx-fp32", "onnx-o2"] + ([f"onnx-int8-{isa}", "onnx-int8-static"] if isa else []) \
        + ["openvino-fp32", "openvino-int8"]
    if hardware.bf16:
        out += ["openvino-bf16", "torch-bf16"]
    return out + extra


@dataclass
class OptimizeReport:
    built: list = field(default_factory=list)  # build Outcomes
    measured: dict = field(default_factory=dict)  # artifact id -> figures (new and old)
    selection: object = None
    seconds: dict = field(default_factory=dict)  # phase -> seconds: convert, bench (and per target)
    busy: list = field(default_factory=list)  # the artifacts benchmarked while the machine was busy


# Seconds a unit takes before any has been timed here: a conversion and a benchmark of MiniLM on 2
# cores (docs/benchmarks.md). Each estimate then uses what this run has measured instead.
PRIOR_SECONDS = {"convert": 20.0, "screen": 5.0, "bench": 15.0}
# What the screen leaves in contention: within this share of the best screened throughput (or of the
# best single-text latency). A screen is one round at one batch size, within about 10 % of the full
# figure on MiniLM here (2-core AMD EPYC); the full measurement then decides among what remains,
# and what the screen drops is 30 % slower or more, three times that noise.
CONTENTION = 0.7


def contenders(figures: dict, objective: str = "throughput") -> set:
    """The ids whose figures leave them in contention for ``objective`` (see ``CONTENTION``): a
    throughput within that share of the best, or a p50 latency within its inverse of the best."""
    if objective == "latency":
        fastest = min((f["latency_p50_ms"] for f in figures.values() if f.get("latency_p50_ms")), default=0.0)
        return {i for i, f in figures.items() if f.get("latency_p50_ms") and f["latency_p50_ms"] * CONTENTION <= fastest}
    key = "image_throughput" if objective == "images" else "throughput"
    best = max((f.get(key) or 0.0 for f in figures.values()), default=0.0)
    return {i for i, f in figures.items() if (f.get(key) or 0.0) >= CONTENTION * best}


class Estimate:
    """Time left in a run of units of a few kinds, from the units done so far (a prior before any).

    Why: ``zoo optimize`` is the first thing a newcomer runs and takes minutes; silences of minutes
    look like a hang. Each progress line says how much is left, as well as it can be known."""

    def __init__(self, units: dict[str, int], clock: Callable[[], float] = time.monotonic):
        self.left = dict(units)
        self.spent: dict[str, list[float]] = {k: [] for k in units}
        self.clock = clock
        self._started: Optional[tuple[str, float]] = None

    def start(self, kind: str) -> None:
        self._started = (kind, self.clock())

    def finish(self) -> float:
        kind, t = self._started
        took = self.clock() - t
        self.spent[kind].append(took)
        self.left[kind] = max(0, self.left[kind] - 1)
        self._started = None
        return took

    def set_units(self, kind: str, n: int) -> None:
        self.left[kind] = n

    def seconds_left(self) -> float:
        return sum(n * (sum(self.spent[k]) / len(self.spent[k]) if self.spent[k] else PRIOR_SECONDS.get(k, 15.0))
                   for k, n in self.left.items())

    def line(self) -> str:
        s = self.seconds_left()
        return f"about {s / 60:.0f} min left" if s >= 90 else f"about {max(5, round(s / 5) * 5):.0f} s left"


def busy_reason(others: Optional[float] = None, cores: Optional[int] = None) -> Optional[str]:
    """Why benchmark figures taken now may mislead, or None: other processes using half a core or
    more (``others``, in cores; by default measured over a quarter second while zoo itself waits).

    Not the load average: zoo's own benchmarks keep every core busy, so the load is at the core
    count whenever zoo measures, busy machine or not."""
    import os

    cores = cores or os.cpu_count() or 1
    if others is None:
        others = _others_cores(cores)
        if others is None:  # no /proc/stat here
            return None
    if others < 0.5:
        return None
    return (f"the machine is busy (other processes use {others:.1f} of {cores} cores): the figures measured "
            "now decide the selection; rerun `zoo bench NAME` when it is idle")


def _others_cores(cores: int, seconds: float = 0.25) -> Optional[float]:
    """Cores used by processes other than this one over ``seconds``, from /proc/stat and getrusage."""
    import resource

    def sample():
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        own = resource.getrusage(resource.RUSAGE_SELF)
        return sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0), own.ru_utime + own.ru_stime

    try:
        total0, idle0, own0 = sample()
        time.sleep(seconds)
        total1, idle1, own1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    busy = (1 - (idle1 - idle0) / (total1 - total0)) * cores
    return max(0.0, busy - (own1 - own0) / seconds)


def optimize(registry, name: str, *, objective: str = "throughput", rebuild: bool = False, hardware=None,
             bench_config=None, progress: Optional[Callable[[str, Optional[float]], None]] = None,
             warn: Optional[Callable[[str], None]] = None, load: Optional[Callable[[], Optional[str]]] = None
             ) -> OptimizeReport:
    """``warn`` receives warnings (a busy machine while benchmarking); ``load`` says why the machine
    is busy, or None (``busy_reason`` by default; tests pass their own)."""
    from converters import unavailable_reason

    from .benchmark import BenchConfig, bench_artifact
    from .figures import latest_figures
    from ..conversion.pipeline import convert
    from ..core.hardware import detect
    from .select import select

    hw = hardware or detect()
    progress = progress or (lambda step, frac: None)
    warn = warn or (lambda line: None)
    load = load or busy_reason
    report = OptimizeReport()
    started = time.monotonic()
    revision = registry.resolve(name).revision
    checkpoint = registry.artifact_path(next(a for a in revision.artifacts if a.target == "torch-fp32"))
    reasons = {t: unavailable_reason(t, hw, checkpoint) for t in candidates(hw, checkpoint)}
    targets = [t for t, why in reasons.items() if why is None]
    have = {a.target for a in revision.artifacts if a.status.value == "ready"}
    to_build = targets if rebuild else [t for t in targets if t not in have]
    eta = Estimate({"convert": len(to_build), "screen": len(set(targets) | have), "bench": len(targets) // 2})
    progress(f"candidates here: {', '.join(targets)} ({len(to_build)} to build; {eta.line()})", None)
    for target, why in reasons.items():  # every candidate left out, with its reason
        if why is not None:
            progress(f"left out {target}: {why}", None)
    eta.start("convert")

    def target_done(outcome) -> None:
        if outcome.status == "exists":  # nothing built: not a unit of the estimate
            eta.start("convert")
            return
        report.seconds[f"convert {outcome.target}"] = round(eta.finish(), 1)
        progress(f"{outcome.target}: {outcome.status} ({eta.line()})", None)
        eta.start("convert")

    report.built = convert(registry, name, targets, rebuild=rebuild, hardware=hw, progress=progress, done=target_done)
    report.seconds["convert"] = round(time.monotonic() - started, 1)
    revision = registry.resolve(name).revision
    ready = [a for a in revision.artifacts if a.status.value == "ready"]
    known = latest_figures(registry, [a.id for a in ready], hw.fingerprint)
    rebuilt = {o.artifact_id for o in report.built if o.status == "ready"}
    pending = [a for a in ready if a.id not in known or a.id in rebuilt]
    config = bench_config or BenchConfig()
    # one cold start per finalist, not two: the figure is shown, never selected on (`zoo bench` takes two)
    config = replace(config, load_runs=min(config.load_runs, 1))
    eta.set_units("screen", len(pending))
    eta.set_units("bench", max(1, len(pending) // 2) if pending else 0)
    bench_started = time.monotonic()

    def measure(a, cfg, kind: str, label: str) -> dict:
        if why := load():
            warn(f"benchmarking {a.target}: {why}")
            if a.target not in report.busy:
                report.busy.append(a.target)
        progress(f"{label} ({eta.line()})", None)
        eta.start(kind)
        figures = bench_artifact(registry, name, a, hw, cfg, progress)
        report.seconds[f"{kind} {a.target}"] = round(eta.finish(), 1)
        return figures

    screened = {a.id: measure(a, config.screening(), "screen", f"screening {a.target} ({i + 1}/{len(pending)})")
                for i, a in enumerate(pending)}
    finalists = [a for a in pending if a.id in contenders({**known, **screened}, objective)]
    eta.set_units("bench", len(finalists))
    progress(f"measuring in full the {len(finalists)} in contention: {', '.join(a.target for a in finalists)}", None)
    known.update(screened)
    for i, a in enumerate(finalists):
        known[a.id] = measure(a, config, "bench", f"benchmarking {a.target} ({i + 1}/{len(finalists)})")
    report.seconds["bench"] = round(time.monotonic() - bench_started, 1)
    report.seconds["total"] = round(time.monotonic() - started, 1)
    report.measured = known
    report.selection = select(revision.artifacts, hw, known, objective=objective)
    return report
