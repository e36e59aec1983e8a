"""The fp32 ONNX export every ONNX and OpenVINO target starts from.

``torch.onnx.export`` of the bare transformer (token embeddings out; a reranker's: its classification head's
logits out, ``zoo.engine.kinds``); pooling and normalisation
stay in zoo's runtime, driven by the model's sentence-transformers config, as
sentence-transformers' own ONNX backend does. The graph takes exactly the inputs the family's
tokenizer gives (no ``token_type_ids`` for RoBERTa, MPNet, DistilBERT).
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any

from zoo.errors import ZooError, require

from zoo.engine.backends.torch_st import encoder_class

from .support import copy_model_configs

__all__ = ["export_onnx", "export_clip_onnx", "ONNX_INPUTS", "OPSET", "CLIP_GRAPHS"]

ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17


CLIP_GRAPHS = ("text_model.onnx", "vision_model.onnx")


def export_onnx(checkpoint: Path, out_dir: Path) -> dict[str, Any]:
    """Export the transformer of ``checkpoint`` to ``out_dir/model.onnx``, plus tokenizer and configs
    (a CLIP-family model: its two towers, see ``export_clip_onnx``)."""
    torch = require("torch", "torch")
    transformers = require("transformers", "torch")
    import json

    if json.loads((Path(checkpoint) / "config.json").read_text()).get("model_type") == "clip":
        return export_clip_onnx(checkpoint, out_dir)

    from zoo.engine.kinds import RERANKER, detect_kind

    reranker = detect_kind(Path(checkpoint)) == RERANKER
    # A freshly loaded model in eval mode: dropout left on would silently corrupt the export. The class is the one
    # sentence-transformers loads: a T5-family checkpoint as its encoder alone; a cross-encoder with its
    # classification head, whose logits are the graph's output (the runtime applies the activation)
    cls = transformers.AutoModelForSequenceClassification if reranker else encoder_class(transformers, checkpoint)
    model = cls.from_pretrained(str(checkpoint), local_files_only=True).eval()
    output = "logits" if reranker else "token_embeddings"
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(checkpoint), local_files_only=True, use_fast=True)
    if not tokenizer.is_fast:
        raise ZooError(f"{checkpoint} has no fast tokenizer; the ONNX runtime needs tokenizer.json")
    names = [n for n in tokenizer.model_input_names if n in ONNX_INPUTS]

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            out = self.inner(**dict(zip(names, args)))
            return out.logits if reranker else out.last_hidden_state

    texts = ["zoo exports this model", "a second, somewhat longer example sentence for tracing"]
    dummy = tokenizer(texts, texts[::-1], padding=True, return_tensors="pt") if reranker else \
        tokenizer(texts, padding=True, return_tensors="pt")
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes[output] = {0: "batch"} if reranker else {0: "batch", 1: "sequence"}
    # The TorchScript exporter (dynamo=False) is the path measured to work with these pins; its
    # deprecation and tracer warnings are expected, not news for the user.
    with torch.no_grad(), warnings.catch_warnings(), traceable_masks(torch):
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(TokenEmbeddings(model), tuple(dummy[n] for n in names), str(out_dir / "model.onnx"),
                          input_names=names, output_names=[output], dynamic_axes=axes,
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)
    tokenizer.save_pretrained(str(out_dir))  # guarantees tokenizer.json for the lean runtime
    copy_model_configs(checkpoint, out_dir)
    return {"opset": OPSET, "inputs": names, "exporter": "torch.onnx.export(dynamo=False)"}


@contextlib.contextmanager
def traceable_masks(torch):
    """Attention masks the TorchScript tracer can follow, for the export only.

    transformers (4.5x) builds the masks of newer families (Gemma 3, Qwen3: causal, sliding-window, bidirectional)
    by ``torch.vmap`` over (batch, head, query, key) indices, inside a context that turns tensor indexing into a
    custom autograd op; the tracer stops there (``RuntimeError: unordered_map::at``). The mask functions are
    elementwise comparisons and index lookups, so calling them once on broadcast index grids gives the same
    boolean mask with ordinary ops, which trace and export. Measured on a tiny bidirectional Gemma 3 with a
    16-token window: max |difference| 1.4e-6 to the eager model at widths 3 and 82. Restored on exit."""
    try:
        import transformers.masking_utils as masks
    except ImportError:  # an older transformers builds masks without vmap
        yield
        return

    def broadcast(mask_function, bh_indices: bool = True):
        def run(batch, head, query, key):
            if bh_indices:
                out = mask_function(batch[:, None, None, None], head[None, :, None, None], query[None, None, :, None],
                                    key[None, None, None, :])
                return out.expand(batch.shape[0], head.shape[0], query.shape[0], key.shape[0])
            return mask_function(None, None, query[:, None], key[None, :]).expand(query.shape[0], key.shape[0])
        return run

    saved = {name: getattr(masks, name) for name in ("_vmap_for_bhqkv", "TransformGetItemToIndex") if hasattr(masks, name)}
    masks._vmap_for_bhqkv = broadcast
    masks.TransformGetItemToIndex = contextlib.nullcontext
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(masks, name, value)


def export_clip_onnx(checkpoint: Path, out_dir: Path) -> dict[str, Any]:
    """A CLIP-family model's two towers, each through its projection into the shared space:
    ``text_model.onnx`` (input_ids, attention_mask -> text_embeds) and ``vision_model.onnx``
    (pixel_values -> image_embeds). The image processor's config travels along; zoo's lean
    runtime applies it with numpy (``zoo.engine.images.pixel_values``)."""
    torch = require("torch", "torch")
    transformers = require("transformers", "torch")

    model = transformers.CLIPModel.from_pretrained(str(checkpoint), local_files_only=True).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(checkpoint), local_files_only=True, use_fast=True)
    if not tokenizer.is_fast:
        raise ZooError(f"{checkpoint} has no fast tokenizer; the ONNX runtime needs tokenizer.json")

    class Text(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner.get_text_features(input_ids=input_ids, attention_mask=attention_mask)

    class Vision(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values):
            return self.inner.get_image_features(pixel_values=pixel_values)

    text = tokenizer(["zoo exports this model", "a second, longer example sentence"], padding=True,
                     return_tensors="pt")
    vision_config = model.config.vision_config
    pixels = torch.zeros(2, 3, vision_config.image_size, vision_config.image_size)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(Text(model), (text["input_ids"], text["attention_mask"]), str(out_dir / CLIP_GRAPHS[0]),
                          input_names=["input_ids", "attention_mask"], output_names=["sentence_embedding"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                        "attention_mask": {0: "batch", 1: "sequence"},
                                        "sentence_embedding": {0: "batch"}},
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)
        torch.onnx.export(Vision(model), (pixels,), str(out_dir / CLIP_GRAPHS[1]), input_names=["pixel_values"],
                          output_names=["sentence_embedding"],
                          dynamic_axes={"pixel_values": {0: "batch"}, "sentence_embedding": {0: "batch"}},
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)
    tokenizer.save_pretrained(str(out_dir))
    import shutil

    shutil.copy2(Path(checkpoint) / "preprocessor_config.json", out_dir / "preprocessor_config.json")
    copy_model_configs(checkpoint, out_dir)
    return {"opset": OPSET, "inputs": ["input_ids", "attention_mask"], "graphs": list(CLIP_GRAPHS),
            "exporter": "torch.onnx.export(dynamo=False)"}
