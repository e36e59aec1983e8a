"""Conversion jobs for the service: persisted in the registry, run in a worker process.

A request only inserts a ``jobs`` row and starts ``python -m zoo.service.jobs JOB_ID``
in its own session, so a registration (walking, hashing, copying a checkpoint) or a
conversion never blocks or crashes the server, and a server restart does not kill it. The worker writes status, progress and the
outcome into the row. On start the server marks rows whose worker is gone as
``interrupted``; ``retry`` runs them again (a conversion resumes: finished targets
are kept, a half-built one is rebuilt).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from dataclasses import asdict
from typing import Any, Optional

from ..errors import InvalidInput, ModelExists, ZooError
from ..registry.schema import JobStatus

__all__ = ["submit_register", "submit_convert", "job_dict", "get_job", "recover", "retry", "run_job", "JobsBusy",
           "MAX_RUNNING", "MAX_WAITING"]

# Worker processes one host runs at once (each registration or conversion takes a core or more and its own
# memory; eight requests once started eight workers), and jobs that may wait behind them before a
# submission is refused with 429. Jobs start in the order they were submitted.
MAX_RUNNING = max(1, int(os.environ.get("ZOO_MAX_JOBS", 2)))
MAX_WAITING = max(0, int(os.environ.get("ZOO_MAX_WAITING_JOBS", 32)))


class JobNotFound(ZooError):
    pass


class JobsBusy(ZooError):
    """Too many management jobs wait already; the service answers 429."""


def job_dict(job) -> dict[str, Any]:
    return {"id": job.id, "object": "zoo.job", "kind": job.kind, "model": job.model, "params": job.params,
            "status": job.status.value, "progress": job.progress, "message": job.message, "error": job.error,
            "result": job.result, "attempts": job.attempts,
            "created_at": job.created_at.isoformat() if job.created_at else None,
            "updated_at": job.updated_at.isoformat() if job.updated_at else None}


def submit_convert(reg, model: str, targets: list[str], *, rebuild: bool = False) -> dict:
    """Validate now (unknown model or target: an error, no job), then queue and start a worker."""
    from ..conversion.pipeline import plan
    from ..registry.schema import Job

    plan(reg, model, targets)  # raises ModelNotFound, or InvalidInput for unknown or impossible targets
    _refuse_when_full(reg)
    job_id = uuid.uuid4().hex
    with reg.session() as s:
        s.add(Job(id=job_id, kind="convert", model=model, params={"targets": targets, "rebuild": rebuild},
                  message="queued", host=socket.gethostname()))
    dispatch(reg)
    return get_job(reg, job_id)


def submit_register(reg, name: str, source: str, *, revision: Optional[str] = None, force: bool = False,
                    trust_remote_code: bool = False) -> dict:
    """Validate what needs no filesystem now (name, source syntax, existing name), then queue."""
    from sqlalchemy import select

    from ..registry.catalog import check_name
    from ..registry.schema import Alias, Job, Model
    from ..store.sources import parse_source

    check_name(name)
    if source.strip().startswith(("hf://", "pkg://")):
        src = parse_source(source)
        if src.kind != "hf" and revision is not None:
            raise InvalidInput(f"'revision' applies to hf:// sources only; {src.uri} is pinned by its content")
    elif revision is not None:
        raise InvalidInput("'revision' applies to hf:// sources only; a directory is pinned by its content")
    with reg.session() as s:
        if not force and s.scalar(select(Model.id).where(Model.name == name)) is not None:
            raise ModelExists(f"model {name!r} is already registered; send \"force\": true to replace it")
        if s.scalar(select(Alias.id).where(Alias.name == name)) is not None:
            raise ModelExists(f"{name!r} is an alias; remove it first")
    _refuse_when_full(reg)
    job_id = uuid.uuid4().hex
    with reg.session() as s:
        s.add(Job(id=job_id, kind="register", model=name,
                  params={"source": source, "revision": revision, "force": force,
                          "trust_remote_code": trust_remote_code}, message="queued",
                  host=socket.gethostname()))
    dispatch(reg)
    return get_job(reg, job_id)


def _active(reg) -> tuple[list, list]:
    """(running, waiting) job ids of this host: running ones have a live worker, waiting ones none yet."""
    from sqlalchemy import select

    from ..registry.schema import Job

    host = socket.gethostname()
    with reg.session() as s:
        rows = [(j.id, j.pid) for j in s.scalars(select(Job).where(
            Job.status.in_([JobStatus.queued, JobStatus.running]), Job.host == host).order_by(Job.created_at))]
    return [i for i, pid in rows if pid and _alive(pid)], [i for i, pid in rows if not pid]


def _refuse_when_full(reg) -> None:
    running, waiting = _active(reg)
    if len(waiting) >= MAX_WAITING:
        raise JobsBusy(f"{len(running)} management job(s) run and {len(waiting)} wait already; retry when one "
                       "has finished (GET /v1/zoo/jobs/ID)")


def dispatch(reg) -> list[str]:
    """Start waiting jobs, oldest first, while fewer than ``MAX_RUNNING`` run; the ids started. Called on
    each submission, by each worker as it ends and by the server at start; a lock keeps two callers from
    starting the same job or more than the bound."""
    from filelock import FileLock

    started = []
    with FileLock(str(reg.home.locks_dir / "jobs.lock")):
        running, waiting = _active(reg)
        for job_id in waiting[:max(0, MAX_RUNNING - len(running))]:
            _start(reg, job_id)
            started.append(job_id)
    return started


def _start(reg, job_id: str) -> None:
    log_dir = reg.home.root / "jobs"
    log_dir.mkdir(exist_ok=True)
    env = {**os.environ, "ZOO_HOME": str(reg.home.root), "ZOO_REGISTRY_URL": reg.home.registry_url}
    with open(log_dir / f"{job_id}.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-P", "-m", "zoo.service.jobs", job_id], env=env, stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    _update(reg, job_id, pid=proc.pid, host=socket.gethostname())


def _update(reg, job_id: str, **fields) -> None:
    from ..registry.schema import Job

    with reg.session() as s:
        job = s.get(Job, job_id)
        for k, v in fields.items():
            setattr(job, k, v)


def get_job(reg, job_id: str) -> dict:
    from ..registry.schema import Job

    with reg.session() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r}")
        return job_dict(job)


def _alive(pid: Optional[int]) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a finished child of this process is a zombie until reaped: not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def recover(reg) -> list[str]:
    """Mark this host's queued/running jobs whose worker is gone as interrupted; return their ids."""
    from sqlalchemy import select

    from ..registry.schema import Job, JobStatus

    host, marked = socket.gethostname(), []
    with reg.session() as s:
        for job in s.scalars(select(Job).where(Job.status.in_([JobStatus.queued, JobStatus.running]))):
            if job.status == JobStatus.queued and not job.pid:
                continue  # never started: it still waits its turn
            if job.host in (None, host) and not _alive(job.pid):
                job.status, job.message = JobStatus.interrupted, "interrupted: its worker stopped; retry it"
                marked.append(job.id)
    dispatch(reg)
    return marked


def retry(reg, job_id: str) -> dict:
    from ..registry.schema import Job, JobStatus

    with reg.session() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r}")
        if job.status not in (JobStatus.failed, JobStatus.interrupted):
            raise InvalidInput(f"job {job_id} is {job.status.value}; only failed or interrupted jobs can be retried")
        job.status, job.error, job.progress, job.message = JobStatus.queued, None, 0.0, "queued for retry"
        job.pid, job.host = None, socket.gethostname()
    dispatch(reg)
    return get_job(reg, job_id)


def run_job(reg, job_id: str) -> None:
    """The worker: run the job, recording progress and the outcome in its row."""
    from ..conversion.pipeline import convert, plan
    from ..registry.schema import Job

    with reg.session() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r}")
        job.status, job.pid, job.attempts = JobStatus.running, os.getpid(), job.attempts + 1
        model, params, kind = job.model, dict(job.params), job.kind
    if kind == "register":
        return _run_register(reg, job_id, model, params)
    targets = params.get("targets") or []
    seen: list[str] = []

    def progress(step: str, fraction) -> None:  # steps read "<target>: <what>"; a new target ends the last
        name = step.split(":", 1)[0]
        if name in names and name not in seen:
            seen.append(name)
        done = max(0, len(seen) - 1)
        _update(reg, job_id, message=step[:500], progress=round(done / max(1, len(names)), 3))

    try:
        names = [target.name for target, _ in plan(reg, model, targets)[2]]
        outcomes = convert(reg, model, targets, rebuild=bool(params.get("rebuild")), progress=progress)
    except Exception as exc:  # recorded, never raised: the job row is the report
        _update(reg, job_id, status=JobStatus.failed, error=f"{type(exc).__name__}: {exc}"[:2000],
                message="failed")
        return
    result = {"outcomes": [{k: v for k, v in asdict(o).items() if k != "provenance"} for o in outcomes]}
    failed = [o.target for o in outcomes if o.status == "failed"]
    _update(reg, job_id, status=JobStatus.failed if failed else JobStatus.succeeded, progress=1.0, result=result,
            error=f"failed targets: {', '.join(failed)}" if failed else None,
            message="; ".join(f"{o.target}: {o.status}" for o in outcomes)[:500])


def _run_register(reg, job_id: str, name: str, params: dict) -> None:
    _update(reg, job_id, message=f"registering {name}")
    try:
        reg.register(name, params["source"], revision=params.get("revision"), force=bool(params.get("force")),
                     trust_remote_code=bool(params.get("trust_remote_code")))
        described = reg.describe(name)
    except ZooError as exc:  # the user's problem, in the user's words
        _update(reg, job_id, status=JobStatus.failed, error=str(exc)[:2000], message="failed")
        return
    except Exception as exc:  # recorded for the operator, never raised: the job row is the report
        _update(reg, job_id, status=JobStatus.failed, error=f"{type(exc).__name__}: {exc}"[:2000], message="failed")
        return
    _update(reg, job_id, status=JobStatus.succeeded, progress=1.0, message="registered",
            result={"model": {k: described[k] for k in ("name", "source", "dim", "current_revision")}})


def main(argv: list[str]) -> int:
    from ..registry.catalog import open_registry

    reg = open_registry()
    try:
        run_job(reg, argv[0])
    finally:
        dispatch(reg)  # this worker's slot is free: the next waiting job starts
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
