"""What a model folder says about itself, read without importing torch.

Every runtime must pool and normalise the way the model's sentence-transformers
config says (mean/CLS/max pooling, a Normalize module, a Dense projection), so
all artifacts of a model produce comparable vectors. A plain transformers
folder (no ``modules.json``) gets what sentence-transformers itself would do
with it: mean pooling, no normalisation.

A CLIP-family folder (``model_type`` clip: a text and a vision tower projected into one space)
embeds text and images: its dimension is the projection's, its "pooling" is the towers' own
(``projection``), and its image preprocessing (size, crop, mean, std, resampling) is read from
``preprocessor_config.json`` and recorded, so the image path is reproducible and explainable.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from ..errors import NotAModel

__all__ = ["ModelSpec", "read_model_spec", "spec_of"]

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "sentencepiece.bpe.model",
                   "spiece.model", "tokenizer.model")
POOLING_MODES = [  # sentence-transformers Pooling config keys, in its own precedence order
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_max_tokens", "max"),
    ("pooling_mode_mean_tokens", "mean"),
    ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len"),
    ("pooling_mode_weightedmean_tokens", "weightedmean"),
    ("pooling_mode_lasttoken", "lasttoken"),
]


@dataclass(frozen=True)
class ModelSpec:
    dim: int
    max_seq_length: int
    pooling: str
    normalize: bool
    query_prompt: Optional[str] = None
    document_prompt: Optional[str] = None
    license: Optional[str] = None
    model_type: Optional[str] = None
    task: str = "sentence-embedding"
    modalities: tuple[str, ...] = ("text",)
    image_preprocessing: Optional[dict[str, Any]] = None  # multimodal models: how images become pixels
    # Matryoshka training the model declares: None, none declared; () declared, widths not listed; else the widths
    matryoshka_dims: Optional[tuple[int, ...]] = None
    # a model that runs its own code, trusted by the operator: (path, sha256) of each code file, checked before
    # every load (zoo.engine.model_code); None: the model runs only the libraries' own classes
    trusted_code: Optional[tuple[tuple[str, str], ...]] = None
    # False: the Pooling module leaves a prompt's tokens out of the pooled vector (include_prompt: false,
    # as INSTRUCTOR-style and some retrieval models declare); the prompt still conditions the other tokens
    include_prompt: bool = True
    # what the model is for (``zoo.engine.kinds``): "embedding", or "reranker", whose "vector" is its
    # classification head's scores (``dim`` labels, pooling "logits") through ``activation``
    kind: str = "embedding"
    activation: Optional[str] = None

    def __post_init__(self):  # a spec read back from JSON (a load plan) has a list here
        object.__setattr__(self, "modalities", tuple(self.modalities))
        if self.matryoshka_dims is not None:
            object.__setattr__(self, "matryoshka_dims", tuple(self.matryoshka_dims))
        if self.trusted_code is not None:
            pairs = self.trusted_code.items() if isinstance(self.trusted_code, dict) else self.trusted_code
            object.__setattr__(self, "trusted_code", tuple(sorted((str(p), str(d)) for p, d in pairs)))

    def matryoshka_note(self, dimensions: Optional[int]) -> Optional[str]:
        """What a cut to ``dimensions`` is, when it is not the model's declared Matryoshka training:
        ``not-declared`` (the model declares none) or ``not-a-trained-width`` (it lists others); None
        when nothing is cut or the width is declared. The cut is served either way, and said."""
        if dimensions is None or dimensions >= self.dim:
            return None
        if self.matryoshka_dims is None:
            return "not-declared"
        if self.matryoshka_dims and dimensions not in self.matryoshka_dims:
            return "not-a-trained-width"
        return None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NotAModel(f"{path} is not valid JSON ({exc}); the model folder is damaged") from None


def _license(readme: Path) -> Optional[str]:
    try:
        text = readme.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    m = re.match(r"^---\s*\n(.*?)\n---", text, re.S)
    if not m:
        return None
    lic = re.search(r"^license:\s*['\"]?([^'\"\n]+)", m.group(1), re.M)
    return lic.group(1).strip() if lic else None


MATRYOSHKA_DIMS = re.compile(r"""["']?matryoshka_dims["']?\s*[:=]\s*[\[(]\s*(\d+(?:\s*,\s*\d+)*)""")


def _matryoshka(readme: Path) -> Optional[tuple[int, ...]]:
    """The Matryoshka widths a model card declares. sentence-transformers' generated cards name the loss
    (``MatryoshkaLoss``) with its parameters (``"matryoshka_dims": [768, 512, ...]``); a card tagged
    ``matryoshka`` or naming the loss without widths declares the training but not the widths (())."""
    try:
        text = readme.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, IsADirectoryError):
        return None
    m = MATRYOSHKA_DIMS.search(text)
    if m:
        return tuple(sorted({int(x) for x in m.group(1).split(",")}, reverse=True))
    front = re.match(r"^---\s*\n(.*?)\n---", text, re.S)
    tagged = front is not None and re.search(r"^\s*-\s*['\"]?matryoshka['\"]?\s*$", front.group(1), re.M | re.I)
    return () if tagged or "MatryoshkaLoss" in text else None


def read_model_spec(directory: Path, kind: Optional[str] = None) -> ModelSpec:
    """Read dim, pooling, normalisation, max length, prompts and license; raise NotAModel. ``kind``: the kind the
    user expects (``zoo register --kind``), checked against what the folder declares (``zoo.engine.kinds``)."""
    d = Path(directory)
    if not d.is_dir():
        raise NotAModel(f"{d} is not a directory")
    config = _json(d / "config.json")
    if not isinstance(config, dict):
        raise NotAModel(f"{d} has no config.json: not a transformers or sentence-transformers model "
                        "folder (expected config.json, weights and tokenizer files)")
    if not any(p.suffix in WEIGHT_SUFFIXES for p in d.iterdir() if p.is_file()):
        raise NotAModel(f"{d} has no weights (model.safetensors or pytorch_model.bin)")
    if not any((d / f).exists() for f in TOKENIZER_FILES):
        raise NotAModel(f"{d} has no tokenizer files (tokenizer.json, vocab.txt, ...)")

    if config.get("model_type") in MULTIMODAL_TYPES:
        return _multimodal_spec(d, config)
    from .kinds import EMBEDDING, RERANKER, article, detect_kind

    found = detect_kind(d)
    if kind is not None and kind != found:
        # every layer reads the kind from the stored folder (the exporters too), so a kind the folder does not
        # declare would be served as one thing and converted as another
        raise NotAModel(f"{d.name} is laid out as {article(found)} model, not {article(kind)} one; save a reranker "
                        "with sentence-transformers' CrossEncoder (config_sentence_transformers.json model_type) or "
                        "as a ...ForSequenceClassification folder without modules.json")
    kind = found
    if kind == RERANKER:
        return _reranker_spec(d, config)
    if kind != EMBEDDING:
        from .kinds import refuse_kind

        raise refuse_kind(d.name, kind, ("embedding", "reranker"), "registration")
    hidden = config.get("hidden_size") or config.get("d_model") or config.get("dim")
    if not isinstance(hidden, int):
        raise NotAModel(f"{d}/config.json has no hidden_size: cannot tell the embedding dimension")
    dim, pooling, normalize, include_prompt = hidden, "mean", False, True

    modules = _json(d / "modules.json")
    if modules is not None:
        for module in modules:
            kind = module.get("type", "").rsplit(".", 1)[-1]
            mconf = _json(d / module.get("path", "") / "config.json") or {}
            if kind == "Pooling":
                modes = [name for key, name in POOLING_MODES if mconf.get(key)]
                pooling = mconf.get("pooling_mode") or (modes[0] if modes else "mean")
                include_prompt = mconf.get("include_prompt", True) is not False
            elif kind == "Dense":
                dim = int(mconf.get("out_features", dim))
            elif kind == "Normalize":
                normalize = True

    st_conf = _json(d / "sentence_bert_config.json") or {}
    max_len = st_conf.get("max_seq_length")
    if not isinstance(max_len, int):
        tok_conf = _json(d / "tokenizer_config.json") or {}
        candidates = [v for v in (tok_conf.get("model_max_length"), config.get("max_position_embeddings"))
                      if isinstance(v, int) and 0 < v < 1_000_000]
        max_len = min(candidates) if candidates else 512

    prompts = (_json(d / "config_sentence_transformers.json") or {}).get("prompts") or {}
    query = prompts.get("query") or None
    document = next((prompts[k] for k in ("document", "passage", "corpus") if prompts.get(k)), None)

    return ModelSpec(dim=dim, max_seq_length=max_len, pooling=pooling, normalize=normalize,
                     query_prompt=query, document_prompt=document, license=_license(d / "README.md"),
                     model_type=config.get("model_type"), matryoshka_dims=_matryoshka(d / "README.md"),
                     include_prompt=include_prompt)


def _max_length(d: Path, config: dict) -> int:
    st_conf = _json(d / "sentence_bert_config.json") or {}
    max_len = st_conf.get("max_seq_length")
    if isinstance(max_len, int):
        return max_len
    tok_conf = _json(d / "tokenizer_config.json") or {}
    candidates = [v for v in (tok_conf.get("model_max_length"), config.get("max_position_embeddings"))
                  if isinstance(v, int) and 0 < v < 1_000_000]
    return min(candidates) if candidates else 512


def _reranker_spec(d: Path, config: dict) -> ModelSpec:
    """A cross-encoder: one (query, document) pair in, ``num_labels`` scores out through its activation."""
    from .kinds import RERANKER, reranker_head

    labels, activation = reranker_head(d)
    return ModelSpec(dim=labels, max_seq_length=_max_length(d, config), pooling="logits", normalize=False,
                     license=_license(d / "README.md"), model_type=config.get("model_type"), task="text-ranking",
                     kind=RERANKER, activation=activation)


MULTIMODAL_TYPES = ("clip",)
# what of preprocessor_config.json decides the pixels a vision tower sees
IMAGE_KEYS = ("do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor",
              "do_normalize", "image_mean", "image_std", "do_convert_rgb")


def _multimodal_spec(d: Path, config: dict) -> ModelSpec:
    dim = config.get("projection_dim")
    if not isinstance(dim, int):
        raise NotAModel(f"{d}/config.json has no projection_dim: cannot tell the shared embedding dimension")
    processor = _json(d / "preprocessor_config.json")
    if not isinstance(processor, dict):
        raise NotAModel(f"{d} has no preprocessor_config.json: a {config['model_type']} model needs its image "
                        "processor saved beside it (CLIPProcessor.save_pretrained)")
    text = config.get("text_config") or {}
    st_conf = _json(d / "sentence_bert_config.json") or {}
    tok_conf = _json(d / "tokenizer_config.json") or {}
    candidates = [v for v in (st_conf.get("max_seq_length"), tok_conf.get("model_max_length"),
                              text.get("max_position_embeddings")) if isinstance(v, int) and 0 < v < 1_000_000]
    normalize = any(m.get("type", "").endswith("Normalize") for m in (_json(d / "modules.json") or []))
    prompts = (_json(d / "config_sentence_transformers.json") or {}).get("prompts") or {}
    return ModelSpec(dim=dim, max_seq_length=min(candidates) if candidates else 77, pooling="projection",
                     normalize=normalize, query_prompt=prompts.get("query") or None,
                     document_prompt=prompts.get("document") or None, license=_license(d / "README.md"),
                     model_type=config.get("model_type"), modalities=("text", "image"),
                     image_preprocessing={k: processor[k] for k in IMAGE_KEYS if k in processor})


def spec_of(model) -> ModelSpec:
    """The spec recorded for a registered model (a ``zoo.registry.schema.Model`` row)."""
    return ModelSpec(dim=model.dim, max_seq_length=model.max_seq_length, pooling=model.pooling,
                     normalize=model.normalize, query_prompt=model.query_prompt,
                     document_prompt=model.document_prompt, license=model.license, task=model.task,
                     modalities=tuple(model.modalities or ("text",)), image_preprocessing=model.image_preprocessing,
                     matryoshka_dims=model.matryoshka_dims, trusted_code=getattr(model, "trusted_code", None),
                     include_prompt=getattr(model, "include_prompt", None) is not False,
                     kind=getattr(model, "kind", None) or "embedding", activation=getattr(model, "activation", None))
