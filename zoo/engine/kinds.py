"""What kind of model a folder holds: an embedding model, a reranker (cross-encoder) or a sparse encoder.

The kind decides what the model is for, so every layer asks it once, here, rather than guessing from a
pooling mode or an architecture name in each place. It is read from the folder as sentence-transformers
reads it:

- ``config_sentence_transformers.json`` names the class that saved it (``"model_type": "CrossEncoder"`` /
  ``"SparseEncoder"``, sentence-transformers 5);
- a cross-encoder saved by sentence-transformers 4 carries ``"sentence_transformers": {"activation_fn": ...}`` in
  ``config.json`` (the ms-marco-MiniLM layout), one of 3 and before ``sbert_ce_default_activation_function``;
- a plain transformers folder whose architecture is a ``...ForSequenceClassification`` head and which has no
  ``modules.json`` is what ``CrossEncoder`` loads (the bge-reranker-v2-m3 layout);
- a ``modules.json`` with SPLADE's modules (``MLMTransformer``, ``SpladePooling``) is a sparse encoder;
- everything else is an embedding model, as before kinds existed.

A reranker's scores are its classification head's logits through its activation function, which
sentence-transformers reads from the same files (``CrossEncoder.get_default_activation_fn``): the configured
``torch.`` class, else Sigmoid for one label and Identity for more. zoo reproduces those it can compute
with numpy and refuses any other by name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from ..errors import InvalidInput, NotAModel

__all__ = ["KINDS", "article", "EMBEDDING", "RERANKER", "SPARSE", "detect_kind", "check_kind", "reranker_head",
           "ACTIVATIONS", "refuse_kind"]

EMBEDDING, RERANKER, SPARSE = "embedding", "reranker", "sparse"
KINDS = (EMBEDDING, RERANKER, SPARSE)
SERVED_KINDS = (EMBEDDING, RERANKER)

# sentence-transformers' activation classes (``torch.nn.modules.activation.X``) zoo computes, by class name
ACTIVATIONS = {"Sigmoid": "sigmoid", "Identity": "identity", "Tanh": "tanh", "ReLU": "relu"}
SPARSE_MODULES = ("MLMTransformer", "SpladePooling", "SparseStaticEmbedding")


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NotAModel(f"{path} is not valid JSON ({exc}); the model folder is damaged") from None


def detect_kind(folder: Path) -> str:
    """The kind of model ``folder`` holds, from its sentence-transformers and transformers configs."""
    d = Path(folder)
    st_config = _json(d / "config_sentence_transformers.json") or {}
    saved_as = st_config.get("model_type") if isinstance(st_config, dict) else None
    if saved_as == "CrossEncoder":
        return RERANKER
    if saved_as == "SparseEncoder":
        return SPARSE
    modules = _json(d / "modules.json")
    if isinstance(modules, list) and any(str(m.get("type", "")).rsplit(".", 1)[-1] in SPARSE_MODULES
                                         for m in modules if isinstance(m, dict)):
        return SPARSE
    config = _json(d / "config.json") or {}
    if not isinstance(config, dict):
        return EMBEDDING
    marker = config.get("sentence_transformers")
    if isinstance(marker, dict) and "activation_fn" in marker or config.get("sbert_ce_default_activation_function"):
        return RERANKER
    architectures = config.get("architectures") or []
    if modules is None and architectures and all(str(a).endswith("ForSequenceClassification") for a in architectures):
        return RERANKER
    return EMBEDDING


def check_kind(kind: Optional[str]) -> Optional[str]:
    """A kind named by the user (``--kind``), checked; None: read it from the folder."""
    if kind is None:
        return None
    if kind not in KINDS:
        raise InvalidInput(f"unknown model kind {kind!r}; use one of {', '.join(KINDS)}", param="kind")
    return kind


def reranker_head(folder: Path) -> tuple[int, str]:
    """A cross-encoder's (number of labels, activation), as sentence-transformers' ``CrossEncoder`` reads them."""
    d = Path(folder)
    config = _json(d / "config.json") or {}
    labels = config.get("id2label")
    num_labels = len(labels) if isinstance(labels, dict) and labels else int(config.get("num_labels") or 2)
    st_config = _json(d / "config_sentence_transformers.json") or {}
    marker = config.get("sentence_transformers") if isinstance(config.get("sentence_transformers"), dict) else {}
    path = (st_config.get("activation_fn") if isinstance(st_config, dict) else None) or marker.get("activation_fn") \
        or config.get("sbert_ce_default_activation_function")
    if not path or not str(path).startswith("torch."):
        # sentence-transformers ignores an untrusted non-torch path too, and uses its default
        return num_labels, "sigmoid" if num_labels == 1 else "identity"
    name = str(path).rsplit(".", 1)[-1]
    if name not in ACTIVATIONS:
        raise NotAModel(f"{d.name}: the cross-encoder's activation {path} is not one zoo computes "
                        f"({', '.join(sorted(ACTIVATIONS))}); embedding models and other rerankers still work")
    return num_labels, ACTIVATIONS[name]


def refuse_kind(name: str, kind: str, wanted: tuple[str, ...], what: str) -> InvalidInput:
    """The one-line refusal of a command that cannot serve ``kind``: names the kind and what serves it."""
    serves = {EMBEDDING: "zoo embed / /v1/embeddings", RERANKER: "zoo rerank / /v1/rerank",
              SPARSE: "nothing in zoo yet (sparse encoders are not served)"}
    return InvalidInput(f"{name} is {article(kind)} model; {what} needs {article(' or '.join(wanted))} model "
                        f"({article(kind)} model is served by {serves.get(kind, kind)})", param="model", code="model_kind")


def article(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"
