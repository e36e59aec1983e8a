"""The embedding engine: what ``zoo.load`` returns, one artifact of one model, ready to embed.

One call does: validate the inputs (naming the bad index), resolve the prompt,
look every distinct text up in the vector cache (one query per batch), tokenize
only the misses once, batch them by token length and a token budget, run the
runtime, cut to ``dimensions`` and re-normalise, store the new vectors, and
return float32 rows in input order. Nothing is cached unless the whole call
succeeds. The object holds no per-call state, so threads may share it.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any, Optional, Sequence

import numpy as np

from .batching import DEFAULT_MAX_BATCH_TOKENS
from ..errors import InvalidInput
from .backends.lean import is_token_key
from .similarity import aggregate, similarity

__all__ = ["EmbeddingModel", "Embeddings", "TruncationWarning", "validate_texts", "PROMPT_NAMES"]

PROGRESS_MIN_TEXTS = 1000  # below this a progress bar is noise
PROMPT_NAMES = {"query": "query", "document": "document", "passage": "document", "corpus": "document"}
_UNSET: Any = object()


class TruncationWarning(UserWarning):
    """Some inputs were longer than the model's max length and were cut."""


class CacheWriteWarning(UserWarning):
    """The vector cache could not store new vectors (a full disk, a read-only file, a Redis out of memory):
    the vectors are returned all the same, and later calls keep trying."""


def _keep(store, config, items, model: str) -> None:
    """Store computed vectors in the optional cache; a cache that cannot write costs a warning, not the call."""
    import logging

    try:
        store.put_many(config, items)
    except Exception as exc:  # noqa: BLE001 - the cache is optional: any failure to write it is the same to us
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
        logging.getLogger("zoo.cache").warning("vector cache write failed for %s (%s); serving without it", model, reason)
        warnings.warn(f"the vector cache could not store {len(items)} vector(s) of {model} ({reason}); they were "
                      "returned uncached. Free disk space or set ZOO_CACHE=off", CacheWriteWarning, stacklevel=3)


class Embeddings(np.ndarray):
    """A float32 array of vectors (rows in input order) that also says what happened.

    ``truncated``: input indices cut to the model's max length; ``cache_hits``: how many
    rows came from the vector cache.
    """

    truncated: tuple[int, ...] = ()
    cache_hits: int = 0

    def __array_finalize__(self, obj) -> None:
        self.truncated = getattr(obj, "truncated", ())
        self.cache_hits = getattr(obj, "cache_hits", 0)


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


class EmbeddingModel:
    kind = "embedding"  # what the model is for (``zoo.engine.kinds``); a reranker loads as ``RerankModel``

    def __init__(self, name: str, backend, spec, info: Optional[dict[str, Any]] = None, *,
                 default_batch_size: int = 32, cache=None, max_batch_tokens: Optional[int] = DEFAULT_MAX_BATCH_TOKENS,
                 ranges=None):
        """``ranges``: the artifact's stored calibration record (``zoo.engine.precision``), or a callable
        that takes this model and returns it (computing and storing it on first need), for int8/uint8 output."""
        import threading

        self.name = name
        self.backend = backend
        self.spec = spec
        self.dim = spec.dim
        self.info = info or {}
        self.default_batch_size = default_batch_size  # the best batch measured on this machine, if benchmarked
        self.cache = cache  # a zoo.engine.cache.VectorCache, or None
        self.max_batch_tokens = max_batch_tokens
        self.prompts = {k: v for k, v in (("query", spec.query_prompt), ("document", spec.document_prompt)) if v}
        self._ranges_source = ranges
        self._ranges_lock = threading.Lock()

    def precision_record(self) -> dict[str, Any]:
        """The artifact's calibration record: its int8/uint8 ranges and what each compact precision costs
        in retrieval (computed once per artifact and stored in the registry; see ``zoo.engine.precision``)."""
        source = self._ranges_source
        if isinstance(source, dict):
            return source
        if source is None:
            raise InvalidInput(f"{self.name} has no stored calibration ranges for int8/uint8; load it by name from "
                               "the registry (zoo.load), or ask for float16, binary or ubinary, which need none")
        with self._ranges_lock:  # computed once, however many requests ask at the same time
            if not isinstance(self._ranges_source, dict):
                self._ranges_source = source(self)
            return self._ranges_source

    def ranges(self, *, dimensions: Optional[int] = None, normalize: Optional[bool] = None) -> np.ndarray:
        """The (2, dimensions) float32 [min; max] per dimension that int8/uint8 output uses; pass it to
        sentence-transformers' ``quantize_embeddings(..., ranges=)`` or a vector store to quantize alike."""
        from .precision import ranges_for

        normalize = self.spec.normalize if normalize is None else bool(normalize)
        return ranges_for(self.precision_record(), normalize=normalize, dims=self._dimensions(dimensions))

    @property
    def max_seq_length(self) -> int:
        return self.backend.encoder.max_length

    # -- the core call --------------------------------------------------------------------------

    def embed(self, texts: str | Sequence[str], *, batch_size: Optional[int] = None,
              normalize: Optional[bool] = None, dimensions: Optional[int] = None, prompt: Optional[str] = None,
              prompt_name: Optional[str] = None, truncate: bool = True, cache: bool = True,
              show_progress: Optional[bool] = None, max_batch_tokens: Optional[int] = _UNSET,
              tokenized=None, precision: Optional[str] = None) -> Embeddings:
        """Embed texts; float32 of shape (len(texts), dimensions or dim), in input order.

        ``normalize``: L2-normalise (default: as the model does); ``dimensions``: keep the first
        N components (Matryoshka), then re-normalise; ``prompt`` / ``prompt_name`` ("query",
        "document"): text prepended to every input, as sentence-transformers does;
        ``truncate=False``: raise instead of cutting inputs longer than the model's max length;
        ``cache=False``: bypass the vector cache for this call; ``tokenized``: what
        :meth:`tokenize` made of these texts, so they are not tokenized twice (ignored with a prompt);
        ``precision``: float32 (default), float16, int8, uint8, binary or ubinary, int8/uint8 from the
        artifact's stored ranges (:meth:`ranges`), as sentence-transformers' ``quantize_embeddings``
        computes them; the cache keeps float32 and quantizes on the way out.
        """
        from .precision import check_precision

        precision = check_precision(precision)
        # a Prepared's own texts were checked when it was made (and token-id keys are no texts)
        items = list(texts) if tokenized is not None and texts is tokenized.texts else validate_texts(texts)
        batch_size = self._batch_size(batch_size)
        max_tokens = self.max_batch_tokens if max_batch_tokens is _UNSET else max_batch_tokens
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise InvalidInput(f"max_batch_tokens must be an integer >= 1 or None, got {max_tokens!r}")
        dims = self._dimensions(dimensions)
        normalize = self.spec.normalize if normalize is None else bool(normalize)
        prefix = self.resolve_prompt(prompt, prompt_name)
        if prefix and any(is_token_key(t) for t in items):
            raise InvalidInput("a prompt cannot be put before token-id input; tokenize the prompt with the text")
        # refused before any compute: int8/uint8 where no ranges exist for this width
        ranges = self.ranges(dimensions=dims, normalize=normalize) if precision in ("int8", "uint8") else None
        out = np.empty((len(items), dims), dtype=np.float32)
        result = out.view(Embeddings)
        if not items:
            return _at_precision(result, precision, ranges)

        # texts tokenized with a prompt in them (the service's batches): the leading tokens the pooling leaves out
        given_prompt = tokenized.prompt_tokens if tokenized is not None and not prefix else 0
        unique = list(dict.fromkeys(items))  # each distinct text is looked up and embedded once
        vectors: dict[str, np.ndarray] = {}
        cut: set[str] = set()  # texts that were (or, from the cache, had been) truncated
        store = self.cache if cache else None
        if store is not None:
            from .cache import TRUNCATED

            # a text whose prompt tokens were pooled out is not the same input as that text alone: keyed apart
            config = self._cache_config(f"\x00{given_prompt} prompt tokens left out of the pooling" if given_prompt
                                        else prefix, normalize, dims)
            keys = dict(zip(unique, config.keys(unique)))
            found = store.get_many(config, list(keys.values()))
            for text, key in keys.items():
                if key in found:
                    vectors[text] = found[key].vector
                    if found[key].flags & TRUNCATED:
                        cut.add(text)
        hits = set(vectors)
        if not truncate and cut:
            self._refuse_long(items, cut, prefix)
        missing = [t for t in unique if t not in hits]
        if missing:
            from .backends.lean import Prepared

            known = {t: k for k, t in enumerate(tokenized.texts)} if tokenized is not None and not prefix else {}
            if known and all(t in known for t in missing):
                prepared = tokenized.subset([known[t] for t in missing])
            else:
                prepared = Prepared.prompted(self.backend.encoder, missing, prefix, self.spec)
                prepared.prompt_tokens = prepared.prompt_tokens or given_prompt
            cut.update(t for t, flag in zip(missing, prepared.truncated) if flag)
            if not truncate and cut:  # refuse before spending any compute
                self._refuse_long(items, cut, prefix)
            computed = self._run(prepared, batch_size, max_tokens, normalize, dims, show_progress)
            vectors.update(zip(missing, computed))
            if store is not None:  # only now: a failed call caches nothing
                _keep(store, config, [(keys[t], v, TRUNCATED if t in cut else 0) for t, v in zip(missing, computed)],
                      self.name)
        for pos, text in enumerate(items):
            out[pos] = vectors[text]
        result.truncated = tuple(i for i, t in enumerate(items) if t in cut)
        result.cache_hits = sum(1 for t in items if t in hits)
        if result.truncated:
            warnings.warn(f"{len(result.truncated)} of {len(items)} texts were longer than {self.name}'s max length "
                          f"({self.max_seq_length} tokens) and were truncated (indices {_preview(result.truncated)}); "
                          "pass truncate=False to get an error instead", TruncationWarning, stacklevel=2)
        return _at_precision(result, precision, ranges)

    def _run(self, prepared, batch_size: int, max_tokens: Optional[int], normalize: bool, dims: int,
             show_progress: Optional[bool]) -> np.ndarray:
        texts = prepared.texts
        show = len(texts) >= PROGRESS_MIN_TEXTS and sys.stderr.isatty() if show_progress is None else show_progress
        bar = None
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), unit="text", desc=f"embedding with {self.name}")
        try:
            raw = self.backend.embed_prepared(prepared, batch_size, normalize=normalize and dims == self.dim,
                                              max_tokens=max_tokens, on_batch=bar.update if bar else lambda n: None)
        finally:
            if bar is not None:
                bar.close()
        return self._trim(raw, len(texts), normalize, dims)

    def _trim(self, raw: np.ndarray, rows: int, normalize: bool, dims: int) -> np.ndarray:
        from .backends.lean import normalize_rows

        if raw.shape != (rows, self.dim):
            raise RuntimeError(f"backend {self.info.get('backend')} returned shape {raw.shape}, "
                               f"expected {(rows, self.dim)}")
        if dims < self.dim:  # Matryoshka: keep the leading components, then re-normalise
            raw = normalize_rows(raw[:, :dims]) if normalize else np.ascontiguousarray(raw[:, :dims])
        return raw.astype(np.float32, copy=False)

    def embed_images(self, images, *, batch_size: Optional[int] = None, normalize: Optional[bool] = None,
                     dimensions: Optional[int] = None, cache: bool = True,
                     max_pixels: Optional[int] = None) -> Embeddings:
        """Embed images into the space :meth:`embed` puts this model's texts in (a CLIP-family model).

        ``images``: PIL images, file paths or encoded bytes (PNG, JPEG, WebP, GIF, BMP, TIFF), one or
        a list; each is checked from its header before it is decoded (``max_pixels``). The vector
        cache keys each image by the digest of its bytes. Options as :meth:`embed`'s."""
        from .images import DEFAULT_MAX_PIXELS, PIXELS, declared_pixels, image_keys, open_image

        if "image" not in self.spec.modalities:
            raise InvalidInput(f"{self.name} embeds text only (modalities: {', '.join(self.spec.modalities)}); "
                               "images need a CLIP-family model")
        run = getattr(self.backend, "embed_images", None)
        if run is None:
            raise InvalidInput(f"the {self.info.get('artifact')} artifact of {self.name} embeds text only; "
                               "load artifact='torch-fp32' for images")
        batch_size = self._batch_size(batch_size)
        dims = self._dimensions(dimensions)
        normalize = self.spec.normalize if normalize is None else bool(normalize)
        limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
        loaded = image_keys(images)  # digests first: a cached image is never decoded
        pictures = {}  # key -> (first index, source): each distinct image is embedded once
        for i, (key, source) in enumerate(loaded):
            pictures.setdefault(key, (i, source))
        vectors: dict[str, np.ndarray] = {}
        store = self.cache if cache else None
        if store is not None:
            config = self._cache_config("", normalize, dims)
            keys = dict(zip(pictures, config.keys(list(pictures))))
            found = store.get_many(config, list(keys.values()))
            vectors.update({k: found[c].vector for k, c in keys.items() if c in found})
        hits = set(vectors)
        missing = [k for k in pictures if k not in hits]
        if missing:
            # every header first (a bad image fails the call before any decode), then batch by batch: a
            # batch takes its pixels from the process's budget, is decoded, becomes pixel values and lets go,
            # so a request of many large images holds one batch of them decoded, not all
            sizes = [declared_pixels(pictures[k][1]) for k in missing]
            for k, n in zip(missing, sizes):
                if n > limit:
                    open_image(pictures[k][1], pictures[k][0], limit)  # refuses it, naming the index
            parts = []
            for start, stop in PIXELS.batches(sizes, batch_size):
                chunk = missing[start:stop]
                held = PIXELS.take(sum(sizes[start:stop]))
                try:
                    decoded = [open_image(pictures[k][1], pictures[k][0], limit) for k in chunk]
                    parts.append(np.asarray(run(decoded, batch_size, normalize=normalize and dims == self.dim),
                                            dtype=np.float32))
                    del decoded
                finally:
                    PIXELS.give(held)
            computed = self._trim(np.concatenate(parts), len(missing), normalize, dims)
            vectors.update(zip(missing, computed))
            if store is not None:
                _keep(store, config, [(keys[k], v, 0) for k, v in zip(missing, computed)], self.name)
        out = np.empty((len(loaded), dims), dtype=np.float32)
        for pos, (key, _) in enumerate(loaded):
            out[pos] = vectors[key]
        result = out.view(Embeddings)
        result.cache_hits = sum(1 for key, _ in loaded if key in hits)
        return result

    def _refuse_long(self, items: list[str], cut: set[str], prefix: str):
        index = next(i for i, t in enumerate(items) if t in cut)
        tokens = self.backend.encoder.full_length(prefix + items[index])
        raise InvalidInput(f"text at index {index} has {tokens} tokens, more than {self.name}'s max length of "
                           f"{self.max_seq_length}; shorten it, split it, or pass truncate=True to cut it")

    def _batch_size(self, batch_size) -> int:
        return check_batch_size(batch_size, self.default_batch_size)

    def _cache_config(self, prompt: str, normalize: bool, dims: int):
        """What keys this model's cached vectors besides the input: the exact artifact and settings."""
        from .cache import CacheConfig

        return CacheConfig(model=self.name, artifact_digest=str(self.info.get("store_digest")),
                           runtime_precision=str(self.info.get("runtime_precision")), prompt=prompt,
                           normalize=normalize, dimensions=dims)

    def _dimensions(self, dimensions) -> int:
        if dimensions is None:
            return self.dim
        if isinstance(dimensions, bool) or not isinstance(dimensions, (int, np.integer)) or not 1 <= dimensions <= self.dim:
            raise InvalidInput(f"dimensions must be an integer from 1 to {self.dim} for {self.name}, got {dimensions!r}")
        return int(dimensions)

    def resolve_prompt(self, prompt: Optional[str] = None, prompt_name: Optional[str] = None) -> str:
        """The text to prepend: ``prompt`` itself, else the model's prompt called ``prompt_name``."""
        if prompt is not None:  # as in sentence-transformers, an explicit prompt wins over a name
            if not isinstance(prompt, str):
                raise InvalidInput(f"prompt must be a string, not {type(prompt).__name__}")
            return prompt
        if prompt_name is None:
            return ""
        key = PROMPT_NAMES.get(prompt_name)
        if key is None:
            raise InvalidInput(f"unknown prompt_name {prompt_name!r}; use query or document "
                               f"(this model has: {', '.join(sorted(self.prompts)) or 'no prompts'})")
        return self.prompts.get(key, "")

    # -- conveniences --------------------------------------------------------------------------

    def embed_query(self, text: str | Sequence[str], **options) -> np.ndarray:
        """Embed search queries with the model's query prompt; one string gives one vector."""
        if "prompt" not in options:
            options.setdefault("prompt_name", "query")
        vectors = self.embed(text, **options)
        return vectors[0] if isinstance(text, str) else vectors

    def embed_documents(self, texts: Sequence[str], **options) -> np.ndarray:
        """Embed passages to be searched, with the model's document prompt."""
        if "prompt" not in options:
            options.setdefault("prompt_name", "document")
        return self.embed(texts, **options)

    def embed_query_agg(self, queries: Sequence[str], agg: str = "mean", **options) -> np.ndarray:
        """One vector for several phrasings of a query (LlamaIndex's aggregated query embedding)."""
        vectors = self.embed_query(list(validate_texts(queries)), **options)
        if len(vectors) == 0:
            raise InvalidInput("embed_query_agg needs at least one query")
        normalize = options.get("normalize")
        return aggregate(vectors, agg, normalize=self.spec.normalize if normalize is None else normalize)

    similarity = staticmethod(similarity)

    def count_tokens(self, texts: str | Sequence[str], prompt: str = "") -> list[int]:
        """Tokens each text costs the model (with special tokens, after truncation)."""
        return self.tokenize([prompt + t for t in validate_texts(texts)]).lengths

    def tokenize_ids(self, token_ids: Sequence[Sequence[int]]):
        """Token-id inputs prepared as the engine prepares texts (special tokens added, truncated)."""
        from .backends.lean import Prepared

        return Prepared.of_ids(self.backend.encoder, token_ids)

    def ids_as_text(self, token_ids: Sequence[Sequence[int]]) -> list[str]:
        """Token ids of this model's vocabulary as the text they spell, special tokens skipped, after the checks
        ids embedded as such get: how a prompt goes before token input (TEI's reading)."""
        self.tokenize_ids(token_ids)
        tokenizer = self.backend.encoder.tokenizer
        return [tokenizer.decode(list(ids), skip_special_tokens=True) for ids in token_ids]

    def embed_tokens(self, token_ids: Sequence[Sequence[int]], **options) -> Embeddings:
        """Embed inputs given as token ids: one list of ids per input, in the model's own vocabulary and
        without special tokens (``tokenizer.encode(text, add_special_tokens=False)``). The model's special
        tokens are added as for text, so an input embeds as the text it encodes. Options as ``embed``'s,
        bar prompts; the vector cache keeps token inputs apart from texts."""
        prepared = self.tokenize_ids(token_ids)
        return self.embed(prepared.texts, tokenized=prepared, **options)

    def tokenize(self, texts: Sequence[str], truncation_direction: Optional[str] = None, prompt: str = ""):
        """The texts tokenized as the engine does (a ``Prepared``); pass it to ``embed(tokenized=)``.
        ``truncation_direction`` "left" keeps the end of a text longer than the max length (TEI's option).
        ``prompt``: put before each text; for a model whose pooling leaves the prompt out, it is recorded so."""
        from .backends.lean import Prepared

        if truncation_direction not in (None, "left", "right"):
            raise InvalidInput(f"truncation_direction must be left or right, not {truncation_direction!r}")
        return Prepared.prompted(self.backend.encoder, validate_texts(texts), prompt, self.spec, truncation_direction)

    def rerank(self, *args, **kwargs):
        """Refused: an embedding model does not score pairs (a reranker, ``zoo register`` of a cross-encoder, does)."""
        from .kinds import refuse_kind

        raise refuse_kind(self.name, "embedding", ("reranker",), "reranking")

    predict = rerank

    # asyncio is imported only by the async twins: it costs a cold `zoo embed` ~30 ms otherwise
    async def aembed(self, texts, **options) -> np.ndarray:
        import asyncio

        return await asyncio.to_thread(self.embed, texts, **options)

    async def aembed_query(self, text, **options) -> np.ndarray:
        import asyncio

        return await asyncio.to_thread(self.embed_query, text, **options)

    async def aembed_documents(self, texts, **options) -> np.ndarray:
        import asyncio

        return await asyncio.to_thread(self.embed_documents, texts, **options)

    def encode(self, sentences: str | Sequence[str], prompt_name: Optional[str] = None, prompt: Optional[str] = None,
               batch_size: int = 32, show_progress_bar: Optional[bool] = None, convert_to_numpy: bool = True,
               convert_to_tensor: bool = False, normalize_embeddings: bool = False,
               truncate_dim: Optional[int] = None, precision: str = "float32", **unsupported):
        """sentence-transformers' ``encode``, for code migrating to zoo.

        Same defaults: the model's own normalisation unless ``normalize_embeddings``; one
        string gives one vector. ``truncate_dim`` keeps the leading components and, unlike
        sentence-transformers, re-normalises them when the model normalises. ``precision`` quantizes
        with the artifact's stored ranges, where sentence-transformers fits them to each call's batch.
        """
        if unsupported:
            raise InvalidInput(f"encode() does not support {', '.join(sorted(unsupported))} in zoo; "
                               "supported: prompt_name, prompt, batch_size, show_progress_bar, convert_to_numpy, "
                               "convert_to_tensor, normalize_embeddings, truncate_dim, precision")
        vectors = np.asarray(self.embed(sentences, batch_size=batch_size, normalize=True if normalize_embeddings else None,
                                        dimensions=truncate_dim, prompt=prompt, prompt_name=prompt_name,
                                        show_progress=show_progress_bar, precision=precision))
        if isinstance(sentences, str):
            vectors = vectors[0]
        if convert_to_tensor:
            from ..errors import require

            return require("torch", "torch").from_numpy(vectors.copy())
        return vectors if convert_to_numpy else list(vectors)

    def __repr__(self) -> str:
        return (f"EmbeddingModel({self.name!r}, artifact={self.info.get('artifact')!r}, "
                f"backend={self.info.get('backend')!r}, device={self.info.get('device')!r})")


def check_batch_size(batch_size, default: int) -> int:
    """``batch_size``, or ``default`` for None; anything but an integer >= 1 is refused."""
    batch_size = default if batch_size is None else batch_size
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInput(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return batch_size


def _at_precision(result: Embeddings, precision: str, ranges) -> Embeddings:
    """``result`` at ``precision``, keeping what it says (truncated inputs, cache hits)."""
    if precision == "float32":
        return result
    from .precision import quantize

    out = quantize(np.asarray(result), precision, ranges).view(Embeddings)
    out.truncated, out.cache_hits = result.truncated, result.cache_hits
    return out


def _preview(indices: tuple[int, ...], limit: int = 5) -> str:
    shown = ", ".join(map(str, indices[:limit]))
    return shown + (f", ... (+{len(indices) - limit})" if len(indices) > limit else "")
