"""What this machine can run: CPU architecture and instruction sets, CUDA.

A frozen value, detected once and passed down, so tests inject a profile (a CUDA
machine, a CPU without VNNI) instead of patching detection.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

__all__ = ["Hardware", "detect"]

ISA_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8",
             "amx_bf16", "fma", "neon", "asimd")


@dataclass(frozen=True)
class Hardware:
    arch: str  # x86_64 | aarch64 | arm64 | ...
    flags: frozenset[str] = field(default_factory=frozenset)
    cuda: bool = False  # a CUDA GPU torch can use
    ort_cuda: bool = False  # onnxruntime has the CUDAExecutionProvider (onnxruntime-gpu installed)

    def has(self, *flags: str) -> bool:
        return all(f in self.flags for f in flags)

    @property
    def is_arm(self) -> bool:
        return self.arch in ("aarch64", "arm64")


def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            present = set(line.split(":", 1)[1].split())
            return frozenset(f for f in ISA_FLAGS if f in present)
    return frozenset()


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _ort_cuda() -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


@lru_cache(maxsize=1)
def detect() -> Hardware:
    return Hardware(arch=platform.machine().lower(), flags=_cpu_flags(), cuda=_cuda(), ort_cuda=_ort_cuda())
