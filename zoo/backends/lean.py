"""What the ONNX and OpenVINO runtimes share: tokenization, pooling, normalisation.

Pure ``tokenizers`` + numpy, so a lean runtime never imports torch. It reproduces
sentence-transformers exactly: the same ``tokenizer.json`` (with truncation at the
model's max length and right padding), then the model's pooling (mean, CLS, max,
mean-sqrt-len, weighted mean, last token) and its Normalize module.
Texts are sorted by token length before batching so short texts are not padded
to long ones; results come back in input order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ZooError
from ..model_config import ModelSpec

__all__ = ["TextEncoder", "pool", "embed_sorted", "sorted_batches"]


class TextEncoder:
    """Fast tokenizer from an artifact folder, configured like sentence-transformers.

    Tokenizes without padding; ``pad`` builds each batch's arrays, padded on the
    right to the batch's longest text.
    """

    def __init__(self, path: Path, max_length: int, input_names: list[str]):
        from tokenizers import Tokenizer

        tok_file = Path(path) / "tokenizer.json"
        if not tok_file.exists():
            raise ZooError(f"{path} has no tokenizer.json; rebuild the artifact with `zoo convert --rebuild`")
        self.tokenizer = Tokenizer.from_file(str(tok_file))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_length)
        config_file = Path(path) / "tokenizer_config.json"
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.exists() else {}
        pad_token = config.get("pad_token") or "[PAD]"
        if isinstance(pad_token, dict):
            pad_token = pad_token.get("content", "[PAD]")
        self.pad_id = self.tokenizer.token_to_id(pad_token) or 0
        self.input_names = input_names

    def encode(self, texts: list[str]) -> list:
        return self.tokenizer.encode_batch(texts, add_special_tokens=True)

    def pad(self, encodings: list) -> dict[str, np.ndarray]:
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, e in enumerate(encodings):
            n = len(e.ids)
            ids[row, :n], mask[row, :n], types[row, :n] = e.ids, 1, e.type_ids
        arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return {name: arrays[name] for name in self.input_names}

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        return self.pad(self.encode(texts))


def pool(token_embeddings: np.ndarray, attention_mask: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Pool (batch, seq, dim) to (batch, dim) as the model's Pooling module does, then normalise."""
    h = token_embeddings.astype(np.float32, copy=False)
    mask = attention_mask.astype(np.float32)[:, :, None]
    counts = np.clip(mask.sum(axis=1), 1e-9, None)
    mode = spec.pooling
    if mode == "mean":
        out = (h * mask).sum(axis=1) / counts
    elif mode == "cls":
        out = h[:, 0]
    elif mode == "max":
        out = np.where(mask > 0, h, -1e9).max(axis=1)
    elif mode == "mean_sqrt_len":
        out = (h * mask).sum(axis=1) / np.sqrt(counts)
    elif mode == "weightedmean":
        weights = mask * np.arange(1, h.shape[1] + 1, dtype=np.float32)[None, :, None]
        out = (h * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    elif mode == "lasttoken":
        last = attention_mask.sum(axis=1).astype(np.int64) - 1
        out = h[np.arange(h.shape[0]), np.clip(last, 0, None)]
    else:
        raise ZooError(f"pooling mode {mode!r} is not supported by the ONNX/OpenVINO runtimes; "
                       "use the torch-fp32 artifact")
    if spec.normalize:
        out = out / np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
    return np.ascontiguousarray(out, dtype=np.float32)


def sorted_batches(texts: list[str], batch_size: int, encoder: TextEncoder):
    """Yield (row indices, padded inputs, attention mask) in batches of similar token length."""
    encodings = encoder.encode(texts)
    order = np.argsort([len(e.ids) for e in encodings], kind="stable")
    for start in range(0, len(texts), batch_size):
        idx = order[start:start + batch_size]
        feed = encoder.pad([encodings[i] for i in idx])
        mask = feed.get("attention_mask")
        if mask is None:
            mask = (feed["input_ids"] != encoder.pad_id).astype(np.int64)
        yield idx, feed, mask


def embed_sorted(texts: list[str], batch_size: int, encoder: TextEncoder,
                 run: Callable[[dict[str, np.ndarray]], np.ndarray], spec: ModelSpec) -> np.ndarray:
    """Embed in batches of similar token length; return rows in input order."""
    out = np.empty((len(texts), spec.dim), dtype=np.float32)
    for idx, feed, mask in sorted_batches(texts, batch_size, encoder):
        out[idx] = pool(run(feed), mask, spec)
    return out
