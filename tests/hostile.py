"""A hostile copy of a BERT-family sentence-transformers model: the same function, int8-hostile activations.

Real models (bge, e5, gte, mpnet) have activation outlier channels that break naive int8; MiniLM
has few. This transform plants them in a real checkpoint without changing what it computes:

- **value x f, output projection / f.** Attention is linear in V, so scaling a few value channels
  (weight rows and bias) by ``f`` and the matching input columns of the attention output projection
  by ``1/f`` leaves every layer's output unchanged. The projection's input now carries channels ``f``
  times larger than the rest: per-tensor int8 crushes the others, and per-channel weights lose the
  ``1/f`` columns.
- **query x f, key / f.** Each score is a sum over channels of q_c * k_c, so scaling a few query
  channels up and the same key channels down leaves every score unchanged, while the attention
  MatMul's inputs get outliers on one side and near-zero channels on the other.

(Scaling a LayerNorm gain is not function-preserving in post-LN BERT: the residual path sees it.)
In fp32 the copy embeds like the original (cos >= 0.9999, tested); int8 that cannot keep these
nodes in float collapses on it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["make_hostile"]


def make_hostile(src: Path, out: Path, *, factor: float = 40.0, channels: int = 4, seed: int = 0) -> Path:
    """Copy the sentence-transformers folder ``src`` to ``out`` with planted outlier channels."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, out)
    weights = out / "model.safetensors"
    state = load_file(str(weights))
    gen = torch.Generator().manual_seed(seed)
    layers = sorted({k.split(".layer.")[1].split(".")[0] for k in state if ".layer." in k}, key=int)
    prefix = next(k for k in state if ".layer." in k).split("layer.")[0]  # "encoder." or ""
    for i in layers:
        p = f"{prefix}layer.{i}.attention."
        width = state[p + "self.value.weight"].shape[0]
        picked = torch.randperm(width, generator=gen)[:2 * channels]
        v, q = picked[:channels], picked[channels:]
        state[p + "self.value.weight"][v] *= factor
        state[p + "self.value.bias"][v] *= factor
        state[p + "output.dense.weight"][:, v] /= factor
        state[p + "self.query.weight"][q] *= factor
        state[p + "self.query.bias"][q] *= factor
        state[p + "self.key.weight"][q] /= factor
        state[p + "self.key.bias"][q] /= factor
    save_file({k: t.contiguous() for k, t in state.items()}, str(weights), metadata={"format": "pt"})
    return out
