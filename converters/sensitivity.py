"""Which matrix products int8 can hold: each one's measured quantization error, from one fp32 pass.

Activation outlier channels are what break int8 on real encoders (bge, e5, gte, mpnet), and where
they sit differs per model: the FFN down-projection input in one, the attention output projection
in another. So nothing here knows a layer by name. For every MatMul/Gemm of the exported fp32
graph, the calibration texts are run one at a time (real lengths, no padding) with the product's
inputs exposed as graph outputs, and the product is recomputed in numpy with its inputs
fake-quantized as an int8 runtime would: activations per tensor over the range seen in
calibration, weights per output channel. Its error relative to the exact product, averaged per
text so that a one-word text counts as much as a paragraph, is the node's sensitivity.

It is a local measure and a ranking, not a verdict: the build pipeline's search keeps the most
sensitive nodes in float, a growing prefix at a time, and judges each candidate end to end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

__all__ = ["NodeSensitivity", "measure_sensitivity", "role_of"]

QUANTIZED_OPS = ("MatMul", "Gemm")
_LAYER = re.compile(r"(?<=[./])(\d+)(?=[./])")


@dataclass(frozen=True)
class NodeSensitivity:
    name: str  # the graph node's name (OpenVINO keeps it when converting from ONNX)
    role: str  # the name with its layer number replaced by '*': the same product in every layer
    layer: Optional[int]
    error: float  # mean over texts of ||Q(x)Q(w) - xw|| / ||xw||
    flops: float  # multiply-adds per token (mean over the texts): what keeping it in float costs
    weighted: bool  # one input is a weight (a linear layer), not two activations (attention)

    def as_dict(self) -> dict:
        return {"name": self.name, "role": self.role, "layer": self.layer, "error": round(self.error, 5)}


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


def measure_sensitivity(onnx_path: Path, feeds: list[dict[str, np.ndarray]]) -> list[NodeSensitivity]:
    """Every MatMul/Gemm of the fp32 graph at ``onnx_path`` with its error, most sensitive first.

    ``feeds`` are single-text inputs (one row each, unpadded), e.g. from ``TextEncoder.pad``.
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
    for feed in feeds:  # pass 1: the per-tensor ranges a calibrated quantizer would take
        for name, value in run(feed).items():
            low[name], high[name] = min(low[name], float(value.min())), max(high[name], float(value.max()))
    quant_weights = {id(w): _fake_quant_channels(w, axis=w.ndim - 1) for _, _, _, w in nodes if w is not None}
    errors = np.zeros(len(nodes))
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
            errors[i] += float(np.linalg.norm(np.matmul(qx, qy) - exact)) / norm if norm > 0 else 0.0
    out = []
    for i, (node, a, b, weight) in enumerate(nodes):
        role, layer = role_of(node.name)
        out.append(NodeSensitivity(node.name, role, layer, errors[i] / max(1, len(feeds)),
                                   flops[i] / max(1, len(feeds)), weight is not None))
    return sorted(out, key=lambda s: -s.error)
