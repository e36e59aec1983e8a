"""Runtimes that embed text with one artifact, behind one small interface.

A backend is built from an artifact directory and the model's spec, and turns
a list of strings into a float32 matrix with the model's pooling and
normalisation applied. Each backend module imports its heavy runtime lazily, so
choosing ONNX or OpenVINO never imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from ...errors import ZooError
from ..model_config import ModelSpec

__all__ = ["LazyBackend", "Backend", "load_backend", "BACKENDS"]


class Backend(Protocol):
    name: str  # e.g. "sentence-transformers/torch"
    device: str  # e.g. "cpu", "cuda:0"

    def embed(self, texts: list[str], batch_size: int) -> np.ndarray: ...


# artifact format -> "module:factory"; filled in as converters land.
BACKENDS: dict[str, str] = {
    "torch": "zoo.engine.backends.torch_st:TorchBackend",
    "onnx": "zoo.engine.backends.towers:open_onnx",
    "openvino": "zoo.engine.backends.towers:open_openvino",
    "gguf": "zoo.engine.backends.llama_cpp_rt:GgufBackend",
}

# a reranker's runtimes: the lean ONNX / OpenVINO ones pool its logits through its activation (``lean.pool``)
RERANKER_BACKENDS: dict[str, str] = {
    "torch": "zoo.engine.backends.torch_ce:CrossEncoderBackend",
    "onnx": "zoo.engine.backends.onnx_rt:OnnxBackend",
    "openvino": "zoo.engine.backends.openvino_rt:OpenVinoBackend",
}


def load_backend(fmt: str, path: Path, spec: ModelSpec, device: str | None = None,
                 precision: str = "fp32", settings: dict | None = None, options: dict | None = None,
                 compile_cache: Path | None = None) -> Backend:
    """``settings``: how the artifact was built (from provenance); ``options``: how to run it
    here (measured by ``zoo bench``: OpenVINO mode, onnxruntime threads); ``compile_cache``: a
    folder where runtimes that compile (OpenVINO) keep compiled models between processes."""
    table = RERANKER_BACKENDS if spec.kind == "reranker" else BACKENDS  # a cross-encoder: scores, not states
    try:
        module_name, factory = table[fmt].split(":")
    except KeyError:
        if spec.kind == "reranker":
            raise ZooError(f"no {fmt} runtime for a reranker; its torch, ONNX and OpenVINO artifacts serve") from None
        raise ZooError(f"no runtime for artifact format {fmt!r}; known: {', '.join(sorted(BACKENDS))}") from None
    import importlib

    cls = getattr(importlib.import_module(module_name), factory)
    extra = {"compile_cache": compile_cache} if compile_cache is not None and getattr(cls, "compiles", False) else {}
    return cls(path, spec, device=device, precision=precision, settings=settings, options=options, **extra)


class LazyBackend:
    """A backend opened on first use: a call whose texts are all in the vector cache never imports
    or compiles the runtime. ``name``, ``device`` and ``runtime_precision`` are known beforehand
    (measured on this machine by ``zoo bench``); everything else opens the real backend, which
    must then report the same runtime precision, since cached vectors are keyed by it."""

    def __init__(self, factory, *, name: str, device: str, runtime_precision: str, declared_precision: str):
        import threading

        self._factory, self._real, self._lock = factory, None, threading.Lock()
        self.name, self.device, self.runtime_precision = name, device, runtime_precision
        self._declared = declared_precision  # what a runtime that does not report its precision computes in

    @property
    def opened(self) -> bool:
        return self._real is not None

    def open(self):
        with self._lock:
            if self._real is None:
                real = self._factory()
                actual = getattr(real, "runtime_precision", None) or self._declared
                if actual != self.runtime_precision:
                    raise ZooError(f"{self.name} now computes in {actual}, not the {self.runtime_precision} measured "
                                   "here; run `zoo bench` again (or pass runtime_options) to refresh it")
                self._real = real
        return self._real

    def __getattr__(self, attribute: str):
        if attribute.startswith("_"):
            raise AttributeError(attribute)
        return getattr(self.open(), attribute)
