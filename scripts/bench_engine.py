"""The engine's two speed claims, measured in one process on this machine.

    .venv/bin/python scripts/bench_engine.py [--model all-minilm-l6-v2] [--texts 1000] [--artifacts A,B]

1. Length bucketing: each ready artifact embeds the bundled mixed-length corpus
   (shuffled, as users send it) at batch 32, once in input order and once sorted by
   token length and cut by the token budget (zoo's default). Same runtime, same
   batches of 32, same process: the ratio is what sorting buys. Also reported: the
   share of padded positions that are real tokens.
2. The vector cache: 10,000 distinct texts embedded with the selected artifact into a
   fresh cache (a miss each), then embedded again (a hit each). The ratio of the two
   wall times is what the cache buys on a repeat.

Writes ``engine.json`` and ``engine.md`` under ``--out``; medians of ``--rounds``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def padding_efficiency(lengths, batches, width_multiple: int = 1) -> float:
    from zoo.engine.batching import padded_width

    real = sum(int(sum(lengths[i] for i in b)) for b in batches)
    padded = sum(len(b) * padded_width(max(lengths[i] for i in b), width_multiple) for b in batches)
    return real / padded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--cached-texts", type=int, default=10_000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--artifacts", help="Comma-separated targets to measure (default: every ready CPU artifact).")
    ap.add_argument("--out", default="bench-results")
    args = ap.parse_args()
    only = set(args.artifacts.split(",")) if args.artifacts else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import zoo
    from zoo.engine.backends.lean import Prepared
    from zoo.engine.batching import DEFAULT_MAX_BATCH_TOKENS
    from zoo.selection.benchmark import median_time
    from zoo.conversion.corpora import benchmark_texts
    from zoo.engine.model import TruncationWarning
    from zoo.registry.catalog import DEFAULT_MODEL, open_registry
    from zoo.registry.schema import ArtifactStatus
    from zoo.selection.select import CUDA_ONLY

    warnings.simplefilter("ignore", TruncationWarning)
    name = args.model or DEFAULT_MODEL
    reg = open_registry()
    texts = benchmark_texts(args.texts)
    bs = args.batch_size
    rows = []
    selected = zoo.load(name, registry=reg, cache=False)
    for a in reg.resolve(name).revision.artifacts:
        if a.status != ArtifactStatus.ready or a.target in CUDA_ONLY or (only and a.target not in only):
            continue
        m = zoo.load(name, artifact=a.id, registry=reg, cache=False, runtime_options={})
        backend = m.backend
        prepared = Prepared.of(backend.encoder, texts)
        in_order = [np.arange(i, min(i + bs, len(texts))) for i in range(0, len(texts), bs)]
        bucketed = list(backend.plan(prepared.lengths, bs, DEFAULT_MAX_BATCH_TOKENS))
        out_arr = np.empty((len(texts), m.dim), dtype=np.float32)
        backend.run_batches(prepared, in_order[:2], m.spec.normalize, out_arr)  # warm-up
        t_order = median_time(lambda: backend.run_batches(prepared, in_order, m.spec.normalize, out_arr), args.rounds)
        ordered = out_arr.copy()
        t_sorted = median_time(lambda: backend.run_batches(prepared, bucketed, m.spec.normalize, out_arr), args.rounds)
        cos = float(((ordered * out_arr).sum(1) / np.linalg.norm(ordered, axis=1) / np.linalg.norm(out_arr, axis=1)).min())
        row = {"artifact": a.target, "input_order_per_s": len(texts) / t_order, "sorted_per_s": len(texts) / t_sorted,
               "ratio": t_order / t_sorted, "real_tokens_input_order": padding_efficiency(prepared.lengths, in_order),
               "real_tokens_sorted": padding_efficiency(prepared.lengths, bucketed, backend.encoder.width_multiple), "min_cos_between": cos}
        rows.append(row)
        print(f"{a.target:<22} input order {row['input_order_per_s']:7.1f}/s  sorted {row['sorted_per_s']:7.1f}/s  "
              f"x{row['ratio']:.2f}  real tokens {row['real_tokens_input_order']:.0%} -> {row['real_tokens_sorted']:.0%}",
              flush=True)

    corpus = benchmark_texts(args.cached_texts, seed=7)
    distinct = [f"{t} [{i}]" for i, t in enumerate(corpus)]  # every text distinct: no help from de-duplication
    with tempfile.TemporaryDirectory() as tmp:
        m = zoo.load(name, registry=reg, cache=str(Path(tmp) / "bench-cache.db"))
        m.embed(distinct[:64], cache=False)  # warm-up outside the cache
        t = time.perf_counter()
        computed = m.embed(distinct)
        t_compute = time.perf_counter() - t
        assert computed.cache_hits == 0
        repeats = []
        for _ in range(args.rounds):
            t = time.perf_counter()
            cached = m.embed(distinct)
            repeats.append(time.perf_counter() - t)
            assert cached.cache_hits == len(distinct) and np.array_equal(cached, computed)
        t_cached = float(np.median(repeats))
        cache = {"artifact": m.info["artifact"], "texts": len(distinct), "compute_s": t_compute, "cached_s": t_cached,
                 "ratio": t_compute / t_cached, "file_mb": m.cache.stats()["file_bytes"] / 1e6}
    print(f"cache: {len(distinct)} texts computed in {t_compute:.2f} s, re-embedded from the cache in "
          f"{t_cached * 1000:.0f} ms: x{cache['ratio']:.0f}", flush=True)

    from zoo.core.hardware import detect

    hw = detect()
    results = {"machine": f"{hw.cpu_model} ({hw.physical_cores} cores)", "model": name,
               "selected": selected.info["artifact"], "batch_size": bs, "texts": len(texts), "bucketing": rows,
               "cache": cache}
    (out / "engine.json").write_text(json.dumps(results, indent=2))
    lines = [f"Length bucketing, {len(texts)} mixed texts in shuffled order, batch {bs} ({results['machine']}):", "",
             "| artifact | input order (texts/s) | sorted + token budget (texts/s) | ratio | real tokens, input order -> sorted |",
             "|---|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['artifact']} | {r['input_order_per_s']:.0f} | {r['sorted_per_s']:.0f} | "
                     f"**{r['ratio']:.2f}x** | {r['real_tokens_input_order']:.0%} -> {r['real_tokens_sorted']:.0%} |")
    lines += ["", f"Vector cache, {cache['texts']:,} distinct texts with {cache['artifact']}: computed in "
              f"{cache['compute_s']:.1f} s, re-embedded from the cache in {cache['cached_s'] * 1000:.0f} ms: "
              f"**{cache['ratio']:.0f}x** faster ({cache['file_mb']:.0f} MB cache file)."]
    (out / "engine.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
