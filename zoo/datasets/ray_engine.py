"""The Ray engine: shards over an actor pool with Ray Data, and ``zoo.ray.embed_dataset`` for a
``ray.data.Dataset`` a user already holds.

Ray traps handled here, each named where it is handled:
- an actor pool starts its actors one at a time unless told to wait for the minimum: the pool is
  fixed (``min = max = workers``) and ``DataContext.wait_for_min_actors_s`` makes Ray start all of
  them before the first task, so every model loads once and at once;
- vectors piling up in the object store spill to disk, and ``iter_batches`` on the driver costs
  time: in the job, workers write their shards and return only a small report per shard;
- a killed worker: Ray Data's actor pools restart actors (``max_restarts=-1``) and retry their
  tasks (``max_task_retries=-1``) by default, which the kill test relies on; a shard's file is
  written by rename under a fixed name, so a retried shard replaces nothing half-written and no id
  appears twice.
"""

from __future__ import annotations

import logging
import socket
from typing import Callable, Optional

from ..errors import InvalidInput, ZooError, require

__all__ = ["run_shards", "embed_ray_dataset", "connect", "check_address"]

WAIT_FOR_ACTORS_S = 600


def check_address(address: str) -> None:
    """Refuse an address nothing listens on in a second, instead of Ray's long connection retries."""
    if address == "auto" or "://" in address and not address.startswith("ray://"):
        return
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise InvalidInput(f"Ray address {address!r} must be HOST:PORT (or ray://HOST:PORT, or auto)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=2).close()
    except OSError as exc:
        raise ZooError(f"cannot reach the Ray cluster at {address} ({exc.strerror or type(exc).__name__}); start it "
                       "with `ray start --head`, or drop --ray-address to start a local Ray for this job") from None


def connect(address: Optional[str], num_cpus: Optional[int] = None) -> bool:
    """Join the cluster at ``address``, or start a local Ray on loopback; True when we started it."""
    ray = require("ray", "ray")
    if ray.is_initialized():
        return False
    if address:
        check_address(address)
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level="WARNING")
            return False
        # address="local": always a new instance, never a stale one named in /tmp/ray or $RAY_ADDRESS
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 logging_level="WARNING", _node_ip_address="127.0.0.1")
        return True
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        raise ZooError(f"cannot start or join Ray at {address or 'a local instance'}: "
                       f"{str(exc).splitlines()[0][:200]}") from None


def _user_error(exc: BaseException) -> Optional[ZooError]:
    """The ZooError a Ray task raised, found under Ray's wrappers."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ZooError):
            return exc
        cause = getattr(exc, "cause", None)
        exc = cause if isinstance(cause, BaseException) else (exc.__cause__ or exc.__context__)
    return None


def _pool(ray, workers: int):
    ctx = ray.data.DataContext.get_current()
    ctx.wait_for_min_actors_s = WAIT_FOR_ACTORS_S
    ctx.enable_progress_bars = False  # the driver's own bar counts rows, shards and ETA
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its per-execution INFO lines go to stdout
    return ray.data.ActorPoolStrategy(min_size=workers, max_size=workers)


def run_shards(spec: dict, shards: list, *, address: Optional[str], workers: Optional[int], num_gpus: float,
               on_result: Callable[[dict], None], cpus_per_worker: float = 1) -> None:
    """Run ``shards`` on a pool of ``ShardEmbedder`` actors; ``on_result`` gets each shard's report."""
    if not shards:
        return
    ray = require("ray", "ray")
    require("ray.data", "ray")
    from .worker import ShardEmbedder

    started = connect(address)
    try:
        if workers is None:  # one per CPU of the cluster, no more than there are shards
            workers = max(1, int(ray.cluster_resources().get("CPU", 1) // cpus_per_worker))
        workers = min(workers, len(shards))
        ds = ray.data.from_items([s.as_dict() for s in shards], override_num_blocks=len(shards))
        reports = ds.map_batches(
            ShardEmbedder, fn_constructor_kwargs={"spec": spec}, batch_size=1, batch_format="pyarrow",
            compute=_pool(ray, workers), num_cpus=cpus_per_worker, num_gpus=num_gpus or None)
        for row in reports.iter_rows():
            on_result(dict(row))
    except ZooError:
        raise
    except Exception as exc:
        found = _user_error(exc)
        if found is not None:
            raise type(found)(str(found)) from None
        raise
    finally:
        if started:
            ray.shutdown()


class _BatchEmbedder:
    """A Ray actor that adds ``embedding`` and ``truncated`` to batches, with one pinned artifact."""

    def __init__(self, model: str, column: str, digest: str, load_options: dict, embed_options: dict):
        from ..selection.loader import load

        from .worker import check_pinned

        self.model = load(model, **load_options)
        check_pinned(self.model, digest)
        self.column, self.options = column, embed_options

    def __call__(self, batch):
        import pyarrow as pa

        from .inputs import invalid_text
        from .worker import embed_texts, vector_column

        texts = batch.column(self.column).to_pylist()
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise InvalidInput(f"a row's {self.column!r} is {invalid_text(texts[bad])}; filter such rows first "
                               "(ds.filter)")
        vectors, truncated, _ = embed_texts(self.model, texts, self.options, max(1, len(texts)))
        batch = batch.append_column("embedding", vector_column(vectors, self.options.get("precision") or "float32"))
        batch = batch.append_column("truncated", pa.array(truncated, pa.bool_()))
        return batch.append_column("artifact_digest", pa.array([self.model.info["store_digest"]] * len(texts), pa.string()))


def embed_ray_dataset(ds, *, model: str, column: str = "text", artifact=None, prompt_name: Optional[str] = None,
                      prompt: Optional[str] = None, dimensions: Optional[int] = None,
                      normalize: Optional[bool] = None, workers: int = 1, num_gpus: float = 0,
                      batch_size: int = 256, objective: str = "throughput", home: Optional[str] = None,
                      registry_url: Optional[str] = None, store_url: Optional[str] = None, cache: bool = True,
                      precision: str = "float32"):
    """``ds`` with ``embedding``, ``truncated`` and ``artifact_digest`` columns added, lazily (a Ray Dataset).

    The artifact is resolved here, once, and every actor serves exactly that store digest; ``precision``
    int8/uint8 quantizes with that artifact's stored ranges, computed here first if it has none.
    """
    from ..engine.precision import RANGED, check_precision
    from ..selection.loader import load
    from ..store.home import resolve_home

    ray = require("ray", "ray")
    where = resolve_home(home, registry_url)  # the workers open the driver's home and registry, not their own
    home, registry_url = str(where.root), where.registry_url
    m = load(model, artifact=artifact, objective=objective, home=home, registry_url=registry_url,
             store_url=store_url, cache=cache, lazy_runtime=True)
    effective = m.resolve_prompt(prompt, prompt_name)
    m._dimensions(dimensions)
    if check_precision(precision) in RANGED:  # stored before any actor starts, so all apply the same ones
        m.ranges(dimensions=dimensions, normalize=normalize)
    load_options = {"artifact": m.info["artifact_id"], "objective": objective, "home": home,
                    "registry_url": registry_url, "store_url": store_url, "cache": cache}
    return ds.map_batches(
        _BatchEmbedder, fn_constructor_kwargs={"model": m.name, "column": column, "digest": m.info["store_digest"],
                                               "load_options": load_options,
                                               "embed_options": {"prompt": effective, "normalize": normalize,
                                                                 "dimensions": dimensions, "precision": precision}},
        batch_size=batch_size, batch_format="pyarrow", compute=_pool(ray, workers), num_cpus=1,
        num_gpus=num_gpus or None)
