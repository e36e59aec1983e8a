"""``zoo bench``: measure ready artifacts on this machine and store the figures.

Workload: the bundled mixed-length corpus in shuffled order (as users send it).
For each artifact, all medians of ``rounds`` runs:

- throughput (texts/s) at each batch size in ``batch_sizes``; the best is kept with its batch size;
- at that batch, each runtime variant the backend offers (OpenVINO's async throughput mode with
  streams, onnxruntime thread counts); the fastest becomes ``runtime_options``, applied at load;
- p50 / p95 latency of one short text (single-request serving);
- load time and peak memory in a fresh process (``zoo.loadprobe``), from before
  ``import zoo`` to the first embedding: the cold start a CLI user waits for;
- for a multimodal model, images/s on the image probe set (``image_throughput``), apart from the
  texts, so selection can serve an image workload by its own figure (objective ``images``).

Figures go into the ``benchmarks`` table under the hardware fingerprint, which is
what selection reads.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

__all__ = ["BenchConfig", "bench_artifact", "median_time"]


@dataclass(frozen=True)
class BenchConfig:
    texts: int = 256
    batch_sizes: tuple[int, ...] = (16, 32, 64)  # on a CPU; 128 never won on 2 cores
    gpu_batch_sizes: tuple[int, ...] = (32, 128, 256)  # a GPU needs large batches to fill
    rounds: int = 3
    latency_runs: int = 40
    load_runs: int = 2  # fresh-process cold starts (0: none; the figures then have no load_s)
    variants: bool = True  # also measure the runtime's variants (OpenVINO streams, onnxruntime threads)

    def screening(self) -> "BenchConfig":
        """A first look: one round at the middle batch size, no variants, no cold start. ``zoo
        optimize`` screens every artifact so, then measures in full only those the screen leaves in
        contention (``zoo.selection.optimize.contenders``)."""
        from dataclasses import replace

        return replace(self, batch_sizes=(self.batch_sizes[len(self.batch_sizes) // 2],),
                       gpu_batch_sizes=(self.gpu_batch_sizes[len(self.gpu_batch_sizes) // 2],), rounds=1,
                       latency_runs=min(self.latency_runs, 20), load_runs=0, variants=False)


@dataclass(frozen=True)
class Workload:
    """What one artifact is timed on, by the model's kind: an embedding model embeds the corpus' texts (texts/s;
    one short text for latency); a reranker scores (query, document) pairs, a query per 100 documents, as a
    search reranks its top hits (pairs/s; one query with 20 documents for latency)."""
    unit: str
    items: list
    single_request: str

    @classmethod
    def of(cls, model, texts: list[str]) -> "Workload":
        if getattr(model, "kind", "embedding") == "reranker":
            queries = [t for t in texts if len(t.split()) <= 8] or texts
            pairs = [(queries[(i // 100) % len(queries)], d) for i, d in enumerate(texts)]
            return cls("pairs", pairs, "one query x 20 documents")
        return cls("texts", texts, "one short text")

    def run(self, model, items: list, batch_size: Optional[int]):
        if self.unit == "pairs":
            return model.predict(items, batch_size=batch_size)
        return model.embed(items, batch_size=batch_size)

    def single(self, model):
        if self.unit == "pairs":
            return model.rerank("how do I reset my password", [d for _, d in self.items[:20]])
        return model.embed(["how do I reset my password"])


def median_time(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _fresh_process_load(home: str, name: str, artifact_id: int, runs: int) -> dict:
    results = []
    for _ in range(runs):
        # -P: the working directory is not put on sys.path, so a folder there named zoo (a home) cannot shadow the
        # package
        out = subprocess.run([sys.executable, "-P", "-m", "zoo.loadprobe", home, name, str(artifact_id)],
                             capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise RuntimeError(f"fresh-process load failed: {out.stderr.strip().splitlines()[-1:]}")
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {"load_s": statistics.median(r["ready_s"] for r in results),
            "import_s": statistics.median(r["import_s"] for r in results),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results)}


def bench_artifact(registry, name: str, artifact, hardware, config: BenchConfig = BenchConfig(),
                   progress: Optional[Callable[[str, Optional[float]], None]] = None) -> dict:
    """Measure one ready artifact, store a ``benchmarks`` row, return its figures."""
    from ..engine.model import TruncationWarning

    with warnings.catch_warnings():  # the corpus has texts past max length on purpose
        warnings.simplefilter("ignore", TruncationWarning)
        return _bench_artifact(registry, name, artifact, hardware, config, progress)


def _bench_artifact(registry, name: str, artifact, hardware, config: BenchConfig,
                    progress: Optional[Callable[[str, Optional[float]], None]]) -> dict:
    from .loader import load
    from ..conversion.corpora import benchmark_texts
    from ..registry.schema import Benchmark

    progress = progress or (lambda step, frac: None)
    texts = benchmark_texts(config.texts)
    figures: dict = {}
    if config.load_runs:
        progress(f"{artifact.target}: load time in a fresh process", None)
        figures = _fresh_process_load(str(registry.home.root), name, artifact.id, config.load_runs)
    m = load(name, artifact=artifact.id, registry=registry, runtime_options={}, cache=False)
    work = Workload.of(m, texts)
    work.run(m, work.items[:64], None)  # warm-up: allocations, kernels, caches
    by_batch = {}
    batch_sizes = config.gpu_batch_sizes if m.info["device"].startswith("cuda") else config.batch_sizes
    for bs in batch_sizes:
        progress(f"{artifact.target}: throughput at batch {bs}", None)
        by_batch[bs] = config.texts / median_time(lambda: work.run(m, work.items, bs), config.rounds)
    best = max(by_batch, key=by_batch.get)
    # Runtime settings at the best batch: OpenVINO streams (async throughput mode) or onnxruntime
    # threads. The first variant is the default, measured above.
    variants = getattr(type(m.backend), "option_variants", None)
    variants = variants(hardware) if variants and config.variants else [{}]
    by_options = {json.dumps(variants[0], sort_keys=True): by_batch[best]}
    for option in variants[1:]:
        progress(f"{artifact.target}: throughput with {option}", None)
        mv = load(name, artifact=artifact.id, registry=registry, runtime_options=option, cache=False)
        work.run(mv, work.items[:64], None)
        by_options[json.dumps(option, sort_keys=True)] = config.texts / median_time(
            lambda: work.run(mv, work.items, best), config.rounds)
        del mv
    best_options = max(by_options, key=by_options.get)
    progress(f"{artifact.target}: single-request latency ({work.single_request})", None)
    lat = []
    for _ in range(config.latency_runs):
        t = time.perf_counter()
        work.single(m)
        lat.append((time.perf_counter() - t) * 1000)
    lat.sort()
    figures.update({
        "throughput": by_options[best_options], "batch_size": best,
        "throughput_by_batch": {str(k): v for k, v in by_batch.items()},
        "runtime_options": json.loads(best_options), "throughput_by_options": by_options,
        "latency_p50_ms": lat[len(lat) // 2], "latency_p95_ms": lat[min(len(lat) - 1, int(len(lat) * 0.95))],
        "texts": config.texts, "unit": work.unit, "single_request": work.single_request,
        "rounds": config.rounds, "device": m.info["device"],
        "screened": not (config.load_runs and config.variants),  # a first look, not the full measurement
        "backend": m.info["backend"], "runtime_precision": m.info["runtime_precision"],
    })
    if "image" in m.spec.modalities and hasattr(m.backend, "embed_images"):
        from ..conversion.corpora import image_probe_set

        images = image_probe_set()
        progress(f"{artifact.target}: image throughput ({len(images)} probe images)", None)
        m.embed_images(images[:8])
        figures.update(images=len(images), image_throughput=len(images) / median_time(
            lambda: m.embed_images(images, batch_size=16), config.rounds))
    with registry.session() as s:
        s.add(Benchmark(artifact_id=artifact.id, hardware_fingerprint=hardware.fingerprint, figures=figures))
    return figures
