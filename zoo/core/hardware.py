"""What this machine is and can run: CPU, instruction sets, cores, memory, CUDA GPUs.

``detect()`` is cheap (``/proc``, ``os``, one ``nvidia-smi`` call when a driver is
present) and imports no ML library, because selection runs on the cold-start path
of ``zoo embed``. ``runtimes()`` is the deep probe behind ``zoo doctor``: it imports
torch, onnxruntime and openvino to say which of them can actually use what.

The profile is a frozen value passed down, so tests inject one (a CUDA machine, a
CPU without VNNI) instead of patching detection. ``fingerprint`` names the machine
for stored benchmark figures: the same hardware gives the same fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

__all__ = ["Hardware", "Gpu", "detect", "runtimes", "doctor_warnings"]

ISA_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8",
             "amx_bf16", "fma", "neon", "asimd")


@dataclass(frozen=True)
class Gpu:
    name: str
    compute_capability: Optional[str] = None
    memory_mb: Optional[int] = None
    driver: Optional[str] = None


@dataclass(frozen=True)
class Hardware:
    arch: str  # x86_64 | aarch64 | arm64 | ...
    flags: frozenset[str] = field(default_factory=frozenset)
    cuda: bool = False  # a CUDA GPU with a working driver
    ort_cuda: bool = False  # onnxruntime has the CUDAExecutionProvider (onnxruntime-gpu installed)
    cpu_vendor: str = ""  # GenuineIntel, AuthenticAMD, ARM implementer id, ...
    cpu_model: str = ""
    physical_cores: int = 0
    logical_cores: int = 0
    memory_mb: int = 0
    gpus: tuple[Gpu, ...] = ()
    # runtimes installed here (torch / onnx / openvino / gguf); not part of the fingerprint: they
    # decide what can run, not how fast. A hand-built profile assumes the three of the cpu extra;
    # llama.cpp (the gguf extra, built from source) only where it is detected.
    runtimes: frozenset[str] = frozenset({"torch", "onnx", "openvino"})

    def has(self, *flags: str) -> bool:
        return all(f in self.flags for f in flags)

    @property
    def is_arm(self) -> bool:
        return self.arch in ("aarch64", "arm64")

    @property
    def bf16(self) -> bool:
        return self.has("avx512_bf16") or self.has("amx_bf16")

    @property
    def fingerprint(self) -> str:
        """Stable id of what determines speed: CPU model and ISA, cores, GPUs (not free memory)."""
        key = {"arch": self.arch, "vendor": self.cpu_vendor, "cpu": self.cpu_model, "flags": sorted(self.flags),
               "cores": [self.physical_cores, self.logical_cores],
               "gpus": [[g.name, g.compute_capability] for g in self.gpus], "ort_cuda": self.ort_cuda}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["flags"] = sorted(self.flags)
        d["runtimes"] = sorted(self.runtimes)
        d["fingerprint"] = self.fingerprint
        return d


def _cpuinfo() -> tuple[frozenset[str], str, str, int]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset(), "", platform.processor(), os.cpu_count() or 1
    flags: set[str] = set()
    vendor, model, cores = "", "", set()
    physical_id = "0"
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key in ("flags", "Features") and not flags:
            flags = set(value.split())
        elif key in ("model name", "Model") and not model:
            model = value
        elif key in ("vendor_id", "CPU implementer") and not vendor:
            vendor = value
        elif key == "physical id":
            physical_id = value
        elif key == "core id":
            cores.add((physical_id, value))
    return frozenset(f for f in ISA_FLAGS if f in flags), vendor, model, len(cores) or (os.cpu_count() or 1)


def _memory_mb() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def _nvidia_gpus() -> tuple[Gpu, ...]:
    if not (Path("/proc/driver/nvidia").exists() or Path("/dev/nvidiactl").exists()) or not shutil.which("nvidia-smi"):
        return ()
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap,memory.total,driver_version",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    gpus = []
    for line in out.stdout.strip().splitlines() if out.returncode == 0 else []:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 4:
            gpus.append(Gpu(parts[0], parts[1], int(float(parts[2])) if parts[2].replace(".", "").isdigit() else None,
                            parts[3]))
    return tuple(gpus)


def _ort_cuda() -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


RUNTIME_MODULES = {"torch": "sentence_transformers", "onnx": "onnxruntime", "openvino": "openvino", "gguf": "llama_cpp"}


def _installed_runtimes() -> frozenset[str]:
    import importlib.util

    return frozenset(name for name, module in RUNTIME_MODULES.items() if importlib.util.find_spec(module))


# Instruction sets to treat as absent, e.g. "avx512_bf16,amx_bf16,amx_tile,amx_int8": this machine then
# selects, builds and runs as a CPU without them would (OpenVINO computes in f32, no bf16 targets).
# For testing what other CPUs do, on one machine; ``zoo doctor`` shows the flags in effect.
MASK_ENV = "ZOO_CPU_FLAGS_OFF"


@lru_cache(maxsize=1)
def detect() -> Hardware:
    flags, vendor, model, physical = _cpuinfo()
    flags = flags - {f.strip() for f in os.environ.get(MASK_ENV, "").split(",")}
    gpus = _nvidia_gpus()
    return Hardware(arch=platform.machine().lower(), flags=flags, cuda=bool(gpus),
                    ort_cuda=bool(gpus) and _ort_cuda(),  # only import onnxruntime when a GPU exists
                    cpu_vendor=vendor, cpu_model=model, physical_cores=physical, logical_cores=os.cpu_count() or 1,
                    memory_mb=_memory_mb(), gpus=gpus, runtimes=_installed_runtimes())


def runtimes() -> dict[str, Any]:
    """Which runtimes are installed and what they can use (imports them: for `zoo doctor`)."""
    out: dict[str, Any] = {}
    try:
        import torch

        out["torch"] = {"version": torch.__version__, "cuda": torch.cuda.is_available(),
                        "cuda_version": torch.version.cuda,
                        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}
    except ImportError:
        out["torch"] = None
    try:
        import onnxruntime

        out["onnxruntime"] = {"version": onnxruntime.__version__, "package": _ort_package(),
                              "providers": onnxruntime.get_available_providers()}
    except ImportError:
        out["onnxruntime"] = None
    try:
        import openvino

        out["openvino"] = {"version": openvino.get_version(), "devices": openvino.Core().available_devices}
    except ImportError:
        out["openvino"] = None
    try:
        from importlib import metadata

        out["llama_cpp"] = {"version": metadata.version("llama-cpp-python")}  # importing it loads the library
    except metadata.PackageNotFoundError:
        out["llama_cpp"] = None
    return out


def doctor_warnings(hw: Hardware, rt: dict[str, Any]) -> list[str]:
    """Loud warnings for silent failures: a GPU that an installed runtime cannot use."""
    warnings = []
    ort = rt.get("onnxruntime") or {}
    if hw.cuda and ort and "CUDAExecutionProvider" not in ort.get("providers", []):
        warnings.append(f"a CUDA GPU ({hw.gpus[0].name if hw.gpus else 'present'}) is here but onnxruntime cannot "
                        f"use it (providers: {', '.join(ort.get('providers', [])) or 'none'}); ONNX artifacts would "
                        "run on the CPU. Install onnxruntime-gpu instead of onnxruntime: "
                        "pip install -c constraints-cuda.txt -e '.[gpu]'")
    torch_info = rt.get("torch") or {}
    if hw.cuda and torch_info and not torch_info.get("cuda"):
        warnings.append("a CUDA GPU is here but this torch is a CPU build; torch artifacts would run on the CPU")
    if "+" in ort.get("package", ""):
        warnings.append("both onnxruntime and onnxruntime-gpu are installed; they overwrite each other. "
                        "Uninstall both and install one")
    return warnings


def _ort_package() -> str:
    from importlib import metadata

    names = [n for n in ("onnxruntime", "onnxruntime-gpu") if _installed(metadata, n)]
    return " + ".join(names) or "unknown"


def _installed(metadata, name: str) -> bool:
    try:
        metadata.version(name)
        return True
    except metadata.PackageNotFoundError:
        return False
