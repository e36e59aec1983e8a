"""The reference runtime of a reranker: sentence-transformers' ``CrossEncoder`` on torch, as users run it.

zoo tokenizes the (query, document) pairs itself (``TextEncoder.encode_pairs``, the same tokenizer and
truncation as ``CrossEncoder.preprocess``) so that batching, truncation reports and the cache work as for
texts; the padded batch then goes through the CrossEncoder's own modules and its activation function, the
path ``CrossEncoder.predict`` takes. A reranker's "vector" is its row of label scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import ZooError
from ..model_config import ModelSpec
from .lean import BatchedBackend, TextEncoder
from .torch_st import load_options

__all__ = ["CrossEncoderBackend"]


class CrossEncoderBackend(BatchedBackend):
    def __init__(self, path: Path, spec: ModelSpec, device: str | None = None, precision: str = "fp32",
                 settings: dict | None = None, options: dict | None = None):
        torch, st, device, kwargs = load_options(path, spec, device, precision)
        self.model = st.CrossEncoder(str(path), device=device, local_files_only=True, **kwargs)
        self.model.eval()
        self._torch = torch
        tokenizer = getattr(self.model.tokenizer, "backend_tokenizer", None)
        if tokenizer is None:
            raise ZooError(f"{path} has only a slow (Python) tokenizer; zoo needs a fast tokenizer (tokenizer.json)")
        from tokenizers import Tokenizer

        # sentence-transformers 5.7 calls it max_seq_length (max_length before, now deprecated)
        limit = getattr(self.model, "max_seq_length", None) or getattr(self.model, "max_length", None)
        self.encoder = TextEncoder(Tokenizer.from_str(tokenizer.to_str()), int(limit or spec.max_seq_length), [])
        self.encoder.pad_id = self.model.tokenizer.pad_token_id or 0
        self._names = [n for n in ("input_ids", "attention_mask", "token_type_ids")
                       if n in getattr(self.model.tokenizer, "model_input_names", ("input_ids", "attention_mask"))]
        self.spec = spec
        self.device = str(self.model.device)
        self.name = "sentence-transformers/torch"

    def embed_batch(self, texts: list[str], encodings: list, normalize: bool) -> np.ndarray:
        """Scores (batch, labels) of one batch of encoded pairs, activation applied."""
        from sentence_transformers.util import batch_to_device

        feed = self.encoder.pad(encodings, self._names)
        features = batch_to_device({k: self._torch.from_numpy(v) for k, v in feed.items()}, self.model.device)
        with self._torch.inference_mode():
            scores = self.model(features)["scores"]
            if self.model.activation_fn is not None:
                scores = self.model.activation_fn(scores)
        return scores.float().cpu().numpy().reshape(len(encodings), -1)
