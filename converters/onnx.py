"""ONNX targets: fp32 export, ORT graph optimisation (O1-O4), dynamic int8 per ISA, static int8.

Every target starts from the fp32 export (``converters.export``), shared by all
targets of one conversion. Optimisation and quantization use optimum's presets (``AutoOptimizationConfig``,
``AutoQuantizationConfig``): measured here, a plain ``quantize_dynamic`` call lost
far more fidelity (mean cos 0.956) than optimum's avx512_vnni preset (0.991).

``onnx-int8-static`` is onnxruntime's static QDQ quantization (``quantize_static``): per-channel
weights, activation ranges calibrated once on single unpadded texts. Every int8 target is searched
(``zoo.conversion.search``): the matrix products most sensitive to int8 are kept in float
(``nodes_to_exclude``) until the model's floor holds.

``onnx-int8w`` is weight-only int8: onnxruntime's ``MatMulNBitsQuantizer`` (8 bits, asymmetric, blocks of 128
along the input dimension) turns each weight product into a ``MatMulNBits``; the activations stay fp32
(``accuracy_level`` unset). Data-free, for models whose weights set the speed (decoders of 0.5B-8B).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Optional

from zoo.errors import ZooError, require
from zoo.store.sources import list_local_files

from .base import BuildResult, Converter, Progress, Recipe, SearchSpace, Target
from .quantization import copy_export, fp32_export, image_feeds, keep_float, search_space, text_feeds
from .support import checkpoint_model_type, exportable_reason, weight_only_left_out

__all__ = ["OnnxConverter"]

ISAS = ("arm64", "avx2", "avx512", "avx512_vnni")
WEIGHT_BLOCK = 128  # onnxruntime's default block size for MatMulNBits


class OnnxConverter(Converter):
    name = "zoo.onnx"
    version = "1"
    targets = (
        Target("onnx-fp32", "onnx", "fp32", None, "any", ("onnx", "torch"), "ONNX export, dynamic batch and sequence"),
        Target("onnx-o1", "onnx", "fp32", "o1", "cpu", ("onnx", "torch"), "ORT basic graph optimisations"),
        Target("onnx-o2", "onnx", "fp32", "o2", "cpu", ("onnx", "torch"), "O1 + transformer fusions"),
        Target("onnx-o3", "onnx", "fp32", "o3", "cpu", ("onnx", "torch"), "O2 + GELU approximation"),
        Target("onnx-o4", "onnx", "fp16", "o4", "cuda", ("onnx-gpu", "torch"), "O3 + fp16 (CUDA only)"),
        *(Target(f"onnx-int8-{isa}", "onnx", "int8", isa, "cpu", ("onnx", "torch"),
                 f"dynamic int8 quantization tuned for {isa}") for isa in ISAS),
        Target("onnx-int8-static", "onnx", "int8", "static", "cpu", ("onnx", "torch"),
               "static int8 (QDQ, per-channel weights, calibrated activations)"),
        Target("onnx-int8w", "onnx", "int8w", None, "cpu", ("onnx", "torch"),
               "weight-only int8 (onnxruntime MatMulNBits, blocks of 128), activations in fp32"),
    )

    def left_out_reason(self, target: Target, checkpoint: Optional[Path] = None) -> Optional[str]:
        return weight_only_left_out(target.precision, checkpoint)

    def search_space(self, target: Target, checkpoint: Path, settings: dict[str, Any],
                     progress: Progress) -> Optional[SearchSpace]:
        if target.precision != "int8":
            return None
        return search_space(checkpoint, settings, Path(settings["scratch"]), progress, [Recipe(target.variant)])

    def unavailable_reason(self, target: Target, hardware, checkpoint: Optional[Path] = None) -> Optional[str]:
        if checkpoint is not None and (why := exportable_reason(checkpoint, target.name)):
            return why
        if checkpoint is not None and target.variant in ("o1", "o2", "o3", "o4"):
            model_type = checkpoint_model_type(checkpoint)
            if model_type is not None and not optimizer_supports(model_type):
                return (f"optimum's ORTOptimizer has no graph fusions for {model_type} models (its "
                        "ORTConfigManager); onnx-fp32 and the int8 targets serve it")
        if target.device == "cuda" and not hardware.cuda:
            return f"{target.name} needs a CUDA GPU; this machine has none"
        if target.device == "cuda" and not hardware.ort_cuda:
            return (f"{target.name} needs onnxruntime-gpu, but the installed onnxruntime has no CUDA provider: "
                    "pip install -c constraints-cuda.txt -e '.[gpu]' (never beside onnxruntime)")
        isa = target.variant if target.precision == "int8" else None
        if isa == "static":
            return None if hardware.is_arm or hardware.has("avx2") else f"{target.name} needs AVX2 or an ARM64 CPU"
        if isa == "arm64" and not hardware.is_arm:
            return "onnx-int8-arm64 needs an ARM64 CPU"
        if isa in ("avx2", "avx512", "avx512_vnni") and hardware.is_arm:
            return f"{target.name} needs an x86-64 CPU"
        needs = {"avx2": ("avx2",), "avx512": ("avx512f",), "avx512_vnni": ("avx512f", "avx512_vnni")}.get(isa, ())
        missing = [f for f in needs if not hardware.has(f)]
        if missing:
            return f"{target.name} needs CPU instructions this machine lacks: {', '.join(missing)}"
        return None

    def build(self, target: Target, checkpoint: Path, out_dir: Path, settings: dict[str, Any],
              progress: Progress) -> BuildResult:
        progress(f"{target.name}: exporting to ONNX", None)
        with tempfile.TemporaryDirectory(dir=out_dir.parent) as tmp:
            exported = fp32_export(checkpoint, settings, Path(tmp))
            if target.precision == "int8w":
                info = copy_export(exported, out_dir, with_model=False)
                if info.get("graphs"):
                    raise ZooError(f"{target.name} compresses single-graph text models; use onnx-int8-static")
                progress(f"{target.name}: compressing the weights", None)
                info["compression"] = _compress_weights(exported / "model.onnx", out_dir / "model.onnx")
                return BuildResult(files=list_local_files(out_dir), settings=info, runtime_precision="int8w")
            if target.variant is None:
                info = copy_export(exported, out_dir)
                return BuildResult(files=list_local_files(out_dir), settings=info, runtime_precision="fp32")
            info = copy_export(exported, out_dir, with_model=False)
            graphs = info.get("graphs") or ["model.onnx"]  # a CLIP-family model: both towers
            if target.variant == "static":
                progress(f"{target.name}: calibrating and quantizing", None)
                info.update(_quantize_static(exported, out_dir, info["inputs"], settings, graphs))
                runtime = "int8"
            elif target.precision == "int8":
                progress(f"{target.name}: quantizing", None)
                info.update(_quantize(exported, out_dir, target.variant, settings, graphs))
                runtime = "int8"
            else:
                progress(f"{target.name}: optimizing ({target.variant.upper()})", None)
                info.update(_optimize(exported, out_dir, target.variant))
                runtime = "fp16" if target.variant == "o4" else "fp32"
        return BuildResult(files=list_local_files(out_dir), settings=info, runtime_precision=runtime)


def _compress_weights(source: Path, target: Path) -> dict[str, Any]:
    """Every weight product (``MatMul`` with a constant right side) as a ``MatMulNBits`` of 8-bit blocks."""
    require("onnx_ir", "onnx")  # matmul_nbits_quantizer imports it at module level
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    import logging

    model = onnx.load(str(source))  # external data (a model past 2 GB) is read from beside the graph
    chatty = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")  # a line per node at INFO
    level = chatty.level
    chatty.setLevel(logging.WARNING)
    try:
        quantizer = MatMulNBitsQuantizer(model, bits=8, block_size=WEIGHT_BLOCK, is_symmetric=False)
        quantizer.process()
    finally:
        chatty.setLevel(level)
    compressed = quantizer.model.model
    products = sum(1 for n in compressed.graph.node if n.op_type == "MatMulNBits")
    if not products:
        raise ZooError("onnx-int8w found no weight product to compress in this graph")
    quantizer.model.save_model_to_file(str(target), use_external_data_format=compressed.ByteSize() > 2_000_000_000)
    return {"tool": "onnxruntime MatMulNBitsQuantizer", "bits": 8, "block_size": WEIGHT_BLOCK, "symmetric": False,
            "accuracy_level": None, "activations": "fp32", "products": products, "data_free": True}


def _optimize(exported: Path, out_dir: Path, level: str) -> dict[str, Any]:
    require("optimum.onnxruntime", "onnx")
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig

    config = getattr(AutoOptimizationConfig, level.upper())(**({"for_gpu": True} if level == "o4" else {}))
    optimizer = ORTOptimizer.from_pretrained(str(exported), file_names=["model.onnx"])
    with tempfile.TemporaryDirectory(dir=out_dir.parent) as tmp:
        optimizer.optimize(save_dir=tmp, optimization_config=config)
        shutil.move(str(Path(tmp) / "model_optimized.onnx"), str(out_dir / "model.onnx"))
    return {"optimization": {"level": level.upper(), **_jsonable(config.__dict__)}}


def _quantize(exported: Path, out_dir: Path, isa: str, settings: dict[str, Any],
              graphs: list[str] = ("model.onnx",)) -> dict[str, Any]:
    require("optimum.onnxruntime", "onnx")
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    # optimum's preset default; per-tensor weights lost far more fidelity on MiniLM (mean cos 0.946 vs 0.99)
    per_channel = bool(settings.get("per_channel", True))
    # Quantize the matrix products, keep the embedding lookup (Gather) in fp32: measured on MiniLM with the
    # bundled probe, mean cos 0.9904 vs 0.9900 for the full preset, same speed, 59 vs 23 MB.
    operators = list(settings.get("operators_to_quantize", ["MatMul", "Attention"]))
    keep = keep_float(settings)
    config = getattr(AutoQuantizationConfig, isa)(is_static=False, per_channel=per_channel,
                                                   operators_to_quantize=operators, nodes_to_exclude=keep)
    for graph in graphs:
        quantizer = ORTQuantizer.from_pretrained(str(exported), file_name=graph)
        with tempfile.TemporaryDirectory(dir=out_dir.parent) as tmp:
            quantizer.quantize(save_dir=tmp, quantization_config=config)
            shutil.move(str(Path(tmp) / graph.replace(".onnx", "_quantized.onnx")), str(out_dir / graph))
    return {"quantization": {"preset": isa, "is_static": False, "per_channel": per_channel,
                             "mode": str(config.mode), "weights_dtype": str(config.weights_dtype),
                             "activations_dtype": str(config.activations_dtype),
                             "operators": list(config.operators_to_quantize), "kept_in_float": keep}}


class _Feeds:
    """onnxruntime's CalibrationDataReader protocol over single-text feeds."""

    def __init__(self, feeds):
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)


def _quantize_static(exported: Path, out_dir: Path, input_names: list[str], settings: dict[str, Any],
                     graphs: list[str] = ("model.onnx",)) -> dict[str, Any]:
    """Static QDQ int8: activation ranges from single unpadded texts (MinMax), weights per channel.

    Only the inputs of the MatMuls are quantized (the attention products' too), each through a Q/DQ
    pair of its own. By onnxruntime's defaults the outputs are quantized too, and a tensor's one
    Q/DQ pair feeds all its consumers, so the residual path of a post-LN encoder ran on int8 values
    as well: MiniLM fell to mean cosine 0.904 on the validation set.
    Without VNNI, x86 int8 kernels can saturate (u8 x s8 pairs overflow int16), so weights then use
    7 bits (``reduce_range``), as onnxruntime advises. The calibration ranges are cached in the
    conversion's work dir, so each search candidate only re-inserts the Q/DQ pairs.
    """
    require("onnxruntime", "onnx")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from zoo.core.hardware import detect

    hw = detect()
    reduce_range = not hw.is_arm and not (hw.has("avx512_vnni") or hw.has("avx_vnni") or hw.has("amx_int8"))
    texts = list(settings.get("calibration") or [])
    keep = keep_float(settings)
    work = Path(settings.get("work_dir") or out_dir.parent)
    for graph in graphs:
        # a CLIP vision tower calibrates on the pipeline's generated images
        feeds = (image_feeds(exported, settings["calibration_images"]) if graph.startswith("vision")
                 else text_feeds(exported, input_names, settings, texts))
        cache = work / f"static-ranges-{Path(graph).stem}-{len(texts)}.json"
        with warnings.catch_warnings(), _quiet_root_logger():
            warnings.simplefilter("ignore")
            quantize_static(str(exported / graph), str(out_dir / graph), _Feeds(feeds), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=["MatMul"], per_channel=True, reduce_range=reduce_range,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=keep,
                            calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=str(cache),
                            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True,
                                           "OpTypesToExcludeOutputQuantization": ["MatMul"],
                                           "DedicatedQDQPair": True})
        for leftover in out_dir.glob("*augmented*"):
            leftover.unlink()
        _float_for_other_consumers(out_dir / graph)
    return {"quantization": {"tool": "onnxruntime.quantization.quantize_static", "format": "QDQ",
                             "per_channel": True, "reduce_range": reduce_range, "activations": "uint8 MinMax, inputs only",
                             "weights": "int8 symmetric", "operators": ["MatMul"], "dedicated_qdq_pairs": True, "calibration_texts": len(texts),
                             "kept_in_float": keep}}


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime's quantizer logs advice on the root logger for every call; a search makes ten."""
    import logging

    class Drop(logging.Filter):
        def filter(self, record):
            return record.levelno > logging.WARNING

    drop = Drop()
    logging.getLogger().addFilter(drop)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(drop)


def _float_for_other_consumers(path: Path) -> None:
    """Give every consumer that is not a MatMul its float input back.

    onnxruntime's QDQ quantizer rewires all consumers of a quantized tensor to the dequantized
    copy (a dedicated pair per consumer only when several MatMuls share it): the LayerNorm output
    the FFN's MatMul reads is also the residual the next Add reads, so the residual stream of a
    post-LN encoder ran on 8-bit values. Here every consumer that is not a MatMul reads the float
    tensor again, and a Q/DQ pair left without consumers is dropped.
    """
    import onnx

    model = onnx.load(str(path))
    nodes = list(model.graph.node)
    quantizers = {n.output[0]: n for n in nodes if n.op_type == "QuantizeLinear"}
    readers: dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    drop = set()
    for dq in (n for n in nodes if n.op_type == "DequantizeLinear" and n.input[0] in quantizers):
        source = quantizers[dq.input[0]].input[0]
        others = [c for c in readers.get(dq.output[0], []) if c.op_type != "MatMul"]
        for c in others:
            c.input[:] = [source if i == dq.output[0] else i for i in c.input]
        if len(others) == len(readers.get(dq.output[0], [])):
            drop |= {id(dq), id(quantizers[dq.input[0]])}
    outputs = {o.name for o in model.graph.output}
    if any(dq.output[0] in outputs for dq in nodes if dq.op_type == "DequantizeLinear"):
        raise ZooError("static quantization put a Q/DQ pair on a graph output; refusing the artifact")
    kept = [n for n in nodes if id(n) not in drop]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    onnx.save(model, str(path))


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=str))


def optimizer_supports(model_type: str) -> bool:
    """Whether optimum's ORTOptimizer (the O1-O4 presets) knows the family: it refuses others only after the
    export, with NotImplementedError; asked first, the target is left out with its reason."""
    try:
        from optimum.onnxruntime.utils import ORTConfigManager
    except ImportError:
        return True  # the build says what is missing
    supported = getattr(ORTConfigManager, "_conf", None)
    return supported is None or model_type.replace("_", "-") in supported or model_type in supported
