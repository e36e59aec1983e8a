"""The loader: a model by name, served by the fastest faithful artifact for this machine (``zoo.load``)."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Optional, Union

from ..engine.batching import DEFAULT_MAX_BATCH_TOKENS
from ..errors import InvalidInput
from ..engine.model import EmbeddingModel
from ..registry.catalog import DEFAULT_MODEL, Registry, open_registry

if TYPE_CHECKING:
    from ..engine.cache import VectorCache

__all__ = ["load", "choose"]

DEVICE_RE = re.compile(r"cpu|cuda(:\d+)?")  # fullmatch only
log = logging.getLogger("zoo.load")


def check_device(device: Optional[str]) -> None:
    """Refuse a device name before anything is resolved or loaded (``select`` checks the rest)."""
    if device is not None and not DEVICE_RE.fullmatch(device):
        raise InvalidInput(f"unknown device {device!r}; use cpu, cuda or cuda:N")


def choose(reg: Registry, name: str, **options):
    """Resolve ``name`` and pick its artifact for this machine with the figures measured here.

    Returns (resolved, hardware, figures by artifact id, Selection); ``options`` are
    ``zoo.selection.select``'s (objective, min_fidelity, exact, artifact, device).
    """
    from ..core.hardware import detect
    from .figures import latest_figures
    from .select import select

    check_device(options.get("device"))
    resolved = reg.resolve(name)
    artifacts = resolved.revision.artifacts
    hw = detect()
    figures = latest_figures(reg, [a.id for a in artifacts], hw.fingerprint)
    return resolved, hw, figures, select(artifacts, hw, figures, **options)


def load(name: str = DEFAULT_MODEL, *, artifact: Optional[str | int] = None, device: Optional[str] = None,
         objective: str = "throughput", min_fidelity: Optional[float] = None, exact: bool = False,
         max_memory_mb: Optional[float] = None, home: Optional[str] = None, registry_url: Optional[str] = None,
         registry: Optional[Registry] = None, runtime_options: Optional[dict] = None,
         runtime_objective: Optional[str] = None,
         cache: Union[bool, str, "VectorCache"] = True, cache_max_bytes: Union[int, str, None] = None,
         max_batch_tokens: Optional[int] = DEFAULT_MAX_BATCH_TOKENS, lazy_runtime: bool = False,
         store_url: Optional[str] = None) -> EmbeddingModel:
    """Load a registered model (or alias) by name, served by the best artifact for this machine: an
    ``EmbeddingModel``, or for a reranker (cross-encoder) a ``zoo.engine.reranker.RerankModel``.

    ``objective`` is ``throughput`` (default) or ``latency``; ``min_fidelity`` a minimum mean
    cosine to the reference; ``max_memory_mb`` passes over artifacts whose peak RSS measured here (``zoo bench``)
    exceeds it, so a large model's fp32 artifact is not picked where its int8 one fits; ``exact`` keeps to
    fp32-exact formats; ``artifact`` forces one
    artifact (a target name such as ``openvino-int8``, or an id); ``device`` overrides where it
    runs. See ``zoo.selection.select`` for the decision. ``runtime_options`` overrides how the runtime
    runs (OpenVINO ``mode``, onnxruntime ``threads`` / ``parallel``); by default the fastest
    measured here is used for the throughput objective, and the runtime's default (every core on
    one request) for latency. ``runtime_objective`` decouples the two: the service picks its
    artifact for latency but runs it for throughput, since its engine calls are coalesced batches.
    The embedded default model registers itself on first use.

    ``cache``: the persistent vector cache; True (default) uses ``$ZOO_CACHE`` or the home's
    ``cache.db`` (``ZOO_CACHE=off`` disables it), False disables it, a string is a SQLite path or a
    ``redis://`` URL, or pass a ``zoo.engine.cache.VectorCache``. ``cache_max_bytes`` caps the SQLite
    cache (least recently used entries go first; default 2 GiB or ``$ZOO_CACHE_MAX_BYTES``).
    ``max_batch_tokens`` caps rows x padded length per batch (None: rows only).

    ``lazy_runtime``: open the runtime only when a text misses the vector cache (a cold `zoo embed`
    of cached texts then never imports or compiles it). Taken only where ``zoo bench`` measured the
    artifact on this machine, since the runtime precision that keys the cache comes from there.

    ``store_url``: a shared artifact store (default ``$ZOO_STORE_URL``). An artifact whose files this
    home lacks (its registry is shared with another host) is pulled from there by digest, verified.
    """
    from ..engine.backends import load_backend
    from ..engine.model_config import spec_of
    from .select import CUDA_ONLY, GPU_CAPABLE

    check_device(device)
    if runtime_objective not in (None, "throughput", "latency"):
        raise InvalidInput(f"runtime_objective must be 'throughput' or 'latency', not {runtime_objective!r}")
    # a lazy load by name in a fresh process (``zoo embed``) may skip the registry: see ``plans``
    request, stamp = None, None
    if lazy_runtime and registry is None and runtime_options is None and runtime_objective is None \
            and plans_enabled():
        from ..core.hardware import detect
        from ..store.home import resolve_home
        from .plans import read_plan, registry_stamp

        planned_home = resolve_home(home, registry_url)
        request = {"name": name, "artifact": artifact, "device": device, "objective": objective,
                   "min_fidelity": min_fidelity, "exact": exact, "max_memory_mb": max_memory_mb}
        plan = read_plan(planned_home, request, detect().fingerprint)
        if plan is not None:
            return _from_plan(planned_home, plan, cache, cache_max_bytes, max_batch_tokens)
        stamp = registry_stamp(planned_home)
        registry = Registry(planned_home)
    reg = registry or open_registry(home, registry_url)
    resolved, hw, figures, selection = choose(reg, name, objective=objective, min_fidelity=min_fidelity,
                                              exact=exact, artifact=artifact, device=device,
                                              max_memory_mb=max_memory_mb)
    model, revision = resolved.model, resolved.revision
    chosen = selection.chosen
    if device is None and hw.cuda and (chosen.target in CUDA_ONLY or (chosen.target in GPU_CAPABLE and hw.ort_cuda)):
        device = "cuda"  # torch artifacts pick the GPU themselves; ONNX needs telling
    from ..remote import fetch_missing

    fetch_missing(reg.store, chosen.store_digest, store_url)
    path = reg.artifact_path(chosen)
    measured = figures.get(chosen.id) or {}
    if runtime_options is None:  # single requests are fastest in the default (latency) mode
        wanted = runtime_objective or objective
        runtime_options = measured.get("runtime_options", {}) if wanted == "throughput" else {}
    def open_backend():
        return load_backend(chosen.format, path, spec_of(model), device=device, precision=chosen.precision,
                            settings=(chosen.provenance or {}).get("settings"), options=runtime_options,
                            compile_cache=compile_cache_dir(reg.home))

    declared = (chosen.provenance or {}).get("runtime_precision") or chosen.precision
    known = all(measured.get(k) for k in ("runtime_precision", "backend", "device")) \
        and device in (None, measured["device"])
    from ..engine.backends import LazyBackend

    if lazy_runtime and cache is not False and known:
        backend = LazyBackend(open_backend, name=measured["backend"], device=measured["device"],
                              runtime_precision=measured["runtime_precision"], declared_precision=declared)
    else:
        backend = open_backend()
    info = {
        "model": model.name, "alias": resolved.via_alias, "revision": revision.resolved_id,
        "artifact": chosen.target, "artifact_id": chosen.id, "format": chosen.format,
        "precision": chosen.precision, "store_digest": chosen.store_digest,
        "runtime_precision": getattr(backend, "runtime_precision", None) or declared,
        "backend": backend.name, "device": backend.device, "dim": model.dim, "path": str(path),
        "home": str(reg.home.root), "hardware_fingerprint": hw.fingerprint,
        "selection": selection.how, "selection_reason": selection.reason, "objective": objective,
        "runtime_options": runtime_options,
        "explanation": selection.explain() if selection.candidates else selection.reason,
    }
    batch_size = int(measured.get("batch_size", 32))
    if request is not None and known:
        from .plans import write_plan

        write_plan(reg.home, request, {
            "fingerprint": hw.fingerprint, "model": model.name, "spec": spec_of(model).as_dict(),
            "format": chosen.format, "digest": chosen.store_digest, "device": device, "precision": chosen.precision,
            "settings": (chosen.provenance or {}).get("settings"), "runtime_options": runtime_options,
            "declared": declared, "measured": {k: measured[k] for k in ("backend", "device", "runtime_precision")},
            "batch_size": batch_size, "info": info}, stamp)
    log.info("loaded %s: %s (%s) on %s, by %s selection", model.name, chosen.target, info["backend"], info["device"],
             selection.how)
    return _model_class(spec_of(model))(model.name, backend, spec_of(model), info, default_batch_size=batch_size,
                          cache=_open_cache(cache, reg.home, cache_max_bytes), max_batch_tokens=max_batch_tokens,
                          ranges=chosen.precision_ranges or stored_ranges(lambda: reg, chosen.id))


def _model_class(spec):
    """What ``load`` returns for a model of this kind: an ``EmbeddingModel``, or a ``RerankModel``."""
    if spec.kind == "reranker":
        from ..engine.reranker import RerankModel

        return RerankModel
    return EmbeddingModel


def _from_plan(home, plan: dict, cache, cache_max_bytes, max_batch_tokens) -> EmbeddingModel:
    """The model a plan describes, its runtime opened lazily, without the registry (see ``plans``)."""
    from ..engine.backends import LazyBackend, load_backend
    from ..engine.model_config import ModelSpec
    from ..store.blobs import Store

    path = Store(home.store_dir).tree(plan["digest"])  # the same integrity check as the full path
    spec = ModelSpec(**plan["spec"])
    measured = plan["measured"]

    def open_backend():
        return load_backend(plan["format"], path, spec, device=plan["device"], precision=plan["precision"],
                            settings=plan["settings"], options=plan["runtime_options"],
                            compile_cache=compile_cache_dir(home))

    info = {**plan["info"], "path": str(path), "plan": True}
    log.info("loaded %s: %s from this machine's stored plan", plan["model"], info.get("artifact"))
    if cache is False:  # nothing can be served from the vector cache: open it now, as the full path does
        backend = open_backend()
        info.update(runtime_precision=getattr(backend, "runtime_precision", None) or plan["declared"],
                    backend=backend.name, device=backend.device)
    else:
        backend = LazyBackend(open_backend, name=measured["backend"], device=measured["device"],
                              runtime_precision=measured["runtime_precision"], declared_precision=plan["declared"])
    return _model_class(spec)(plan["model"], backend, spec, info,
                          default_batch_size=plan["batch_size"], cache=_open_cache(cache, home, cache_max_bytes),
                          max_batch_tokens=max_batch_tokens,
                          ranges=stored_ranges(lambda: Registry(home), info["artifact_id"]))


def stored_ranges(registry, artifact_id: int):
    """The calibration record of an artifact that has none yet, as ``EmbeddingModel`` asks for it: read
    from the registry row when another process stored it meanwhile, else computed with the model
    itself (``zoo.conversion.ranges.calibrate``: a few hundred texts, once) and stored. Under a lock
    per artifact, so every process of this home applies the one record that was stored first."""

    def source(model) -> dict:
        import warnings

        from filelock import FileLock

        from ..conversion.ranges import calibrate
        from ..registry.schema import Artifact

        reg = registry()
        with FileLock(str(reg.home.locks_dir / f"ranges-{artifact_id}.lock")):
            with reg.session() as s:
                art = s.get(Artifact, artifact_id)
                if art is None:
                    raise InvalidInput(f"{model.name}'s artifact is no longer registered; load the model again")
                if art.precision_ranges:
                    return art.precision_ranges
            log.info("calibrating %s (%s) for int8/uint8 output: its ranges were not stored yet",
                     model.name, model.info.get("artifact"))
            def embed_raw(texts):
                with warnings.catch_warnings():  # long calibration texts are cut, as the gate cuts them
                    warnings.simplefilter("ignore")
                    return model.embed(texts, normalize=False, cache=False, prompt="")

            record = calibrate(embed_raw, model.spec)
            with reg.session() as s:
                s.get(Artifact, artifact_id).precision_ranges = record
            return record

    return source


def _env_off(variable: str) -> bool:
    """Whether ``$variable`` turns a default-on feature off (0, off, false, no)."""
    import os

    return os.environ.get(variable, "").strip().lower() in ("0", "off", "false", "no")


def plans_enabled() -> bool:
    """Load plans are on unless ``$ZOO_LOAD_PLANS`` is off (to measure or rule out the fast path)."""
    return not _env_off("ZOO_LOAD_PLANS")


def compile_cache_dir(home):
    """The home's folder of compiled models (``$ZOO_COMPILE_CACHE=off`` turns it off)."""
    return None if _env_off("ZOO_COMPILE_CACHE") else home.root / "compiled"


def _open_cache(cache, home, max_bytes):
    from ..engine.cache import cache_disabled_by_env, open_cache, parse_size

    if cache is False or cache is None:
        return None
    cap = None if max_bytes is None else parse_size(max_bytes)
    if cache is True:
        return None if cache_disabled_by_env() else open_cache(home=home, max_bytes=cap)
    if isinstance(cache, str):
        return open_cache(cache, home=home, max_bytes=cap)
    if all(hasattr(cache, m) for m in ("get_many", "put_many")):
        return cache
    raise InvalidInput(f"cache must be True, False, a path, a redis:// URL or a VectorCache, not {type(cache).__name__}")
