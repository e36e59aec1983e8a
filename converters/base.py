"""The one interface every converter implements.

A converter turns the checkpoint tree (the revision's ``torch-fp32`` artifact)
into one target's files in a fresh output directory. It never touches the
registry or the store: zoo's build pipeline owns locking, status rows, the
fidelity gate and the atomic hand-off of ``out_dir`` to the store, so every
format is saved the same way and a crash never leaves a half-built artifact.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

__all__ = ["Target", "BuildResult", "Converter", "Progress", "Recipe", "SearchSpace"]

Progress = Callable[[str, Optional[float]], None]  # (step description, fraction done or None)


@dataclass(frozen=True)
class Target:
    """A buildable artifact kind, e.g. ``onnx-int8-avx512_vnni``."""

    name: str
    format: str  # torch | onnx | openvino
    precision: str  # fp32 | fp16 | bf16 | int8
    variant: Optional[str] = None  # o3, avx512_vnni, ...
    device: str = "cpu"  # cpu | cuda | any
    extras: tuple[str, ...] = ()  # pip extras the build needs, for error messages
    description: str = ""

    @property
    def batch_dependent(self) -> bool:
        """Whether a text's vector depends on the texts batched with it: dynamic int8 scales activations per padded
        batch (onnxruntime's DynamicQuantizeLinear), so the gate also reads each text alone and judges the worse."""
        return self.format == "onnx" and self.precision == "int8" and self.variant != "static"


@dataclass
class BuildResult:
    """What a converter built and how, recorded verbatim as provenance."""

    files: list[str]  # paths relative to out_dir
    settings: dict[str, Any] = field(default_factory=dict)
    runtime_precision: Optional[str] = None  # what the runtime actually computes in
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Recipe:
    """One whole-model way to quantize (e.g. SmoothQuant on or off), as ``build`` reads it."""

    label: str
    config: dict[str, Any] = field(default_factory=dict)
    # the SmoothQuant strength this recipe applies, if any: the sensitivity pass measures each product
    # after that smoothing too, and the nodes are ranked by the error it leaves
    smoothing: Optional[float] = None


@dataclass
class SearchSpace:
    """What a quantizing converter offers the build pipeline's search (``zoo.conversion.search``).

    ``recipes`` are tried first, as given (expected fastest first), with everything quantized;
    then the best of them keeps a growing prefix of ``nodes`` (most sensitive first, from
    ``converters.sensitivity``) in float until a candidate passes. ``build`` receives each
    candidate as ``settings["search"] = {"recipe": {...}, "keep_float": [node names]}``.
    """

    recipes: list[Recipe]
    # {"name", "role", "layer", "error", "errors", "flops"}, most sensitive (plain error) first
    nodes: list[dict[str, Any]]
    seconds: float = 0.0  # what measuring the sensitivities took

    def ranked(self, recipe: Recipe) -> list[str]:
        """The node names, most sensitive first under ``recipe`` (by the error it leaves)."""
        from .sensitivity import PLAIN, smoothed_key

        key = PLAIN if recipe.smoothing is None else smoothed_key(recipe.smoothing)

        def error(node: dict[str, Any]) -> float:
            return (node.get("errors") or {}).get(key, node.get("error", 0.0))

        return [n["name"] for n in sorted(self.nodes, key=lambda n: -error(n))]


class Converter(abc.ABC):
    name: str  # recorded in provenance
    version: str = "1"
    targets: tuple[Target, ...] = ()

    def unavailable_reason(self, target: Target, hardware: Any, checkpoint: Optional[Path] = None) -> Optional[str]:
        """Why ``target`` cannot be built or run on ``hardware`` (for ``checkpoint``); None when it can."""
        return None

    def left_out_reason(self, target: Target, checkpoint: Optional[Path] = None) -> Optional[str]:
        """Why all-cpu / all-cuda and `zoo optimize` leave out a target this machine could build for ``checkpoint``
        (asked for by name, it is built and gated); None when they offer it."""
        return None

    def search_space(self, target: Target, checkpoint: Path, settings: dict[str, Any],
                     progress: Progress) -> Optional[SearchSpace]:
        """The configurations worth searching for ``target``; None when it has one way to build."""
        return None

    @abc.abstractmethod
    def build(self, target: Target, checkpoint: Path, out_dir: Path, settings: dict[str, Any],
              progress: Progress) -> BuildResult:
        """Write ``target``'s files for ``checkpoint`` into the empty ``out_dir``."""
