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
The same two moves hold in pre-LN blocks (CLIP's towers): their attention is the same algebra.
In fp32 the copy embeds like the original (cos >= 0.9999, tested); int8 that cannot keep these
nodes in float collapses on it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

__all__ = ["make_hostile"]


# Where a family keeps its attention projections: a block's prefix, then (query, key, value, output)
LAYOUTS = (
    (re.compile(r"^(.*layer\.\d+\.attention\.)self\.query\.weight$"),
     ("self.query", "self.key", "self.value", "output.dense")),  # BERT, RoBERTa, XLM-R
    (re.compile(r"^(.*layers\.\d+\.self_attn\.)q_proj\.weight$"),
     ("q_proj", "k_proj", "v_proj", "out_proj")),  # CLIP's text and vision towers
)


def make_hostile(src: Path, out: Path, *, factor: float = 40.0, channels: int = 4, seed: int = 0,
                 within: str = "") -> Path:
    """Copy the model folder ``src`` to ``out`` with planted outlier channels in every attention block
    (whose weights' names start with ``within``: ``vision_model.`` plants in a CLIP's vision tower only)."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, out)
    weights = out / "model.safetensors"
    state = load_file(str(weights))
    gen = torch.Generator().manual_seed(seed)
    blocks = sorted(((m.group(1), names) for pattern, names in LAYOUTS for k in state
                     if k.startswith(within) and (m := pattern.match(k))),
                    key=lambda b: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", b[0])])  # layer 2 before 10
    assert blocks, f"no attention block of a known layout in {src}"
    for prefix, (query, key, value, output) in blocks:
        width = state[f"{prefix}{value}.weight"].shape[0]
        picked = torch.randperm(width, generator=gen)[:2 * channels]
        v, q = picked[:channels], picked[channels:]
        state[f"{prefix}{value}.weight"][v] *= factor
        state[f"{prefix}{value}.bias"][v] *= factor
        state[f"{prefix}{output}.weight"][:, v] /= factor
        state[f"{prefix}{query}.weight"][q] *= factor
        state[f"{prefix}{query}.bias"][q] *= factor
        state[f"{prefix}{key}.weight"][q] /= factor
        state[f"{prefix}{key}.bias"][q] /= factor
    save_file({k: t.contiguous() for k, t in state.items()}, str(weights), metadata={"format": "pt"})
    return out
