"""Which artifact of a revision serves a request.

1. An explicit ``artifact`` (a target name such as ``torch-fp32``, or an artifact id)
   wins; it must be ready (a rejected or failed one is refused, saying why).
2. Otherwise, the first ready artifact in ``STATIC_RANKING``.
3. Otherwise, no artifact can serve: say what exists and how to build one.

Measured selection per machine replaces step 2 when benchmarks exist.
"""

from __future__ import annotations

from typing import Optional, Sequence

from .errors import ArtifactNotFound

__all__ = ["pick_artifact", "STATIC_RANKING"]

STATIC_RANKING: tuple[str, ...] = ("torch-fp32",)


def pick_artifact(artifacts: Sequence, artifact: Optional[str | int] = None):
    ready = [a for a in artifacts if a.status.value == "ready"]
    if artifact is not None:
        key = str(artifact)
        match = [a for a in artifacts if a.target == key or str(a.id) == key]
        if not match:
            have = ", ".join(f"{a.target} (id {a.id}, {a.status.value})" for a in artifacts) or "none"
            raise ArtifactNotFound(f"no artifact {key!r} for this revision; available: {have}")
        chosen = match[0]
        if chosen.status.value != "ready":
            why = f": {chosen.error}" if chosen.error else ""
            raise ArtifactNotFound(f"artifact {chosen.target} (id {chosen.id}) is {chosen.status.value}"
                                   f"{why}; it cannot serve embeddings")
        return chosen
    for target in STATIC_RANKING:
        for a in ready:
            if a.target == target:
                return a
    if ready:
        return ready[0]
    raise ArtifactNotFound("no ready artifact for this revision; re-register the model with --force")
