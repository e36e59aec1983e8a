"""llama.cpp backend for GGUF artifacts: llama-cpp-python's C API in embedding mode; never imports torch.

It serves a GGUF as llama.cpp serves it to anyone else (LocalAI, llama-server): llama.cpp's own
tokenizer from the file's vocabulary, the pooling the file declares, llama.cpp's kernels. So the
fidelity gate judges what a user of the exported ``.gguf`` gets, and a conversion that lost the
special tokens or declared the wrong pooling fails the gate instead of serving wrong vectors.

Where it departs from ``llama_cpp.Llama.embed``, and why:

- Truncation keeps the special tokens: the text's own tokens are cut to the room the model's
  special tokens leave (read off a probe, as ``TextEncoder`` does), as sentence-transformers
  truncates. ``Llama.embed`` cuts the whole sequence, dropping the final [SEP]/</s>.
- One input fits one physical batch: a bidirectional encoder needs all of a sequence's tokens in
  one micro-batch, so ``n_ctx = n_batch = n_ubatch`` (the token budget), never below the model's
  max length. Sequences are packed unpadded, up to the budget and ``n_seq_max``.
- Weights stay in llama.cpp's plain CPU buffers (``use_extra_bufts`` off). With the extra buffer
  types on, llama-cpp-python 0.3.36 built natively on an AMX CPU (Sapphire Rapids) segfaults in
  ``ggml_backend_amx_mul_mat`` on the first Q8_0 batch of all-MiniLM-L6-v2.
- llama.cpp returns pooled vectors unnormalised; the model's Normalize module is applied here.
- A file declaring no pooling (token vectors) or rank pooling (a reranker) is refused.
"""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ...errors import ZooError, require
from ..model_config import ModelSpec
from .lean import TOKEN_KEY, BatchedBackend, TextEncoder, is_token_key, normalize_rows

__all__ = ["GgufBackend", "gguf_file", "quiet_llama", "DEFAULT_BATCH_TOKENS"]

DEFAULT_BATCH_TOKENS = 512  # attention spans the whole packed batch, so a bigger budget costs more per token
MAX_SEQUENCES = 64


def gguf_file(path: Path) -> Path:
    """The one ``.gguf`` in an artifact folder."""
    found = sorted(Path(path).glob("*.gguf"))
    if len(found) != 1:
        raise ZooError(f"a GGUF artifact holds exactly one .gguf file; {path} has {len(found)}")
    return found[0]


_init_lock = threading.Lock()
_log_callback = None  # kept alive: llama.cpp holds a raw pointer to it
GGML_LOG_LEVEL_ERROR = 4  # ggml's enum: none 0, debug 1, info 2, warn 3, error 4, cont 5


def quiet_llama():
    """llama_cpp with its backend initialised once, and its log routed to ``logging``.

    llama.cpp logs a line per tensor on every load and quantization. llama-cpp-python's own
    callback maps ggml's log levels by an older numbering (a warning arrives as an error), so its
    logger level cannot silence them; errors go to the ``zoo.gguf`` logger, the rest is dropped."""
    global _log_callback
    llama_cpp = require("llama_cpp", "gguf")
    with _init_lock:
        if _log_callback is None:
            import logging

            log = logging.getLogger("zoo.gguf")

            @llama_cpp.llama_log_callback
            def callback(level, text, user_data):
                if level == GGML_LOG_LEVEL_ERROR:
                    log.warning("llama.cpp: %s", text.decode("utf-8", "replace").rstrip())

            llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
            _log_callback = callback
    return llama_cpp


class _Pooled:
    """One loaded model and context: llama.cpp's handles, freed with the object."""

    def __init__(self, llama_cpp, file: Path, batch_tokens: int, threads: int):
        self.lib = llama_cpp
        params = llama_cpp.llama_model_default_params()
        params.use_extra_bufts = False
        params.n_gpu_layers = 0
        self.model = llama_cpp.llama_model_load_from_file(str(file).encode(), params)
        if not self.model:
            raise ZooError(f"llama.cpp could not load {file.name}; rebuild the artifact with `zoo convert --rebuild`")
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        ctx_params = llama_cpp.llama_context_default_params()
        ctx_params.n_ctx = ctx_params.n_batch = ctx_params.n_ubatch = batch_tokens
        ctx_params.n_seq_max = MAX_SEQUENCES
        ctx_params.embeddings = True
        ctx_params.n_threads = ctx_params.n_threads_batch = threads
        ctx_params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED  # the file's own
        self.ctx = llama_cpp.llama_init_from_model(self.model, ctx_params)
        if not self.ctx:
            llama_cpp.llama_model_free(self.model)
            raise ZooError(f"llama.cpp could not create a context for {file.name} ({batch_tokens} tokens)")
        self.batch = llama_cpp.llama_batch_init(batch_tokens, 0, 1)
        self.dim = llama_cpp.llama_model_n_embd(self.model)
        self.pooling = llama_cpp.llama_pooling_type(self.ctx)

    def close(self) -> None:
        lib, self.lib = self.lib, None
        if lib is not None:
            lib.llama_batch_free(self.batch)
            lib.llama_free(self.ctx)
            lib.llama_model_free(self.model)

    def __del__(self):
        self.close()

    def tokenize(self, text: str, specials: bool) -> list[int]:
        data = text.encode("utf-8")
        room = len(data) + 8
        buf = (self.lib.llama_token * room)()
        n = self.lib.llama_tokenize(self.vocab, data, len(data), buf, room, specials, False)
        if n < 0:  # more tokens than bytes + 8 cannot happen for a byte-based vocabulary; be safe anyway
            buf = (self.lib.llama_token * -n)()
            n = self.lib.llama_tokenize(self.vocab, data, len(data), buf, -n, specials, False)
        return list(buf[:n])

    def run(self, sequences: list[list[int]], out: np.ndarray) -> None:
        """Pooled vectors of ``sequences`` (which fit one batch) into ``out``."""
        lib, b, i = self.lib, self.batch, 0
        for seq, ids in enumerate(sequences):
            for pos, token in enumerate(ids):
                b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = token, pos, 1, True
                b.seq_id[i][0] = seq
                i += 1
        b.n_tokens = i
        memory = lib.llama_get_memory(self.ctx)
        if memory:  # an encoder allocates none; anything else must not carry state between calls
            lib.llama_memory_clear(memory, True)
        code = lib.llama_decode(self.ctx, b)
        if code != 0:
            raise ZooError(f"llama.cpp failed on a batch of {len(sequences)} inputs (llama_decode returned {code})")
        for seq in range(len(sequences)):
            ptr = lib.llama_get_embeddings_seq(self.ctx, seq)
            out[seq] = np.ctypeslib.as_array(ptr, shape=(self.dim,))


class GgufBackend(BatchedBackend):
    def __init__(self, path: Path, spec: ModelSpec, device: Optional[str] = None, precision: str = "fp16",
                 settings: Optional[dict[str, Any]] = None, options: Optional[dict[str, Any]] = None):
        llama_cpp = quiet_llama()
        if device not in (None, "cpu"):
            raise ZooError(f"the llama.cpp runtime serves on the CPU here; device {device!r} is not supported")
        options = options or {}
        self.batch_tokens = max(int(options.get("batch_tokens", DEFAULT_BATCH_TOKENS)), spec.max_seq_length)
        threads = int(options.get("threads") or 0) or _physical_cores()
        self._llama = _Pooled(llama_cpp, gguf_file(path), self.batch_tokens, threads)
        pooling = self._llama.pooling
        if pooling in (llama_cpp.LLAMA_POOLING_TYPE_NONE, llama_cpp.LLAMA_POOLING_TYPE_RANK):
            kind = "no pooling (it returns token vectors)" if pooling == llama_cpp.LLAMA_POOLING_TYPE_NONE else "rank pooling (a reranker)"
            raise ZooError(f"{gguf_file(path).name} declares {kind}; an embedding GGUF must declare mean, CLS or "
                           "last-token pooling (rebuild it from a sentence-transformers checkpoint)")
        if self._llama.dim != spec.dim:
            raise ZooError(f"{gguf_file(path).name} gives {self._llama.dim}-dim vectors; this model's are {spec.dim}")
        self._lock = threading.Lock()  # one llama.cpp context: one batch at a time
        # lengths, truncation flags and the batches' plan come from the checkpoint's tokenizer, as for
        # every runtime; the ids llama.cpp runs are its own (``_ids``)
        self.encoder = TextEncoder.from_folder(path, spec.max_seq_length, ["input_ids"])
        self.spec = spec
        self.device = "cpu"
        self.runtime_precision = (settings or {}).get("runtime_precision") or precision
        self.name = f"llama.cpp ({self.runtime_precision})"
        self._template: Optional[tuple[list[int], list[int]]] = None

    def _specials(self) -> tuple[list[int], list[int]]:
        """The ids llama.cpp's tokenizer puts before and after a text (read off a probe)."""
        if self._template is None:
            bare, full = self._llama.tokenize("a", False), self._llama.tokenize("a", True)
            n = len(bare)
            start = next((i for i in range(len(full) - n + 1) if full[i:i + n] == bare), None)
            if start is None:
                raise ZooError("this GGUF's tokenizer puts its special tokens inside the text; cannot truncate it")
            self._template = (full[:start], full[start + n:])
        return self._template

    def _ids(self, text: str) -> list[int]:
        prefix, suffix = self._specials()
        room = max(0, self.spec.max_seq_length - len(prefix) - len(suffix))
        content = ([int(t) for t in text[len(TOKEN_KEY):].split(",")] if is_token_key(text)
                   else self._llama.tokenize(text, False))
        return prefix + content[:room] + suffix

    def embed_batch(self, texts: list[str], encodings: list, normalize: bool) -> np.ndarray:
        sequences = [self._ids(t) for t in texts]
        out = np.empty((len(texts), self._llama.dim), dtype=np.float32)
        start = 0
        with self._lock:
            while start < len(sequences):
                end, tokens = start, 0
                while end < len(sequences) and end - start < MAX_SEQUENCES and tokens + len(sequences[end]) <= self.batch_tokens:
                    tokens += len(sequences[end])
                    end += 1
                self._llama.run(sequences[start:end], out[start:end])
                start = end
        return normalize_rows(out) if normalize else out

    @staticmethod
    def option_variants(hardware) -> list[dict[str, Any]]:
        """Token budgets worth trying: attention spans a whole packed batch, so bigger is not always faster."""
        return [{"batch_tokens": 256}, {"batch_tokens": 512}]


def _physical_cores() -> int:
    from ...core.hardware import detect

    return detect().physical_cores or os.cpu_count() or 1
