"""``zoo.load``: a model by name, served by the right artifact for this machine."""

from __future__ import annotations

import re
from typing import Optional

from .errors import InvalidInput
from .model import EmbeddingModel
from .registry import DEFAULT_MODEL, Registry, open_registry

__all__ = ["load", "choose"]

DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?)$")


def choose(reg: Registry, name: str, **options):
    """Resolve ``name`` and pick its artifact for this machine with the figures measured here.

    Returns (resolved, hardware, figures by artifact id, Selection); ``options`` are
    ``zoo.selection.select``'s (objective, min_fidelity, exact, artifact, device).
    """
    from .benchmark import latest_figures
    from .hardware import detect
    from .selection import select

    resolved = reg.resolve(name)
    artifacts = resolved.revision.artifacts
    hw = detect()
    figures = latest_figures(reg, [a.id for a in artifacts], hw.fingerprint)
    return resolved, hw, figures, select(artifacts, hw, figures, **options)


def load(name: str = DEFAULT_MODEL, *, artifact: Optional[str | int] = None, device: Optional[str] = None,
         objective: str = "throughput", min_fidelity: Optional[float] = None, exact: bool = False,
         home: Optional[str] = None, registry_url: Optional[str] = None,
         registry: Optional[Registry] = None, runtime_options: Optional[dict] = None) -> EmbeddingModel:
    """Load a registered model (or alias) by name, served by the best artifact for this machine.

    ``objective`` is ``throughput`` (default) or ``latency``; ``min_fidelity`` a minimum mean
    cosine to the reference; ``exact`` keeps to fp32-exact formats; ``artifact`` forces one
    artifact (a target name such as ``openvino-int8``, or an id); ``device`` overrides where it
    runs. See ``zoo.selection`` for the decision. ``runtime_options`` overrides how the runtime
    runs (OpenVINO ``mode``, onnxruntime ``threads``); by default the fastest measured here is used
    for the throughput objective. The embedded default model registers itself on first use.
    """
    from .backends import load_backend
    from .model_config import spec_of
    from .selection import CUDA_ONLY, GPU_CAPABLE

    if device is not None and not DEVICE_RE.match(device):
        raise InvalidInput(f"unknown device {device!r}; use cpu, cuda or cuda:N")
    reg = registry or open_registry(home, registry_url)
    resolved, hw, figures, selection = choose(reg, name, objective=objective, min_fidelity=min_fidelity,
                                              exact=exact, artifact=artifact, device=device)
    model, revision = resolved.model, resolved.revision
    chosen = selection.chosen
    if device is None and hw.cuda and (chosen.target in CUDA_ONLY or (chosen.target in GPU_CAPABLE and hw.ort_cuda)):
        device = "cuda"  # torch artifacts pick the GPU themselves; ONNX needs telling
    path = reg.artifact_path(chosen)
    measured = figures.get(chosen.id) or {}
    if runtime_options is None:  # single requests are fastest in the default (latency) mode
        runtime_options = measured.get("runtime_options", {}) if objective == "throughput" else {}
    backend = load_backend(chosen.format, path, spec_of(model), device=device, precision=chosen.precision,
                           settings=(chosen.provenance or {}).get("settings"), options=runtime_options)
    info = {
        "model": model.name, "alias": resolved.via_alias, "revision": revision.resolved_id,
        "artifact": chosen.target, "artifact_id": chosen.id, "format": chosen.format,
        "precision": chosen.precision, "store_digest": chosen.store_digest,
        "runtime_precision": getattr(backend, "runtime_precision", None)
        or (chosen.provenance or {}).get("runtime_precision") or chosen.precision,
        "backend": backend.name, "device": backend.device, "dim": model.dim, "path": str(path),
        "home": str(reg.home.root), "hardware_fingerprint": hw.fingerprint,
        "selection": selection.how, "selection_reason": selection.reason, "objective": objective,
        "runtime_options": runtime_options,
        "explanation": selection.explain() if selection.candidates else selection.reason,
    }
    return EmbeddingModel(name=model.name, dim=model.dim, backend=backend, info=info,
                          default_batch_size=int(measured.get("batch_size", 32)))
