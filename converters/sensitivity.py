"""Which matrix products int8 can hold: each one's measured quantization error, from one fp32 pass.

Activation outlier channels are what break int8 on real encoders (bge, e5, gte, mpnet), and where
they sit differs per model: the FFN down-projection input in one, the attention output projection
in another. So nothing here knows a layer by name. For every MatMul/Gemm of the exported fp32
graph, the calibration texts are run one at a time (real lengths, no padding) with the product's
inputs exposed as graph outputs, and the product is recomputed in numpy with its inputs
fake-quantized as an int8 runtime would: activations per tensor over the range seen in
calibration, weights per output channel. Its error relative to the exact product, averaged per
text so that a one-word text counts as much as a paragraph, is the node's sensitivity.

A recipe that smooths (SmoothQuant, as NNCF applies it to linear layers) moves a product's
activation outliers into its weights, so the products it repairs are not the ones int8 breaks
without it. Each linear product is therefore also measured smoothed, at each ``smooth_alphas``
value, with the per-channel factors SmoothQuant computes from the same calibration ranges:
``s_j = max|x_j|^a / max|w_j|^(1-a)``, then ``Q(x / s) Q(s * w)``. A recipe ranks the products by
the error it leaves (``NodeSensitivity.errors``). Without that, a smoothing recipe's search spent
its float budget on products SmoothQuant had already repaired: on the hostile MiniLM, searching
every product, it kept 9 % of the work in float ranked by the plain error, 1 % ranked by the error
SmoothQuant leaves (the attention products alone).

It is a local measure and a ranking, not a verdict: the build pipeline's search keeps the most
sensitive nodes in float, a growing prefix at a time, and judges each candidate end to end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

__all__ = ["NodeSensitivity", "measure_sensitivity", "role_of", "PLAIN", "smoothed_key"]

QUANTIZED_OPS = ("MatMul", "Gemm")
_LAYER = re.compile(r"(?<=[./])(\d+)(?=[./])")
PLAIN = "plain"  # the error key of unsmoothed int8


def smoothed_key(alpha: float) -> str:
    """The error key of int8 after SmoothQuant at ``alpha`` (what a smoothing recipe ranks by)."""
    return f"smooth_quant {alpha:g}"


@dataclass(frozen=True)
class NodeSensitivity:
    name: str  # the graph node's name (OpenVINO keeps it when converting from ONNX)
    role: str  # the name with its layer number replaced by '*': the same product in every layer
    layer: Optional[int]
    error: float  # mean over texts of ||Q(x)Q(w) - xw|| / ||xw||
    flops: float  # multiply-adds per token (mean over the texts): what keeping it in float costs
    weighted: bool  # one input is a weight (a linear layer), not two activations (attention)
    errors: dict = field(default_factory=dict)  # PLAIN and smoothed_key(a) -> that error

    def as_dict(self) -> dict:
        return {"name": self.name, "role": self.role, "layer": self.layer, "error": round(self.error, 5),
                "errors": {k: round(v, 5) for k, v in self.errors.items()}}


def role_of(name: str) -> tuple[str, Optional[int]]:
    """``/encoder/layer.3/output/dense/MatMul`` -> (``/encoder/layer.*/output/dense/MatMul``, 3)."""
    m = _LAYER.search(name)
    return (_LAYER.sub("*", name, count=1), int(m.group(1))) if m else (name, None)


def _fake_quant_tensor(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Asymmetric uint8 over [low, high] (zero included), as a per-tensor activation quantizer does."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / 255.0 or 1.0
    zero = np.round(-low / scale)
    return (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale


def _fake_quant_channels(w: np.ndarray, axis: int) -> np.ndarray:
    """Symmetric int8 per output channel (``axis``: the channel axis of ``w``)."""
    amax = np.abs(w).max(axis=tuple(a for a in range(w.ndim) if a != axis), keepdims=True)
    scale = np.where(amax > 0, amax / 127.0, 1.0)
    return np.clip(np.round(w / scale), -127, 127) * scale


def _smoothing(x_amax: np.ndarray, weight: np.ndarray, alpha: float) -> np.ndarray:
    """SmoothQuant's per-input-channel factors for ``x @ weight`` (weight: [in, out])."""
    w_amax = np.abs(weight).max(axis=1)
    s = np.power(np.maximum(x_amax, 1e-12), alpha) / np.power(np.maximum(w_amax, 1e-12), 1.0 - alpha)
    return np.where((x_amax > 0) & (w_amax > 0), np.clip(s, 1e-5, 1e5), 1.0).astype(np.float32)


def measure_sensitivity(onnx_path: Path, feeds: list[dict[str, np.ndarray]],
                        smooth_alphas: tuple[float, ...] = ()) -> list[NodeSensitivity]:
    """Every MatMul/Gemm of the fp32 graph at ``onnx_path`` with its error, most sensitive first.

    ``feeds`` are single-text inputs (one row each, unpadded), e.g. from ``TextEncoder.pad``.
    ``smooth_alphas``: also measure each linear product after SmoothQuant at these strengths.
    """
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    inits = {t.name: t for t in model.graph.initializer}
    nodes = []
    exposed: list[str] = []
    for node in model.graph.node:
        if node.op_type not in QUANTIZED_OPS:
            continue
        a, b = node.input[0], node.input[1]
        if a in inits:  # a constant on the left is no activation to calibrate; quantizers leave it
            continue
        weight = numpy_helper.to_array(inits[b]).astype(np.float32) if b in inits else None
        if weight is not None and node.op_type == "Gemm":
            attrs = {x.name: x.i for x in node.attribute}
            if attrs.get("transB"):
                weight = weight.T
        nodes.append((node, a, None if weight is not None else b, weight))
        exposed += [x for x in (a, None if weight is not None else b) if x and x not in inits]
    exposed = list(dict.fromkeys(exposed))
    graph_outputs = {o.name for o in model.graph.output}
    for name in exposed:
        if name not in graph_outputs:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
            model.graph.output[-1].type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def run(feed):
        return dict(zip(exposed, session.run(exposed, feed)))

    low = {n: np.inf for n in exposed}
    high = {n: -np.inf for n in exposed}
    # per input channel (last axis), for SmoothQuant's factors and the smoothed per-tensor ranges
    ch_low: dict[str, np.ndarray] = {}
    ch_high: dict[str, np.ndarray] = {}
    linear_inputs = {a for _, a, _, w in nodes if w is not None and w.ndim == 2}
    for feed in feeds:  # pass 1: the ranges a calibrated quantizer would take
        for name, value in run(feed).items():
            low[name], high[name] = min(low[name], float(value.min())), max(high[name], float(value.max()))
            if name not in linear_inputs:
                continue
            flat = value.reshape(-1, value.shape[-1])
            lo, hi = flat.min(axis=0), flat.max(axis=0)
            ch_low[name] = np.minimum(ch_low[name], lo) if name in ch_low else lo
            ch_high[name] = np.maximum(ch_high[name], hi) if name in ch_high else hi
    quant_weights = {id(w): _fake_quant_channels(w, axis=w.ndim - 1) for _, _, _, w in nodes if w is not None}
    # (node index, key) -> (smoothing factors, quantized smoothed weight, smoothed range)
    smoothed = {}
    for i, (node, a, b, weight) in enumerate(nodes):
        if weight is None or weight.ndim != 2 or a not in ch_low:
            continue
        amax = np.maximum(np.abs(ch_low[a]), np.abs(ch_high[a]))
        for alpha in smooth_alphas:
            s = _smoothing(amax, weight, alpha)
            smoothed[i, smoothed_key(alpha)] = (s, _fake_quant_channels(weight * s[:, None], axis=1),
                                                float((ch_low[a] / s).min()), float((ch_high[a] / s).max()))
    keys = [PLAIN] + [smoothed_key(a) for a in smooth_alphas]
    errors = {k: np.zeros(len(nodes)) for k in keys}
    flops = np.zeros(len(nodes))
    for feed in feeds:  # pass 2: each product recomputed with int8 inputs
        acts = run(feed)
        for i, (node, a, b, weight) in enumerate(nodes):
            x = acts[a]
            y = acts[b] if weight is None else weight
            qx = _fake_quant_tensor(x, low[a], high[a])
            qy = _fake_quant_tensor(y, low[b], high[b]) if weight is None else quant_weights[id(weight)]
            exact = np.matmul(x, y)
            flops[i] += exact.size * x.shape[-1] / max(1, next(iter(feed.values())).shape[-1])
            norm = float(np.linalg.norm(exact))
            if norm == 0:
                continue
            plain = float(np.linalg.norm(np.matmul(qx, qy) - exact)) / norm
            for key in keys:
                if key == PLAIN or (i, key) not in smoothed:  # attention products are never smoothed
                    errors[key][i] += plain
                    continue
                s, qw, lo, hi = smoothed[i, key]
                errors[key][i] += float(np.linalg.norm(np.matmul(_fake_quant_tensor(x / s, lo, hi), qw) - exact)) / norm
    out = []
    n = max(1, len(feeds))
    for i, (node, a, b, weight) in enumerate(nodes):
        role, layer = role_of(node.name)
        out.append(NodeSensitivity(node.name, role, layer, errors[PLAIN][i] / n, flops[i] / n, weight is not None,
                                   {k: float(errors[k][i] / n) for k in keys}))
    return sorted(out, key=lambda s: -s.error)
