"""How faithful an artifact is to its reference, and whether that is faithful enough.

Both embed the bundled probe set (``zoo.conversion.corpora.probe_set``: >= 500 mixed-length
texts, long ones near the max length, some non-English, plus 100 query/passage
pairs). Recorded:

- mean / min cosine between artifact and reference vectors of the same text;
- Spearman correlation of all pairwise similarities (does the artifact rank pairs
  as the reference does?);
- top-1 and top-10 agreement with the reference's retrieval results, and recall@1 /
  recall@10 of the relevant passage, for both.

Top-1 agreement alone is a noisy gate (int8 artifacts of MiniLM agree with fp32
on only 0.885-0.95 of paraphrase queries while recall@1 barely moves), so the
gate uses cosine and rank preservation; retrieval figures are recorded for people.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

__all__ = ["measure", "embed_probe", "spearman", "ProbeEmbeddings", "unit_rows", "in_length_order"]


@dataclass
class ProbeEmbeddings:
    texts: np.ndarray
    queries: np.ndarray
    passages: np.ndarray
    prompted: bool = False  # queries and passages were read with the model's prompts


def embed_probe(embed, probe, prompts: tuple[str, str] = ("", "")) -> ProbeEmbeddings:
    """``embed`` each of the probe's text lists in batches of similar length, as the engine serves
    texts; rows come back in the probe's order.

    ``prompts`` (query, document): the model's own prompts, read as a search reads them: queries with the
    query prompt, passages with the document prompt (``embed(texts, prompt)``). So a runtime that mishandles
    a prompt (a pooling that should leave it out) is judged on it; the plain texts stay unprompted.

    Why: in the probe's mixed order a batch pads every text to its longest, so most of the work was
    padding (34-42 % real tokens in mixed order, ``shared/baseline-cpu.md``); in length order an artifact is judged in the batches it will serve in (``EmbeddingModel``
    sorts by token length too), at 2-3x the speed on MiniLM."""
    query, document = prompts
    if not (query or document):
        return ProbeEmbeddings(texts=in_length_order(embed, probe.texts), queries=in_length_order(embed, probe.queries),
                               passages=in_length_order(embed, probe.passages))
    return ProbeEmbeddings(texts=in_length_order(embed, probe.texts),
                           queries=in_length_order(lambda xs: embed(xs, query), probe.queries),
                           passages=in_length_order(lambda xs: embed(xs, document), probe.passages), prompted=True)


def in_length_order(embed, texts) -> np.ndarray:
    """``embed`` of ``texts`` in order of length (little padding), rows back in ``texts``' order."""
    texts = list(texts)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # characters: a tokenizer-free proxy
    vectors = np.asarray(embed([texts[i] for i in order]))
    out = np.empty_like(vectors)
    out[order] = vectors
    return out


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1, in float64 (cosines exact whatever the runtime's precision)."""
    x = np.asarray(x).astype(np.float64)
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def _ranks(x: np.ndarray) -> np.ndarray:
    r = np.empty(len(x), dtype=np.float64)
    r[np.argsort(x, kind="stable")] = np.arange(len(x))
    return r


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = _ranks(a), _ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def measure(ref: ProbeEmbeddings, art: ProbeEmbeddings, relevant: list[int], lengths=None,
            alone: Optional[np.ndarray] = None) -> dict[str, Any]:
    """The gate's figures. ``lengths``: each text's token count; the minimum cosine is then also reported per
    band of lengths (``min_cosine_by_length``), so a collapse on long texts shows where it happens. ``alone``:
    the artifact's vector of each text embedded in a batch of its own, for a runtime whose vectors depend on the
    batch (dynamic int8); each text is then judged by the worse of its two readings (``alone_min_cosine``)."""
    if not (np.isfinite(art.texts).all() and np.isfinite(art.queries).all() and np.isfinite(art.passages).all()):
        nan = float("nan")
        return {"mean_cosine": nan, "min_cosine": nan, "spearman": nan, "recall_at_10": nan,
                "reference_recall_at_10": 1.0, "non_finite": True}
    r, a = unit_rows(ref.texts), unit_rows(art.texts)
    cos = (r * a).sum(axis=1)
    alone_cos = None
    if alone is not None:
        if not np.isfinite(alone).all():
            nan = float("nan")
            return {"mean_cosine": nan, "min_cosine": nan, "spearman": nan, "recall_at_10": nan,
                    "reference_recall_at_10": 1.0, "non_finite": True}
        alone_cos = (r * unit_rows(alone)).sum(axis=1)
        worse = alone_cos < cos
        cos = np.minimum(cos, alone_cos)
        a = np.where(worse[:, None], unit_rows(alone), a)  # the pairwise figures read the worse vectors too
    iu = np.triu_indices(len(r), k=1)
    fig: dict[str, Any] = {
        "probe_texts": len(r),
        "mean_cosine": float(cos.mean()),
        "min_cosine": float(cos.min()),
        "spearman": spearman((r @ r.T)[iu], (a @ a.T)[iu]),
    }
    if alone_cos is not None:
        fig["alone_min_cosine"] = float(alone_cos.min())
    if lengths is not None:
        from .corpora import band_of

        bands: dict[str, float] = {}
        for c, n in zip(cos.tolist(), lengths):
            band = band_of(n)
            bands[band] = min(bands.get(band, 1.0), c)
        fig["min_cosine_by_length"] = dict(sorted(bands.items(), key=lambda kv: int(kv[0].strip(">").split("-")[0])))
    if art.prompted:  # the prompted queries and passages are inputs too: the worst of them bounds min_cosine
        prompted = np.concatenate([(unit_rows(ref.queries) * unit_rows(art.queries)).sum(axis=1),
                                   (unit_rows(ref.passages) * unit_rows(art.passages)).sum(axis=1)])
        fig["prompted_min_cosine"] = float(prompted.min())
        fig["min_cosine"] = min(fig["min_cosine"], fig["prompted_min_cosine"])
    rel = np.asarray(relevant)
    ref_scores = unit_rows(ref.queries) @ unit_rows(ref.passages).T
    art_scores = unit_rows(art.queries) @ unit_rows(art.passages).T
    ref_top = np.argsort(-ref_scores, axis=1, kind="stable")[:, :10]
    art_top = np.argsort(-art_scores, axis=1, kind="stable")[:, :10]
    fig.update({
        "queries": len(rel),
        "top1_agreement": float((ref_top[:, 0] == art_top[:, 0]).mean()),
        "top10_agreement": float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(ref_top, art_top)])),
        "recall_at_1": float((art_top[:, 0] == rel).mean()),
        "recall_at_10": float((art_top == rel[:, None]).any(axis=1).mean()),
        "reference_recall_at_1": float((ref_top[:, 0] == rel).mean()),
        "reference_recall_at_10": float((ref_top == rel[:, None]).any(axis=1).mean()),
    })
    return fig
