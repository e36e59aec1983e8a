"""torch fp16 / bf16 targets: the checkpoint's weights cast, everything else unchanged.

Served by the same sentence-transformers runtime as ``torch-fp32``, loaded in the
cast dtype. Measured here: bf16 runs 1.86x fp32 on an avx512_bf16 CPU; fp16 on a
CPU runs at 0.24x, so fp16 is a CUDA target (buildable anywhere, fast on a GPU).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Optional

from zoo.errors import require
from zoo.store.sources import list_local_files

from .base import BuildResult, Converter, Progress, Target

__all__ = ["TorchCastConverter"]


class TorchCastConverter(Converter):
    name = "zoo.torch_cast"
    version = "1"
    targets = (
        Target("torch-fp16", "torch", "fp16", None, "cuda", ("torch",), "weights cast to float16 (GPU)"),
        Target("torch-bf16", "torch", "bf16", None, "any", ("torch",), "weights cast to bfloat16"),
    )

    def unavailable_reason(self, target: Target, hardware, checkpoint: Optional[Path] = None) -> Optional[str]:
        return None  # casting works for any torch checkpoint; speed is the selection's business

    def build(self, target: Target, checkpoint: Path, out_dir: Path, settings: dict[str, Any],
              progress: Progress) -> BuildResult:
        torch = require("torch", "torch")
        from safetensors.torch import load_file, save_file

        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[target.precision]
        progress(f"{target.name}: casting weights", None)
        weights = [p for p in checkpoint.glob("*.safetensors")]
        for f in checkpoint.rglob("*"):
            if not f.is_file():
                continue
            rel = f.relative_to(checkpoint)
            (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            if f in weights:
                tensors = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in load_file(str(f)).items()}
                save_file(tensors, str(out_dir / rel), metadata={"format": "pt"})
            elif f.name == "pytorch_model.bin" and f.parent == checkpoint:
                state = torch.load(str(f), map_location="cpu", weights_only=True)
                save_file({k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in state.items()},
                          str(out_dir / "model.safetensors"), metadata={"format": "pt"})
            else:
                shutil.copy2(f, out_dir / rel)
        config = json.loads((out_dir / "config.json").read_text())
        config["torch_dtype"] = {"fp16": "float16", "bf16": "bfloat16"}[target.precision]
        (out_dir / "config.json").write_text(json.dumps(config, indent=2))
        return BuildResult(files=list_local_files(out_dir), settings={"dtype": str(dtype)}, runtime_precision=target.precision)
