"""Bundled text for calibration, search validation, fidelity probes and benchmarks, built offline.

Three disjoint sets, so no artifact is gated on text it was tuned on:

- ``data/sentences.txt`` holds 156 handwritten sentences (varied topics and lengths, about a tenth
  non-English), split in two halves:
  - the **probe** half (odd lines) gives >= 500 texts: the sentences, one-word texts and short
    2-3-word queries cut from them, pairs, paragraphs of 4-6 sentences, and long paragraphs that
    reach the model's max length; plus query/passage pairs for retrieval checks (query = the
    opening of one sentence, its passage = that sentence, among all probe sentences);
  - the **calibration** half (even lines) gives 300 texts for static quantization, one-word and
    short texts among them;
- ``data/validation.txt`` holds 68 other sentences, expanded the same way into the **validation**
  set that the quantization search judges its candidates on (``zoo.conversion.search``).

Short texts are where int8 breaks (a one-word text has three tokens, and one bad activation
range moves its whole vector), so every set has them and the gate checks the minimum cosine.

Multimodal models are also gated on **images** (``image_probe_set``), generated here with Pillow,
never fetched: solid colours, gradients, noise, shapes and rendered text, in several sizes and
aspect ratios (so resizing and cropping are exercised), the same pixels on every machine.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Optional

__all__ = ["probe_set", "validation_set", "calibration_texts", "ProbeSet", "corpus_digest", "benchmark_texts",
           "image_probe_set", "VALIDATION_IMAGE_SEED", "CALIBRATION_IMAGE_SEED"]


@lru_cache(maxsize=2)
def _sentences(name: str = "sentences.txt") -> tuple[str, ...]:
    text = resources.files("zoo.data").joinpath(name).read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


# One-word texts: a word may occur in sentences of two sets, so each set takes only the words of
# its own third of the vocabulary (by a stable hash), which keeps the sets disjoint.
WORD_PART = {"probe": 0, "calibration": 1, "validation": 2}


def _short(pool: list[str], rng: random.Random, n: int, part: str) -> list[str]:
    """``n`` one-word texts, then ``n`` 2-3-word fragments, cut from the sentences of ``pool``."""
    words = sorted({w.strip(".,;:?!'\"").lower() for s in pool for w in s.split()} - {""})
    words = [w for w in words if len(w) > 2
             and hashlib.sha256(w.encode()).digest()[0] % len(WORD_PART) == WORD_PART[part]]
    one = rng.sample(words, min(n, len(words)))
    fragments = []
    for s in rng.sample(pool, min(n, len(pool))):
        tokens = s.rstrip(".?!").split()
        k = min(len(tokens), rng.randint(2, 3))
        start = rng.randint(0, len(tokens) - k)
        fragments.append(" ".join(tokens[start:start + k]))
    return one + fragments


def _expand(pool: list[str], rng: random.Random, singles: int, pairs: int, paragraphs: int,
            long: int, short: int = 0, part: str = "probe") -> list[str]:
    out = list(pool[:singles]) + _short(pool, rng, short, part)
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
    lengths: Optional[list[int]] = None  # each text's token count at the model's max length (per-band figures)


@lru_cache(maxsize=4)
def probe_set(seed: int = 0) -> ProbeSet:
    """The gate's texts: the odd lines of ``sentences.txt``."""
    return _probe_like(list(_sentences()[1::2]), random.Random(seed), pairs=160, paragraphs=180, long=85, short=40,
                       part="probe")


@lru_cache(maxsize=4)
def validation_set(seed: int = 3) -> ProbeSet:
    """The quantization search's texts: ``validation.txt``, disjoint from the probe and calibration."""
    return _probe_like(list(_sentences("validation.txt")), random.Random(seed), pairs=50, paragraphs=50, long=20,
                       short=30, part="validation")


# The gate reports its minimum cosine per band of token lengths: int8 that holds on short texts can collapse on
# long ones (a static-int8 softmax scale of 1/255 zeroes every attention weight below ~0.002, and spread over
# more than ~500 tokens most weights are that small: cosine 0.996 at 514 tokens, 0.558 at 8,192 on an XLM-R).
LENGTH_BANDS = ((1, 128), (129, 512), (513, 2048), (2049, 8192), (8193, None))


def band_of(tokens: int) -> str:
    for lo, hi in LENGTH_BANDS:
        if hi is None or tokens <= hi:
            return f"{lo}-{hi}" if hi is not None else f">{lo - 1}"
    raise AssertionError("unreachable")


def length_targets(max_length: int) -> list[int]:
    """Token lengths the sets add for a model that reads past 512 tokens: inside each longer band it reaches
    (at 90 % of the band's top) and past the max length itself (cut there, as served)."""
    targets = [int(0.9 * hi) for lo, hi in LENGTH_BANDS if lo > 512 and hi is not None and hi < max_length]
    return targets + [max_length + 64] if max_length > 512 else []


def with_long_texts(probe: ProbeSet, count_tokens, max_length: int, per_target: int = 2, seed: int = 5) -> ProbeSet:
    """``probe`` plus texts that cover the model's whole length range, built from the set's own passages
    joined until ``count_tokens`` (the model's tokenizer, untruncated) reaches each target; and every text's
    token count at ``max_length``, for the per-band figures. A model of 512 tokens or fewer gets no new text."""
    rng = random.Random(seed)
    texts = list(probe.texts)
    counts = {p: count_tokens(p) for p in probe.passages}
    for target in length_targets(max_length):
        for _ in range(per_target):
            parts, total = [], 0
            while total < target:
                p = rng.choice(probe.passages)
                parts.append(p)
                total += counts[p]
            texts.append(" ".join(parts))
    lengths = [min(count_tokens(t), max_length) for t in texts]
    return ProbeSet(texts=texts, queries=probe.queries, passages=probe.passages, relevant=probe.relevant,
                    lengths=lengths)


def _probe_like(pool: list[str], rng: random.Random, **sizes) -> ProbeSet:
    texts = _expand(pool, rng, singles=len(pool), **sizes)
    # Retrieval: each query is the opening of one sentence (60 % of its words), and the corpus is
    # the sentences themselves, so exactly one passage is relevant per query.
    queries = [" ".join(s.split()[:max(2, round(len(s.split()) * 0.6))]) for s in pool]
    return ProbeSet(texts=texts, queries=queries, passages=list(pool), relevant=list(range(len(pool))))


@lru_cache(maxsize=4)
def calibration_texts(n: int = 300, seed: int = 1) -> tuple[str, ...]:
    pool = list(_sentences()[0::2])
    rng = random.Random(seed)
    short = 20
    rest = n - len(pool) - 2 * short
    return tuple(_expand(pool, rng, singles=len(pool), pairs=rest // 2, paragraphs=rest - rest // 2 - 10, long=10,
                         short=short, part="calibration")[:n])


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


IMAGE_SIZES = ((224, 224), (320, 200), (150, 300), (64, 64), (500, 375), (33, 97))
# the gate's images are seed 0; the search validates on VALIDATION_IMAGE_SEED, int8 calibrates on another
VALIDATION_IMAGE_SEED, CALIBRATION_IMAGE_SEED = 3, 1


def image_probe_set(n: int = 48, seed: int = 0) -> list:
    """The gate's images: ``n`` RGB pictures of six kinds and six sizes, deterministic for ``seed``."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.RandomState(seed)
    words = list(_sentences()[1::2])
    out = []
    for i in range(n):
        w, h = IMAGE_SIZES[i % len(IMAGE_SIZES)]
        kind = (i // len(IMAGE_SIZES)) % 6
        colour = tuple(int(c) for c in rng.randint(0, 256, 3))
        if kind == 0:  # a solid colour
            img = Image.new("RGB", (w, h), colour)
        elif kind == 1:  # a two-colour gradient
            t = np.linspace(0.0, 1.0, w)[None, :, None]
            other = rng.randint(0, 256, 3)
            img = Image.fromarray(np.repeat((np.array(colour) * (1 - t) + other * t), h, axis=0).astype("uint8"))
        elif kind == 2:  # noise
            img = Image.fromarray((rng.rand(h, w, 3) * 255).astype("uint8"))
        else:  # shapes on a background, or rendered text
            img = Image.new("RGB", (w, h), colour)
            draw = ImageDraw.Draw(img)
            fill = tuple(int(c) for c in rng.randint(0, 256, 3))
            box = sorted(rng.randint(0, w, 2)), sorted(rng.randint(0, h, 2))
            if kind == 3:
                draw.ellipse([box[0][0], box[1][0], box[0][1] + 1, box[1][1] + 1], fill=fill)
            elif kind == 4:
                draw.rectangle([box[0][0], box[1][0], box[0][1] + 1, box[1][1] + 1], fill=fill)
                draw.line([0, 0, w - 1, h - 1], fill=(255 - fill[0], 255 - fill[1], 255 - fill[2]), width=3)
            else:
                draw.text((4, h // 3), words[i % len(words)][:40], fill=fill)
        out.append(img)
    return out
