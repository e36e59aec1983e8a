"""One worker of a dataset job: loads its model once, then embeds and writes whole shards.

The same class runs in-process (``--engine local``) and as a Ray actor (``--engine ray``), so
both engines share every line that touches texts, vectors and files. The worker writes its shards
itself; only a few numbers per shard go back to the driver, so vectors never pile up in Ray's
object store or pass through the driver.

A job pins one artifact by its store digest: the worker loads exactly that one and refuses to run
if its registry resolves the pin to other bytes. ``--per-node-best`` lifts the pin and stamps every
row with the digest that made it.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from typing import Optional

from ..errors import ZooError, require
from .inputs import Shard, ShardReader, invalid_text, refuse_invalid
from .output import Output, metadata_of

__all__ = ["ShardEmbedder", "check_pinned", "embed_texts", "vector_column", "peak_rss_mb", "FAULT_ENV"]

# Fault injection for the kill tests: "<marker file>:<N>" makes the first process to get here after
# writing N shards SIGKILL itself mid-shard (its file staged, not renamed), once per marker file.
FAULT_ENV = "ZOO_DATASET_FAULT"


def peak_rss_mb() -> Optional[float]:
    """This process's peak resident set (VmHWM), in MB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def check_pinned(model, digest: str) -> None:
    """Refuse to serve a job whose pinned artifact this worker's registry resolves to other bytes."""
    if model.info.get("store_digest") != digest:
        raise ZooError(f"this worker's registry serves {model.name} {model.info.get('artifact')} as "
                       f"{str(model.info.get('store_digest'))[:12]}, but the job pinned {digest[:12]}; give every "
                       "worker the driver's registry")


def embed_texts(model, texts: list[str], options: dict, step: int):
    """(vectors, truncated flags, cache hits) of ``texts``, ``step`` rows per ``embed`` call (bounding a
    worker's memory); truncation is reported per row, not warned about. The vectors are float32, or the
    ``precision`` in ``options`` (from the artifact's stored ranges, as every path serves them)."""
    import numpy as np

    from ..engine.model import TruncationWarning
    from ..engine.precision import output_dtype

    parts, flags, hits = [], np.zeros(len(texts), dtype=bool), 0
    for start in range(0, len(texts), step):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TruncationWarning)
            out = model.embed(texts[start:start + step], show_progress=False, **options)
        flags[[start + i for i in out.truncated]] = True
        parts.append(np.asarray(out))
        hits += out.cache_hits
    if parts:
        return np.concatenate(parts), flags.tolist(), hits
    precision = options.get("precision") or "float32"
    width = options.get("dimensions") or model.dim
    width = -(-width // 8) if precision in ("binary", "ubinary") else width
    return np.empty((0, width), output_dtype(precision)), flags.tolist(), hits


def vector_column(vectors, precision: str = "float32"):
    """Vectors as the output's ``embedding`` column: Arrow's ``fixed_size_list`` of the rows' type
    (float32, float16, int8, uint8; binary is int8 as sentence-transformers gives it), or, for
    ubinary, ``fixed_size_binary`` of the packed bits (what pgvector's ``bit`` and Milvus's
    ``BINARY_VECTOR`` take)."""
    pa = require("pyarrow", "dataset")
    if precision == "ubinary":
        return pa.FixedSizeBinaryArray.from_buffers(pa.binary(vectors.shape[1]), len(vectors),
                                                    [None, pa.py_buffer(vectors.tobytes())])
    kind = {"float32": pa.float32(), "float16": pa.float16(), "int8": pa.int8(), "uint8": pa.uint8(),
            "binary": pa.int8()}[precision]
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), kind), vectors.shape[1])


class ShardEmbedder:
    def __init__(self, spec: dict, model=None):
        """``spec``: the job as plain data (see ``zoo.datasets.job``); ``model``: an already loaded one."""
        self.spec = spec
        if model is None:
            from ..selection.loader import load

            pinned = spec["artifact_id"] if not spec["per_node_best"] else None
            model = load(spec["model"], artifact=pinned, device=spec.get("device"), objective=spec["objective"],
                         home=spec.get("home"), registry_url=spec.get("registry_url"),
                         store_url=spec.get("store_url"), cache=spec["cache"], runtime_options=spec.get("runtime_options"))
        if not spec["per_node_best"]:
            check_pinned(model, spec["identity"]["store_digest"])
        self.model = model
        self.reader = ShardReader(spec["identity"]["column"], spec["identity"]["id_column"])
        self.output = Output(spec["output"])
        self.written = 0
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def identity(self) -> dict:
        """The job's identity as this worker serves it: the precision its runtime computes in, and its
        own artifact under --per-node-best."""
        info = self.model.info
        ident = {**self.spec["identity"], "runtime_precision": info.get("runtime_precision")}
        if self.spec["per_node_best"]:
            ident.update(artifact=info.get("artifact"), store_digest=info.get("store_digest"))
        return ident

    def __call__(self, batch):
        """Ray's ``map_batches`` entry: a batch of shard descriptions in, one summary row per shard out."""
        pa = require("pyarrow", "dataset")
        rows = [self.run(Shard(**d)) for d in batch.to_pylist()]
        return pa.Table.from_pylist(rows)

    def run(self, shard: Shard) -> dict:
        pa = require("pyarrow", "dataset")
        started = time.perf_counter()
        ident = self.identity()
        col = ident["column"]
        texts, ids = self.reader.read(shard)
        good = [i for i, t in enumerate(texts) if isinstance(t, str)]
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad and not self.spec["skip_invalid"]:  # planning checked; the input changed since
            refuse_invalid(shard.file, ids[bad[0]], col, texts[bad[0]])
        vectors, truncated, hits = embed_texts(self.model, [texts[i] for i in good], self.spec["embed_options"],
                                               self.spec["batch_rows"])
        id_name = ident["id_column"] or "id"
        id_type = None if ident["id_column"] else pa.int64()
        columns = {
            id_name: pa.array([ids[i] for i in good], id_type),
            "embedding": vector_column(vectors, self.spec["embed_options"].get("precision") or "float32"),
            "truncated": pa.array(truncated, pa.bool_()),
        }
        if self.spec["per_node_best"]:
            columns["artifact_digest"] = pa.array([ident["store_digest"]] * len(good), pa.string())
        table = pa.table(columns)
        rejects = None
        if bad:
            rejects = pa.table({id_name: pa.array([ids[i] for i in bad], id_type),
                                "reason": pa.array([invalid_text(texts[i]) for i in bad], pa.string())})
        meta = metadata_of(ident, shard=shard.index, rows_in=shard.rows, rejected=len(bad),
                           source_file=os.path.basename(shard.file))
        self.output.write_shard(shard, table, meta, rejects, before_rename=self._fault)
        self.written += 1
        return {"shard": shard.index, "rows": len(good), "rejected": len(bad), "cache_hits": hits,
                "truncated": int(sum(truncated)), "seconds": time.perf_counter() - started, "worker": self.worker,
                "peak_rss_mb": peak_rss_mb(), "store_digest": ident["store_digest"], "artifact": ident["artifact"]}

    def _fault(self) -> None:
        fault = os.environ.get(FAULT_ENV)
        if not fault:
            return
        marker, _, after = fault.rpartition(":")
        if self.written >= int(after) and not os.path.exists(marker):
            open(marker, "w").close()
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
