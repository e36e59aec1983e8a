"""The fp32 ONNX export every ONNX and OpenVINO target starts from.

``torch.onnx.export`` of the bare transformer (token embeddings out); pooling and normalisation
stay in zoo's runtime, driven by the model's sentence-transformers config, as
sentence-transformers' own ONNX backend does. The graph takes exactly the inputs the family's
tokenizer gives (no ``token_type_ids`` for RoBERTa, MPNet, DistilBERT).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from zoo.errors import ZooError, require

from .support import copy_model_configs

__all__ = ["export_onnx", "ONNX_INPUTS", "OPSET"]

ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17


def export_onnx(checkpoint: Path, out_dir: Path) -> dict[str, Any]:
    """Export the transformer of ``checkpoint`` to ``out_dir/model.onnx``, plus tokenizer and configs."""
    torch = require("torch", "torch")
    transformers = require("transformers", "torch")

    # A freshly loaded model in eval mode: dropout left on would silently corrupt the export.
    model = transformers.AutoModel.from_pretrained(str(checkpoint), local_files_only=True).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(checkpoint), local_files_only=True, use_fast=True)
    if not tokenizer.is_fast:
        raise ZooError(f"{checkpoint} has no fast tokenizer; the ONNX runtime needs tokenizer.json")
    names = [n for n in tokenizer.model_input_names if n in ONNX_INPUTS]

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            return self.inner(**dict(zip(names, args))).last_hidden_state

    dummy = tokenizer(["zoo exports this model", "a second, somewhat longer example sentence for tracing"],
                      padding=True, return_tensors="pt")
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["token_embeddings"] = {0: "batch", 1: "sequence"}
    # The TorchScript exporter (dynamo=False) is the path measured to work with these pins; its
    # deprecation and tracer warnings are expected, not news for the user.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(TokenEmbeddings(model), tuple(dummy[n] for n in names), str(out_dir / "model.onnx"),
                          input_names=names, output_names=["token_embeddings"], dynamic_axes=axes,
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)
    tokenizer.save_pretrained(str(out_dir))  # guarantees tokenizer.json for the lean runtime
    copy_model_configs(checkpoint, out_dir)
    return {"opset": OPSET, "inputs": names, "exporter": "torch.onnx.export(dynamo=False)"}
