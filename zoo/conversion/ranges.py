"""An artifact's int8/uint8 calibration ranges and the retrieval cost of each compact precision.

Computed once per artifact: by the gate when ``zoo convert`` builds it, or, for an artifact built
before zoo stored ranges (or the registered ``torch-fp32`` reference), on the first compact request,
and then kept in the artifact's registry row (``artifacts.precision_ranges``). The arithmetic lives
in ``zoo.engine.precision``; this module chooses the texts: the calibration texts (the bundled 300,
or the ones ``zoo convert --calibration`` was given) for the ranges, and the gate's query/passage
pairs (disjoint from them) for the recall figures, so the figures are not measured on the texts the
ranges were fitted to.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..engine.precision import compute_ranges, precision_figures, range_widths, ranges_for
from .corpora import calibration_texts, corpus_digest, probe_set
from .fidelity import in_length_order

__all__ = ["calibrate"]


def calibrate(embed_raw: Callable[[list[str]], np.ndarray], spec, *, texts: Optional[Sequence[str]] = None,
              source: Optional[str] = None, probe_vectors: Optional[tuple[np.ndarray, np.ndarray, np.ndarray]] = None
              ) -> dict[str, Any]:
    """The record stored with an artifact. ``embed_raw``: texts -> float32 rows, unnormalised, full width,
    no prompt. ``probe_vectors``: the gate's (queries, passages, texts) vectors when it already has them.

    The retrieval corpus is the probe's passages plus its other texts as distractors (the sentences'
    own copies left out), so top-10 lists are drawn from about 600 texts, not 78."""
    texts = list(texts) if texts else list(calibration_texts())
    raw = in_length_order(embed_raw, texts)
    record = compute_ranges(raw, range_widths(spec.dim, spec.matryoshka_dims), digest=corpus_digest(texts))
    record["source"] = source or "bundled"
    probe = probe_set()
    if probe_vectors is None:
        probe_vectors = tuple(in_length_order(embed_raw, part) for part in (probe.queries, probe.passages, probe.texts))
    queries, passages, others = probe_vectors
    own = set(probe.passages)
    distractors = np.asarray(others)[[i for i, t in enumerate(probe.texts) if t not in own]]
    record["figures"] = precision_figures(queries, np.concatenate([passages, distractors]), probe.relevant,
                                          ranges_for(record, normalize=True, dims=spec.dim))
    return record

