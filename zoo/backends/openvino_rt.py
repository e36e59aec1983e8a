"""OpenVINO backend: tokenizers + openvino runtime + numpy pooling; never imports torch.

The precision OpenVINO computes in is part of the artifact: on CPUs with
avx512_bf16 an fp32 IR silently runs in bf16 unless INFERENCE_PRECISION_HINT says
f32. The build records the hint it gated with (``settings["inference_precision"]``)
and this backend applies exactly that hint, so what serves is what was measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import ZooError, require
from ..model_config import ModelSpec
from .lean import TextEncoder, embed_sorted

__all__ = ["OpenVinoBackend", "compile_config", "precision_name"]


def precision_name(value) -> str:
    """OpenVINO reports an element type; record its short name (f32, bf16, f16)."""
    return value.to_string() if hasattr(value, "to_string") else str(value)


def compile_config(settings: Optional[dict[str, Any]]) -> dict[str, str]:
    config = {"PERFORMANCE_HINT": "LATENCY"}
    hint = (settings or {}).get("inference_precision")
    if hint:
        config["INFERENCE_PRECISION_HINT"] = hint
    return config


class OpenVinoBackend:
    def __init__(self, path: Path, spec: ModelSpec, device: Optional[str] = None, precision: str = "fp32",
                 settings: Optional[dict[str, Any]] = None):
        ov = require("openvino", "openvino")
        if device not in (None, "cpu"):
            raise ZooError(f"the OpenVINO runtime serves on the CPU here; device {device!r} is not supported")
        core = ov.Core()
        model = core.read_model(str(Path(path) / "openvino_model.xml"))
        self.compiled = core.compile_model(model, "CPU", compile_config(settings))
        self.runtime_precision = precision_name(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        self.input_names = [p.get_any_name() for p in self.compiled.inputs]
        self.request = self.compiled.create_infer_request()
        self.encoder = TextEncoder(path, spec.max_seq_length, self.input_names)
        self.spec = spec
        self.device = "cpu"
        self.name = f"openvino ({self.runtime_precision})"

    def _run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self.request.infer(feed)[self.compiled.output(0)]

    def embed(self, texts: list[str], batch_size: int) -> np.ndarray:
        return embed_sorted(texts, batch_size, self.encoder, self._run, self.spec)
