"""ONNX Runtime for a CLIP-family artifact: a text and a vision graph into one space; never imports torch.

The artifact holds ``text_model.onnx`` and ``vision_model.onnx`` (``converters.export``), each
ending in its tower's projection, so there is no token pooling here: texts go through zoo's
tokenizer and batching as for any model, images through ``zoo.engine.images.pixel_values`` (the
recorded preprocessing, in numpy) in batches of the caller's size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from ...errors import ZooError, require
from ..model_config import ModelSpec
from .lean import BatchedBackend, TextEncoder, normalize_rows

__all__ = ["ClipOnnxBackend"]


class ClipOnnxBackend(BatchedBackend):
    def __init__(self, path: Path, spec: ModelSpec, device: Optional[str] = None, precision: str = "fp32",
                 settings: Optional[dict[str, Any]] = None, options: Optional[dict[str, Any]] = None):
        ort = require("onnxruntime", "onnx")
        if device not in (None, "cpu"):
            raise ZooError(f"the CLIP ONNX runtime serves on the CPU here; device {device!r} is not supported")
        if spec.image_preprocessing is None:
            raise ZooError("this model records no image preprocessing; re-register it (zoo register --force)")
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        threads = int((options or {}).get("threads", 0))
        if threads:
            session_options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        self.text = ort.InferenceSession(str(Path(path) / "text_model.onnx"), session_options, providers=providers)
        self.vision = ort.InferenceSession(str(Path(path) / "vision_model.onnx"), session_options, providers=providers)
        self.input_names = [i.name for i in self.text.get_inputs()]
        self.encoder = TextEncoder.from_folder(path, spec.max_seq_length, self.input_names)
        self.spec = spec
        self.device = "cpu"
        self.name = "onnxruntime (clip)"

    def embed_batch(self, texts: list[str], encodings: list, normalize: bool) -> np.ndarray:
        out = self.text.run(None, self.encoder.pad(encodings))[0]
        return normalize_rows(out) if normalize else np.asarray(out, dtype=np.float32)

    def embed_images(self, images: list, batch_size: int, normalize: bool) -> np.ndarray:
        from ..images import embed_in_batches

        out = embed_in_batches(images, batch_size, self.spec.image_preprocessing,
                               lambda pixels: self.vision.run(None, {"pixel_values": pixels})[0])
        return normalize_rows(out) if normalize else out

    @staticmethod
    def option_variants(hardware) -> list[dict[str, Any]]:
        return [{"threads": 0}]
