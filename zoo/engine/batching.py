"""Length-bucketed batching: sort by token length, then cut where padding costs most.

A batch is padded to its longest text, so mixing a 10-token text with a
256-token one makes the short one cost 256. Sorting by length first keeps
neighbours alike; cutting the sorted run at fixed row counts still pads the
tail badly when a request holds a few long texts among many short ones (the
common case, and the case of a server batch of a few hundred mixed texts).
So the cut points are chosen by dynamic programming to minimise an estimated
cost: per padded position ``1 + length / ATTENTION_TOKENS`` (attention makes
a long row dearer per token) plus ``overhead`` token-equivalents per batch.
Rows per batch and padded positions per batch (``max_tokens``) stay hard caps.
Callers restore input order with the returned indices.
"""

from __future__ import annotations

from typing import Iterator, Optional, Sequence

import numpy as np

__all__ = ["plan_batches", "plan_cost", "padded_width", "DEFAULT_MAX_BATCH_TOKENS", "CPU_BATCH_OVERHEAD", "GPU_BATCH_OVERHEAD"]

# rows x padded length per batch; 32 rows of 512 tokens. MiniLM (max 256) never reaches it at
# batch 32, so it only binds for long texts of long-context models.
DEFAULT_MAX_BATCH_TOKENS = 16384

# Cost model fitted on this project's 2-core CPU box (MiniLM int8 and fp32 under onnxruntime,
# batch 1..64 x length 16..256): time ~ overhead + rows x length x (1 + length / 256), with the
# per-call overhead worth ~30 padded tokens. On a GPU a call's launch cost dwarfs its padding:
# there the fewest batches the caps allow win, and the DP only chooses where the cuts fall.
ATTENTION_TOKENS = 256.0
CPU_BATCH_OVERHEAD = 32.0
GPU_BATCH_OVERHEAD = 1e9


def padded_width(length, multiple: int = 1):
    """The width a batch whose longest text has ``length`` tokens is padded to."""
    return -(-length // multiple) * multiple


def _row_cost(length: np.ndarray) -> np.ndarray:
    return length * (1.0 + length / ATTENTION_TOKENS)


def plan_cost(lengths: Sequence[int], batches, overhead: float = CPU_BATCH_OVERHEAD, width_multiple: int = 1) -> float:
    """The estimated cost of running ``batches`` (index arrays into ``lengths``), in token-equivalents."""
    lengths = np.asarray(lengths, dtype=np.float64)
    return float(sum(overhead + len(b) * _row_cost(padded_width(lengths[b].max(), width_multiple))
                     for b in batches if len(b)))


def plan_batches(lengths: Sequence[int], max_rows: int, max_tokens: Optional[int] = DEFAULT_MAX_BATCH_TOKENS,
                 overhead: float = CPU_BATCH_OVERHEAD, row_sizes: Optional[Sequence[int]] = None,
                 width_multiple: int = 1) -> Iterator[np.ndarray]:
    """Yield arrays of row indices, shortest texts first, each batch within both limits.

    A batch holds at most ``max_rows`` rows and, if ``max_tokens`` is set, at most
    ``max_tokens`` padded positions (rows x its longest length); a single text longer
    than the budget still gets a batch of its own. Within those caps the cuts minimise
    :func:`plan_cost` (exactly: batches of a sorted run are contiguous, so a DP over cut
    points is optimal), preferring fewer, larger batches on ties.

    A runtime that pays for every new input shape (OpenVINO compiles kernels per shape)
    passes ``row_sizes`` (the only row counts a batch may have; 1 is always allowed) and
    ``width_multiple`` (widths are padded up to it), so a handful of shapes recur.
    """
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    n = len(order)
    if n == 0:
        return
    sorted_lengths = lengths[order]
    widths = padded_width(sorted_lengths, width_multiple)
    row_cost = _row_cost(widths.astype(np.float64))
    caps = np.full(n, max_rows, dtype=np.int64)
    if max_tokens is not None:
        caps = np.clip(max_tokens // np.maximum(widths, 1), 1, max_rows)
    sizes = None if row_sizes is None else np.array(sorted({1, *(int(r) for r in row_sizes if 1 <= r <= max_rows)}))
    best = np.zeros(n + 1)  # best[i]: cheapest plan for the i shortest texts
    start = np.zeros(n + 1, dtype=np.int64)  # where the last batch of that plan starts
    for i in range(1, n + 1):
        if sizes is None:  # the last batch is rows j..i-1, padded to row i-1
            j = np.arange(max(0, i - int(caps[i - 1])), i)
        else:
            j = i - sizes[sizes <= min(i, int(caps[i - 1]))][::-1]  # largest batch first, as above
        candidates = best[j] + (i - j) * row_cost[i - 1]
        k = int(np.argmin(candidates))  # first minimum: the largest batch among equals
        best[i] = candidates[k] + overhead
        start[i] = j[k]
    cuts, i = [], n
    while i > 0:
        cuts.append(i)
        i = int(start[i])
    lo = 0
    for hi in reversed(cuts):
        yield order[lo:hi]
        lo = hi
