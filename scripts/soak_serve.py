"""`zoo serve` soaked on loopback: small requests alone, small requests beside huge ones, then
many clients, with the server's RSS sampled throughout. Bounded in time and requests.

    .venv/bin/python scripts/soak_serve.py [--model all-minilm-l6-v2] [--seconds 20] [--clients 64]

Phases (each ``--seconds`` long, all traffic to 127.0.0.1):
1. ``small``: 4 clients send one short query each, back to back: p50/p99 alone;
2. ``small+large``: the same, while 2 clients send 256 inputs of ~79,000 characters each
   (a 20 MB body, the case the hardening issue measured at 77-114 s a request): p50/p99 of the
   small requests beside them, and the large requests' own latency;
3. ``load``: ``--clients`` clients send 16 mixed texts per request;
4. ``images`` (with ``--image-model``, a CLIP-family model): 4 clients each send 48 distinct
   4096 x 4096 PNGs per request (a ~3 MB body; the hardening issue saw 48 such take the server from
   550 MB to 3.7 GB), while 2 clients send short queries: the RSS stays within the pixel budget.
Then it waits ``--settle`` seconds and samples RSS again: it must come back to a plateau.

Writes ``soak.json`` and ``soak.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from local_server import local_server  # noqa: E402


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--settle", type=float, default=10.0)
    ap.add_argument("--max-requests", type=int, default=200_000, help="a hard cap over the whole run")
    ap.add_argument("--image-model", default=None, help="a CLIP-family model for the image phase")
    ap.add_argument("--out", default="bench-results")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import httpx

    from zoo.conversion.corpora import benchmark_texts
    from zoo.core.hardware import detect
    from zoo.registry.catalog import DEFAULT_MODEL

    warnings.simplefilter("ignore")
    name = args.model or DEFAULT_MODEL
    rss: list[tuple[str, float, float]] = []  # (phase, seconds since start, MB)
    started = time.time()
    statuses: Counter = Counter()
    sent = 0
    lock = threading.Lock()
    # the large phase sends 20 MB bodies on purpose: let them in, to measure what they cost
    served = ",".join([name] + ([args.image_model] if args.image_model else []))
    with local_server("--models", served, "--no-cache", "--log-level", "warning",
                      "--max-body-bytes", str(32 * 1024 * 1024)) as (server, url):
        client = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=args.clients + 8))
        phase = {"name": "start"}

        def sample() -> None:
            rss.append((phase["name"], round(time.time() - started, 1), rss_mb(server.pid)))

        sampler_stop = threading.Event()

        def sampler() -> None:
            while not sampler_stop.wait(2.0):
                sample()

        threading.Thread(target=sampler, daemon=True).start()
        sample()

        def post(texts: list[str]) -> float:
            nonlocal sent
            with lock:
                if sent >= args.max_requests:
                    raise RuntimeError("request cap reached")
                sent += 1
            t = time.perf_counter()
            r = client.post(url + "/v1/embeddings", json={"model": name, "input": texts})
            with lock:
                statuses[r.status_code] += 1
            return (time.perf_counter() - t) * 1000

        def loop(make, until: float, into: list) -> None:
            while time.time() < until:
                try:
                    into.append(post(make()))
                except RuntimeError:
                    return

        queries = [f"short query number {i}" for i in range(1000)]
        small = lambda: [random.choice(queries)]  # noqa: E731
        for q in queries[:20]:
            post([q])

        def run_phase(label: str, workers: list[tuple[int, object, list]]) -> None:
            phase["name"] = label
            until = time.time() + args.seconds
            with ThreadPoolExecutor(sum(n for n, _, _ in workers)) as pool:
                futures = [pool.submit(loop, make, until, into) for n, make, into in workers for _ in range(n)]
                for f in futures:
                    f.result()
            sample()

        alone: list[float] = []
        run_phase("small", [(4, small, alone)])
        rng = random.Random(0)
        words = "the quick brown fox jumps over a lazy dog while zoo embeds every sentence it gets".split()
        huge = [" ".join(rng.choice(words) for _ in range(15_000))[:79_000] for _ in range(8)]
        large = lambda: [huge[i % len(huge)] for i in range(256)]  # noqa: E731
        beside: list[float] = []
        large_ms: list[float] = []
        run_phase("small+large", [(4, small, beside), (2, large, large_ms)])
        corpus = benchmark_texts(2000)
        mixed = lambda: random.sample(corpus, 16)  # noqa: E731
        load_ms: list[float] = []
        run_phase("load", [(args.clients, mixed, load_ms)])
        image_ms: list[float] = []
        beside_images: list[float] = []
        if args.image_model:
            import base64
            import io

            from PIL import Image

            def png(i: int) -> str:  # distinct bytes, so each is decoded (no cache, no dedup)
                picture = Image.new("RGB", (4096, 4096), (i % 256, (i * 7) % 256, (i * 13) % 256))
                buf = io.BytesIO()
                picture.save(buf, "PNG")
                return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

            uris = [png(i) for i in range(4 * 48)]
            turn = iter(range(10**9))

            def image_request() -> float:
                k = next(turn) % 4
                t = time.perf_counter()
                r = client.post(url + "/v1/embeddings", json={"model": args.image_model, "modality": "image",
                                                               "input": uris[k * 48:(k + 1) * 48]})
                with lock:
                    statuses[r.status_code] += 1
                return (time.perf_counter() - t) * 1000

            def image_loop(until: float, into: list) -> None:
                while time.time() < until:
                    into.append(image_request())

            phase["name"] = "images"
            until = time.time() + args.seconds
            with ThreadPoolExecutor(6) as pool:
                futures = [pool.submit(image_loop, until, image_ms) for _ in range(4)]
                futures += [pool.submit(loop, small, until, beside_images) for _ in range(2)]
                for f in futures:
                    f.result()
            sample()
        phase["name"] = "settled"
        time.sleep(args.settle)
        sample()
        sampler_stop.set()

    hw = detect()
    by_phase: dict[str, list[float]] = {}
    for label, _, mb in rss:
        by_phase.setdefault(label, []).append(mb)
    results = {
        "machine": f"{hw.cpu_model} ({hw.physical_cores} cores)", "model": name, "seconds_per_phase": args.seconds,
        "requests": sum(statuses.values()), "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "small_alone_ms": {"n": len(alone), "p50": percentile(alone, 50), "p99": percentile(alone, 99)},
        "small_beside_large_ms": {"n": len(beside), "p50": percentile(beside, 50), "p99": percentile(beside, 99)},
        "large_ms": {"n": len(large_ms), "p50": percentile(large_ms, 50), "max": max(large_ms, default=float("nan"))},
        "load_ms": {"clients": args.clients, "n": len(load_ms), "p50": percentile(load_ms, 50),
                    "p99": percentile(load_ms, 99), "texts_per_s": 16 * len(load_ms) / args.seconds},
        "images_ms": {"n": len(image_ms), "p50": percentile(image_ms, 50), "max": max(image_ms, default=float("nan")),
                      "images_per_request": 48, "pixels_per_image": 4096 * 4096},
        "small_beside_images_ms": {"n": len(beside_images), "p50": percentile(beside_images, 50),
                                   "p99": percentile(beside_images, 99)},
        "rss_mb": {"start": rss[0][2], "peak": max(mb for _, _, mb in rss), "end_of_load": by_phase["load"][-1],
                   "settled": rss[-1][2], "by_phase_max": {k: max(v) for k, v in by_phase.items()}},
        "rss_samples": rss,
    }
    (out / "soak.json").write_text(json.dumps(results, indent=2))
    r = results
    md = (f"CPU: {r['machine']}; model {name}; {args.seconds:.0f} s per phase; {r['requests']} requests, "
          f"status codes {r['statuses']}\n\n"
          "| phase | requests | p50 ms | p99 ms | server RSS max MB |\n|---|---|---|---|---|\n"
          f"| small queries alone (4 clients) | {r['small_alone_ms']['n']} | {r['small_alone_ms']['p50']:.1f} | "
          f"{r['small_alone_ms']['p99']:.1f} | {r['rss_mb']['by_phase_max'].get('small', float('nan')):.0f} |\n"
          f"| small queries beside 2 clients of 256 x 79k-char inputs | {r['small_beside_large_ms']['n']} | "
          f"{r['small_beside_large_ms']['p50']:.1f} | {r['small_beside_large_ms']['p99']:.1f} | "
          f"{r['rss_mb']['by_phase_max'].get('small+large', float('nan')):.0f} |\n"
          f"| the large requests themselves | {r['large_ms']['n']} | {r['large_ms']['p50']:.0f} | "
          f"max {r['large_ms']['max']:.0f} | |\n"
          f"| {args.clients} clients x 16 mixed texts | {r['load_ms']['n']} | {r['load_ms']['p50']:.0f} | "
          f"{r['load_ms']['p99']:.0f} | {r['rss_mb']['by_phase_max'].get('load', float('nan')):.0f} |\n"
          + (f"| 4 clients x 48 distinct 4096x4096 PNGs ({args.image_model}) | {r['images_ms']['n']} | "
             f"{r['images_ms']['p50']:.0f} | max {r['images_ms']['max']:.0f} | "
             f"{r['rss_mb']['by_phase_max'].get('images', float('nan')):.0f} |\n"
             f"| small queries beside the image requests | {r['small_beside_images_ms']['n']} | "
             f"{r['small_beside_images_ms']['p50']:.1f} | {r['small_beside_images_ms']['p99']:.1f} | |\n"
             if args.image_model else "") + "\n"
          f"RSS: start {r['rss_mb']['start']:.0f} MB, peak {r['rss_mb']['peak']:.0f} MB, end of load "
          f"{r['rss_mb']['end_of_load']:.0f} MB, {args.settle:.0f} s later {r['rss_mb']['settled']:.0f} MB.\n")
    (out / "soak.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
