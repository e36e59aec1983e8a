"""zoo against what a user would otherwise run: sentence-transformers torch fp32, side by side.

    .venv/bin/python scripts/bench.py [--texts 1000] [--out bench-results]

In one run, on one shuffled mixed-length corpus from the bundled pool:
1. ``zoo optimize all-minilm-l6-v2`` in a fresh home (convert the candidates for this
   machine, gate them, benchmark them, select);
2. sentence-transformers ``encode`` of the torch checkpoint at batch 32: the reference;
3. every ready artifact through zoo at its measured best batch size (median of 3 rounds),
   as a throughput ratio to the reference, with its recorded fidelity;
4. the cold start of ``zoo embed "..."`` in a fresh process (median of 3), for zoo's
   selected artifact and for each artifact forced with ``--artifact``.

Writes ``results.json``, ``table.md`` (the README table) and ``throughput_vs_fidelity.png``
under ``--out``. The PNG needs matplotlib: pip install -c constraints.txt -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def cold_embed(home: str, name: str, artifact: str | None, rounds: int) -> float:
    from zoo.selection.benchmark import median_time

    cmd = [sys.executable, "-m", "zoo.cli", "embed", "--no-cache", "-m", name, "cold start check"] + (
        ["--artifact", artifact] if artifact else [])
    env = {**os.environ, "ZOO_HOME": home}

    def once():
        subprocess.run(cmd, env=env, check=True, capture_output=True)

    return median_time(once, rounds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="bench-results")
    ap.add_argument("--model", help="Model name (default: the embedded all-minilm-l6-v2).")
    ap.add_argument("--source", help="Register --model from this source first (a local folder, hf://, pkg://).")
    ap.add_argument("--keep-home", help="Optimize into this new directory and keep it (for bench_engine.py and "
                                        "bench_serve.py); default: a temporary home.")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import zoo
    from sentence_transformers import SentenceTransformer

    from zoo.selection.benchmark import median_time
    from zoo.conversion.corpora import benchmark_texts
    from zoo.core.hardware import detect
    from zoo.selection.optimize import optimize
    from zoo.registry.catalog import DEFAULT_MODEL

    hw = detect()
    texts = benchmark_texts(args.texts)
    if args.keep_home and Path(args.keep_home).exists() and any(Path(args.keep_home).iterdir()):
        raise SystemExit(f"--keep-home {args.keep_home} is not empty; the benchmark needs a fresh home")
    with tempfile.TemporaryDirectory() as tmp:
        home = args.keep_home or str(Path(tmp) / "zoo")
        reg = zoo.open_registry(home)
        name = args.model or DEFAULT_MODEL
        if args.source:
            reg.register(name, args.source)
        t = time.perf_counter()
        report = optimize(reg, name, hardware=hw,
                          progress=lambda step, _f: print(f"  .. {step}", file=sys.stderr))
        optimize_s = time.perf_counter() - t
        revision = reg.resolve(name).revision
        checkpoint = reg.artifact_path(next(a for a in revision.artifacts if a.target == "torch-fp32"))

        device = "cuda" if hw.cuda else "cpu"  # the reference a user would run on this machine
        st = SentenceTransformer(str(checkpoint), device=device)
        st.encode(texts[:64])
        ref = args.texts / median_time(lambda: st.encode(texts, batch_size=32), args.rounds)
        del st

        rows = []
        selected = report.selection.chosen.target
        for a in revision.artifacts:
            if a.status.value != "ready":
                continue
            m = zoo.load(name, artifact=a.id, registry=reg, cache=False)
            m.embed(texts[:64])
            speed = args.texts / median_time(lambda: m.embed(texts), args.rounds)
            fid = a.fidelity or {}
            rows.append({"target": a.target, "selected": a.target == selected, "batch_size": m.default_batch_size,
                         "sent_per_s": speed, "ratio": speed / ref, "runtime": m.info["backend"],
                         "mean_cosine": 1.0 if fid.get("reference") else fid.get("mean_cosine"),
                         "min_cosine": 1.0 if fid.get("reference") else fid.get("min_cosine"),
                         "size_mb": (a.size_bytes or 0) / 1e6,
                         "cold_embed_s": cold_embed(home, name, a.target, args.rounds)})
            del m
        selected_cold = cold_embed(home, name, None, args.rounds)

    rows.sort(key=lambda r: -r["ratio"])
    results = {"machine": hw.as_dict(), "model": name, "texts": args.texts, "reference_device": device,
               "reference_sent_per_s": ref, "optimize_s": optimize_s,
               "selected": selected, "selected_cold_embed_s": selected_cold, "rows": rows}
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    lines = [f"Reference: sentence-transformers `encode`, torch fp32 on {device}, batch 32: **{ref:.0f} sent/s**. "
             f"`zoo optimize` took {optimize_s:.0f} s; it selected **{selected}**; a cold `zoo embed` of one text "
             f"with it takes **{selected_cold:.2f} s**.", "",
             "| artifact | selected | batch | sent/s | vs ST fp32 | mean cos | min cos | MB | cold `zoo embed` s | runtime |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['target']} | {'**yes**' if r['selected'] else ''} | {r['batch_size']} | {r['sent_per_s']:.0f} | "
                     f"{r['ratio']:.2f}x | {r['mean_cosine']:.5f} | {r['min_cosine']:.5f} | {r['size_mb']:.1f} | "
                     f"{r['cold_embed_s']:.2f} | {r['runtime']} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no PNG (pip install -c constraints.txt -e '.[bench]')", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in rows:
        ax.scatter(r["mean_cosine"], r["ratio"], s=60, color="tab:red" if r["selected"] else "tab:blue")
        ax.annotate(r["target"], (r["mean_cosine"], r["ratio"]), textcoords="offset points", xytext=(5, 3), fontsize=8)
    ax.axvline(0.99, color="grey", linestyle="--", linewidth=1)
    ax.text(0.99, ax.get_ylim()[1] * 0.97, " fidelity floor", color="grey", fontsize=8, va="top")
    ax.set_xlabel("mean cosine to torch fp32 (probe set)")
    ax.set_ylabel("throughput / sentence-transformers torch fp32")
    where = hw.gpus[0].name if hw.gpus else f"{hw.cpu_model or hw.arch} ({hw.physical_cores} cores)"
    ax.set_title(f"{name} on {where}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "throughput_vs_fidelity.png", dpi=120)
    print(f"wrote {out}/results.json, table.md, throughput_vs_fidelity.png")


if __name__ == "__main__":
    main()
