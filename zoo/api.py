"""``zoo.load``: a model by name, served by the right artifact for this machine."""

from __future__ import annotations

import re
from typing import Optional

from .errors import InvalidInput
from .model import EmbeddingModel
from .registry import DEFAULT_MODEL, Registry, open_registry

__all__ = ["load"]

DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?)$")


def load(name: str = DEFAULT_MODEL, *, artifact: Optional[str | int] = None, device: Optional[str] = None,
         home: Optional[str] = None, registry_url: Optional[str] = None,
         registry: Optional[Registry] = None) -> EmbeddingModel:
    """Load a registered model (or alias) by name.

    ``artifact`` forces one artifact (a target name such as ``torch-fp32`` or an id);
    ``device`` overrides where it runs. The embedded default model registers itself
    on first use.
    """
    from .backends import load_backend
    from .model_config import spec_of
    from .selection import pick_artifact

    if device is not None and not DEVICE_RE.match(device):
        raise InvalidInput(f"unknown device {device!r}; use cpu, cuda or cuda:N")
    reg = registry or open_registry(home, registry_url)
    resolved = reg.resolve(name)
    model, revision = resolved.model, resolved.revision
    chosen = pick_artifact(revision.artifacts, artifact)
    path = reg.artifact_path(chosen)
    spec = spec_of(model)
    backend = load_backend(chosen.format, path, spec, device=device, precision=chosen.precision,
                           settings=(chosen.provenance or {}).get("settings"))
    info = {
        "model": model.name, "alias": resolved.via_alias, "revision": revision.resolved_id,
        "artifact": chosen.target, "artifact_id": chosen.id, "format": chosen.format,
        "precision": chosen.precision, "store_digest": chosen.store_digest,
        "runtime_precision": getattr(backend, "runtime_precision", None)
        or (chosen.provenance or {}).get("runtime_precision") or chosen.precision,
        "backend": backend.name, "device": backend.device, "dim": model.dim, "path": str(path),
        "home": str(reg.home.root), "selection": "explicit" if artifact is not None else "static ranking",
    }
    return EmbeddingModel(name=model.name, dim=model.dim, backend=backend, info=info)
