"""The object ``zoo.load`` returns: one artifact of one model, ready to embed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .errors import InvalidInput

__all__ = ["EmbeddingModel", "validate_texts"]


def validate_texts(texts: str | Sequence[str]) -> list[str]:
    """Accept one string or a sequence of strings; name the first bad item's index."""
    if isinstance(texts, str):
        texts = [texts]
    if texts is None or isinstance(texts, (bytes, dict)) or not hasattr(texts, "__iter__"):
        raise InvalidInput(f"texts must be a string or a list of strings, not {type(texts).__name__}")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise InvalidInput(f"text at index {i} is {type(t).__name__}, not a string")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput(f"text at index {i} is not valid Unicode (lone surrogate)") from None
    return out


@dataclass
class EmbeddingModel:
    name: str
    dim: int
    backend: Any
    info: dict[str, Any] = field(default_factory=dict)
    default_batch_size: int = 32  # the best batch measured on this machine, when benchmarked

    def embed(self, texts: str | Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        """Embed texts; returns float32 of shape (len(texts), dim), in input order."""
        items = validate_texts(texts)
        batch_size = self.default_batch_size if batch_size is None else batch_size
        if batch_size < 1:
            raise InvalidInput(f"batch_size must be >= 1, got {batch_size}")
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.backend.embed(items, batch_size)
        if vectors.shape != (len(items), self.dim):
            raise RuntimeError(f"backend {self.info.get('backend')} returned shape {vectors.shape}, "
                               f"expected {(len(items), self.dim)}")
        return vectors

    def __repr__(self) -> str:
        return (f"EmbeddingModel({self.name!r}, artifact={self.info.get('artifact')!r}, "
                f"backend={self.info.get('backend')!r}, device={self.info.get('device')!r})")
