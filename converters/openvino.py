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
  (NNCF's ``ignored_scope``) until the model's floor holds;
- ``openvino-int8w``: weight-only int8 (NNCF ``compress_weights``, INT8_ASYM per channel), data-free, hint f32.
  OpenVINO's CPU plugin by default quantizes the compressed products' activations to int8 per group of 32 at run
  time (``DYNAMIC_GROUP``), which is fast but not always faithful: searched, that default first, then with
  activations kept in f32 (group size 0). The group size the gate judged is pinned in the artifact.
  For models whose weights, not arithmetic, set the speed: decoders of 0.5B-8B;
- ``openvino-int4w``: group-wise int4 weights (INT4_ASYM, groups of 128), the rest int8. Searched on the share of
  layers in int4 (NNCF's ``ratio``): 1.0 first, then less, until the floor holds; each with the plugin's dynamic
  activation quantization, then without.
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
from .support import exportable_reason, weight_only_left_out

__all__ = ["OpenVinoConverter"]

XML = "openvino_model.xml"
# NNCF's default for transformers, and off: which one a model needs is measured, not assumed
# (a pending NNCF change proposes turning it off, as it hurt some transformers).
RECIPES = [Recipe("SmoothQuant 0.95", {"smooth_quant": 0.95}, smoothing=0.95),
           Recipe("SmoothQuant off", {"smooth_quant": None})]
# openvino-int4w: the share of the ratio-defining layers in int4 (the rest int8), most compressed first
INT4_RATIOS = (1.0, 0.8, 0.6, 0.4, 0.2)
# OpenVINO's CPU plugin quantizes the activations of compressed products to int8 per group of 32 values at run
# time (its default since 2024.3, what optimum-intel users get); zoo pins it in the artifact so every machine
# computes as the gate measured. Per token, so a text's vector never depends on its batch.
DYNAMIC_GROUP = 32
INT4_GROUP = 128  # NNCF's and optimum-intel's default group size; narrower layers get the largest group that fits


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
        Target("openvino-int8w", "openvino", "int8w", None, "cpu", ("openvino", "onnx", "torch"),
               "weight-only int8 (NNCF compress_weights), data-free"),
        Target("openvino-int4w", "openvino", "int4w", None, "cpu", ("openvino", "onnx", "torch"),
               "group-wise int4 weights, the rest int8 (NNCF compress_weights, searched ratio)"),
    )

    def left_out_reason(self, target: Target, checkpoint: Optional[Path] = None) -> Optional[str]:
        return weight_only_left_out(target.precision, checkpoint)

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
        if target.precision in ("int8w", "int4w"):
            ratios = INT4_RATIOS if target.precision == "int4w" else (None,)
            return SearchSpace([Recipe(("" if r is None else f"int4 ratio {r}, ") + (
                f"activations int8 per {g}" if g else "activations f32"), {"ratio": r, "dynamic_group": g})
                for g in (DYNAMIC_GROUP, 0) for r in ratios], [])
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
        # weight-only targets run with the f32 hint; whether the plugin quantizes their activations is searched
        hint: Optional[str] = {"fp32": "f32", "bf16": "bf16", "int8w": "f32", "int4w": "f32"}.get(target.precision)
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
        elif target.precision in ("int8w", "int4w"):
            progress(f"{target.name}: compressing the weights", None)
            model, info["compression"] = compress_weights(model, target.precision, settings)
            info["dynamic_quantization_group_size"] = info["compression"]["dynamic_group"]
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


def compress_weights(model, precision: str, settings: dict[str, Any]):
    """NNCF's data-free weight compression: int8 per output channel, or int4 in groups with the rest int8. NNCF
    keeps the embedding table and the last product in int8 (its defaults, measured to matter most for fidelity).
    A layer narrower than the group, or not divisible by it, gets the largest group that divides it (NNCF's
    ADJUST fallback) rather than an error: tiny test models and odd widths compress too."""
    nncf = require("nncf", "openvino")
    from nncf.common.logging import nncf_logger
    from nncf.quantization.advanced_parameters import AdvancedCompressionParameters, GroupSizeFallbackMode

    recipe = (settings.get("search") or {}).get("recipe") or {}
    if precision == "int8w":
        kwargs: dict[str, Any] = {"mode": nncf.CompressWeightsMode.INT8_ASYM}
        record: dict[str, Any] = {"mode": "int8_asym", "group_size": "per-channel"}
    else:
        ratio = float(recipe.get("ratio", INT4_RATIOS[0]))
        kwargs = {"mode": nncf.CompressWeightsMode.INT4_ASYM, "ratio": ratio, "group_size": INT4_GROUP,
                  "advanced_parameters": AdvancedCompressionParameters(
                      group_size_fallback_mode=GroupSizeFallbackMode.ADJUST)}
        record = {"mode": "int4_asym", "backup_mode": "int8_asym", "ratio": ratio, "group_size": INT4_GROUP}
    level = nncf_logger.level
    nncf_logger.setLevel(logging.WARNING)  # its statistics table, once per attempt
    try:
        with contextlib.redirect_stdout(sys.stderr):
            compressed = nncf.compress_weights(model, **kwargs)
    finally:
        nncf_logger.setLevel(level)
    group = int(recipe.get("dynamic_group", DYNAMIC_GROUP))
    return compressed, {"tool": "nncf.compress_weights", "data_free": True, "dynamic_group": group,
                        "activations": (f"f32, int8 per group of {group} inside compressed products (OpenVINO's "
                                        "dynamic quantization)") if group else "f32", **record}


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
