"""Cold start of `zoo embed "one text"`: the median of fresh processes, on this machine.

    ZOO_HOME=<home after zoo optimize> .venv/bin/python scripts/bench_coldstart.py [--runs 7]

Each row is the median wall time of ``--runs`` fresh processes (after one warm-up run that fills
the OS page cache, the compiled-model entry and the load plan), for the text not in the vector
cache (``--no-cache``) and the text already cached, under three settings, each one step on from
the one before:

1. compiled-model cache off, load plans off (``ZOO_COMPILE_CACHE=off ZOO_LOAD_PLANS=off``): every
   process compiles and opens the registry;
2. compiled-model cache on, load plans off: every process opens the registry;
3. both on (the default): an unchanged registry is not opened (``zoo.selection.plans``).

Writes ``coldstart.json`` and ``coldstart.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def timed(args: list[str], env: dict) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "zoo.cli", *args], env=env, check=True, capture_output=True, timeout=300)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--out", default="bench-results")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from zoo.core.hardware import detect
    from zoo.registry.catalog import DEFAULT_MODEL

    name = args.model or DEFAULT_MODEL
    text = "zoo makes embeddings fast"
    rows = []
    for compile_cache, plans in (("off", "off"), ("on", "off"), ("on", "on")):
        env = {**os.environ, "ZOO_COMPILE_CACHE": compile_cache, "ZOO_LOAD_PLANS": plans}
        for cached in (False, True):
            argv = ["embed", "-m", name, text] + ([] if cached else ["--no-cache"])
            if cached:
                timed(["embed", "-m", name, text], env)  # put the text in the vector cache
            timed(argv, env)  # warm-up: page cache, and the compiled-model entry when on
            times = [timed(argv, env) for _ in range(args.runs)]
            rows.append({"compile_cache": compile_cache, "load_plans": plans, "text_cached": cached,
                         "median_s": statistics.median(times),
                         "min_s": min(times), "max_s": max(times), "runs": args.runs})
            print(rows[-1], flush=True)
    hw = detect()
    artifact = json.loads(subprocess.run([sys.executable, "-m", "zoo.cli", "select", name, "--json"],
                                         capture_output=True, text=True, check=True).stdout)["artifact"]
    results = {"machine": f"{hw.cpu_model} ({hw.physical_cores} cores)", "model": name, "artifact": artifact,
               "rows": rows}
    (out / "coldstart.json").write_text(json.dumps(results, indent=2))
    md = (f"CPU: {results['machine']}; {name} served by {artifact}; median of {args.runs} fresh processes\n\n"
          "| compiled-model cache | load plans | text in the vector cache | median s | min s | max s |\n"
          "|---|---|---|---|---|---|\n"
          + "".join(f"| {r['compile_cache']} | {r['load_plans']} | {'yes' if r['text_cached'] else 'no'} | "
                    f"{r['median_s']:.2f} | "
                    f"{r['min_s']:.2f} | {r['max_s']:.2f} |\n" for r in rows))
    (out / "coldstart.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
