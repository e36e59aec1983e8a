"""A dataset job, driven from one process: ``zoo embed-dataset`` and ``zoo.embed_dataset``.

The driver resolves the artifact once and pins its store digest, plans the shards, claims the
output folder, records the run in the registry, then hands shards to workers: the in-process
worker (``local``) or an actor pool on Ray (``ray``). It never sees a vector; workers write
their shards and report a few numbers each, which feed the progress bar and the run's row.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from ..engine.precision import RANGED, check_precision
from ..errors import InvalidInput, ZooError, disk_full
from ..registry.catalog import DEFAULT_MODEL
from .inputs import plan_input
from .output import Output

__all__ = ["embed_dataset", "JobResult", "ENGINES"]

ENGINES = ("local", "ray")


@dataclass
class JobResult:
    run_id: str
    output: str
    rows: int  # vectors written, over all shards (this run and any earlier one it resumed)
    rejected: int
    shards: int
    shards_skipped: int  # done before this run (--resume)
    seconds: float
    rows_per_s: float  # rows embedded by this run / its wall time
    cache_hits: int
    truncated: int
    identity: dict
    workers: dict[str, float] = field(default_factory=dict)  # worker -> peak RSS MB
    busy: dict[str, float] = field(default_factory=dict)  # worker -> seconds spent on its shards
    digests: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _check_int(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInput(f"{name} must be an integer >= {minimum}, got {value!r}")


def embed_dataset(input: str | Path, output: str | Path, *, model: str = DEFAULT_MODEL, column: str = "text",
                  id_column: Optional[str] = None, artifact: Optional[str | int] = None,
                  prompt_name: Optional[str] = None, prompt: Optional[str] = None,
                  dimensions: Optional[int] = None, normalize: Optional[bool] = None, batch_rows: int = 1024,
                  shard_rows: int = 10_000, engine: str = "local", ray_address: Optional[str] = None,
                  workers: Optional[int] = None, num_gpus: float = 0, resume: bool = False,
                  skip_invalid: bool = False, per_node_best: bool = False, cache: bool = True,
                  device: Optional[str] = None, objective: str = "throughput", home: Optional[str] = None,
                  registry_url: Optional[str] = None, store_url: Optional[str] = None,
                  progress: Optional[bool] = None, precision: str = "float32") -> JobResult:
    """Embed the ``column`` of a Parquet/JSONL/CSV/text dataset into a folder of Parquet shards.

    Each output file holds the id column (``id_column``, else ``id``: the global row index),
    ``embedding`` (fixed-size list of float32) and ``truncated``, and carries the job's identity in
    its key-value metadata. ``precision`` (float16, int8, uint8, binary, ubinary) writes compact
    vectors from the artifact's stored ranges (``zoo.datasets.worker.vector_column`` has the column
    types); the ranges' digest is stamped on every file. ``resume`` finishes a killed job in the same folder, redoing only
    unfinished shards. ``engine="ray"`` spreads the shards over ``workers`` Ray actors (at
    ``ray_address``, else a local Ray started for the job), every one serving the artifact the
    driver pinned; ``per_node_best`` lets each pick its own and stamps rows with its digest.
    """
    from importlib.metadata import version

    from ..selection.loader import load

    if engine not in ENGINES:
        raise InvalidInput(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    for name, value in (("batch_rows", batch_rows), ("shard_rows", shard_rows)):
        _check_int(name, value)
    if workers is not None:
        _check_int("workers", workers)
    if engine == "local" and (workers not in (None, 1) or ray_address or num_gpus or per_node_best):
        raise InvalidInput("--workers, --ray-address, --num-gpus and --per-node-best need --engine ray")
    if per_node_best and artifact is not None:
        raise InvalidInput("--per-node-best lets each node pick its artifact; it cannot be combined with --artifact")
    if not isinstance(column, str) or not column:
        raise InvalidInput("column must be a column name")

    if engine == "ray":
        from ..errors import require
        from .ray_engine import check_address

        require("ray", "ray")
        if ray_address:
            check_address(ray_address)  # before any row or file is written
    from ..registry.catalog import open_registry
    from ..registry.runs import start_run, update_run

    reg = open_registry(home, registry_url)
    # the driver's model: resolves and pins the artifact, checks prompt and dimensions, and is the
    # local engine's worker; lazy, so a Ray driver opens no runtime where the artifact was measured
    m = load(model, artifact=artifact, device=device, objective=objective, registry=reg, store_url=store_url,
             cache=cache, lazy_runtime=engine == "ray")
    if m.kind != "embedding":  # refused before any shard is planned or written
        from ..engine.kinds import refuse_kind

        raise refuse_kind(m.name, m.kind, ("embedding",), "embed-dataset")
    effective_prompt = m.resolve_prompt(prompt, prompt_name)
    dims = m._dimensions(dimensions)
    precision = check_precision(precision)
    ranges_digest = None
    if precision in RANGED:  # computed (once) and stored before any worker starts, so every worker applies them
        ranges = m.ranges(dimensions=dims, normalize=normalize)
        ranges_digest = hashlib.sha256(ranges.astype("<f4").tobytes()).hexdigest()
    if resume:
        shard_rows = _original_shard_rows(Output(output), shard_rows)
    plan = plan_input(input, column, id_column, shard_rows, skip_invalid)
    info = m.info
    identity = {
        "model": m.name, "revision": info["revision"], "artifact": None if per_node_best else info["artifact"],
        "store_digest": None if per_node_best else info["store_digest"],
        "runtime_precision": None if per_node_best else info["runtime_precision"], "per_node_best": per_node_best,
        "prompt": effective_prompt, "normalize": m.spec.normalize if normalize is None else bool(normalize),
        "dimensions": dims, "column": column, "id_column": id_column, "input_digest": plan.digest,
        "zoo_version": version("zoo"), "precision": precision, "ranges_digest": ranges_digest,
    }
    out = Output(output)
    run_id = out.claim(identity, run_id=_new_id(), shards=len(plan.shards), resume=resume, shard_rows=shard_rows)
    done = [s for s in plan.shards if out.done(s, identity)] if resume else []
    todo = [s for s in plan.shards if s not in done]
    params = {"engine": engine, "workers": workers, "objective": objective, "batch_rows": batch_rows,
              "shard_rows": shard_rows, "prompt_name": prompt_name, "skip_invalid": skip_invalid,
              "per_node_best": per_node_best, "ray_address": ray_address, "num_gpus": num_gpus}
    run_id = start_run(reg, run_id, model=m.name, revision=info["revision"], artifact_target=identity["artifact"],
                       store_digest=identity["store_digest"], runtime_precision=identity["runtime_precision"],
                       input_path=str(Path(plan.path).resolve()), input_digest=plan.digest,
                       output_path=str(out.root.resolve()), rows=plan.rows, shards_total=len(plan.shards),
                       shards_done=len(done), params=params)
    identity["run_id"] = run_id
    spec = {
        "model": m.name, "artifact_id": info["artifact_id"], "per_node_best": per_node_best, "device": device,
        "objective": objective, "home": str(reg.home.root), "registry_url": reg.home.registry_url,
        "store_url": store_url, "cache": cache, "identity": identity, "output": str(out.root.resolve()),
        "skip_invalid": skip_invalid, "batch_rows": batch_rows,
        "embed_options": {"prompt": effective_prompt, "normalize": normalize, "dimensions": dimensions,
                          "precision": precision},
    }
    if per_node_best:
        print("warning: --per-node-best: each node serves its own fastest artifact, so vectors of different "
              "artifacts may land in one output; every row carries the digest that made it (artifact_digest)",
              file=sys.stderr)
    tally = _Tally(len(plan.shards), len(done), sum(s.rows for s in todo), progress)
    started = time.perf_counter()
    try:
        if engine == "local":
            from .worker import ShardEmbedder

            worker = ShardEmbedder(spec, model=m)
            for shard in todo:
                tally.add(worker.run(shard), reg, run_id)
        else:
            from .ray_engine import run_shards

            run_shards(spec, todo, address=ray_address, workers=workers, num_gpus=num_gpus,
                       on_result=lambda r: tally.add(r, reg, run_id))
    except BaseException as exc:
        tally.close()
        interrupted = isinstance(exc, (KeyboardInterrupt, SystemExit))
        finished = len(done) + tally.shards
        full = not interrupted and disk_full(exc)
        if full:  # what the failed write staged goes first: recording the failure may need the room
            out.sweep()
            message = (f"the disk is full: {finished} of {len(plan.shards)} shards are written to {out.root}; "
                       "free space and rerun with --resume to write the rest")
        else:
            message = str(exc) if isinstance(exc, ZooError) else type(exc).__name__
        try:
            update_run(reg, run_id, status="interrupted" if interrupted else "failed", error=message,
                       shards_done=finished, timings=tally.timings(time.perf_counter() - started))
        except ZooError:
            if not full:
                raise
        if full:
            raise ZooError(message) from None
        raise
    tally.close()
    out.sweep()
    seconds = time.perf_counter() - started
    changed = plan.changed()
    if changed:  # the vectors are of bytes the job no longer has a digest of: not a success
        message = f"{changed}; its vectors may not match it. Rerun the job on the final input"
        update_run(reg, run_id, status="failed", error=message, shards_done=len(done) + tally.shards,
                   timings=tally.timings(seconds))
        raise InvalidInput(message)
    earlier = [_shard_meta(out, s) for s in done]  # what the resumed run's finished shards hold
    written = tally.rows + sum(m["rows"] for m in earlier)
    rejected = tally.rejected + sum(int(m.get("rejected", 0)) for m in earlier)
    update_run(reg, run_id, status="succeeded", shards_done=len(plan.shards), timings=tally.timings(seconds))
    return JobResult(run_id=run_id, output=str(out.root), rows=written, rejected=rejected, shards=len(plan.shards),
                     shards_skipped=len(done), seconds=seconds, rows_per_s=tally.rows / seconds if seconds else 0.0,
                     cache_hits=tally.cache_hits, truncated=tally.truncated, identity=identity,
                     workers=dict(tally.workers), busy={k: round(v, 3) for k, v in tally.busy.items()},
                     digests=sorted(tally.digests or ([identity["store_digest"]] if identity["store_digest"] else [])))


def _original_shard_rows(out: Output, asked: int) -> int:
    """A resumed job's shards are the ones it was planned with: the job file's shard_rows wins over another
    --shard-rows (which cut the same rows into other shards and once doubled 2,100 rows of 3,000)."""
    existing = out.job()
    if existing is None:
        return asked
    original = existing.get("shard_rows")
    if original is None:  # a job file of an older zoo: only the count can be compared
        return asked
    if original != asked:
        print(f"note: resuming with the job's own --shard-rows {original} (not {asked})", file=sys.stderr)
    return int(original)


def _new_id() -> str:
    import uuid

    return str(uuid.uuid4())


def _shard_meta(out: Output, shard) -> dict:
    import pyarrow.parquet as pq

    from .output import identity_from_metadata

    meta = pq.read_metadata(out.root / shard.name)
    return {"rows": meta.num_rows, **identity_from_metadata(meta.metadata)}


class _Tally:
    """Adds up the workers' per-shard reports: the progress bar, the run's row, the result."""

    def __init__(self, shards: int, done: int, rows_todo: int, progress: Optional[bool]):
        self.total, self.shards = shards, 0
        self.done_before = done
        self.rows = self.rejected = self.cache_hits = self.truncated = 0
        self.workers: dict[str, float] = {}
        self.busy: dict[str, float] = {}
        self.digests: set[str] = set()
        show = sys.stderr.isatty() if progress is None else progress
        self.bar = None
        if show and rows_todo:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=rows_todo, unit="row", desc="embed-dataset", file=sys.stderr)
            self.bar.set_postfix_str(f"shards {done}/{shards}")

    def add(self, report: dict, reg, run_id: str) -> None:
        from ..registry.runs import update_run

        self.shards += 1
        self.rows += report["rows"]
        self.rejected += report["rejected"]
        self.cache_hits += report["cache_hits"]
        self.truncated += report["truncated"]
        self.busy[report["worker"]] = self.busy.get(report["worker"], 0.0) + report["seconds"]
        if report.get("peak_rss_mb") is not None:
            self.workers[report["worker"]] = max(self.workers.get(report["worker"], 0.0), report["peak_rss_mb"])
        if report.get("store_digest"):
            self.digests.add(report["store_digest"])
        if self.bar is not None:
            self.bar.update(report["rows"] + report["rejected"])
            self.bar.set_postfix_str(f"shards {self.done_before + self.shards}/{self.total}")
        update_run(reg, run_id, shards_done=self.done_before + self.shards)

    def timings(self, seconds: float) -> dict:
        return {"seconds": round(seconds, 3), "rows": self.rows, "rows_per_s": round(self.rows / seconds, 1) if seconds else 0,
                "rejected": self.rejected, "cache_hits": self.cache_hits, "truncated": self.truncated,
                "peak_rss_mb_by_worker": {k: round(v, 1) for k, v in self.workers.items()},
                "busy_s_by_worker": {k: round(v, 3) for k, v in self.busy.items()},
                "digests": sorted(self.digests)}

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
