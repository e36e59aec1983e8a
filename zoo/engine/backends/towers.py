"""Which runtime class serves an ONNX or OpenVINO artifact: one encoder graph, or a CLIP-family
model's two towers (``text_model.*`` and ``vision_model.*``). Kept apart from the runtimes so that
no runtime module imports another both ways."""

from __future__ import annotations

from pathlib import Path

from ..model_config import ModelSpec

__all__ = ["open_onnx", "open_openvino"]


def open_onnx(path: Path, spec: ModelSpec, **kwargs):
    if (Path(path) / "vision_model.onnx").exists():
        from .clip_onnx import ClipOnnxBackend

        return ClipOnnxBackend(path, spec, **kwargs)
    from .onnx_rt import OnnxBackend

    return OnnxBackend(path, spec, **kwargs)


def open_openvino(path: Path, spec: ModelSpec, **kwargs):
    if (Path(path) / "vision_model.xml").exists():
        from .clip_openvino import ClipOpenVinoBackend

        return ClipOpenVinoBackend(path, spec, **kwargs)
    from .openvino_rt import OpenVinoBackend

    return OpenVinoBackend(path, spec, **kwargs)


open_openvino.compiles = True  # both OpenVINO runtimes take ``compile_cache``
