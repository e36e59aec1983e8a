"""A dataset job, four ways, on one machine: in-process ``embed``, ``zoo embed-dataset --engine
local``, and ``--engine ray`` with 1 and 2 workers.

    .venv/bin/python scripts/bench_dataset.py [--model all-minilm-l6-v2] [--texts 20000] [--artifact A]

The same mixed-length texts (the bundled corpus, ``benchmark_texts``) in one Parquet file, the same
artifact (default: the one selected here), the vector cache off, each way in a fresh process.
Reported per way: wall time; start-up (wall minus the time workers spent embedding and writing:
imports, model load, for Ray also ``ray.init``, the actor pool and scheduling); rows/s over the
wall time and over the busiest worker's embedding time; peak RSS (VmHWM) of each process that held
a model (for Ray, the workers). Writes ``dataset.json`` and ``dataset.md``
under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

IN_PROCESS = r"""
import json, sys, time, warnings
t0 = time.perf_counter()
import pyarrow.parquet as pq, zoo
from zoo.datasets.worker import peak_rss_mb
from zoo.engine.model import TruncationWarning
warnings.simplefilter("ignore", TruncationWarning)
texts = pq.read_table(sys.argv[1]).column("text").to_pylist()
m = zoo.load(sys.argv[2], artifact=sys.argv[3], cache=False)
t1 = time.perf_counter()
v = m.embed(texts, show_progress=False)
t2 = time.perf_counter()
print(json.dumps({"busy_s": t2 - t1, "rows": len(v), "rss": {"in-process": peak_rss_mb()}}))
"""


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--texts", type=int, default=20_000)
    ap.add_argument("--artifact", default=None, help="default: the artifact selected on this machine")
    ap.add_argument("--shard-rows", type=int, default=2_500)
    ap.add_argument("--out", default="bench-results")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    import pyarrow as pa
    import pyarrow.parquet as pq

    from zoo.api import choose
    from zoo.conversion.corpora import benchmark_texts
    from zoo.registry.catalog import DEFAULT_MODEL, open_registry

    name = args.model or DEFAULT_MODEL
    texts = benchmark_texts(args.texts)
    src = out / "dataset-input.parquet"
    pq.write_table(pa.table({"text": texts}), src)
    reg = open_registry()
    artifact = args.artifact or choose(reg, name)[3].chosen.target
    zoo_cli = [sys.executable, "-m", "zoo.cli"]
    ways = [("in-process embed", [sys.executable, "-c", IN_PROCESS, str(src), name, artifact], None)]
    for label, extra in (("embed-dataset --engine local", []),
                         ("embed-dataset --engine ray, 1 worker", ["--engine", "ray", "--workers", "1"]),
                         ("embed-dataset --engine ray, 2 workers", ["--engine", "ray", "--workers", "2"])):
        target = out / f"dataset-{len(extra)}-{extra[-1] if extra else 'local'}"
        if target.exists():
            import shutil

            shutil.rmtree(target)
        ways.append((label, [*zoo_cli, "embed-dataset", str(src), str(target), "-m", name, "--artifact", artifact,
                             "--no-cache", "--shard-rows", str(args.shard_rows), "--json", *extra], target))
    rows = []
    for label, cmd, _target in ways:
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            sys.exit(f"{label} failed:\n{done.stderr[-3000:]}")
        report = json.loads(done.stdout.strip().splitlines()[-1] if label.startswith("in-process") else done.stdout)
        job_s = report["busy_s"] if "busy_s" in report else max(report["busy"].values())
        rss = report.get("rss") or report.get("workers") or {}
        rows.append({"way": label, "rows": report["rows"], "wall_s": round(wall, 2), "start_s": round(wall - job_s, 2),
                     "rows_per_s_wall": round(report["rows"] / wall, 1), "rows_per_s_busy": round(report["rows"] / job_s, 1),
                     "peak_rss_mb": sorted(round(v) for v in rss.values())})
        print(f"{label}: {rows[-1]}", flush=True)
    result = {"model": name, "artifact": artifact, "texts": len(texts), "unique": len(set(texts)),
              "shard_rows": args.shard_rows, "cpu": _cpu(), "cores": os.cpu_count(), "ways": rows}
    (out / "dataset.json").write_text(json.dumps(result, indent=2))
    lines = [f"{name}, artifact {artifact}, {len(texts)} mixed texts, shards of {args.shard_rows} rows, cache off; "
             f"{result['cpu']}, {result['cores']} cores", "",
             "| way | wall s | start-up s | rows/s (wall) | rows/s (busiest worker) | peak RSS MB per process |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['way']} | {r['wall_s']} | {r['start_s']} | {r['rows_per_s_wall']} | {r['rows_per_s_busy']} | "
              f"{', '.join(map(str, r['peak_rss_mb']))} |" for r in rows]
    (out / "dataset.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
