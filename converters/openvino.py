"""OpenVINO targets: IR in fp32 / fp16 / bf16-at-runtime, and static int8 via NNCF.

The IR is converted from zoo's own ONNX export with ``openvino.convert_model``.
The precision OpenVINO *computes* in is recorded and fixed per target, because on
CPUs with avx512_bf16 an fp32 IR silently runs in bf16 unless told otherwise:

- ``openvino-fp32``: fp32 weights, INFERENCE_PRECISION_HINT=f32 (exact);
- ``openvino-bf16``: fp32 weights, hint bf16 (only where the CPU has bf16);
- ``openvino-fp16``: fp16-compressed weights, the device's default precision;
- ``openvino-int8``: NNCF post-training static quantization (the "qint8" recipe),
  calibrated on the bundled corpus or ``--calibration FILE``, never on the
  texts the fidelity gate measures. It is searched (``zoo.conversion.search``): SmoothQuant
  on and off, then the matrix products most sensitive to int8 kept in float
  (NNCF's ``ignored_scope``) until the model's floor holds.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Any, Optional

from zoo.errors import require
from zoo.store.sources import list_local_files

from .base import BuildResult, Converter, Progress, Recipe, SearchSpace, Target
from .quantization import copy_export, fp32_export, image_feeds, keep_float, search_space, text_feeds
from .support import exportable_reason

__all__ = ["OpenVinoConverter"]

XML = "openvino_model.xml"
# NNCF's default for transformers, and off: which one a model needs is measured, not assumed
# (a pending NNCF change proposes turning it off, as it hurt some transformers).
RECIPES = [Recipe("SmoothQuant 0.95", {"smooth_quant": 0.95}, smoothing=0.95),
           Recipe("SmoothQuant off", {"smooth_quant": None})]


class OpenVinoConverter(Converter):
    name = "zoo.openvino"
    version = "1"
    targets = (
        Target("openvino-fp32", "openvino", "fp32", None, "cpu", ("openvino", "onnx", "torch"),
               "OpenVINO IR, computed in f32"),
        Target("openvino-bf16", "openvino", "bf16", None, "cpu", ("openvino", "onnx", "torch"),
               "OpenVINO IR (fp32 weights) computed in bf16 on CPUs with bf16"),
        Target("openvino-fp16", "openvino", "fp16", None, "cpu", ("openvino", "onnx", "torch"),
               "OpenVINO IR with fp16-compressed weights"),
        Target("openvino-int8", "openvino", "int8", "qint8", "cpu", ("openvino", "onnx", "torch"),
               "static int8 (NNCF post-training quantization, offline calibration)"),
    )

    def unavailable_reason(self, target: Target, hardware, checkpoint: Optional[Path] = None) -> Optional[str]:
        if checkpoint is not None and (why := exportable_reason(checkpoint, target.name)):
            return why
        if hardware.is_arm and target.precision == "bf16":
            return "openvino-bf16 needs an x86-64 CPU with avx512_bf16 or AMX"
        if target.precision == "bf16" and not (hardware.has("avx512_bf16") or hardware.has("amx_bf16")):
            return "openvino-bf16 needs CPU bf16 support (avx512_bf16 or AMX); this CPU has neither"
        return None

    def search_space(self, target: Target, checkpoint: Path, settings: dict[str, Any],
                     progress: Progress) -> Optional[SearchSpace]:
        if target.precision != "int8":
            return None
        # Every product, the attention ones (QK, AV) included: NNCF quantizes their inputs too, and
        # SmoothQuant cannot reach them (no weight to move the outliers into). On the hostile MiniLM,
        # whose planted query and value outliers sit there, a search over linear layers alone had to
        # keep 54 % of the work in float (3.83x ST fp32); searching the attention products too, ranked
        # by the error SmoothQuant leaves, it keeps 1 % (4.27x).
        return search_space(checkpoint, settings, Path(settings["scratch"]), progress, RECIPES)

    def build(self, target: Target, checkpoint: Path, out_dir: Path, settings: dict[str, Any],
              progress: Progress) -> BuildResult:
        ov = require("openvino", "openvino")
        progress(f"{target.name}: exporting to ONNX", None)
        export = fp32_export(checkpoint, settings, out_dir)
        info = copy_export(export, out_dir, with_model=False)  # tokenizer + configs land in out_dir
        progress(f"{target.name}: converting to OpenVINO IR", None)
        (out_dir / "model.onnx").unlink(missing_ok=True)
        (out_dir / ".export.json").unlink(missing_ok=True)
        hint: Optional[str] = {"fp32": "f32", "bf16": "bf16"}.get(target.precision)
        if info.get("graphs"):  # a CLIP-family model: its two towers, each its own IR
            for graph in info["graphs"]:
                model = ov.convert_model(str(export / graph))
                if target.precision == "int8":  # each tower calibrated on its own inputs
                    vision = graph.startswith("vision")
                    progress(f"{target.name}: calibrating the {'vision' if vision else 'text'} tower", None)
                    items = (list(image_feeds(out_dir, settings["calibration_images"])) if vision
                             else text_feeds(out_dir, info["inputs"], settings, settings["calibration"]))
                    model, info.setdefault("quantization", {})[graph] = _quantize(model, items, settings, graph)
                ov.save_model(model, str(out_dir / graph.replace(".onnx", ".xml")),
                              compress_to_fp16=target.precision == "fp16")
            info["inference_precision"] = hint
            info["runtime_precision"] = runtime = _runtime_precision(out_dir, hint, "text_model.xml")
            return BuildResult(files=list_local_files(out_dir), settings=info, runtime_precision=runtime)
        model = ov.convert_model(str(export / "model.onnx"))
        if target.precision == "int8":
            progress(f"{target.name}: calibrating on {len(settings['calibration'])} texts", None)
            model, info["quantization"] = _quantize(
                model, text_feeds(out_dir, info["inputs"], settings, settings["calibration"]), settings)
        ov.save_model(model, str(out_dir / XML), compress_to_fp16=target.precision == "fp16")
        info["inference_precision"] = hint
        runtime = _runtime_precision(out_dir, hint)
        info["runtime_precision"] = runtime
        return BuildResult(files=list_local_files(out_dir), settings=info, runtime_precision=runtime)


def _runtime_precision(out_dir: Path, hint: Optional[str], graph: str = XML) -> str:
    """Compile the IR as the runtime will and read back the precision it computes in."""
    import openvino as ov

    from zoo.engine.backends.openvino_rt import compile_config, precision_name

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(out_dir / graph)), "CPU",
                                  compile_config({"inference_precision": hint}))
    return precision_name(compiled.get_property("INFERENCE_PRECISION_HINT"))


def _quantize(model, items: list[dict], settings: dict[str, Any], graph: str = "model.onnx"):
    """NNCF's transformer preset with this attempt's recipe and nodes kept in float; the calibration
    statistics are collected once per searched target (``converters.calibration``)."""
    require("nncf", "openvino")
    from nncf.common.logging import nncf_logger

    from .calibration import quantize

    recipe = (settings.get("search") or {}).get("recipe") or RECIPES[0].config
    alpha = recipe.get("smooth_quant")
    present = {op.get_friendly_name() for op in model.get_ops()}
    keep = [n for n in keep_float(settings) if n in present]
    state = settings.get("calibration_state")
    level = nncf_logger.level
    nncf_logger.setLevel(logging.WARNING)  # one INFO line per node kept in float, per attempt
    try:  # NNCF draws its progress bars on stdout, where `zoo ... --json` writes its answer
        with contextlib.redirect_stdout(sys.stderr):
            quantized = quantize(model, items, smooth_quant=alpha, keep=keep,
                                 state=None if state is None else state.setdefault(graph, {}))
    finally:
        nncf_logger.setLevel(level)
    return quantized, {"tool": "nncf.quantize", "model_type": "TRANSFORMER", "preset": "performance",
                       "subset_size": len(items), "smooth_quant": alpha, "kept_in_float": keep}
