"""Bundled text for calibration, fidelity probes and benchmarks, built without any network.

``data/sentences.txt`` holds 156 handwritten sentences (varied topics and lengths,
about a tenth non-English). Two disjoint halves are expanded deterministically:

- the **probe** half (odd lines) gives >= 500 texts: the sentences, pairs, paragraphs
  of 4-6 sentences, and long paragraphs that reach the model's max length; plus
  query/passage pairs for retrieval checks (query = one sentence, its passage = the
  probe sentence it opens, among all probe sentences);
- the **calibration** half (even lines) gives 300 texts for static quantization.

The gate therefore never measures an artifact on the text it was calibrated on.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

__all__ = ["probe_set", "calibration_texts", "ProbeSet", "corpus_digest", "benchmark_texts"]


@lru_cache(maxsize=1)
def _sentences() -> tuple[str, ...]:
    text = resources.files("zoo.data").joinpath("sentences.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _expand(pool: list[str], rng: random.Random, singles: int, pairs: int, paragraphs: int,
            long: int) -> list[str]:
    out = list(pool[:singles])
    out += [" ".join(rng.sample(pool, 2)) for _ in range(pairs)]
    out += [" ".join(rng.sample(pool, rng.randint(4, 6))) for _ in range(paragraphs)]
    out += [" ".join(rng.sample(pool, rng.randint(12, 20))) for _ in range(long)]
    return out


@dataclass(frozen=True)
class ProbeSet:
    texts: list[str]  # >= 500 mixed-length texts, embedded by reference and artifact
    queries: list[str]  # retrieval queries
    passages: list[str]  # retrieval corpus (exactly one relevant passage per query)
    relevant: list[int]  # relevant[i] = index in passages of query i's passage


@lru_cache(maxsize=4)
def probe_set(seed: int = 0) -> ProbeSet:
    pool = list(_sentences()[1::2])
    rng = random.Random(seed)
    texts = _expand(pool, rng, singles=len(pool), pairs=160, paragraphs=180, long=85)
    # Retrieval: each query is the opening of one probe sentence (60 % of its words), and the
    # corpus is the probe sentences themselves, so exactly one passage is relevant per query.
    queries = [" ".join(s.split()[:max(2, round(len(s.split()) * 0.6))]) for s in pool]
    return ProbeSet(texts=texts, queries=queries, passages=list(pool), relevant=list(range(len(pool))))


@lru_cache(maxsize=4)
def calibration_texts(n: int = 300, seed: int = 1) -> tuple[str, ...]:
    pool = list(_sentences()[0::2])
    rng = random.Random(seed)
    rest = n - len(pool)
    return tuple(_expand(pool, rng, singles=len(pool), pairs=rest // 2, paragraphs=rest - rest // 2 - 10, long=10)[:n])


def benchmark_texts(n: int = 2000, seed: int = 2) -> list[str]:
    """A mixed-length workload from the whole pool, in shuffled order (as users send it)."""
    pool = list(_sentences())
    rng = random.Random(seed)
    paragraphs, long = n // 3, n // 20
    out = _expand(pool, rng, singles=len(pool), pairs=n - len(pool) - paragraphs - long,
                  paragraphs=paragraphs, long=long)
    rng.shuffle(out)
    return out[:n]


def corpus_digest(texts) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()
