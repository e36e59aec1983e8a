"""ONNX Runtime backend: tokenizers + onnxruntime + numpy pooling; never imports torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import ZooError, require
from ..model_config import ModelSpec
from .lean import BatchedBackend, TextEncoder, pool

__all__ = ["OnnxBackend"]


class OnnxBackend(BatchedBackend):
    def __init__(self, path: Path, spec: ModelSpec, device: Optional[str] = None, precision: str = "fp32",
                 settings: Optional[dict[str, Any]] = None, options: Optional[dict[str, Any]] = None):
        ort = require("onnxruntime", "onnx")
        available = ort.get_available_providers()
        if device is None:
            device = "cuda" if "CUDAExecutionProvider" in available and (settings or {}).get("device") == "cuda" else "cpu"
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in available:
                raise ZooError("device 'cuda' requested but this onnxruntime has no CUDAExecutionProvider; "
                               "install onnxruntime-gpu instead of onnxruntime (pip install -c "
                               "constraints-cuda.txt -e '.[gpu]')")
            if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN from the nvidia-* wheels, as torch would load them
                try:
                    ort.preload_dlls()
                except Exception:  # best effort: the provider reports what is still missing
                    pass
            index = int(device.split(":")[1]) if ":" in device else 0
            providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        threads = int((options or {}).get("threads", 0))  # 0: onnxruntime's default (physical cores)
        if threads:
            session_options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(Path(path) / "model.onnx"), session_options, providers=providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.encoder = TextEncoder.from_folder(path, spec.max_seq_length, self.input_names)
        self.spec = spec
        self.device = device if device.startswith("cuda") else "cpu"
        self.name = "onnxruntime"

    def embed_batch(self, texts: list[str], encodings: list, normalize: bool) -> np.ndarray:
        feed = self.encoder.pad(encodings)  # InferenceSession.run is thread-safe
        return pool(self.session.run(None, feed)[0], self.encoder.mask(feed), self.spec, normalize)

    @staticmethod
    def option_variants(hardware) -> list[dict[str, Any]]:
        """Thread counts worth trying: the default (physical cores) and all logical cores if more."""
        variants: list[dict[str, Any]] = [{"threads": 0}]
        if hardware.logical_cores > hardware.physical_cores > 0:
            variants.append({"threads": hardware.logical_cores})
        return variants

