"""The sentence-transformers modules after the transformer, as the lean runtimes run them: Pooling, then any
``Dense`` projections (a linear map and its activation), then Normalize, in the order ``modules.json`` gives.

Why in numpy: the exported graphs hold the transformer only (token embeddings out), so pooling already happens in
zoo's lean runtime, and a Dense after it is one small matrix product per batch. EmbeddingGemma's two (768->3072->768)
cost about 4.7 M multiply-adds per text against ~70 G in its transformer: float32 numpy leaves them exact at no
measurable cost, and one implementation serves ONNX Runtime and OpenVINO alike. (They stay out of the int8 search
for the same reason: quantizing 0.01 % of the work would buy nothing.) The torch runtime runs
sentence-transformers' own modules.

A module this file does not know is refused before any work by ``stack_reason``, naming the module and the targets
that still serve it (the torch ones, which run sentence-transformers itself).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..errors import ZooError

__all__ = ["DenseLayer", "dense_layers", "stack_reason", "KNOWN_MODULES", "ACTIVATIONS"]

KNOWN_MODULES = ("Transformer", "Pooling", "Dense", "Normalize")


def _gelu(x: np.ndarray) -> np.ndarray:  # torch.nn.GELU's default (erf) form, not the tanh approximation
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return (0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))).astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


# what Dense's config names (sentence-transformers writes the torch class's full name), and its numpy twin
ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "torch.nn.modules.linear.Identity": lambda x: x,
    "torch.nn.modules.activation.Tanh": np.tanh,
    "torch.nn.modules.activation.ReLU": lambda x: np.maximum(x, 0),
    "torch.nn.modules.activation.Sigmoid": _sigmoid,
    "torch.nn.modules.activation.GELU": _gelu,
    "torch.nn.modules.activation.SiLU": lambda x: x * _sigmoid(x),
}
DEFAULT_ACTIVATION = "torch.nn.modules.activation.Tanh"  # Dense's default when its config names none


@dataclass(frozen=True)
class DenseLayer:
    """One ``Dense`` module: ``activation(x @ weight.T + bias)``."""
    path: str
    weight: np.ndarray  # (out_features, in_features), float32
    bias: Optional[np.ndarray]
    activation: str

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = x.astype(np.float32, copy=False) @ self.weight.T
        if self.bias is not None:
            y += self.bias
        return np.asarray(ACTIVATIONS[self.activation](y), dtype=np.float32)


def _modules(folder: Path) -> list[dict]:
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise ZooError(f"modules.json cannot be read ({exc}); the model folder is damaged") from None
    return [m for m in modules if isinstance(m, dict)] if isinstance(modules, list) else []


def _kind(module: dict) -> str:
    return str(module.get("type", "")).rsplit(".", 1)[-1]


def _dense_config(folder: Path, module: dict) -> dict:
    try:
        return json.loads((folder / module.get("path", "") / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def stack_reason(folder: Path) -> Optional[str]:
    """Why the lean runtimes cannot run this folder's module stack exactly as sentence-transformers does, or None."""
    modules = _modules(folder)
    unknown = [f"{m.get('path') or m.get('name')} ({m.get('type')})" for m in modules if _kind(m) not in KNOWN_MODULES]
    if unknown:
        return (f"its modules.json has {', '.join(unknown)}, which only sentence-transformers runs "
                f"(zoo runs {', '.join(KNOWN_MODULES)}); the torch targets serve it (torch-fp32, torch-bf16)")
    seen_normalize = False
    for m in modules:
        kind = _kind(m)
        if kind == "Normalize":
            seen_normalize = True
        elif kind == "Dense":
            config = _dense_config(folder, m)
            if config.get("module_input_name", "sentence_embedding") != "sentence_embedding":
                return (f"its Dense module {m.get('path')} maps {config['module_input_name']}, not the pooled "
                        "vector; the torch targets serve it")
            activation = config.get("activation_function") or DEFAULT_ACTIVATION
            if activation not in ACTIVATIONS:
                return (f"its Dense module {m.get('path')} uses the activation {activation}; zoo runs "
                        f"{', '.join(a.rsplit('.', 1)[-1] for a in ACTIVATIONS)} (the torch targets serve it)")
            if seen_normalize:
                return f"its Dense module {m.get('path')} comes after a Normalize; the torch targets serve it"
    return None


def dense_layers(folder: Path) -> tuple[DenseLayer, ...]:
    """The folder's Dense modules in order, with their weights as float32 arrays (safetensors)."""
    layers = []
    for m in _modules(folder):
        if _kind(m) != "Dense":
            continue
        why = stack_reason(folder)
        if why:
            raise ZooError(f"this model cannot run here: {why}")
        path = str(m.get("path", ""))
        config = _dense_config(folder, m)
        weights_file = folder / path / "model.safetensors"
        if not weights_file.is_file():
            raise ZooError(f"the Dense module {path} has no model.safetensors in this artifact; rebuild it with "
                           "`zoo convert --rebuild`")
        from safetensors.numpy import load_file

        tensors = load_file(str(weights_file))
        weight = tensors.get("linear.weight")
        expected = (config.get("out_features"), config.get("in_features"))
        if weight is None or tuple(weight.shape) != expected:
            raise ZooError(f"the Dense module {path}'s weights do not match its config ({expected[1]} -> "
                           f"{expected[0]}); the artifact is damaged: run `zoo verify --repair`")
        bias = tensors.get("linear.bias") if config.get("bias", True) else None
        layers.append(DenseLayer(path, np.ascontiguousarray(weight, dtype=np.float32),
                                 None if bias is None else np.asarray(bias, dtype=np.float32),
                                 config.get("activation_function") or DEFAULT_ACTIVATION))
    return tuple(layers)
