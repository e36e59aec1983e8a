"""Dynamic batching for the service: concurrent requests for one model share batches (a reranker's: its
(query, document) pairs, which are scored, not embedded).

Each request's texts wait in a bounded queue. One worker per model takes texts
from the waiting requests round-robin (one text per request per turn) until the
batch reaches its row cap or its token budget, runs the engine on it off the
event loop, and hands each request its rows. The budget is the sum of the texts'
tokens, as text-embeddings-inference counts it: the engine re-sorts the group by
length and cuts its own padded batches, so padding is not the coalescer's concern.

Round-robin is what keeps a huge request from starving small ones: a query that
arrives behind 10,000 texts rides in the very next batch. When the model is idle,
a batch that is not full waits up to ``max_wait_ms`` for a burst to join; while it
is busy, arrivals queue, and the next batch is started the moment the running one
returns, before its rows are handed out, so the engine never idles while the event
loop writes responses. A full queue refuses new work (``Overloaded``: HTTP 429 with
Retry-After) instead of growing memory.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

__all__ = ["DynamicBatcher", "Overloaded"]


class Overloaded(Exception):
    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(eq=False)
class _Request:
    tokenized: Any  # the texts' Prepared: its lengths drive the budget, and the engine reuses it
    dimensions: Optional[int]
    future: asyncio.Future
    normalize: Optional[bool] = None  # None: the model's own (its Normalize module); TEI's /embed asks
    out: Optional[np.ndarray] = None
    cursor: int = 0  # next text to schedule
    done: int = 0  # texts embedded

    @property
    def texts(self) -> list[str]:
        return self.tokenized.texts

    @property
    def tokens(self) -> list[int]:
        return self.tokenized.lengths


@dataclass(eq=False)
class _Batch:
    rows: list[tuple[_Request, int]]  # (request, index of its text)
    future: asyncio.Future
    started: float


class DynamicBatcher:
    def __init__(self, model, *, max_batch_rows: int = 64, max_batch_tokens: int = 16384, max_wait_ms: float = 2.0,
                 max_queue_texts: int = 8192, max_queue_tokens: int = 1 << 20,
                 on_batch: Optional[Callable[[int, int, int, float], None]] = None):
        self.model = model
        self.max_batch_rows = max_batch_rows
        self.max_batch_tokens = max_batch_tokens
        self.max_wait = max_wait_ms / 1000
        self.max_queue_texts = max_queue_texts
        self.max_queue_tokens = max_queue_tokens  # a request costs its tokens after truncation, not its texts
        self.on_batch = on_batch or (lambda rows, tokens, hits, seconds: None)
        self._waiting: deque[_Request] = deque()
        self._queued = 0  # texts accepted and not yet embedded
        self._queued_tokens = 0  # their tokens
        self._wake: Optional[asyncio.Event] = None
        self._worker: Optional[asyncio.Task] = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"zoo-{model.name}")

    @property
    def queue_depth(self) -> int:
        return self._queued

    async def embed(self, tokenized, dimensions: Optional[int] = None, normalize: Optional[bool] = None) -> np.ndarray:
        """Vectors for ``model.tokenize(texts)``, in order (tokenized once: the engine reuses it). Requests
        share a batch only with requests of the same output (``dimensions``, ``normalize``)."""
        texts = tokenized.texts
        if len(texts) > self.max_queue_texts:
            raise ValueError(f"{len(texts)} inputs exceed this server's queue of {self.max_queue_texts}")
        cost = sum(tokenized.lengths)
        if cost > self.max_queue_tokens:
            raise ValueError(f"{cost} tokens (after truncation) exceed this server's queue of {self.max_queue_tokens}")
        if self._queued + len(texts) > self.max_queue_texts or self._queued_tokens + cost > self.max_queue_tokens:
            raise Overloaded(f"server busy: {self._queued} inputs ({self._queued_tokens} tokens) queued for "
                             f"{self.model.name}; retry shortly")
        if self._worker is None or self._worker.done():
            self._wake = asyncio.Event()
            self._worker = asyncio.get_running_loop().create_task(self._run())
        request = _Request(tokenized, dimensions, asyncio.get_running_loop().create_future(), normalize=normalize)
        self._waiting.append(request)
        self._queued += len(texts)
        self._queued_tokens += cost
        self._wake.set()
        try:
            return await request.future
        finally:
            if not request.future.done() or request.future.cancelled():  # client gone: drop what is left
                self._drop(request)

    def _drop(self, request: _Request) -> None:
        """Forget a request's unscheduled texts (its scheduled rows are counted off as they return)."""
        if request in self._waiting:
            self._waiting.remove(request)
            self._queued -= len(request.texts) - request.cursor
            self._queued_tokens -= sum(request.tokens[request.cursor:])
            request.cursor = len(request.texts)

    def _take(self) -> tuple[list[tuple[_Request, int]], tuple]:
        """Round-robin over waiting requests of one output (size, normalisation) and one count of leading prompt
        tokens the pooling leaves out, within the row and token caps."""
        batch: list[tuple[_Request, int]] = []
        head = self._waiting[0]
        dims, total = (head.dimensions, head.normalize), 0
        prompt_tokens = head.tokenized.prompt_tokens
        while len(batch) < self.max_batch_rows:
            progressed = False
            for request in list(self._waiting):
                if ((request.dimensions, request.normalize) != dims or request.tokenized.prompt_tokens != prompt_tokens
                        or request.cursor >= len(request.texts)):
                    continue
                n = request.tokens[request.cursor]
                if batch and total + n > self.max_batch_tokens:
                    return batch, dims
                batch.append((request, request.cursor))
                request.cursor += 1
                total += n
                progressed = True
                if len(batch) >= self.max_batch_rows:
                    break
            if not progressed:
                break
        return batch, dims

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        running: Optional[_Batch] = None
        while True:
            if running is None:
                if not self._waiting:
                    await self._wake.wait()
                    self._wake.clear()
                    continue
                pending = sum(len(r.texts) - r.cursor for r in self._waiting)
                if self.max_wait and pending < self.max_batch_rows:  # idle, room left: let a burst join briefly
                    await asyncio.sleep(self.max_wait)
                running = self._start(loop)
                continue
            try:
                outcome = await running.future
            except Exception as exc:  # the engine refused or failed this batch
                outcome = exc
            finished = running
            # start the next batch before handing out rows: the engine runs while the loop writes responses
            running = self._start(loop) if self._waiting else None
            self._finish(finished, outcome)

    def _start(self, loop) -> Optional["_Batch"]:
        """Take the next batch off the queue and submit it to the engine thread."""
        batch, dims = self._take()
        for request in [r for r in self._waiting if r.cursor >= len(r.texts)]:
            self._waiting.remove(request)  # fully scheduled; finished when its rows come back
        if not batch:
            return None
        from ..engine.backends.lean import Prepared

        tokenized = Prepared.join([(request.tokenized, i) for request, i in batch])
        future = loop.run_in_executor(self._executor, self._embed, tokenized, *dims)
        return _Batch(batch, future, time.perf_counter())

    def _finish(self, finished: "_Batch", outcome) -> None:
        batch = finished.rows
        if isinstance(outcome, BaseException):  # fail every request in the batch
            self._queued -= len(batch)
            self._queued_tokens -= sum(request.tokens[i] for request, i in batch)
            for request in {r for r, _ in batch}:
                self._drop(request)
                if not request.future.done():
                    request.future.set_exception(outcome)
            return
        vectors = outcome
        hits = int(getattr(vectors, "cache_hits", 0))
        self.on_batch(len(batch), sum(request.tokens[i] for request, i in batch), hits,
                      time.perf_counter() - finished.started)
        for row, (request, i) in enumerate(batch):
            self._queued -= 1
            self._queued_tokens -= request.tokens[i]
            if request.future.done():  # failed or cancelled meanwhile
                continue
            if request.out is None:
                request.out = np.empty((len(request.texts), vectors.shape[1]), dtype=np.float32)
            request.out[i] = vectors[row]
            request.done += 1
            if request.done == len(request.texts):
                request.future.set_result(request.out)

    def _embed(self, tokenized, dims: Optional[int], normalize: Optional[bool] = None) -> np.ndarray:
        import warnings

        from ..engine.model import TruncationWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TruncationWarning)  # the service reports usage, not warnings
            # the engine sorts the coalesced texts by length and runs them at the model's best batch size
            if getattr(self.model, "kind", "embedding") == "reranker":  # (query, document) pairs: their scores
                return self.model.score_tokenized(tokenized)
            return self.model.embed(tokenized.texts, dimensions=dims, normalize=normalize, tokenized=tokenized)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
