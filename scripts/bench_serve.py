"""`zoo serve` under load, against the engine in-process, on this machine.

    .venv/bin/python scripts/bench_serve.py [--model all-minilm-l6-v2] [--texts 1000] [--clients 16]

Starts ``zoo serve --no-cache`` on 127.0.0.1 (the cache would turn a repeat into a
lookup; this measures the model path), then:
1. throughput: ``--clients`` threads send the bundled mixed corpus in requests of
   ``--request-size`` texts; texts/s against ``zoo.load(...).embed`` of the same texts
   in this process with the same artifact (target: >= 90 %);
2. latency: ``--queries`` single short queries one after another, client-side p50/p95
   (target: p50 <= 10 ms on this CPU with the selected artifact).

3. wire formats (``--wire``; ``--wire-only`` runs just this): the same texts in requests of
   ``--wire-request-size`` (256) texts from ``--clients`` threads, answered from a warm vector
   cache so the model is out of the way, as float JSON, base64 float32, raw float32 bytes
   (``Accept: application/octet-stream``), ubinary JSON and raw ubinary and int8 bytes:
   requests/s, client-side decode time per request (body to a numpy array), bytes per
   response, and the server's and this client's peak RSS.

Writes ``serve.json`` and ``serve.md`` (``wire.json`` and ``wire.md``) under ``--out``.
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
    ap.add_argument("--wire", action="store_true", help="Also measure the wire formats.")
    ap.add_argument("--wire-only", action="store_true", help="Measure only the wire formats.")
    ap.add_argument("--wire-request-size", type=int, default=256)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.wire_only:
        wire(args, out)
        return

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
    if args.wire:
        wire(args, out)


# (name, request body fields, Accept header, decode: response -> numpy array)
def _formats():
    import base64

    import numpy as np

    def rows(r):
        return np.frombuffer(r.content, np.dtype(r.headers["x-zoo-dtype"]).newbyteorder("<")).reshape(
            *map(int, r.headers["x-zoo-shape"].split(",")))

    return [
        ("float JSON", {}, None, lambda r: np.array([d["embedding"] for d in r.json()["data"]], np.float32)),
        ("base64 float32", {"encoding_format": "base64"}, None, lambda r: np.stack(
            [np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in r.json()["data"]])),
        ("raw float32 bytes", {}, "application/octet-stream", rows),
        ("ubinary JSON", {"precision": "ubinary"}, None,
         lambda r: np.array([d["embedding"] for d in r.json()["data"]], np.uint8)),
        ("raw ubinary bytes", {"precision": "ubinary"}, "application/octet-stream", rows),
        ("raw int8 bytes", {"precision": "int8"}, "application/octet-stream", rows),
    ]


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wire(args, out: Path) -> None:
    """Phase 3: what each wire format costs, the model's work taken out by a warm cache."""
    import os
    import resource
    import tempfile

    import httpx

    from zoo.conversion.corpora import benchmark_texts
    from zoo.core.hardware import detect
    from zoo.registry.catalog import DEFAULT_MODEL

    name = args.model or DEFAULT_MODEL
    texts = benchmark_texts(args.texts)
    size = args.wire_request_size
    chunks = [texts[i:i + size] for i in range(0, len(texts), size)]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ZOO_CACHE"] = str(Path(tmp) / "cache.db")  # the server's own cache, warmed below
        with local_server("--models", name, "--log-level", "warning", "--max-inputs", str(max(size, 16))) as (
                server, url):
            client = httpx.Client(timeout=120, limits=httpx.Limits(max_connections=args.clients * 2))
            for chunk in chunks:  # warm: every text is in the cache before anything is timed
                client.post(url + "/v1/embeddings", json={"model": name, "input": chunk}).raise_for_status()
            for label, fields, accept, decode in _formats():
                headers = {"Accept": accept} if accept else {}
                decode_s, sizes = [], []

                def send(chunk):
                    r = client.post(url + "/v1/embeddings", json={"model": name, "input": chunk, **fields},
                                    headers=headers)
                    r.raise_for_status()
                    t = time.perf_counter()
                    vectors = decode(r)
                    decode_s.append(time.perf_counter() - t)
                    sizes.append(len(r.content))
                    return len(vectors)

                with ThreadPoolExecutor(args.clients) as pool:
                    list(pool.map(send, chunks[: args.clients]))  # warm-up
                    decode_s.clear()
                    sizes.clear()
                    rates = []
                    for _ in range(args.rounds):
                        t = time.perf_counter()
                        assert sum(pool.map(send, chunks)) == len(texts)
                        rates.append(len(chunks) / (time.perf_counter() - t))
                row = {"format": label, "requests_per_s": statistics.median(rates),
                       "decode_ms": statistics.median(decode_s) * 1000, "bytes": statistics.median(sizes)}
                results.append(row)
                print(f"{label}: {row['requests_per_s']:.1f} requests/s, decode {row['decode_ms']:.2f} ms, "
                      f"{row['bytes'] / 1024:.0f} KiB", flush=True)
            server_rss = _peak_rss_mb(server.pid)
        os.environ.pop("ZOO_CACHE")
    client_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    hw = detect()
    summary = {"machine": f"{hw.cpu_model} ({hw.physical_cores} cores)", "model": name, "texts": len(texts),
               "request_size": size, "clients": args.clients, "formats": results,
               "server_peak_rss_mb": server_rss, "client_peak_rss_mb": client_rss}
    (out / "wire.json").write_text(json.dumps(summary, indent=2))
    base = results[0]["requests_per_s"]
    md = ("| format | requests/s | vs float JSON | client decode / request | bytes / response |\n|---|---|---|---|---|\n"
          + "".join(f"| {r['format']} | {r['requests_per_s']:.1f} | {r['requests_per_s'] / base:.1f}x | "
                    f"{r['decode_ms']:.2f} ms | {r['bytes'] / 1024:,.0f} KiB |\n" for r in results)
          + f"\nServer peak RSS {server_rss:.0f} MB, client {client_rss:.0f} MB; {summary['machine']}.\n")
    (out / "wire.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
