"""GGUF targets served by llama.cpp: ``gguf-f16`` and ``gguf-q8_0``.

Every step is llama.cpp's own, so the file is what llama.cpp users (LocalAI, llama-server) expect:

1. ``convert_hf_to_gguf.py`` (from the installed llama-cpp-python's source release, see
   ``converters.gguf_source``) writes the checkpoint as an f32 GGUF: tensors, llama.cpp's form of
   the vocabulary and special tokens, and the pooling read from sentence-transformers'
   ``modules.json``. It runs as its own process, as its authors run it, with its own ``gguf-py``.
   One f32 file per ``zoo convert`` call serves every GGUF target.
2. llama.cpp's quantizer (``llama_model_quantize``) turns it into F16 or Q8_0.

No 4-bit target: Q4_K_M of all-MiniLM-L6-v2 measured mean cosine 0.9898 on the probe set (min
0.974), below the default floor, and Q4_K_S 0.988; on a 384-wide model most tensors do not divide
into k-quant blocks of 256 and fall back to other types anyway.

Refused before any work, with the reason: families llama.cpp cannot run as encoders (MPNet has
no llama.cpp architecture), models without a sentence-transformers Pooling module (llama.cpp
would declare no pooling and return token vectors), pooling llama.cpp lacks (max,
mean-sqrt-len, weighted mean), and vocabularies its converter refuses (found by its own
``--vocab-only`` run: an unknown pre-tokenizer, say). The per-tensor overrides of ``llama-quantize --tensor-type``
are not reachable through llama-cpp-python's C API, so these targets are gated, not searched.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

from zoo.errors import ZooError
from zoo.store.sources import list_local_files

from .base import BuildResult, Converter, Progress, Target
from .support import checkpoint_model_type, copy_model_configs, exportable_reason

__all__ = ["GgufConverter", "GGUF_MODEL_TYPES", "pooling_reason", "save_tokenizer", "target_of_file", "FILE_TYPES"]

# encoder families llama.cpp runs as its BERT architecture (conversion/bert.py), and the decoders it runs as
# embedding models with last-token pooling (conversion/qwen.py; Qwen3-Embedding, gte-Qwen2), tested here
GGUF_MODEL_TYPES = ("bert", "distilbert", "roberta", "xlm-roberta", "qwen3", "qwen2")
LLAMA_POOLING = ("mean", "cls", "lasttoken")  # what convert_hf_to_gguf can declare
# target variant -> (llama.cpp's file type constant, what the runtime computes in)
FILE_TYPES = {"f16": ("LLAMA_FTYPE_MOSTLY_F16", "f16"), "q8_0": ("LLAMA_FTYPE_MOSTLY_Q8_0", "q8_0")}


def dense_reason(checkpoint: Path) -> Optional[str]:
    """llama.cpp's converter writes the transformer only for these families: a Dense module after the pooling
    would be lost, and the GGUF would embed with another function (the gate would refuse it, but only after
    the build)."""
    try:
        modules = json.loads((Path(checkpoint) / "modules.json").read_text())
    except (OSError, ValueError):
        return None
    dense = [m.get("path") for m in modules if isinstance(m, dict) and str(m.get("type", "")).endswith(".Dense")]
    if dense:
        return (f"llama.cpp's converter does not carry sentence-transformers Dense modules ({', '.join(dense)}) for "
                "this family; the ONNX, OpenVINO and torch targets serve it")
    return None


def pooling_reason(checkpoint: Path) -> Optional[str]:
    """Why llama.cpp's converter cannot declare this model's pooling, or None."""
    modules_file = Path(checkpoint) / "modules.json"
    modules = json.loads(modules_file.read_text()) if modules_file.exists() else []
    pooling = next((m for m in modules if m.get("type", "").endswith("Pooling")), None)
    if pooling is None:
        return ("llama.cpp's converter reads the pooling from sentence-transformers' modules.json, and this "
                "checkpoint has no Pooling module (its GGUF would return token vectors)")
    config_file = Path(checkpoint) / pooling.get("path", "") / "config.json"
    config = json.loads(config_file.read_text()) if config_file.exists() else {}
    flags = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token", "lasttoken": "pooling_mode_lasttoken"}
    if any(config.get(flag) for flag in flags.values()) or config.get("pooling_mode") in LLAMA_POOLING:
        return None
    mode = config.get("pooling_mode") or next((k[len("pooling_mode_"):] for k, v in config.items()
                                              if k.startswith("pooling_mode_") and v), "unknown")
    return f"llama.cpp pools by mean, CLS or last token; this model pools by {mode}"


class GgufConverter(Converter):
    name = "zoo.gguf"
    version = "1"
    targets = (
        Target("gguf-f16", "gguf", "fp16", "f16", "cpu", ("gguf", "torch"), "llama.cpp GGUF, f16 weights"),
        Target("gguf-q8_0", "gguf", "int8", "q8_0", "cpu", ("gguf", "torch"),
               "llama.cpp GGUF, Q8_0 weights (8-bit blocks of 32)"),
    )

    def unavailable_reason(self, target: Target, hardware, checkpoint: Optional[Path] = None) -> Optional[str]:
        if "gguf" not in hardware.runtimes:
            return "llama-cpp-python is not installed; install it with: pip install 'zoo[gguf]' -c constraints.txt"
        if checkpoint is None:
            return None
        from zoo.engine.kinds import EMBEDDING, detect_kind

        kind = detect_kind(checkpoint)
        if kind != EMBEDDING:
            return (f"zoo builds GGUFs of embedding models; this is a {kind} model (its torch, ONNX and OpenVINO "
                    "targets serve it)")
        model_type = checkpoint_model_type(checkpoint)
        if model_type == "mpnet":
            return "llama.cpp has no MPNet architecture, so no GGUF can run this model (use the ONNX/OpenVINO targets)"
        if model_type not in GGUF_MODEL_TYPES:
            return (f"zoo builds GGUFs of the families {', '.join(GGUF_MODEL_TYPES)}; this model is "
                    f"{model_type or 'of no declared model_type'}")
        return (exportable_reason(checkpoint) or dense_reason(checkpoint) or pooling_reason(checkpoint)
                or tokenizer_reason(checkpoint))

    def build(self, target: Target, checkpoint: Path, out_dir: Path, settings: dict[str, Any],
              progress: Progress) -> BuildResult:
        from zoo.engine.backends.llama_cpp_rt import quiet_llama

        llama_cpp = quiet_llama()
        source, info = _f32_gguf(checkpoint, settings, progress)
        constant, runtime = FILE_TYPES[target.variant]
        progress(f"{target.name}: quantizing with llama.cpp ({constant})", None)
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = getattr(llama_cpp, constant)
        params.nthread = os.cpu_count() or 1
        out_file = out_dir / f"model-{target.variant}.gguf"
        code = llama_cpp.llama_model_quantize(str(source).encode(), str(out_file).encode(), ctypes.byref(params))
        if code != 0:
            raise ZooError(f"llama.cpp's quantizer failed for {target.name} (code {code})")
        save_tokenizer(checkpoint, out_dir)
        copy_model_configs(checkpoint, out_dir)
        info = {**info, "file_type": constant, "runtime_precision": runtime}
        return BuildResult(files=list_local_files(out_dir), settings=info, runtime_precision=runtime)


def target_of_file(path: Path) -> Optional[str]:
    """The zoo target a GGUF file is, from the file type its header declares (None: not one of ours)."""
    from zoo.engine.backends.llama_cpp_rt import quiet_llama

    llama_cpp = quiet_llama()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True  # the header and vocabulary; no tensor is read
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        raise ZooError(f"{Path(path).name} is not a GGUF file llama.cpp can read")
    try:
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_model_meta_val_str(model, b"general.file_type", buf, len(buf))
        file_type = int(buf.value) if n > 0 else None
    finally:
        llama_cpp.llama_model_free(model)
    by_type = {getattr(llama_cpp, constant): variant for variant, (constant, _) in FILE_TYPES.items()}
    variant = by_type.get(file_type)
    return f"gguf-{variant}" if variant else None


_TOKENIZER_CHECKS: dict[str, Optional[str]] = {}  # checkpoint folder -> reason; store trees never change


def tokenizer_reason(checkpoint: Path) -> Optional[str]:
    """Why llama.cpp's converter refuses this model's vocabulary, or None: its own ``--vocab-only``
    run (a few seconds), so an unknown pre-tokenizer is refused before any build starts."""
    key = str(Path(checkpoint).resolve())
    if key not in _TOKENIZER_CHECKS:
        import tempfile

        try:
            with tempfile.TemporaryDirectory(prefix="zoo-gguf-vocab-") as tmp:
                _run_converter(checkpoint, Path(tmp) / "vocab.gguf", "--vocab-only")
            _TOKENIZER_CHECKS[key] = None
        except ZooError as exc:
            _TOKENIZER_CHECKS[key] = str(exc)
    return _TOKENIZER_CHECKS[key]


def save_tokenizer(checkpoint: Path, out_dir: Path) -> None:
    """The checkpoint's fast tokenizer beside the file: zoo counts tokens and truncation with it."""
    from zoo.errors import require

    transformers = require("transformers", "torch")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(checkpoint), local_files_only=True, use_fast=True)
    tokenizer.save_pretrained(str(out_dir))


def _f32_gguf(checkpoint: Path, settings: dict[str, Any], progress: Progress) -> tuple[Path, dict[str, Any]]:
    """The checkpoint as an f32 GGUF, written by llama.cpp's converter: the call's shared one if any."""
    from .gguf_source import llama_cpp_version

    work = settings.get("work_dir")
    folder = Path(work) / "gguf-f32" if work else Path(settings["scratch"]) / "gguf-f32"
    done = folder / "info.json"
    if done.exists():
        return folder / "model-f32.gguf", json.loads(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    progress("converting the checkpoint with llama.cpp's convert_hf_to_gguf.py", None)
    source = _run_converter(checkpoint, folder / "model-f32.gguf", "--outtype", "f32", progress=progress)
    info = {"converter": "llama.cpp convert_hf_to_gguf.py", "llama_cpp_python": llama_cpp_version(),
            "conversion_source": source}
    done.write_text(json.dumps(info))
    return folder / "model-f32.gguf", info


def _run_converter(checkpoint: Path, outfile: Path, *args: str, progress: Progress = lambda s, f: None) -> dict:
    """llama.cpp's ``convert_hf_to_gguf.py`` in its own process, as its authors run it; where it came from."""
    from .gguf_source import conversion_script

    script, source = conversion_script(progress)
    env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}  # its own gguf-py, of its commit
    run = subprocess.run([sys.executable, str(script), str(checkpoint), "--outfile", str(outfile), *args],
                         capture_output=True, text=True, env=env)
    if run.returncode != 0:
        raise ZooError(_conversion_error(run.stderr))
    return source


def _conversion_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    last = lines[-1] if lines else "no output"
    if "pre-tokenizer was not recognized" in stderr:
        return ("llama.cpp's converter does not know this model's tokenizer (its pre-tokenizer is not in "
                "llama.cpp's list), so a GGUF could not tokenize as the checkpoint does; use the ONNX/OpenVINO targets")
    if "precompiled_charsmap" in stderr:  # an XLM-R tokenizer.json saved without SentencePiece's normalizer map
        return ("llama.cpp's converter reads an XLM-R vocabulary's SentencePiece character map "
                "(precompiled_charsmap), which this model's tokenizer.json lacks; a GGUF could not normalise text as "
                "the checkpoint does; use the ONNX/OpenVINO targets")
    return f"llama.cpp's convert_hf_to_gguf.py failed: {last[:300]}"
