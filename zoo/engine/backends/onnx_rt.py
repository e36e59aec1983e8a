"""ONNX Runtime backend: tokenizers + onnxruntime + numpy pooling; never imports torch."""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ...errors import ZooError, require
from ..model_config import ModelSpec
from ..module_stack import dense_layers
from .lean import BatchedBackend, Prepared, TextEncoder, exclude_prompt, pool

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
        options = options or {}
        # "threads": one run's intra-op threads (0: onnxruntime's default, physical cores).
        # "parallel": N batches in flight, each run on its own thread (threads default to 1). On a
        # small CPU this beats splitting every operator across cores: no per-operator barrier, so
        # a core taken by other work (a server's HTTP, tokenizing) stalls one batch, not all.
        self.parallel = 1 if device.startswith("cuda") else max(1, int(options.get("parallel", 1)))
        threads = int(options.get("threads", 1 if self.parallel > 1 else 0))
        if threads:
            session_options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(Path(path) / "model.onnx"), session_options, providers=providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.encoder = TextEncoder.from_folder(path, spec.max_seq_length, self.input_names)
        self.spec = spec
        self.head = dense_layers(Path(path))  # the Dense modules after the pooling, if any
        self.device = device if device.startswith("cuda") else "cpu"
        self.name = "onnxruntime"
        self._pool = None
        if self.parallel > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.parallel, thread_name_prefix="zoo-ort")
            weakref.finalize(self, self._pool.shutdown, wait=False)

    excludes_prompt = True

    def embed_batch(self, texts: list[str], encodings: list, normalize: bool, prompt_tokens: int = 0) -> np.ndarray:
        feed = self.encoder.pad(encodings)  # InferenceSession.run is thread-safe
        mask = exclude_prompt(self.encoder.mask(feed), prompt_tokens)
        return pool(self.session.run(None, feed)[0], mask, self.spec, normalize, self.head)

    def run_batches(self, prepared: Prepared, batches, normalize: bool, out: np.ndarray,
                    on_batch: Callable[[int], None] = lambda n: None) -> None:
        batches = list(batches)
        if self._pool is None or len(batches) < 2:
            return super().run_batches(prepared, batches, normalize, out, on_batch)
        lengths = prepared.lengths

        def run(idx):
            out[idx] = self.embed_rows(prepared, idx, normalize)
            return len(idx)

        # dearest first (rows x longest): the long tail does not run alone at the end
        batches.sort(key=lambda idx: -len(idx) * max(lengths[i] for i in idx))
        for done in self._pool.map(run, batches):
            on_batch(done)

    @staticmethod
    def option_variants(hardware) -> list[dict[str, Any]]:
        """Runtime settings worth trying: the default (one run over the physical cores), all logical
        cores if more, and one batch per physical core in parallel."""
        variants: list[dict[str, Any]] = [{"threads": 0}]
        if hardware.logical_cores > hardware.physical_cores > 0:
            variants.append({"threads": hardware.logical_cores})
        if hardware.physical_cores > 1:
            variants.append({"parallel": hardware.physical_cores})
        return variants

