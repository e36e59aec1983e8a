"""Helpers every converter shares: which models can be exported, which files travel along."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

from zoo.engine.module_stack import stack_reason
from zoo.errors import require

__all__ = ["copy_model_configs", "exportable_reason", "MODEL_CONFIG_FILES", "parameter_count", "weight_only_left_out",
           "DECODER_MODEL_TYPES"]

# Everything but weights: what a runtime needs to tokenize, pool and normalise like the checkpoint.
MODEL_CONFIG_FILES = ("config.json", "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
                      "README.md")
# Encoder families whose export, quantization and lean runtimes are tested (tiny models of each in
# tests/conversion/test_architectures.py): BERT, MPNet (relative position bias), RoBERTa and XLM-R
# (position ids offset past the padding index, no token types), DistilBERT (no token types).
# Families whose activations overflow float16 (Gemma 3: transformers #37226; TEI serves EmbeddingGemma in fp32
# only; fastembed returned NaN vectors). all-cpu / all-cuda leave out the targets that compute in fp16; asked for
# by name, one is built and the gate decides (a NaN or an Inf fails it).
FP16_OVERFLOW_FAMILIES = ("gemma3_text", "gemma3")
# Decoder embedding families (Qwen3-Embedding and its kin): causal attention, last-token pooling. The export takes
# the bare ``{Family}Model`` without a KV cache; tiny models of each in tests/conversion/test_decoders.py.
DECODER_MODEL_TYPES = ("qwen3", "qwen2", "llama", "mistral")
SUPPORTED_MODEL_TYPES = ("bert", "mpnet", "roberta", "xlm-roberta", "distilbert", "modernbert", "gemma3_text",
                         "t5") + DECODER_MODEL_TYPES
# Weight-only targets (int8 / int4 weights, float activations) pay where moving the weights costs more than the
# arithmetic: large models. all-cpu and `zoo optimize` offer them from these sizes (parameters); by name they are
# built for any size and the gate decides.
WEIGHT_ONLY_MIN_PARAMS = {"int8w": 100_000_000, "int4w": 1_000_000_000}
# Multimodal families: which targets export them so far (their two towers, each with its projection)
MULTIMODAL_TARGETS = {"clip": ("onnx-fp32", "onnx-int8-arm64", "onnx-int8-avx2", "onnx-int8-avx512",
                               "onnx-int8-avx512_vnni", "onnx-int8-static", "openvino-fp32", "openvino-bf16",
                               "openvino-fp16", "openvino-int8")}


def copy_model_configs(checkpoint: Path, out_dir: Path) -> None:
    """What a lean runtime reads beside the graph: the configs, and each module folder after the transformer
    (Pooling's config; a Dense module's config and weights, as safetensors, which numpy reads without torch)."""
    for name in MODEL_CONFIG_FILES:
        if (checkpoint / name).exists():
            shutil.copy2(checkpoint / name, out_dir / name)
    for module_dir in checkpoint.glob("[0-9]_*"):
        config = module_dir / "config.json"
        if not config.exists():
            continue
        target = out_dir / module_dir.name
        target.mkdir(exist_ok=True)
        shutil.copy2(config, target / "config.json")
        if (module_dir / "model.safetensors").exists():
            shutil.copy2(module_dir / "model.safetensors", target / "model.safetensors")
        elif (module_dir / "pytorch_model.bin").exists():  # an older save: re-saved as safetensors
            _bin_to_safetensors(module_dir / "pytorch_model.bin", target / "model.safetensors")


def _bin_to_safetensors(source: Path, target: Path) -> None:
    torch = require("torch", "torch")
    from safetensors.torch import save_file

    state = torch.load(str(source), map_location="cpu", weights_only=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(target))


def checkpoint_model_type(checkpoint: Path) -> Optional[str]:
    """The ``model_type`` a checkpoint's config.json declares, or None when it declares none or cannot be read."""
    try:
        return json.loads((Path(checkpoint) / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def parameter_count(checkpoint: Path) -> Optional[int]:
    """How many weights the checkpoint's transformer holds, read from its safetensors headers (no tensor is
    loaded: a multi-GB checkpoint costs a few KB of reads); None when its weights are not safetensors."""
    import struct

    files = sorted(Path(checkpoint).glob("*.safetensors"))
    if not files:
        return None
    total = 0
    try:
        for path in files:
            with open(path, "rb") as f:
                size = struct.unpack("<Q", f.read(8))[0]
                if size > 100_000_000:  # a header is a JSON table of tensors, never this large
                    return None
                header = json.loads(f.read(size))
            for name, entry in header.items():
                if name != "__metadata__":
                    count = 1
                    for dim in entry.get("shape", []):
                        count *= int(dim)
                    total += count
    except (OSError, ValueError, struct.error, AttributeError, TypeError):
        return None
    return total


def weight_only_left_out(precision: str, checkpoint: Optional[Path]) -> Optional[str]:
    """Why all-cpu and `zoo optimize` leave a weight-only target (``int8w`` / ``int4w``) out for this checkpoint:
    below ``WEIGHT_ONLY_MIN_PARAMS`` the activations' arithmetic, not the weights' traffic, sets the speed, and the
    static int8 search serves such a model better. None when the model is large enough (or its size unknown)."""
    need = WEIGHT_ONLY_MIN_PARAMS.get(precision)
    count = parameter_count(checkpoint) if checkpoint is not None and need else None
    if count is None or count >= need:
        return None
    return (f"the model has {count / 1e6:.0f}M parameters; weight-only {precision[:-1]} pays from "
            f"{need / 1e6:,.0f}M, where moving the weights outweighs the arithmetic (ask for it by name to build it)")


def exportable_reason(checkpoint: Path, target: Optional[str] = None) -> Optional[str]:
    """Why the ONNX/OpenVINO exporters cannot represent this model faithfully as ``target``, or None."""
    from zoo.engine.model_code import find_model_code

    code = find_model_code(checkpoint)
    if code is not None:
        files = ", ".join(p for p, _ in code.files) or "code outside the folder"
        return (f"the model runs its own code ({files}), which the exporters do not trace faithfully; "
                "the torch targets serve it (torch-fp32, torch-bf16, torch-fp16)")
    model_type = checkpoint_model_type(checkpoint)
    if model_type in MULTIMODAL_TARGETS:
        allowed = MULTIMODAL_TARGETS[model_type]
        return None if target in allowed else (
            f"a {model_type} model (text and image towers) exports to {', '.join(allowed)} so far; this model is "
            f"{model_type} (use that, or torch-bf16 / torch-fp32)")
    if model_type not in SUPPORTED_MODEL_TYPES:
        return (f"the exporters support the families {', '.join(SUPPORTED_MODEL_TYPES)}; this model is "
                f"{model_type or 'of no declared model_type'} (use torch-fp16/torch-bf16 or torch-fp32)")
    return stack_reason(checkpoint)
