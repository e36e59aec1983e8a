"""Foundation benchmark: what a user waits for, measured on this machine.

    .venv/bin/python scripts/bench_foundation.py [--rounds 3] [--json results.json]

Measures, each as the median of ``--rounds`` fresh processes:
- ``zoo --help`` (must stay instant: heavy imports are lazy);
- first ``zoo embed`` in an empty home (registers the embedded default model);
- ``zoo embed`` of one text in a fresh process once registered (cold start);
and, in one process, throughput of ``zoo.load(...).embed`` against
sentence-transformers' own ``encode`` on the same folder and texts (ratio, so
overhead of the registry/store path shows up as < 1.0).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ZOO = [sys.executable, "-m", "zoo.cli"]


def timed(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - t


def texts(n: int) -> list[str]:
    base = ["A man is eating food.", "The quick brown fox jumps over the lazy dog near the river bank.",
            "Embedding models turn sentences into vectors so that similar meanings end up close together, "
            "which is what semantic search and retrieval-augmented generation rely on.",
            "Short.", "Der Hund spielt im Garten mit einem roten Ball."]
    return [f"{base[i % len(base)]} #{i}" for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ}
        results["help_s"] = statistics.median(timed([*ZOO, "--help"], env) for _ in range(args.rounds))
        firsts = []
        for i in range(args.rounds):
            env_i = {**env, "ZOO_HOME": str(Path(tmp) / f"first{i}")}
            firsts.append(timed([*ZOO, "embed", "hello"], env_i))
        results["first_embed_with_registration_s"] = statistics.median(firsts)
        env_w = {**env, "ZOO_HOME": str(Path(tmp) / "first0")}
        results["cold_embed_one_text_s"] = statistics.median(
            timed([*ZOO, "embed", "hello"], env_w) for _ in range(args.rounds))

        import numpy as np

        import zoo
        from sentence_transformers import SentenceTransformer

        corpus = texts(args.texts)
        m = zoo.load(home=str(Path(tmp) / "first0"), cache=False)
        st = SentenceTransformer(m.info["path"], device="cpu")
        m.embed(corpus[:64]), st.encode(corpus[:64])  # warm up both
        zoo_t, st_t = [], []
        for _ in range(args.rounds):
            t = time.perf_counter(); a = m.embed(corpus, batch_size=32); zoo_t.append(time.perf_counter() - t)
            t = time.perf_counter(); b = st.encode(corpus, batch_size=32); st_t.append(time.perf_counter() - t)
        results["st_torch_fp32_sent_per_s"] = args.texts / statistics.median(st_t)
        results["zoo_torch_fp32_sent_per_s"] = args.texts / statistics.median(zoo_t)
        results["zoo_vs_st_ratio"] = results["zoo_torch_fp32_sent_per_s"] / results["st_torch_fp32_sent_per_s"]
        results["min_cosine_zoo_vs_st"] = float(((a * b).sum(1) / np.linalg.norm(a, axis=1)
                                                 / np.linalg.norm(b, axis=1)).min())

    rows = [("`zoo --help`", f"{results['help_s']:.3f} s"),
            ("first `zoo embed \"hello\"` in an empty home (registers the default model)",
             f"{results['first_embed_with_registration_s']:.2f} s"),
            ("`zoo embed \"hello\"`, fresh process, model registered", f"{results['cold_embed_one_text_s']:.2f} s"),
            (f"sentence-transformers `encode`, torch fp32, {args.texts} texts, bs 32",
             f"{results['st_torch_fp32_sent_per_s']:.1f} sent/s"),
            ("`zoo.load().embed`, torch-fp32 artifact, same texts",
             f"{results['zoo_torch_fp32_sent_per_s']:.1f} sent/s (ratio {results['zoo_vs_st_ratio']:.2f}, "
             f"min cos {results['min_cosine_zoo_vs_st']:.6f})")]
    print("| measurement | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
