"""How faithful a reranker's artifact is: its scores against the reference's, query by query.

A reranker is used to order a query's candidate documents, so it is judged on that (``zoo.core.floor.ScoreFloor``):
per-query Spearman of the documents' scores, agreement of the top 3, and the largest absolute score
difference (a dropped activation or a changed scale keeps the order, and still serves wrong scores).

The query/document sets are generated from the gate's own corpora (``zoo.conversion.corpora``): each query
with its relevant passage, passages that share a word with it (the near misses a reranker must order), random
passages, and at the first queries a document past the model's max length and an empty one. The probe set (the
gate) and the validation set (the quantization search) come from disjoint text files.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .fidelity import spearman

__all__ = ["PairSet", "pair_set", "score_pairs", "measure_scores", "worse_of", "TOP_K"]

TOP_K = 3


@dataclass(frozen=True)
class PairSet:
    queries: list[str]
    documents: list[list[str]]  # documents[i]: query i's candidates

    def pairs(self) -> list[tuple[str, str]]:
        return [(q, d) for q, docs in zip(self.queries, self.documents) for d in docs]

    def __len__(self) -> int:
        return sum(len(d) for d in self.documents)


def pair_set(which: str = "probe", queries: Optional[int] = None, per_query: int = 12,
             long_document_words: int = 0) -> PairSet:
    """Query/document sets from the probe set (``which="probe"``: 32 queries) or the validation set (16).
    ``long_document_words``: the first two queries also get a document of about that many words (past the
    model's max length, so truncated pairs are judged too)."""
    from .corpora import probe_set, validation_set

    source = probe_set() if which == "probe" else validation_set()
    rng = random.Random(11 if which == "probe" else 13)
    n = queries or (32 if which == "probe" else 16)
    picked = rng.sample(range(len(source.queries)), min(n, len(source.queries)))
    passages = source.passages
    words = [set(w.strip(".,;:?!'\"").lower() for w in p.split()) for p in passages]
    out_q, out_d = [], []
    for rank, qi in enumerate(picked):
        query = source.queries[qi]
        relevant = source.relevant[qi]
        q_words = {w.strip(".,;:?!'\"").lower() for w in query.split() if len(w) > 3}
        near = [j for j, ws in enumerate(words) if j != relevant and q_words & ws]
        near = rng.sample(near, min(len(near), per_query // 3))
        others = [j for j in rng.sample(range(len(passages)), per_query * 2) if j != relevant and j not in near]
        chosen = [relevant] + near + others[:max(0, per_query - 1 - len(near))]
        rng.shuffle(chosen)
        docs = [passages[j] for j in chosen]
        if rank < 2 and long_document_words:
            filler = " ".join(rng.choice(passages) for _ in range(long_document_words // 8 + 1))
            docs.append(" ".join(filler.split()[:long_document_words]))
        if rank == 0:
            docs.append("")
        out_q.append(query)
        out_d.append(docs)
    return PairSet(out_q, out_d)


def score_pairs(backend, pairs: PairSet, batch_size: int = 32) -> np.ndarray:
    """(pairs, labels) scores of ``backend`` (a reranker's runtime), rows in the set's order; pairs sorted by
    length into batches, as the engine serves them."""
    from ..engine.backends.lean import Prepared

    prepared = Prepared.of_pairs(backend.encoder, pairs.pairs())
    return np.asarray(backend.embed_prepared(prepared, batch_size, normalize=False), dtype=np.float64)


def measure_scores(pairs: PairSet, reference: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """The gate's figures for a reranker: per-query Spearman (mean, min), top-k agreement, max |difference|."""
    reference, scores = np.asarray(reference, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    if reference.ndim == 1:
        reference, scores = reference[:, None], scores[:, None]
    if not np.isfinite(scores).all():
        nan = float("nan")
        return {"probe_pairs": len(reference), "mean_query_spearman": nan, "min_query_spearman": nan,
                "top_k_agreement": nan, "max_score_diff": nan, "non_finite": True}
    correlations, agreements = [], []
    start = 0
    for docs in pairs.documents:
        stop = start + len(docs)
        for label in range(reference.shape[1]):
            ref, art = reference[start:stop, label], scores[start:stop, label]
            rho = spearman(ref, art)
            # a query whose reference scores are all equal has no order to keep: judged by the score difference
            correlations.append(1.0 if np.ptp(ref) == 0 else rho)
            k = min(TOP_K, len(docs))
            top_ref = set(np.argsort(-ref, kind="stable")[:k].tolist())
            top_art = set(np.argsort(-art, kind="stable")[:k].tolist())
            agreements.append(len(top_ref & top_art) / k)
        start = stop
    diff = np.abs(reference - scores)
    return {"probe_pairs": len(reference), "queries": len(pairs.documents),
            "mean_query_spearman": float(np.mean(correlations)), "min_query_spearman": float(np.min(correlations)),
            "top_k_agreement": float(np.mean(agreements)), "top_k": TOP_K,
            "max_score_diff": float(diff.max()), "mean_score_diff": float(diff.mean()),
            "reference_score_range": [float(reference.min()), float(reference.max())]}


HIGHER_IS_BETTER = ("mean_query_spearman", "min_query_spearman", "top_k_agreement")


def worse_of(batched: dict[str, Any], alone: dict[str, Any]) -> dict[str, Any]:
    """The gate's figures of a runtime whose scores depend on the batch (dynamic int8 scales activations per padded
    batch): each figure at the worse of the two readings, the pairs batched and each pair alone (``alone_*``
    records the latter)."""
    if batched.get("non_finite") or alone.get("non_finite"):
        return {**batched, "non_finite": True}
    out = dict(batched)
    for key in HIGHER_IS_BETTER:
        out[key] = min(batched[key], alone[key])
    out["max_score_diff"] = max(batched["max_score_diff"], alone["max_score_diff"])
    out.update({f"alone_{k}": alone[k] for k in (*HIGHER_IS_BETTER, "max_score_diff")})
    return out
