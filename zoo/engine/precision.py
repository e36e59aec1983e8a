"""Compact output vectors: float16, int8, uint8, binary and ubinary, from calibration ranges stored once.

Why stored ranges: int8/uint8 map each dimension's [min, max] onto 256 buckets, so the ranges decide
every value. A client that computes them per batch (sentence-transformers' ``quantize_embeddings``
without ``ranges``) gets vectors that are not comparable across batches, and an index built from
one batch is silently wrong for the next. zoo computes the ranges once per artifact, from the
calibration texts (``zoo.conversion.corpora.calibration_texts``), stores them in the artifact's
registry row, and applies the same ones on every path: Python, CLI, HTTP, datasets, export.

The arithmetic is sentence-transformers' own (``sentence_transformers.util.quantization``), written
out here so that serving does not import sentence-transformers; ``tests/engine/test_precision.py``
checks the results equal ``quantize_embeddings(vectors, precision, ranges=...)`` bit for bit.

Ranges depend on normalisation and width: a vector cut to ``dimensions`` and re-normalised has
other values than the full one. The raw (unnormalised) ranges of any width are a slice of the full
width's; normalised ranges are stored for the full width, the model's declared Matryoshka widths
and the powers of two from 32 below it (``range_widths``). int8/uint8 at another normalised width
is refused with the widths that exist; float16, binary and ubinary need no ranges and work at any
width.
"""

from __future__ import annotations

import base64
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import InvalidInput

__all__ = ["PRECISIONS", "RANGED", "quantize", "check_precision", "range_widths", "compute_ranges",
           "ranges_for", "precision_figures", "output_dtype", "RANGES_VERSION"]

PRECISIONS = ("float32", "float16", "int8", "uint8", "binary", "ubinary")
RANGED = ("int8", "uint8")  # the precisions that need calibration ranges
RANGES_VERSION = 1
RESCORE_MULTIPLIER = 4  # sentence-transformers' default for rescoring quantized retrieval


def check_precision(precision: Any) -> str:
    if precision is None:
        return "float32"
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise InvalidInput(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def output_dtype(precision: str) -> np.dtype:
    """The numpy dtype of a precision's rows (binary packs 8 dimensions into one int8)."""
    return np.dtype({"float32": np.float32, "float16": np.float16, "int8": np.int8, "uint8": np.uint8,
                     "binary": np.int8, "ubinary": np.uint8}[check_precision(precision)])


def quantize(vectors: np.ndarray, precision: str, ranges: Optional[np.ndarray] = None) -> np.ndarray:
    """``vectors`` (float32 rows) at ``precision``: sentence-transformers' ``quantize_embeddings``
    with ``ranges`` given, step for step. binary/ubinary: one bit per dimension, set where > 0,
    packed big-endian (``np.packbits``), binary shifted by -128 into int8."""
    precision = check_precision(precision)
    vectors = np.asarray(vectors)
    if precision == "float32":
        return vectors.astype(np.float32)
    if precision == "float16":
        return vectors.astype(np.float16)
    if precision in RANGED:
        if ranges is None:
            raise InvalidInput(f"{precision} needs calibration ranges")
        starts = ranges[0, :]
        steps = (ranges[1, :] - ranges[0, :]) / 255
        steps = np.where(steps == 0, 1, steps)
        buckets = np.clip(np.floor((vectors - starts) / steps), 0, 255)
        return buckets.astype(np.uint8) if precision == "uint8" else (buckets - 128).astype(np.int8)
    packed = np.packbits(vectors > 0, axis=-1).reshape(vectors.shape[0], -1)
    return (packed - 128).astype(np.int8) if precision == "binary" else packed


def range_widths(dim: int, matryoshka: Optional[Sequence[int]] = None) -> list[int]:
    """The widths whose normalised ranges are stored: the full width, the declared Matryoshka
    widths, and the powers of two from 32 below the full width (the cuts clients ask for)."""
    widths = {dim, *(w for w in (matryoshka or ()) if 0 < w <= dim)}
    w = 32
    while w < dim:
        widths.add(w)
        w *= 2
    return sorted(widths, reverse=True)


def _pack(r: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(r, dtype="<f4").tobytes()).decode("ascii")


def _unpack(text: str, width: int) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").reshape(2, width).astype(np.float32)


def _min_max(x: np.ndarray) -> np.ndarray:
    return np.vstack((x.min(axis=0), x.max(axis=0))).astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows to length 1 in float32, as the engine re-normalises a cut."""
    from .backends.lean import normalize_rows

    return normalize_rows(np.asarray(x, dtype=np.float32)).astype(np.float32, copy=False)


def compute_ranges(raw: np.ndarray, widths: Sequence[int], *, digest: str) -> dict[str, Any]:
    """The stored record: per-dimension [min, max] of the calibration texts' vectors, raw (full width)
    and normalised at each of ``widths``. ``raw``: float32 (texts, dim), unnormalised, no prompt.
    Floats are kept as base64 of little-endian float32, so they read back bit for bit."""
    raw = np.asarray(raw, dtype=np.float32)
    if raw.ndim != 2 or len(raw) < 2 or not np.isfinite(raw).all():
        raise InvalidInput("calibration vectors must be finite rows; ranges were not computed")
    dim = raw.shape[1]
    return {"version": RANGES_VERSION, "texts": len(raw), "digest": digest, "dim": dim, "raw": _pack(_min_max(raw)),
            "normalized": {str(w): _pack(_min_max(_unit(raw[:, :w]))) for w in widths if 0 < w <= dim}}


def ranges_for(record: dict[str, Any], *, normalize: bool, dims: int) -> np.ndarray:
    """The (2, dims) float32 ranges for vectors served with ``normalize`` at ``dims``."""
    dim = int(record["dim"])
    if not normalize:
        return np.ascontiguousarray(_unpack(record["raw"], dim)[:, :dims])
    stored = record.get("normalized") or {}
    if str(dims) not in stored:
        widths = ", ".join(sorted(stored, key=int, reverse=True))
        raise InvalidInput(f"int8/uint8 at dimensions={dims} needs calibration ranges, which zoo stores for the "
                           f"widths {widths} only; ask for one of those, or for float16, binary or ubinary, "
                           "which need no ranges")
    return _unpack(stored[str(dims)], dims)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def _hamming_scores(q: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Negative Hamming distances between packed rows (higher is closer)."""
    qb, db = np.unpackbits(q.view(np.uint8), axis=1), np.unpackbits(d.view(np.uint8), axis=1)
    return -(qb.astype(np.int32)[:, None, :] != db.astype(np.int32)[None, :, :]).sum(axis=2)


def precision_figures(queries: np.ndarray, passages: np.ndarray, relevant: Sequence[int],
                      ranges: np.ndarray) -> dict[str, Any]:
    """What each compact precision costs in retrieval, on the gate's query/passage pairs (normalised,
    full width): recall@10 of the relevant passage and agreement with float32's top 10, searched
    with the compact vectors alone and then rescored (the top 4x10 by the compact score, re-ranked
    by the float query against the compact passages, as sentence-transformers rescores)."""
    q, p = _unit(queries), _unit(passages)
    rel = np.asarray(relevant)
    k = min(10, len(p))
    float_top = _top(q @ p.T, k)

    def figures(top: np.ndarray) -> dict[str, float]:
        return {"recall_at_10": float((top == rel[:, None]).any(axis=1).mean()),
                "top10_agreement": float(np.mean([len(set(a) & set(b)) / k for a, b in zip(top, float_top)]))}

    out: dict[str, Any] = {"float32": figures(float_top), "queries": len(rel), "passages": len(p),
                           "rescore_multiplier": RESCORE_MULTIPLIER}
    wide = min(len(p), k * RESCORE_MULTIPLIER)
    for precision in ("int8", "binary"):
        qq, pq = quantize(q, precision, ranges), quantize(p, precision, ranges)
        if precision == "int8":
            scores = qq.astype(np.int32) @ pq.astype(np.int32).T
            as_float = pq.astype(np.float32)
        else:
            scores = _hamming_scores(qq, pq)
            as_float = np.unpackbits(pq.view(np.uint8), axis=1)[:, :p.shape[1]].astype(np.float32)
        searched = _top(scores, wide)
        rescored = np.take_along_axis(searched, _top(np.einsum("qd,qkd->qk", q, as_float[searched]), k), axis=1)
        plain = figures(searched[:, :k])
        again = figures(rescored)
        out[precision] = {**plain, "rescored_recall_at_10": again["recall_at_10"],
                          "rescored_top10_agreement": again["top10_agreement"]}
    return out
