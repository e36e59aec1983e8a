"""What every runtime shares: tokenization, length-bucketed batches, pooling, normalisation.

Pure ``tokenizers`` + numpy, so a lean runtime (ONNX, OpenVINO) never imports
torch. It reproduces sentence-transformers exactly: the same ``tokenizer.json``
(truncation at the model's max length, right padding), then the model's pooling
(mean, CLS, max, mean-sqrt-len, weighted mean, last token) and its Normalize
module. Every runtime, torch included, tokenizes once here: the token lengths
cut the batches (``zoo.engine.batching``) and say which inputs were truncated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..batching import CPU_BATCH_OVERHEAD, DEFAULT_MAX_BATCH_TOKENS, GPU_BATCH_OVERHEAD, padded_width, plan_batches
from ...errors import InvalidInput, ZooError
from ..model_config import ModelSpec

__all__ = ["TextEncoder", "Prepared", "BatchedBackend", "pool", "normalize_rows", "TokenEncoding", "TOKEN_KEY",
           "PAIR_KEY", "pair_key", "activate", "is_token_key", "id_list_problem"]

# Token-id inputs travel through the engine (dedup, batching, the vector cache) under a key that
# starts with a lone surrogate: no valid text contains one (``validate_texts`` refuses them), so a
# token input's key can never equal a text, in a call or in the cache.
TOKEN_KEY = "\udc00ids:"


def is_token_key(text: str) -> bool:
    return text.startswith(TOKEN_KEY)


@dataclass
class TokenEncoding:
    """What the engine reads of a tokenizers ``Encoding``, for an input given as token ids."""
    ids: list[int]
    type_ids: list[int]
    overflowing: list  # non-empty when truncated, as tokenizers says it


def id_list_problem(ids) -> Optional[tuple[str, str]]:
    """What is wrong with one token-id input short of the vocabulary: (what to say right after
    "token input i", OpenAI's error code), or None. The service asks before it loads a model; the engine
    asks again, then checks the vocabulary."""
    if not isinstance(ids, (list, tuple)) or not ids:
        what, code = ("an empty list", "invalid_value") if isinstance(ids, (list, tuple)) else (
            type(ids).__name__, "invalid_type")
        return f" is {what}; send a non-empty list of token ids", code
    for j, t in enumerate(ids):
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
            return f": position {j} is {type(t).__name__}, not an integer token id", "invalid_type"
        if t < 0:
            return f": id {int(t)} at position {j} is negative; token ids are 0 or more", "invalid_value"
    return None


LANGCHAIN_HINT = ("ids of another vocabulary? LangChain's OpenAIEmbeddings sends tiktoken cl100k_base ids, which "
                  "zoo serve reads unless started with token_encoding model; or send the text itself")


class TextEncoder:
    """A fast tokenizer configured like sentence-transformers: truncating, unpadded.

    ``pad`` builds one batch's arrays, padded on the right to the batch's longest text.
    ``full_length`` counts a text's tokens without truncation (for error messages).
    """

    def __init__(self, tokenizer, max_length: int, input_names: list[str], pad_id: int = 0):
        self.max_length = max_length
        self.tokenizer = tokenizer
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_length)
        self._untruncated = None
        self.pad_id = pad_id
        self.input_names = input_names
        self.avoid_widths: frozenset[int] = frozenset()  # padded widths a runtime gets wrong: pad one more
        self.width_multiple = 1  # pad widths up to a multiple of this (runtimes that compile per shape)

    @classmethod
    def from_folder(cls, path: Path, max_length: int, input_names: list[str]) -> "TextEncoder":
        from tokenizers import Tokenizer

        tok_file = Path(path) / "tokenizer.json"
        if not tok_file.exists():
            raise ZooError(f"{path} has no tokenizer.json; rebuild the artifact with `zoo convert --rebuild`")
        tokenizer = Tokenizer.from_file(str(tok_file))
        config_file = Path(path) / "tokenizer_config.json"
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.exists() else {}
        pad_token = config.get("pad_token") or "[PAD]"
        if isinstance(pad_token, dict):
            pad_token = pad_token.get("content", "[PAD]")
        return cls(tokenizer, max_length, input_names, tokenizer.token_to_id(pad_token) or 0)

    # A window of this many characters per max-length token is tried first; English runs ~4-5
    # characters a token, CJK ~1, so a real text rarely needs its window doubled.
    CHARS_PER_TOKEN_WINDOW = 16

    def encode(self, texts: list[str]) -> list:
        """Encodings exactly as of the whole texts, but a long text is tokenized from a prefix.

        A 100,000-character input costs tokenizer time and memory for tokens that truncation then
        drops. So a text longer than its window (``CHARS_PER_TOKEN_WINDOW`` x max length) is cut at
        the start of the last whitespace run inside the window. Words before a whitespace boundary
        tokenize the same whatever follows (WordPiece, BPE, byte-level BPE and SentencePiece
        pre-tokenizers all split there), so the prefix's tokens are the whole text's first tokens.
        The cut is kept only if those tokens already overflow the max length: then truncation keeps
        exactly the tokens it would have kept from the whole text, and the text counts as truncated,
        as it is. Otherwise the window doubles, up to the whole text. The result never changes.
        """
        encodings = self.tokenizer.encode_batch(
            [self._window(t, self._window_chars()) for t in texts], add_special_tokens=True)
        for i, text in enumerate(texts):
            window = self._window_chars()
            while not encodings[i].overflowing and self._window(text, window) != text:
                window *= 2
                encodings[i] = self.tokenizer.encode(self._window(text, window), add_special_tokens=True)
        return encodings

    def encode_pairs(self, pairs: list[tuple[str, str]]) -> list:
        """(query, document) pairs encoded together, as a cross-encoder reads them: the tokenizer's pair template
        (``[CLS] q [SEP] d [SEP]``, ``<s> q </s></s> d </s>``) and its truncation, longest side first, to the max
        length. A side longer than its window is tokenized from a prefix that already holds more tokens than the
        max length (see ``encode``): longest-first truncation then cuts both readings to the same tokens, so a
        5 MB document costs the tokens the model can read, not five million."""
        chars = self._window_chars()
        windows = [(self._window(q, chars), self._window(d, chars)) for q, d in pairs]
        encodings = self.tokenizer.encode_batch(windows, add_special_tokens=True)
        untruncated = self.untruncated()
        for i, ((q, d), (wq, wd)) in enumerate(zip(pairs, windows)):
            if (wq, wd) == (q, d):
                continue
            window = chars
            while True:  # each cut side must hold at least the max length, or it is widened
                sides = [(full, self._window(full, window)) for full in (q, d)]
                short = [full != cut and len(untruncated.encode(cut, add_special_tokens=False).ids) < self.max_length
                         for full, cut in sides]
                if not any(short):
                    break
                window *= 2
            encodings[i] = self.tokenizer.encode(sides[0][1], sides[1][1], add_special_tokens=True)
        return encodings

    def _window_chars(self) -> int:
        return self.CHARS_PER_TOKEN_WINDOW * self.max_length + 64

    @staticmethod
    def _window(text: str, chars: int) -> str:
        """``text`` cut before the last whitespace run that starts within ``chars``; whole if none."""
        if len(text) <= chars:
            return text
        k = chars
        while k > 0 and not (text[k].isspace() and not text[k - 1].isspace()):
            k -= 1
        return text[:k] if k > 0 else text

    def _specials(self) -> tuple[list[int], list[int], int, list[int], list[int]]:
        """What the tokenizer adds around one sequence: (prefix ids, prefix type ids, content type id,
        suffix ids, suffix type ids), read off a probe text as its post-processor encodes it."""
        if getattr(self, "_special_template", None) is None:
            bare = self.tokenizer.encode("a", add_special_tokens=False)
            full = self.tokenizer.encode("a", add_special_tokens=True)
            n = len(bare.ids)
            start = next((i for i in range(len(full.ids) - n + 1) if full.ids[i:i + n] == bare.ids), None)
            if start is None:
                raise ZooError("this tokenizer's special tokens cannot be placed around token ids; send text")
            self._special_template = (full.ids[:start], full.type_ids[:start], full.type_ids[start] if n else 0,
                                      full.ids[start + n:], full.type_ids[start + n:])
        return self._special_template

    @property
    def direction(self) -> str:
        """Which end truncation cuts, as the tokenizer is configured."""
        return (self.tokenizer.truncation or {}).get("direction", "right")

    def content_of(self, texts: list[str]) -> list[list[int]]:
        """Each text's ids without special tokens and without truncation."""
        return [e.ids for e in self.untruncated().encode_batch(texts, add_special_tokens=False)]

    def keep(self, ids: list[int], left: bool) -> list[int]:
        """The content ids that fit the max length beside the special tokens, cut from the left or the right."""
        prefix, _, _, suffix, _ = self._specials()
        room = max(0, self.max_length - len(prefix) - len(suffix))
        return ids if len(ids) <= room else (ids[len(ids) - room:] if left else ids[:room])

    def encode_ids(self, id_lists: list[list[int]]) -> list[TokenEncoding]:
        """Token ids (the model's vocabulary, no special tokens) encoded as the tokenizer encodes text:
        its special tokens around them, truncated to the max length from the end (or the start, if
        the tokenizer truncates on the left), so an input embeds as the text it encodes."""
        prefix, prefix_types, content_type, suffix, suffix_types = self._specials()
        out = []
        for ids in id_lists:
            kept = self.keep(ids, left=self.direction == "left")
            cut = len(kept) < len(ids)
            out.append(TokenEncoding(prefix + list(kept) + suffix,
                                     prefix_types + [content_type] * len(kept) + suffix_types, [True] if cut else []))
        return out

    def check_ids(self, inputs) -> list[list[int]]:
        """Refuse what is not a non-empty list of in-vocabulary ids, naming the input's index; return each
        input's content ids (``content_ids``)."""
        vocab = self.tokenizer.get_vocab_size(with_added_tokens=True)
        if not isinstance(inputs, (list, tuple)):
            raise InvalidInput(f"token input must be a list of lists of ids, not {type(inputs).__name__}")
        out = []
        for i, ids in enumerate(inputs):
            problem = id_list_problem(ids)
            if problem is not None:
                raise InvalidInput(f"token input {i}{problem[0]}", param=f"input[{i}]", code=problem[1])
            for j, t in enumerate(ids):
                if t >= vocab:
                    raise InvalidInput(f"token input {i}: id {int(t)} at position {j} is outside this model's "
                                       f"vocabulary (0 to {vocab - 1}); {LANGCHAIN_HINT}", param=f"input[{i}]")
            out.append(self.content_ids(i, [int(t) for t in ids]))
        return out

    def content_ids(self, i: int, ids: list[int]) -> list[int]:
        """The content of one id list, never its framing: what ``tokenizer.encode(text)`` returns (the
        special tokens the tokenizer adds around a text) and what a padded encoding returns (its padding,
        either side) are stripped, so the model's special tokens are added once; a framing or padding
        id left among the content is refused. Embedded, such ids once gave cosine 0.79 (framed twice)
        and 0.01-0.20 (padding) to the text's vector, with no error."""
        prefix, _, _, suffix, _ = self._specials()
        pad = self._padding_id()
        a, b = 0, len(ids)
        if pad is not None:
            while a < b and ids[a] == pad:
                a += 1
            while b > a and ids[b - 1] == pad:
                b -= 1
        if prefix and ids[a:a + len(prefix)] == prefix:
            a += len(prefix)
        if suffix and b - len(suffix) >= a and ids[b - len(suffix):b] == suffix:
            b -= len(suffix)
        framing = set(prefix) | set(suffix) | ({pad} if pad is not None else set())
        for j in range(a, b):
            if ids[j] in framing:
                raise InvalidInput(
                    f"token input {i}: id {ids[j]} ({self.tokenizer.id_to_token(ids[j])}) at position {j} is one of "
                    "the model's special tokens inside the content; send content ids "
                    "(tokenizer.encode(text, add_special_tokens=False)), or the text", param=f"input[{i}]")
        if a >= b:
            raise InvalidInput(f"token input {i} holds only the model's special tokens or padding; send content ids",
                               param=f"input[{i}]")
        return ids[a:b]

    def _padding_id(self) -> Optional[int]:
        """The pad id, if the tokenizer declares it a special token (else it may be an ordinary token)."""
        if not hasattr(self, "_pad_is_special"):  # once: the added-token table is rebuilt on every call
            token = self.tokenizer.get_added_tokens_decoder().get(self.pad_id)
            self._pad_is_special = token is not None and token.special
        return self.pad_id if self._pad_is_special else None

    def full_length(self, text: str) -> int:
        if is_token_key(text):
            prefix, _, _, suffix, _ = self._specials()
            return len(prefix) + len(suffix) + len(text[len(TOKEN_KEY):].split(","))
        return len(self.untruncated().encode(text, add_special_tokens=True).ids)

    def untruncated(self):
        """A private copy of the tokenizer that never truncates (truncation is tokenizer state)."""
        if self._untruncated is None:
            from tokenizers import Tokenizer

            self._untruncated = Tokenizer.from_str(self.tokenizer.to_str())
            self._untruncated.no_truncation()
        return self._untruncated

    def pad(self, encodings: list, names: Optional[list[str]] = None) -> dict[str, np.ndarray]:
        """One batch's arrays (of ``names``, default the runtime's inputs), right-padded."""
        longest = max(len(e.ids) for e in encodings)
        width = padded_width(longest, self.width_multiple)
        while width in self.avoid_widths:  # masked extra columns: pooling ignores them
            width += 1
        # never past the max length: a model with exactly that many learned positions (CLIP's 77)
        # cannot take one more column, padded or not
        width = max(longest, min(width, self.max_length))
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, e in enumerate(encodings):
            n = len(e.ids)
            ids[row, :n], mask[row, :n], types[row, :n] = e.ids, 1, e.type_ids
        arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return {name: arrays[name] for name in (self.input_names if names is None else names)}

    def mask(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """The attention mask of a padded batch, for pooling (from the pad ids if the graph takes none)."""
        mask = feed.get("attention_mask")
        return (feed["input_ids"] != self.pad_id).astype(np.int64) if mask is None else mask


def normalize_rows(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def pool(token_embeddings: np.ndarray, attention_mask: np.ndarray, spec: ModelSpec,
         normalize: Optional[bool] = None, head: tuple = ()) -> np.ndarray:
    """Pool (batch, seq, dim) to (batch, dim) as the model's Pooling module does, run the ``head`` (its Dense
    modules, ``zoo.engine.module_stack``), then L2-normalise if ``normalize`` (default: if the model has a
    Normalize module)."""
    h = token_embeddings.astype(np.float32, copy=False)
    if spec.pooling == "logits":  # a reranker's head gave (batch, labels): its scores through its activation
        return np.ascontiguousarray(activate(h.reshape(h.shape[0], -1), spec.activation), dtype=np.float32)
    mask = attention_mask.astype(np.float32)[:, :, None]
    counts = np.clip(mask.sum(axis=1), 1e-9, None)
    mode = spec.pooling
    if mode == "mean":
        out = (h * mask).sum(axis=1) / counts
    elif mode == "cls":
        out = h[:, 0]
    elif mode == "max":
        out = np.where(mask > 0, h, -1e9).max(axis=1)
    elif mode == "mean_sqrt_len":
        out = (h * mask).sum(axis=1) / np.sqrt(counts)
    elif mode == "weightedmean":
        weights = mask * np.arange(1, h.shape[1] + 1, dtype=np.float32)[None, :, None]
        out = (h * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    elif mode == "lasttoken":
        last = attention_mask.sum(axis=1).astype(np.int64) - 1
        out = h[np.arange(h.shape[0]), np.clip(last, 0, None)]
    else:
        raise ZooError(f"pooling mode {mode!r} is not supported by the ONNX/OpenVINO runtimes; "
                       "use the torch-fp32 artifact")
    for layer in head:
        out = layer(out)
    if spec.normalize if normalize is None else normalize:
        out = normalize_rows(out)
    return np.ascontiguousarray(out, dtype=np.float32)


def activate(logits: np.ndarray, activation: Optional[str]) -> np.ndarray:
    """A cross-encoder's activation on its logits, as sentence-transformers' ``CrossEncoder.predict`` applies it."""
    x = logits.astype(np.float32, copy=False)
    if activation == "sigmoid":
        return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)
    if activation == "tanh":
        return np.tanh(x)
    if activation == "relu":
        return np.maximum(x, 0)
    if activation in (None, "identity"):
        return x
    raise ZooError(f"score activation {activation!r} is not one zoo computes; use the torch-fp32 artifact")


# Pairs travel through the engine (dedup, batching, the cache) under a key no text can equal: a lone
# surrogate first, as token inputs (``TOKEN_KEY``), then the pair as JSON.
PAIR_KEY = "\udc01pair:"


def pair_key(query: str, document: str) -> str:
    return PAIR_KEY + json.dumps([query, document], ensure_ascii=False)


def prompt_length(encoder: "TextEncoder", prompt: str) -> int:
    """How many leading tokens of every prompted text are the prompt, as sentence-transformers counts them for a
    Pooling module with ``include_prompt: false``: the prompt tokenized with its special tokens, less a trailing
    special token (the [SEP] / </s> that closes it alone). Those positions are left out of the pooling."""
    tokenizer = encoder.untruncated()
    ids = tokenizer.encode(prompt, add_special_tokens=True).ids
    specials = {i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special}
    return len(ids) - 1 if ids and ids[-1] in specials else len(ids)


def exclude_prompt(attention_mask: np.ndarray, prompt_tokens: int) -> np.ndarray:
    """The pooling mask without the prompt's positions (sentence-transformers' ``_exclude_prompt_from_mask``):
    the first ``prompt_tokens`` columns of a right-padded batch, the padding and then the prompt of a left-padded
    one. The attention itself still sees the prompt; only the pooling leaves it out."""
    if not prompt_tokens:
        return attention_mask
    mask = np.array(attention_mask, copy=True)
    starts = mask.astype(bool).argmax(axis=1)  # where each row's tokens begin (0 unless left-padded)
    mask[np.arange(mask.shape[1])[None, :] < (starts + prompt_tokens)[:, None]] = 0
    return mask


@dataclass
class Prepared:
    """Texts tokenized once: what batching, truncation reporting and the runtimes read.

    ``prompt_tokens``: the leading tokens of every text that are a prompt the model's pooling leaves out
    (``include_prompt: false``); 0 when the pooling reads every token."""
    texts: list[str]
    encodings: list
    lengths: list[int]
    truncated: list[bool]
    prompt_tokens: int = 0

    @classmethod
    def of(cls, encoder: TextEncoder, texts: list[str], direction: Optional[str] = None) -> "Prepared":
        """``direction`` ("left" / "right"): which end a text longer than the max length loses, when not
        the tokenizer's own. Such a text becomes the ids it keeps, keyed as those ids (``TOKEN_KEY``), so
        its vector never meets the cache entry of the text cut the other way."""
        encodings = encoder.encode(texts)
        prepared = cls(list(texts), encodings, [len(e.ids) for e in encodings], [bool(e.overflowing) for e in encodings])
        if direction is None or direction == encoder.direction:
            return prepared
        cut = [i for i, e in enumerate(encodings) if e.overflowing]
        if not cut:
            return prepared
        content = encoder.content_of([texts[i] for i in cut])
        kept = [encoder.keep(ids, left=direction == "left") for ids in content]
        for i, ids, e in zip(cut, kept, encoder.encode_ids(kept)):
            e.overflowing = [True]
            prepared.texts[i], prepared.encodings[i] = TOKEN_KEY + ",".join(map(str, ids)), e
            prepared.lengths[i] = len(e.ids)
        return prepared

    @classmethod
    def prompted(cls, encoder: TextEncoder, texts: list[str], prompt: str, spec: ModelSpec,
                 direction: Optional[str] = None) -> "Prepared":
        """``texts`` with ``prompt`` before each, tokenized; for a model whose Pooling leaves the prompt out
        (``include_prompt: false``), the prompt's leading tokens are recorded so every runtime pools without them."""
        prepared = cls.of(encoder, [prompt + t for t in texts] if prompt else list(texts), direction)
        if prompt and not spec.include_prompt:
            prepared.prompt_tokens = prompt_length(encoder, prompt)
        return prepared

    @classmethod
    def join(cls, parts: list[tuple["Prepared", int]]) -> "Prepared":
        """Rows picked from several tokenized lists: (prepared, row) pairs, in order."""
        prompts = {p.prompt_tokens for p, _ in parts}
        if len(prompts) > 1:
            raise ValueError("rows with different prompt lengths cannot be joined into one prepared list")
        return cls([p.texts[i] for p, i in parts], [p.encodings[i] for p, i in parts],
                   [p.lengths[i] for p, i in parts], [p.truncated[i] for p, i in parts],
                   prompts.pop() if prompts else 0)

    @classmethod
    def of_ids(cls, encoder: TextEncoder, inputs) -> "Prepared":
        """Inputs given as token ids, keyed so that they never meet a text (``TOKEN_KEY``)."""
        id_lists = encoder.check_ids(inputs)
        encodings = encoder.encode_ids(id_lists)
        return cls([TOKEN_KEY + ",".join(map(str, ids)) for ids in id_lists], encodings,
                   [len(e.ids) for e in encodings], [bool(e.overflowing) for e in encodings])

    @classmethod
    def of_pairs(cls, encoder: TextEncoder, pairs: list[tuple[str, str]]) -> "Prepared":
        """(query, document) pairs tokenized together (a cross-encoder's input), keyed by ``pair_key``."""
        encodings = encoder.encode_pairs(pairs)
        return cls([pair_key(q, d) for q, d in pairs], encodings, [len(e.ids) for e in encodings],
                   [bool(e.overflowing) for e in encodings])

    def subset(self, rows: list[int]) -> "Prepared":
        return Prepared.join([(self, i) for i in rows])


class BatchedBackend:
    """The batching every runtime shares; a runtime supplies ``encoder``, ``spec`` and
    ``embed_batch`` (one batch of similar-length texts), and may override ``run_batches``
    to keep several batches in flight."""

    encoder: TextEncoder
    spec: ModelSpec
    device: str = "cpu"
    row_sizes: Optional[tuple[int, ...]] = None  # the only batch row counts, for runtimes that compile per shape

    @property
    def batch_overhead(self) -> float:
        """What one runtime call costs beyond its padding, in tokens: how eagerly batches are split."""
        return GPU_BATCH_OVERHEAD if self.device.startswith("cuda") else CPU_BATCH_OVERHEAD

    # whether embed_batch takes ``prompt_tokens`` (positions its pooling leaves out); a runtime that cannot is
    # refused for a model whose pooling excludes the prompt, rather than pooling the prompt in
    excludes_prompt: bool = False

    def embed_batch(self, texts: list[str], encodings: list, normalize: bool) -> np.ndarray:
        raise NotImplementedError

    def embed_rows(self, prepared: Prepared, idx, normalize: bool) -> np.ndarray:
        """One planned batch: the rows ``idx`` of ``prepared``."""
        texts, encodings = [prepared.texts[i] for i in idx], [prepared.encodings[i] for i in idx]
        if prepared.prompt_tokens:
            if not self.excludes_prompt:
                raise ZooError(f"the {getattr(self, 'name', 'this')} runtime cannot leave a prompt out of the pooling, "
                               "as this model's Pooling module declares (include_prompt: false); use its ONNX, "
                               "OpenVINO or torch artifact, or embed without a prompt")
            return self.embed_batch(texts, encodings, normalize, prompt_tokens=prepared.prompt_tokens)
        return self.embed_batch(texts, encodings, normalize)

    def run_batches(self, prepared: Prepared, batches, normalize: bool, out: np.ndarray,
                    on_batch: Callable[[int], None] = lambda n: None) -> None:
        for idx in batches:
            out[idx] = self.embed_rows(prepared, idx, normalize)
            on_batch(len(idx))

    def plan(self, lengths: list[int], batch_size: int, max_tokens: Optional[int] = DEFAULT_MAX_BATCH_TOKENS):
        """This runtime's batches for texts of these token lengths (see ``zoo.engine.batching``)."""
        return plan_batches(lengths, batch_size, max_tokens, self.batch_overhead, self.row_sizes,
                            self.encoder.width_multiple)

    def embed_prepared(self, prepared: Prepared, batch_size: int, *, normalize: Optional[bool] = None,
                       max_tokens: Optional[int] = DEFAULT_MAX_BATCH_TOKENS,
                       on_batch: Callable[[int], None] = lambda n: None) -> np.ndarray:
        """Embed in length-sorted batches; rows come back in input order."""
        out = np.empty((len(prepared.texts), self.spec.dim), dtype=np.float32)
        normalize = self.spec.normalize if normalize is None else normalize
        self.run_batches(prepared, self.plan(prepared.lengths, batch_size, max_tokens), normalize, out, on_batch)
        return out

    def embed(self, texts: list[str], batch_size: int, *, normalize: Optional[bool] = None,
              max_tokens: Optional[int] = DEFAULT_MAX_BATCH_TOKENS) -> np.ndarray:
        return self.embed_prepared(Prepared.of(self.encoder, texts), batch_size,
                                   normalize=normalize, max_tokens=max_tokens)
