"""Dataset output: a folder of Parquet shards, each stamped with the job's identity.

Every file's key-value metadata holds ``zoo.*`` keys: model, revision, artifact target and store
digest, runtime precision, prompt, normalize, dimensions, zoo version, the input's digest and the
run id. Whoever holds one file knows exactly what produced its vectors. ``_zoo_job.json`` in the
folder holds the same identity, so a folder is never filled by two different jobs.

Each shard is written under a temporary name and renamed, so a killed job leaves whole shards and
garbage that ``--resume`` clears; a shard counts as done when its file exists, carries this job's
identity and covers all of its input rows.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import Optional

from ..errors import InvalidInput, require
from ..store.blobs import fsync_dir

__all__ = ["JOB_FILE", "REJECTS", "Output", "IDENTITY_KEYS"]

JOB_FILE = "_zoo_job.json"
REJECTS = "_rejects"  # underscored: pyarrow and Spark skip it when reading the folder as a dataset
TMP_PREFIX = ".tmp-"
# What makes two runs the same job (a resumed run may continue the other's output). The runtime
# precision is stamped on each file by the worker that wrote it (a pinned artifact may run in
# another precision on another node's hardware), so it is recorded, not compared.
IDENTITY_KEYS = ("model", "revision", "artifact", "store_digest", "per_node_best", "prompt", "normalize",
                 "dimensions", "column", "id_column", "input_digest", "zoo_version", "precision", "ranges_digest")
# keys a job written before they existed lacks: read as their default, so such a job still resumes
DEFAULTS = {"precision": "float32"}
# Per-node-best runs serve what each node picks: the artifact fields vary by file, not by job
PER_NODE_KEYS = ("artifact", "store_digest")


def job_keys(identity: dict) -> dict:
    keys = [k for k in IDENTITY_KEYS if not (identity.get("per_node_best") and k in PER_NODE_KEYS)]
    return {k: identity.get(k, DEFAULTS.get(k)) for k in keys}


def metadata_of(identity: dict, **extra) -> dict[bytes, bytes]:
    """Parquet key-value metadata: every value a JSON scalar under ``zoo.<key>``."""
    return {f"zoo.{k}".encode(): json.dumps(v).encode() for k, v in {**identity, **extra}.items()}


def identity_from_metadata(meta: Optional[dict[bytes, bytes]]) -> dict:
    out = {}
    for k, v in (meta or {}).items():
        if k.startswith(b"zoo."):
            with contextlib.suppress(ValueError):
                out[k.decode()[4:]] = json.loads(v)
    return out


class Output:
    def __init__(self, folder: str | Path):
        self.root = Path(folder).expanduser()

    def job(self) -> Optional[dict]:
        try:
            return json.loads((self.root / JOB_FILE).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            raise InvalidInput(f"{self.root}/{JOB_FILE} is unreadable; this folder's job is unknown, so choose "
                               "another output folder") from None

    def claim(self, identity: dict, run_id: str, shards: int, resume: bool, shard_rows: Optional[int] = None) -> str:
        """Make the folder this job's, or refuse; returns the run id (a resumed job keeps its own)."""
        if self.root.exists() and not self.root.is_dir():
            raise InvalidInput(f"output {self.root} is a file; give a folder")
        existing = self.job()
        others = [p.name for p in self.root.iterdir()] if self.root.is_dir() else []
        if existing is None:
            if others:
                raise InvalidInput(f"output folder {self.root} holds files zoo did not write ({others[0]}, ...); "
                                   "choose an empty or new folder")
        elif job_keys(existing["identity"]) != job_keys(identity):
            theirs = existing["identity"]
            diff = [k for k, v in job_keys(identity).items() if job_keys(theirs).get(k) != v]
            raise InvalidInput(f"output folder {self.root} holds another job's files (model {theirs.get('model')}, "
                               f"artifact {theirs.get('artifact')}; differs in {', '.join(diff)}); choose another "
                               "folder, or remove it to start over")
        elif not resume:
            raise InvalidInput(f"output folder {self.root} already holds this job's files (run {existing['run_id']}); "
                               "pass --resume to finish it, or choose another folder")
        else:
            if existing.get("shards") not in (None, shards):
                raise InvalidInput(f"output folder {self.root} was planned as {existing['shards']} shards, this run "
                                   f"as {shards}; resume with the job's original --shard-rows")
            run_id = existing["run_id"]
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / REJECTS).mkdir(exist_ok=True)
        except OSError as exc:
            raise InvalidInput(f"cannot create output folder {self.root}: {exc.strerror}") from None
        self.sweep()  # what a killed job was writing
        self._write_json(JOB_FILE, {"identity": identity, "run_id": run_id, "shards": shards, "shard_rows": shard_rows})
        return run_id

    def sweep(self) -> None:
        """Remove staged files no writer finishes any more: at the start of a job, and after the last
        shard (a worker killed mid-shard left its staging behind before Ray retried the shard)."""
        for folder in (self.root, self.root / REJECTS):
            for stale in folder.glob(f"{TMP_PREFIX}*"):
                stale.unlink(missing_ok=True)

    def done(self, shard, identity: dict) -> bool:
        """Whether ``shard``'s file is whole and this job's (the resume check)."""
        pq = require("pyarrow.parquet", "dataset")
        try:
            meta = pq.read_metadata(self.root / shard.name)
        except (OSError, ValueError):
            return False
        found = identity_from_metadata(meta.metadata)
        return job_keys(found) == job_keys(identity) and found.get("rows_in") == shard.rows \
            and found.get("shard") == shard.index

    def write_shard(self, shard, table, metadata: dict[bytes, bytes], rejects=None, before_rename=None) -> None:
        """Write the rejects (if any), then the shard, each by rename; the shard file last, as it marks done."""
        pq = require("pyarrow.parquet", "dataset")
        if rejects is not None and rejects.num_rows:
            self._write_parquet(pq, rejects.replace_schema_metadata(metadata), self.root / REJECTS / shard.name)
        self._write_parquet(pq, table.replace_schema_metadata(metadata), self.root / shard.name, before_rename)

    def _write_parquet(self, pq, table, final: Path, before_rename=None) -> None:
        tmp = final.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}-{final.name}"
        try:
            with open(tmp, "wb") as f:
                pq.write_table(table, f)
                f.flush()
                os.fsync(f.fileno())
            if before_rename is not None:
                before_rename()
            os.replace(tmp, final)
            fsync_dir(final.parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _write_json(self, name: str, data: dict) -> None:
        final = self.root / name
        tmp = self.root / f"{TMP_PREFIX}{uuid.uuid4().hex}-{name}"
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        fsync_dir(self.root)
