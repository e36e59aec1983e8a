"""OpenVINO backend: tokenizers + openvino runtime + numpy pooling; never imports torch.

The precision OpenVINO computes in is part of the artifact: on CPUs with
avx512_bf16 an fp32 IR silently runs in bf16 unless INFERENCE_PRECISION_HINT says
f32. The build records the hint it gated with (``settings["inference_precision"]``)
and this backend applies exactly that hint, so what serves is what was measured.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ...errors import ZooError, require
from ..model_config import ModelSpec
from ..module_stack import dense_layers
from .lean import BatchedBackend, Prepared, TextEncoder, exclude_prompt, pool

__all__ = ["OpenVinoBackend", "compile_config", "precision_name"]


def precision_name(value) -> str:
    """OpenVINO reports an element type; record its short name (f32, bf16, f16)."""
    return value.to_string() if hasattr(value, "to_string") else str(value)


BROKEN_INT8_BF16_WIDTHS = frozenset({32})
OPENVINO_ROW_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def _ignore(request, userdata) -> None:
    pass


def compile_config(settings: Optional[dict[str, Any]], mode: str = "latency") -> dict[str, str]:
    """OpenVINO's compile options. An artifact without a recorded precision hint runs at the device's
    default, which on x86 is bf16 where the CPU has bf16 and f32 elsewhere; the hint is made explicit
    where the detected profile has no bf16, so a profile masked with ``$ZOO_CPU_FLAGS_OFF`` runs as
    such a CPU does."""
    from ...core.hardware import detect

    config = {"PERFORMANCE_HINT": "THROUGHPUT" if mode == "throughput" else "LATENCY"}
    hint = (settings or {}).get("inference_precision")
    hw = detect()
    if not hint and not hw.is_arm and not hw.bf16:
        hint = "f32"
    if hint:
        config["INFERENCE_PRECISION_HINT"] = hint
    # a weight-compressed IR: the CPU plugin quantizes the activations of its compressed products per group of
    # this many values at run time (0: off); pinned as gated, since the plugin's default may differ elsewhere
    group = (settings or {}).get("dynamic_quantization_group_size")
    if group is not None:
        config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = str(int(group))
    return config


def _compile(core, path: Path, config: dict[str, str], cache_root: Optional[Path], graph: str = "openvino_model.xml"):
    """``compile_model``, through a compiled-model cache when ``cache_root`` is given.

    OpenVINO spends most of a cold start compiling kernels (0.3-1.2 s for MiniLM on 2 cores); its
    ``CACHE_DIR`` turns that into loading a blob (~0.1 s). Each entry is keyed by the artifact's
    digest (its tree's name), the compile config, the hardware fingerprint and the OpenVINO
    version, so another artifact, setting, CPU or release can only miss. An entry is written into a
    temporary folder and renamed into place whole, so no process ever reads a half-written cache.
    """
    import hashlib
    import json
    import shutil
    import uuid

    xml = str(Path(path) / graph)
    if cache_root is None:
        return core.compile_model(core.read_model(xml), "CPU", config)
    from ...core.hardware import detect

    ov = require("openvino", "openvino")
    identity = {"artifact": Path(path).name, "config": config, "hardware": detect().fingerprint,
                "openvino": ov.__version__, **({"graph": graph} if graph != "openvino_model.xml" else {})}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]
    final = Path(cache_root) / key
    if final.is_dir():
        core.set_property({"CACHE_DIR": str(final)})
        try:
            return core.compile_model(xml, "CPU", config)
        except Exception:  # an entry OpenVINO cannot use: drop it and compile afresh
            shutil.rmtree(final, ignore_errors=True)
            core = ov.Core()
            return core.compile_model(core.read_model(xml), "CPU", config)
    staging = Path(cache_root) / f"tmp-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    try:
        core.set_property({"CACHE_DIR": str(staging)})
        compiled = core.compile_model(xml, "CPU", config)
        (staging / "identity.json").write_text(json.dumps(identity, sort_keys=True))
        try:
            staging.rename(final)
        except OSError:  # another process put the same entry in place first
            pass
        return compiled
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class OpenVinoBackend(BatchedBackend):
    compiles = True  # takes ``compile_cache``: a folder for compiled models (see ``_compile``)

    def __init__(self, path: Path, spec: ModelSpec, device: Optional[str] = None, precision: str = "fp32",
                 settings: Optional[dict[str, Any]] = None, options: Optional[dict[str, Any]] = None,
                 compile_cache: Optional[Path] = None):
        ov = require("openvino", "openvino")
        if device not in (None, "cpu"):
            raise ZooError(f"the OpenVINO runtime serves on the CPU here; device {device!r} is not supported")
        # options["mode"]: "latency" (one stream, synchronous; the default) or "throughput"
        # (OpenVINO's streams, batches in flight at once through an async queue)
        self.mode = (options or {}).get("mode", "latency")
        self.compiled = _compile(ov.Core(), Path(path), compile_config(settings, self.mode), compile_cache)
        self._queue = None
        self._queue_lock = threading.Lock()
        if self.mode == "throughput":
            self._queue = ov.AsyncInferQueue(self.compiled,
                                             self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.runtime_precision = precision_name(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        self.input_names = [p.get_any_name() for p in self.compiled.inputs]
        self._requests = threading.local()  # an InferRequest is not thread-safe: one per thread
        self.encoder = TextEncoder.from_folder(path, spec.max_seq_length, self.input_names)
        if precision == "int8" and self.runtime_precision == "bf16":
            # OpenVINO's bf16 kernels give wrong vectors for a static-int8 model at a padded width of
            # exactly 32 tokens (MiniLM, OpenVINO 2026.4, AVX-512/AMX: cosine 0.76-0.90 to the reference;
            # 31 and 33 are right, and so is the f32 hint). Such batches get one more pad column.
            self.encoder.avoid_widths = BROKEN_INT8_BF16_WIDTHS
        # OpenVINO's CPU plugin compiles kernels for each new input shape (~40 ms each here, against
        # ~15 ms for the batch itself), so batches keep to power-of-two rows and widths in steps of 8
        self.row_sizes = OPENVINO_ROW_SIZES
        self.encoder.width_multiple = 8
        self.spec = spec
        self.head = dense_layers(Path(path))  # the Dense modules after the pooling, if any
        self.device = "cpu"
        self.name = f"openvino ({self.runtime_precision})"

    excludes_prompt = True

    def embed_batch(self, texts: list[str], encodings: list, normalize: bool, prompt_tokens: int = 0) -> np.ndarray:
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self.compiled.create_infer_request()
        feed = self.encoder.pad(encodings)
        mask = exclude_prompt(self.encoder.mask(feed), prompt_tokens)
        return pool(request.infer(feed)[self.compiled.output(0)], mask, self.spec, normalize, self.head)

    def run_batches(self, prepared: Prepared, batches, normalize: bool, out: np.ndarray,
                    on_batch=lambda n: None) -> None:
        batches = list(batches)
        if self.mode != "throughput" or len(batches) < 2:
            return super().run_batches(prepared, batches, normalize, out, on_batch)
        spec, head = self.spec, self.head  # the callback must not hold `self`: OpenVINO's threads would finalise it

        def done(request, userdata):
            idx, mask = userdata
            out[idx] = pool(request.get_output_tensor(0).data, mask, spec, normalize, head)
            on_batch(len(idx))

        with self._queue_lock:  # one queue per model; concurrent callers take turns
            self._queue.set_callback(done)
            try:
                for idx in batches:
                    feed = self.encoder.pad([prepared.encodings[i] for i in idx])
                    self._queue.start_async(feed, (idx, exclude_prompt(self.encoder.mask(feed), prepared.prompt_tokens)))
                self._queue.wait_all()
            finally:
                self._queue.set_callback(_ignore)  # drop this call's arrays

    @staticmethod
    def option_variants(hardware) -> list[dict[str, Any]]:
        return [{"mode": "latency"}, {"mode": "throughput"}]
