"""The reference runtime: sentence-transformers on torch, exactly as users run it today."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import ZooError, require
from ..model_code import verify_trusted
from ..model_config import ModelSpec
from .lean import BatchedBackend, TextEncoder, is_token_key, normalize_rows

__all__ = ["TorchBackend"]


class TorchBackend(BatchedBackend):
    def __init__(self, path: Path, spec: ModelSpec, device: str | None = None, precision: str = "fp32",
                 settings: dict | None = None, options: dict | None = None):
        torch, st, device, kwargs = load_options(path, spec, device, precision)
        self.model = st.SentenceTransformer(str(path), device=device, local_files_only=True, **kwargs)
        self.model.eval()
        self._torch = torch
        backend_tokenizer = getattr(self.model.tokenizer, "backend_tokenizer", None)
        if backend_tokenizer is None:
            raise ZooError(f"{path} has only a slow (Python) tokenizer; zoo needs a fast tokenizer "
                           "(tokenizer.json) to count tokens and batch by length")
        from tokenizers import Tokenizer

        # a private copy: sentence-transformers sets truncation/padding on its own per call
        self.encoder = TextEncoder(Tokenizer.from_str(backend_tokenizer.to_str()), self.model.max_seq_length, [])
        # the modules before a trailing Normalize, for raw (unnormalised) vectors on request
        modules = list(self.model)
        self._has_normalize = type(modules[-1]).__name__ == "Normalize"
        self._raw_modules = modules[:-1] if self._has_normalize else modules
        self.spec = spec
        self.device = str(self.model.device)
        self.name = "sentence-transformers/torch"

    excludes_prompt = True

    def embed_batch(self, texts: list[str], encodings: list, normalize: bool, prompt_tokens: int = 0) -> np.ndarray:
        if prompt_tokens or any(is_token_key(t) for t in texts):  # token ids, or a prompt the pooling leaves out
            return self._embed_encodings(encodings, normalize, prompt_tokens)
        if normalize or not self._has_normalize:  # the model's own path, as users run it
            out = self.model.encode(texts, batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False,
                                    normalize_embeddings=normalize and not self._has_normalize)
            return np.asarray(out, dtype=np.float32)
        from sentence_transformers.util import batch_to_device

        features = batch_to_device(self.model.preprocess(texts), self.model.device)
        with self._torch.inference_mode():
            for module in self._raw_modules:
                features = module(features)
        return features["sentence_embedding"].float().cpu().numpy()

    def embed_images(self, images: list, batch_size: int, normalize: bool) -> np.ndarray:
        """RGB PIL images through the model's image path (a CLIP-family model), as its ``encode`` does."""
        if normalize or not self._has_normalize:
            out = self.model.encode(images, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False,
                                    normalize_embeddings=normalize and not self._has_normalize)
            return np.asarray(out, dtype=np.float32)
        from sentence_transformers.util import batch_to_device

        parts = []
        for start in range(0, len(images), batch_size):
            features = batch_to_device(self.model.preprocess(images[start:start + batch_size]), self.model.device)
            with self._torch.inference_mode():
                for module in self._raw_modules:
                    features = module(features)
            parts.append(features["sentence_embedding"].float().cpu().numpy())
        return np.concatenate(parts)

    def _embed_encodings(self, encodings: list, normalize: bool, prompt_tokens: int = 0) -> np.ndarray:
        """The model's modules on already-encoded inputs, padded as its tokenizer pads them. ``prompt_tokens``:
        handed to the Pooling module as sentence-transformers' ``encode(prompt=...)`` does (``prompt_length``),
        so a Pooling with ``include_prompt: false`` leaves those positions out."""
        from sentence_transformers.util import batch_to_device

        names = [n for n in ("input_ids", "attention_mask", "token_type_ids")
                 if n in getattr(self.model.tokenizer, "model_input_names", ("input_ids", "attention_mask"))]
        feed = self.encoder.pad(encodings, names)
        features = batch_to_device({k: self._torch.from_numpy(v) for k, v in feed.items()}, self.model.device)
        if prompt_tokens:
            features["prompt_length"] = prompt_tokens
        modules = list(self.model) if normalize and self._has_normalize else self._raw_modules
        with self._torch.inference_mode():
            for module in modules:
                features = module(features)
        out = features["sentence_embedding"].float().cpu().numpy()
        return normalize_rows(out) if normalize and not self._has_normalize else out


def load_options(path: Path, spec: ModelSpec, device: str | None, precision: str) -> tuple:
    """(torch, sentence_transformers, the device, the keyword arguments) to load a sentence-transformers model of
    either kind (``SentenceTransformer``, ``CrossEncoder``) at ``precision`` on ``device``."""
    torch = require("torch", "torch")
    st = require("sentence_transformers", "torch")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ZooError(f"device {device!r} requested but torch sees no CUDA GPU; use device='cpu'")
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision not in dtypes:
        raise ZooError(f"torch runtime cannot compute in {precision!r}; use one of {sorted(dtypes)}")
    # fp32 is transformers' default load dtype; only casts need saying.
    kwargs: dict = {} if precision == "fp32" else {"model_kwargs": {"dtype": dtypes[precision]}}
    # a model's own code runs only when it is the code the operator trusted, checked before any import;
    # without it, sentence-transformers would load the base class its config names and score wrongly
    if verify_trusted(Path(path), dict(spec.trusted_code or ())):
        kwargs["trust_remote_code"] = True
    return torch, st, device, kwargs


ENCODER_ONLY = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}


def encoder_class(transformers, checkpoint: Path):
    """The transformers class an embedding model's transformer is: AutoModel's, but the encoder alone for an
    encoder-decoder family (T5: sentence-t5, GTR), as sentence-transformers loads it."""
    import json

    model_type = json.loads((Path(checkpoint) / "config.json").read_text()).get("model_type")
    return getattr(transformers, ENCODER_ONLY[model_type]) if model_type in ENCODER_ONLY else transformers.AutoModel


# weights a sentence-transformers pipeline never reads: BERT's pooler head (ST pools token states itself),
# so checkpoints saved without it (e5, bge and others) are complete for embedding
UNUSED_BY_EMBEDDING = ("pooler.",)


def missing_weights(path: Path, kind: str = "embedding") -> list[str]:
    """Weights the checkpoint at ``path`` lacks that its transformer would use, as transformers reports them
    (``output_loading_info``): a checkpoint missing them loads with random values in their place and embeds
    garbage without an error. One more load of each Transformer module; registration only."""
    import json

    transformers = require("transformers", "torch")
    folders = [path]
    try:
        modules = json.loads((path / "modules.json").read_text())
        folders = [path / m.get("path", "") for m in modules if str(m.get("type", "")).endswith("Transformer")]
    except FileNotFoundError:
        pass
    missing: list[str] = []
    for folder in folders:
        if not (folder / "config.json").is_file():
            continue
        config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
        if getattr(config, "auto_map", None):
            continue  # the model's own code: not loaded here (the probe embedding checks it runs)
        import logging

        quiet = logging.getLogger("transformers")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # the report is ours to give, in one line
        try:
            cls = transformers.AutoModelForSequenceClassification if kind == "reranker" else \
                encoder_class(transformers, folder)
            _, info = cls.from_pretrained(
                str(folder), config=config, local_files_only=True, output_loading_info=True)
        finally:
            quiet.setLevel(level)
        # a cross-encoder's head reads BERT's pooler: every weight counts
        unused = () if kind == "reranker" else UNUSED_BY_EMBEDDING
        missing += [k for k in info.get("missing_keys", []) if not k.startswith(unused)]
    return missing
