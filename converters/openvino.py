"""OpenVINO targets: IR in fp32 / fp16 / bf16-at-runtime, and static int8 via NNCF.

The IR is converted from zoo's own ONNX export with ``openvino.convert_model``.
The precision OpenVINO *computes* in is recorded and fixed per target, because on
CPUs with avx512_bf16 an fp32 IR silently runs in bf16 unless told otherwise:

- ``openvino-fp32``: fp32 weights, INFERENCE_PRECISION_HINT=f32 (exact);
- ``openvino-bf16``: fp32 weights, hint bf16 (only where the CPU has bf16);
- ``openvino-fp16``: fp16-compressed weights, the device's default precision;
- ``openvino-int8``: NNCF post-training static quantization (the "qint8" recipe),
  calibrated on the bundled corpus or ``--calibration FILE``, never on the
  texts the fidelity gate measures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from zoo.errors import require
from zoo.store.sources import list_local_files

from .base import BuildResult, Converter, Progress, Target
from .onnx import export_onnx
from .support import exportable_reason

__all__ = ["OpenVinoConverter"]

XML = "openvino_model.xml"


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
        if checkpoint is not None and (why := exportable_reason(checkpoint)):
            return why
        if hardware.is_arm and target.precision == "bf16":
            return "openvino-bf16 needs an x86-64 CPU with avx512_bf16 or AMX"
        if target.precision == "bf16" and not (hardware.has("avx512_bf16") or hardware.has("amx_bf16")):
            return "openvino-bf16 needs CPU bf16 support (avx512_bf16 or AMX); this CPU has neither"
        return None

    def build(self, target: Target, checkpoint: Path, out_dir: Path, settings: dict[str, Any],
              progress: Progress) -> BuildResult:
        ov = require("openvino", "openvino")
        progress(f"{target.name}: exporting to ONNX", None)
        info = export_onnx(checkpoint, out_dir)  # tokenizer + configs land in out_dir
        onnx_file = out_dir / "model.onnx"
        progress(f"{target.name}: converting to OpenVINO IR", None)
        model = ov.convert_model(str(onnx_file))
        onnx_file.unlink()
        hint: Optional[str] = {"fp32": "f32", "bf16": "bf16"}.get(target.precision)
        if target.precision == "int8":
            progress(f"{target.name}: calibrating on {len(settings['calibration'])} texts", None)
            model, info["quantization"] = _quantize(model, out_dir, info["inputs"], settings)
        ov.save_model(model, str(out_dir / XML), compress_to_fp16=target.precision == "fp16")
        info["inference_precision"] = hint
        runtime = _runtime_precision(out_dir, hint)
        info["runtime_precision"] = runtime
        return BuildResult(files=list_local_files(out_dir), settings=info, runtime_precision=runtime)


def _runtime_precision(out_dir: Path, hint: Optional[str]) -> str:
    """Compile the IR as the runtime will and read back the precision it computes in."""
    import openvino as ov

    from zoo.engine.backends.openvino_rt import compile_config, precision_name

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(out_dir / XML)), "CPU",
                                  compile_config({"inference_precision": hint}))
    return precision_name(compiled.get_property("INFERENCE_PRECISION_HINT"))


def _quantize(model, out_dir: Path, input_names: list[str], settings: dict[str, Any]):
    nncf = require("nncf", "openvino")
    from zoo.engine.backends.lean import TextEncoder

    texts = list(settings["calibration"])
    encoder = TextEncoder.from_folder(out_dir, int(settings["max_seq_length"]), input_names)
    items = [encoder.pad(encoder.encode([t])) for t in texts]  # one text per item: real lengths, no padding
    quantized = nncf.quantize(model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(items))
    return quantized, {"tool": "nncf.quantize", "model_type": "TRANSFORMER", "preset": "performance",
                       "subset_size": len(items)}
