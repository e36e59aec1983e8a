"""Converters: one module per target format, one shared interface (``converters.base``).

``TARGETS`` lists every buildable target. ``torch-fp32`` is the registered
checkpoint itself, stored at registration; it is the reference every other
target is checked against.
"""

from __future__ import annotations

from typing import Iterable, Optional

from .base import BuildResult, Converter, Target

__all__ = ["BuildResult", "Converter", "Target", "CHECKPOINT", "converter_for", "all_targets", "expand_targets"]

CHECKPOINT = Target(name="torch-fp32", format="torch", precision="fp32", device="any",
                    extras=("torch",), description="the registered checkpoint, as fetched")


def _converters() -> list[Converter]:
    # Modules import their heavy libraries lazily, inside build().
    from .gguf import GgufConverter
    from .onnx import OnnxConverter
    from .openvino import OpenVinoConverter
    from .torch_cast import TorchCastConverter

    return [OnnxConverter(), OpenVinoConverter(), TorchCastConverter(), GgufConverter()]


def all_targets() -> list[tuple[Target, Converter]]:
    return [(t, c) for c in _converters() for t in c.targets]


def converter_for(name: str) -> tuple[Target, Converter]:
    for target, conv in all_targets():
        if target.name == name:
            return target, conv
    known = ", ".join(t.name for t, _ in all_targets())
    raise KeyError(f"unknown target {name!r}; known targets: {known}, all-cpu, all-cuda")


def expand_targets(names: Iterable[str], hardware, checkpoint=None) -> list[str]:
    """Expand ``all-cpu`` / ``all-cuda`` into the targets this machine can build and run."""
    out: list[str] = []
    for name in names:
        if name in ("all-cpu", "all-cuda"):
            want = "cpu" if name == "all-cpu" else "cuda"
            for target, conv in all_targets():
                fits = target.device in (want, "any") and not (want == "cpu" and target.name == "torch-fp16")
                if fits and target.precision == "fp16" and target.device == "cuda" and fp16_overflows(checkpoint):
                    fits = False  # computes in fp16, where the family's activations overflow (openvino-fp16 only stores fp16)
                if fits and conv.left_out_reason(target, checkpoint) is None \
                        and conv.unavailable_reason(target, hardware, checkpoint) is None:
                    out.append(target.name)
        else:
            out.append(name)
    return list(dict.fromkeys(out))


def unavailable_reason(name: str, hardware, checkpoint=None) -> Optional[str]:
    target, conv = converter_for(name)
    return conv.unavailable_reason(target, hardware, checkpoint)


def fp16_overflows(checkpoint) -> bool:
    """Whether the checkpoint's family is known to overflow in float16 arithmetic (``FP16_OVERFLOW_FAMILIES``)."""
    from .support import FP16_OVERFLOW_FAMILIES, checkpoint_model_type

    return checkpoint is not None and checkpoint_model_type(checkpoint) in FP16_OVERFLOW_FAMILIES
