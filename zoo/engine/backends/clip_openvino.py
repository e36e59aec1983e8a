"""OpenVINO for a CLIP-family artifact: the text and vision IRs, compiled with the artifact's precision hint.

As ``clip_onnx`` with OpenVINO's CPU plugin: ``text_model.xml`` and ``vision_model.xml`` end in
their towers' projections; images are preprocessed in numpy (``zoo.engine.images.pixel_values``).
Both IRs go through the compiled-model cache under their own keys. Never imports torch.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ...errors import ZooError, require
from ..model_config import ModelSpec
from .lean import BatchedBackend, TextEncoder, normalize_rows
from .openvino_rt import BROKEN_INT8_BF16_WIDTHS, _compile, compile_config, precision_name

__all__ = ["ClipOpenVinoBackend"]


class ClipOpenVinoBackend(BatchedBackend):
    compiles = True

    def __init__(self, path: Path, spec: ModelSpec, device: Optional[str] = None, precision: str = "fp32",
                 settings: Optional[dict[str, Any]] = None, options: Optional[dict[str, Any]] = None,
                 compile_cache: Optional[Path] = None):
        ov = require("openvino", "openvino")
        if device not in (None, "cpu"):
            raise ZooError(f"the OpenVINO runtime serves on the CPU here; device {device!r} is not supported")
        if spec.image_preprocessing is None:
            raise ZooError("this model records no image preprocessing; re-register it (zoo register --force)")
        config = compile_config(settings, "latency")
        self.text = _compile(ov.Core(), Path(path), config, compile_cache, "text_model.xml")
        self.vision = _compile(ov.Core(), Path(path), config, compile_cache, "vision_model.xml")
        self.runtime_precision = precision_name(self.text.get_property("INFERENCE_PRECISION_HINT"))
        self.input_names = [p.get_any_name() for p in self.text.inputs]
        self._requests = threading.local()  # an InferRequest is not thread-safe: one pair per thread
        self.encoder = TextEncoder.from_folder(path, spec.max_seq_length, self.input_names)
        self.encoder.width_multiple = 8  # the CPU plugin compiles per shape
        if precision == "int8" and self.runtime_precision == "bf16":  # as OpenVinoBackend: a kernel bug at 32
            self.encoder.avoid_widths = BROKEN_INT8_BF16_WIDTHS
        self.spec = spec
        self.device = "cpu"
        self.name = f"openvino ({self.runtime_precision}, clip)"

    def _request(self, which: str):
        request = getattr(self._requests, which, None)
        if request is None:
            request = getattr(self, which).create_infer_request()
            setattr(self._requests, which, request)
        return request

    def embed_batch(self, texts: list[str], encodings: list, normalize: bool) -> np.ndarray:
        out = np.array(self._request("text").infer(self.encoder.pad(encodings))[self.text.output(0)], dtype=np.float32)
        return normalize_rows(out) if normalize else out

    def embed_images(self, images: list, batch_size: int, normalize: bool) -> np.ndarray:
        from ..images import embed_in_batches

        request = self._request("vision")
        out = embed_in_batches(images, batch_size, self.spec.image_preprocessing,
                               lambda pixels: np.array(request.infer({"pixel_values": pixels})[self.vision.output(0)]))
        return normalize_rows(out) if normalize else out
