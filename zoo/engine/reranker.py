"""The reranking engine: what ``zoo.load`` returns for a cross-encoder, one artifact ready to score pairs.

A cross-encoder reads a query and a document together and gives the pair a relevance score; reranking a
search's top hits is usually the dearest step of a retrieval pipeline. One call does what the embedding
engine does for texts: validate (naming the bad index), tokenize the pairs once (their truncation is then known,
and the service's queue counts their tokens), look every distinct (query, document) pair up in the vector cache
(keyed by the exact artifact, like vectors), batch the misses by token length, run the runtime, store the new
scores, and return them in input order, with the pairs that were truncated said. ``rerank`` sorts, as sentence-transformers' ``CrossEncoder.rank`` does, and keeps ``top_n``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import InvalidInput
from .batching import DEFAULT_MAX_BATCH_TOKENS
from .model import TruncationWarning, _keep, _preview, check_batch_size, validate_texts

__all__ = ["RerankModel", "Ranking", "Ranked", "ranked"]


def ranked(scores, top_n: Optional[int] = None) -> list[int]:
    """Indices by descending score, ties in input order (as ``CrossEncoder.rank``), at most ``top_n``."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    return order if top_n is None else order[:int(top_n)]


@dataclass(frozen=True)
class Ranked:
    """One document's place in a ranking: its index in the input, its score, and its text if asked for."""
    index: int
    score: float
    document: Optional[str] = None


@dataclass
class Ranking:
    """Documents by descending score (ties in input order), with what happened on the way."""
    results: list[Ranked]
    truncated: tuple[int, ...] = ()  # document indices whose pair was cut to the max length
    cache_hits: int = 0
    tokens: int = 0  # tokens the pairs cost the model (after truncation)

    def __iter__(self):
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, i):
        return self.results[i]


class RerankModel:
    """A reranker (cross-encoder) of the registry, served by one artifact."""

    kind = "reranker"

    def __init__(self, name: str, backend, spec, info: Optional[dict[str, Any]] = None, *,
                 default_batch_size: int = 32, cache=None, max_batch_tokens: Optional[int] = DEFAULT_MAX_BATCH_TOKENS,
                 ranges=None):
        """As ``EmbeddingModel``'s, so the loader builds either kind alike; ``ranges`` is unused (a reranker's
        scores have no compact precisions)."""
        self.name = name
        self.backend = backend
        self.spec = spec
        self.num_labels = spec.dim
        self.info = info or {}
        self.default_batch_size = default_batch_size
        self.cache = cache
        self.max_batch_tokens = max_batch_tokens

    def resolve_prompt(self, prompt: Optional[str] = None, prompt_name: Optional[str] = None) -> str:
        """A reranker reads a query and a document as they are: no prompt names (``prompt`` itself is kept)."""
        if prompt_name is not None:
            raise InvalidInput(f"{self.name} is a reranker and has no prompts; send no prompt_name", param="prompt_name")
        return prompt or ""

    @property
    def max_seq_length(self) -> int:
        return self.backend.encoder.max_length

    def predict(self, pairs: Sequence[Sequence[str]], *, batch_size: Optional[int] = None, cache: bool = True,
                truncate: bool = True) -> np.ndarray:
        """Scores of (query, document) pairs, in input order: shape (n,) for a one-label model, else
        (n, labels); equal to sentence-transformers' ``CrossEncoder.predict``. ``truncate=False``: raise
        instead of cutting a pair longer than the max length."""
        checked = _check_pairs(pairs)
        scores, cut, hits, _ = self._scores(checked, batch_size, cache, truncate)
        if cut:
            self._warn(cut, len(checked), "pairs")
        return scores[:, 0] if self.num_labels == 1 else scores

    def rerank(self, query: str, documents: Sequence[str], *, top_n: Optional[int] = None,
               return_documents: bool = False, batch_size: Optional[int] = None, cache: bool = True,
               truncate: bool = True) -> Ranking:
        """``documents`` by relevance to ``query``, best first (ties keep input order), at most ``top_n`` of
        them; the same order and scores as sentence-transformers' ``CrossEncoder.rank``."""
        if self.num_labels != 1:
            raise InvalidInput(f"{self.name} scores {self.num_labels} labels; rerank needs a one-label model "
                               "(use predict() for the label scores)")
        _check_query(query)
        docs = validate_texts(documents)
        if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, (int, np.integer)) or top_n < 1):
            raise InvalidInput(f"top_n must be an integer >= 1, got {top_n!r}", param="top_n")
        scores, cut, hits, tokens = self._scores([(query, d) for d in docs], batch_size, cache, truncate)
        result = Ranking([Ranked(i, float(scores[i, 0]), docs[i] if return_documents else None)
                          for i in ranked(scores[:, 0], top_n)],
                         truncated=tuple(sorted(cut)), cache_hits=hits, tokens=tokens)
        if cut:
            self._warn(result.truncated, len(docs), "documents")
        return result

    def rank(self, query: str, documents: Sequence[str], top_k: Optional[int] = None,
             return_documents: bool = False, batch_size: int = 32, **unsupported) -> list[dict[str, Any]]:
        """sentence-transformers' ``CrossEncoder.rank`` shape (``corpus_id``, ``score``, ``text``), for code
        migrating to zoo."""
        if unsupported:
            raise InvalidInput(f"rank() does not support {', '.join(sorted(unsupported))} in zoo; supported: top_k, "
                               "return_documents, batch_size")
        ranking = self.rerank(query, documents, top_n=top_k, return_documents=return_documents, batch_size=batch_size)
        return [{"corpus_id": r.index, "score": r.score, **({"text": r.document} if return_documents else {})}
                for r in ranking]

    def count_tokens(self, pairs: Sequence[Sequence[str]]) -> list[int]:
        from .backends.lean import Prepared

        return Prepared.of_pairs(self.backend.encoder, _check_pairs(pairs)).lengths

    def tokenize_pairs(self, query: str, documents: Sequence[str]):
        """``query`` with each document, tokenized together as the engine scores them (a ``Prepared``); pass it
        to :meth:`score_tokenized`. The service tokenizes once: the token counts drive its queue and usage."""
        from .backends.lean import Prepared

        _check_query(query)
        return Prepared.of_pairs(self.backend.encoder, [(query, d) for d in validate_texts(documents)])

    def score_tokenized(self, prepared, *, batch_size: Optional[int] = None, cache: bool = True) -> np.ndarray:
        """(pairs, labels) scores of tokenized pairs, in order; each distinct pair is looked up in the cache and
        scored once. The service's batcher calls this with pairs of several requests coalesced."""
        return self._score_prepared(prepared, check_batch_size(batch_size, self.default_batch_size), cache)[0]

    def _scores(self, pairs: list[tuple[str, str]], batch_size: Optional[int], cache: bool, truncate: bool):
        """(scores (n, labels), indices truncated, cache hits, tokens)."""
        from .backends.lean import Prepared

        batch_size = check_batch_size(batch_size, self.default_batch_size)
        if not pairs:
            return np.empty((0, self.num_labels), dtype=np.float32), set(), 0, 0
        prepared = Prepared.of_pairs(self.backend.encoder, pairs)
        truncated = {i for i, flag in enumerate(prepared.truncated) if flag}
        if truncated and not truncate:  # refused before any compute
            raise InvalidInput(f"pair at index {min(truncated)} is longer than {self.name}'s max length of "
                               f"{self.max_seq_length} tokens (query and document together); shorten it, or pass "
                               "truncate=True to cut it")
        scores, hits = self._score_prepared(prepared, batch_size, cache)
        return scores, truncated, hits, sum(prepared.lengths)

    def _score_prepared(self, prepared, batch_size: int, cache: bool) -> tuple[np.ndarray, int]:
        keys = prepared.texts
        out = np.empty((len(keys), self.num_labels), dtype=np.float32)
        if not keys:
            return out, 0
        first = {k: i for i, k in reversed(list(enumerate(keys)))}
        unique = list(first)
        scores: dict[str, np.ndarray] = {}
        store = self.cache if cache else None
        if store is not None:
            config = self._cache_config()
            ckeys = dict(zip(unique, config.keys(unique)))
            found = store.get_many(config, list(ckeys.values()))
            scores.update({k: found[ck].vector for k, ck in ckeys.items() if ck in found})
        hits = set(scores)
        missing = [k for k in unique if k not in hits]
        if missing:
            raw = self.backend.embed_prepared(prepared.subset([first[k] for k in missing]), batch_size,
                                              normalize=False, max_tokens=self.max_batch_tokens)
            if raw.shape != (len(missing), self.num_labels):
                raise RuntimeError(f"backend {self.info.get('backend')} returned shape {raw.shape}, "
                                   f"expected {(len(missing), self.num_labels)}")
            if not np.isfinite(raw).all():  # never a NaN score passed on as a ranking
                raise RuntimeError(f"{self.name}'s {self.info.get('artifact')} artifact gave non-finite scores")
            scores.update(zip(missing, raw))
            if store is not None:  # only now: a failed call caches nothing
                from .cache import TRUNCATED

                _keep(store, config, [(ckeys[k], v, TRUNCATED if prepared.truncated[first[k]] else 0)
                                      for k, v in zip(missing, raw)], self.name)
        for pos, k in enumerate(keys):
            out[pos] = scores[k]
        return out, sum(1 for k in keys if k in hits)

    def _warn(self, indices, total: int, what: str) -> None:
        indices = tuple(sorted(indices))
        warnings.warn(f"{len(indices)} of {total} {what} were longer than {self.name}'s max length "
                      f"({self.max_seq_length} tokens, query and document together) and were truncated (indices "
                      f"{_preview(indices)}); pass truncate=False to get an error instead", TruncationWarning,
                      stacklevel=3)

    def _cache_config(self):
        """A pair's scores are keyed by the exact artifact, its runtime precision and the pair itself."""
        from .cache import CacheConfig

        return CacheConfig(model=self.name, artifact_digest=str(self.info.get("store_digest")),
                           runtime_precision=str(self.info.get("runtime_precision")), prompt="\x00rerank",
                           normalize=False, dimensions=self.num_labels)

    # an embedding call on a reranker is refused in one line that names the kind (the CLI, the service and the
    # dataset jobs all reach these), never answered with a score taken for a vector
    def embed(self, *args, **kwargs):
        from .kinds import refuse_kind

        raise refuse_kind(self.name, "reranker", ("embedding",), "embedding")

    embed_query = embed_documents = embed_tokens = embed_images = encode = embed

    async def arerank(self, query: str, documents: Sequence[str], **options) -> Ranking:
        import asyncio

        return await asyncio.to_thread(self.rerank, query, documents, **options)

    def __repr__(self) -> str:
        return (f"RerankModel({self.name!r}, artifact={self.info.get('artifact')!r}, "
                f"backend={self.info.get('backend')!r}, device={self.info.get('device')!r})")


def _check_query(query) -> None:
    if not isinstance(query, str):
        raise InvalidInput(f"query must be a string, not {type(query).__name__}", param="query")
    validate_texts([query])


def _check_pairs(pairs) -> list[tuple[str, str]]:
    """Accept a list of (query, document) string pairs; name the first bad item's index."""
    if pairs is None or isinstance(pairs, (str, bytes, dict)) or not hasattr(pairs, "__iter__"):
        raise InvalidInput(f"pairs must be a list of (query, document) pairs, not {type(pairs).__name__}")
    out = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
            raise InvalidInput(f"pair at index {i} is not a (query, document) pair of two strings")
        q, d = pair
        if not isinstance(q, str) or not isinstance(d, str):
            raise InvalidInput(f"pair at index {i} holds {type(q).__name__} and {type(d).__name__}, not two strings")
        validate_texts([q, d])
        out.append((q, d))
    return out
