"""Versions of the libraries that built or serve an artifact, read without importing them."""

from __future__ import annotations

from importlib import metadata

__all__ = ["library_versions"]

TRACKED = ("zoo", "torch", "transformers", "sentence-transformers", "tokenizers", "huggingface-hub",
           "onnx", "onnxruntime", "onnxruntime-gpu", "optimum", "optimum-onnx", "optimum-intel",
           "openvino", "nncf", "llama-cpp-python", "numpy")


def library_versions(names: tuple[str, ...] = TRACKED) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
