"""`zoo serve` under load, against the engine in-process, on this machine.

    .venv/bin/python scripts/bench_serve.py [--model all-minilm-l6-v2] [--texts 1000] [--clients 16]

Starts ``zoo serve --no-cache`` on 127.0.0.1 (the cache would turn a repeat into a
lookup; this measures the model path), then:
1. throughput: ``--clients`` threads send the bundled mixed corpus in requests of
   ``--request-size`` texts; texts/s against ``zoo.load(...).embed`` of the same texts
   in this process with the same artifact (target: >= 90 %);
2. latency: ``--queries`` single short queries one after another, client-side p50/p95
   (target: p50 <= 10 ms on this CPU with the selected artifact).

Writes ``serve.json`` and ``serve.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from local_server import local_server  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--request-size", type=int, default=16)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="bench-results")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import httpx
    import numpy as np

    import zoo
    from zoo.conversion.corpora import benchmark_texts
    from zoo.core.hardware import detect
    from zoo.engine.model import TruncationWarning
    from zoo.registry.catalog import DEFAULT_MODEL

    warnings.simplefilter("ignore", TruncationWarning)
    name = args.model or DEFAULT_MODEL
    texts = benchmark_texts(args.texts)
    # as `zoo serve` loads it: the latency-objective artifact, run with its measured best batch settings
    m = zoo.load(name, objective="latency", runtime_objective="throughput", cache=False)
    m.embed(texts[:64])
    in_process = []
    for _ in range(args.rounds):
        t = time.perf_counter()
        m.embed(texts)
        in_process.append(len(texts) / (time.perf_counter() - t))
    local_rate = statistics.median(in_process)
    print(f"in-process ({m.info['artifact']}, {m.info['runtime_options']}): {local_rate:.0f} texts/s", flush=True)

    with local_server("--models", name, "--no-cache", "--log-level", "warning") as (server, url):
        client = httpx.Client(timeout=120, limits=httpx.Limits(max_connections=args.clients * 2))
        served = client.get(url + "/v1/models").json()["data"][0]["zoo"]["serving_artifact"]
        chunks = [texts[i:i + args.request_size] for i in range(0, len(texts), args.request_size)]

        def send(chunk):
            r = client.post(url + "/v1/embeddings", json={"model": name, "input": chunk})
            r.raise_for_status()
            return len(r.json()["data"])

        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(send, chunks[: args.clients]))  # warm-up
            rates = []
            for _ in range(args.rounds):
                t = time.perf_counter()
                assert sum(pool.map(send, chunks)) == len(texts)
                rates.append(len(texts) / (time.perf_counter() - t))
        server_rate = statistics.median(rates)
        print(f"served, {args.clients} clients x {args.request_size} texts/request: {server_rate:.0f} texts/s "
              f"= {server_rate / local_rate:.0%} of in-process", flush=True)

        queries = [f"short query number {i}" for i in range(args.queries + 20)]
        for q in queries[:20]:
            send([q])
        latencies = []
        for q in queries[20:]:
            t = time.perf_counter()
            send([q])
            latencies.append((time.perf_counter() - t) * 1000)
        p50, p95 = float(np.percentile(latencies, 50)), float(np.percentile(latencies, 95))
        print(f"single short query: p50 {p50:.1f} ms, p95 {p95:.1f} ms", flush=True)

    hw = detect()
    results = {"machine": f"{hw.cpu_model} ({hw.physical_cores} cores)", "model": name,
               "artifact_in_process": m.info["artifact"], "artifact_served": served, "texts": len(texts),
               "clients": args.clients, "request_size": args.request_size, "in_process_per_s": local_rate,
               "served_per_s": server_rate, "served_share": server_rate / local_rate, "latency_p50_ms": p50,
               "latency_p95_ms": p95, "queries": args.queries}
    (out / "serve.json").write_text(json.dumps(results, indent=2))
    md = ("| measure | value |\n|---|---|\n"
          f"| in-process `embed`, {len(texts)} mixed texts ({m.info['artifact']}) | {local_rate:.0f} texts/s |\n"
          f"| `zoo serve`, {args.clients} concurrent clients x {args.request_size} texts/request | "
          f"{server_rate:.0f} texts/s (**{server_rate / local_rate:.0%}** of in-process) |\n"
          f"| single short query, sequential, client-side | p50 **{p50:.1f} ms**, p95 {p95:.1f} ms |\n")
    (out / "serve.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
