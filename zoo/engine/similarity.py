"""Similarity and aggregation helpers, with the meanings LlamaIndex users expect."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInput

__all__ = ["similarity", "aggregate", "MODES", "AGGREGATIONS"]

MODES = ("cosine", "dot", "euclidean")
AGGREGATIONS = ("mean", "max")


def _matrix(x, name: str) -> tuple[np.ndarray, bool]:
    a = np.asarray(x, dtype=np.float32)
    if a.ndim not in (1, 2) or a.size == 0 and a.ndim == 1:
        raise InvalidInput(f"{name} must be one vector or a matrix of vectors, got shape {a.shape}")
    return (a[None, :], True) if a.ndim == 1 else (a, False)


def similarity(a, b, mode: str = "cosine"):
    """Similarity of vectors: a float for two vectors, else a (len(a), len(b)) matrix.

    ``cosine`` and ``dot`` as named; ``euclidean`` is the *negative* distance, so for
    every mode larger means more similar (LlamaIndex's convention).
    """
    if mode not in MODES:
        raise InvalidInput(f"unknown similarity mode {mode!r}; use one of {', '.join(MODES)}")
    x, x_single = _matrix(a, "a")
    y, y_single = _matrix(b, "b")
    if x.shape[1] != y.shape[1]:
        raise InvalidInput(f"vectors differ in dimension: {x.shape[1]} and {y.shape[1]}")
    if mode == "dot":
        out = x @ y.T
    elif mode == "cosine":
        xn = x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)
        yn = y / np.clip(np.linalg.norm(y, axis=1, keepdims=True), 1e-12, None)
        out = xn @ yn.T
    else:
        out = -np.linalg.norm(x[:, None, :] - y[None, :, :], axis=2)  # exact, unlike |x|^2+|y|^2-2xy
    if x_single and y_single:
        return float(out[0, 0])
    if x_single or y_single:
        return out.reshape(-1)
    return out


def aggregate(vectors: np.ndarray, agg: str = "mean", normalize: bool = True) -> np.ndarray:
    """One vector for several (e.g. paraphrases of a query): their mean (or element-wise max),
    re-normalised to unit length when ``normalize``."""
    if agg not in AGGREGATIONS:
        raise InvalidInput(f"unknown aggregation {agg!r}; use one of {', '.join(AGGREGATIONS)}")
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2 or len(v) == 0:
        raise InvalidInput("aggregate needs at least one vector")
    out = v.mean(axis=0) if agg == "mean" else v.max(axis=0)
    if normalize:
        out = out / max(float(np.linalg.norm(out)), 1e-12)
    return out.astype(np.float32)
