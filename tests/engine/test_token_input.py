"""Token-id input (`m.embed_tokens`): the model's special tokens are added as for text, so ids embed
as the text they encode, on every supported family and runtime; cache keys never meet a text's."""

from __future__ import annotations

import numpy as np
import pytest

import zoo
from conftest import CORPUS
from zoo.errors import InvalidInput

TEXTS = CORPUS[:4] + ["hello", " ".join(["word"] * 200)]  # the last is cut to the max length


def _bare_ids(m, texts):
    """The ids a client would send: the model's tokenizer, no special tokens, no truncation."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(m.backend.encoder.tokenizer.to_str())
    tok.no_truncation()
    return [tok.encode(t, add_special_tokens=False).ids for t in texts]


def _home_with(tmp_path, model_dir):
    from zoo.conversion.pipeline import convert
    from zoo.registry.catalog import Registry
    from zoo.store.home import resolve_home

    reg = Registry(resolve_home(tmp_path / "zoo"))
    reg.register("t", str(model_dir))
    convert(reg, "t", ["onnx-fp32"])
    return reg


@pytest.mark.parametrize("artifact", ["torch-fp32", "onnx-fp32"])
def test_ids_embed_as_their_text_bert(tmp_path, tiny_model_dir, artifact):
    m = zoo.load("t", artifact=artifact, registry=_home_with(tmp_path, tiny_model_dir), cache=False)
    with pytest.warns(zoo.engine.model.TruncationWarning):
        text = m.embed(TEXTS)
    with pytest.warns(zoo.engine.model.TruncationWarning):
        ids = m.embed_tokens(_bare_ids(m, TEXTS))
    assert ((text * ids).sum(1) >= 0.9999).all()
    assert ids.truncated == text.truncated == (5,)
    assert m.tokenize_ids(_bare_ids(m, TEXTS)).lengths == m.tokenize(TEXTS).lengths  # usage counts alike


def test_ids_embed_as_their_text_other_families(tmp_path, tiny_arch_dir):
    """MPNet, RoBERTa (<s> ... </s>, position offset) and DistilBERT, on torch and ONNX."""
    reg = _home_with(tmp_path, tiny_arch_dir)
    for artifact in ("torch-fp32", "onnx-fp32"):
        m = zoo.load("t", artifact=artifact, registry=reg, cache=False)
        texts = TEXTS[:5]
        want = m.embed(texts, dimensions=16)
        got = m.embed_tokens(_bare_ids(m, texts), dimensions=16)
        assert ((want * got).sum(1) >= 0.9999).all(), artifact
        # what tokenizer.encode(text) returns, and a padded batch: framing stripped, added once
        framed = _framed_ids(m, texts)
        assert ((want * m.embed_tokens(framed, dimensions=16)).sum(1) >= 0.9999).all(), artifact
        assert ((want * m.embed_tokens(_padded(m, framed), dimensions=16)).sum(1) >= 0.9999).all(), artifact


def _framed_ids(m, texts):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(m.backend.encoder.tokenizer.to_str())
    tok.no_truncation()
    return [tok.encode(t).ids for t in texts]


def _padded(m, id_lists):
    pad = m.backend.encoder.pad_id
    width = max(map(len, id_lists)) + 3
    return [ids + [pad] * (width - len(ids)) for ids in id_lists]


def test_framing_inside_the_content_is_refused(tmp_path, tiny_arch_dir):
    """RoBERTa's framing (<s> ... </s>, pad 1): at the ends it is stripped, inside it is refused."""
    m = zoo.load("t", artifact="onnx-fp32", registry=_home_with(tmp_path, tiny_arch_dir), cache=False)
    (framed,) = _framed_ids(m, ["a dog runs in the park"])
    start, end = framed[0], framed[-1]
    with pytest.raises(InvalidInput, match=rf"token input 0: id {end} \(.*\) at position 2 is one of the model's "
                                           "special tokens inside the content"):
        m.embed_tokens([framed[1:3] + [end] + framed[3:-1]])
    with pytest.raises(InvalidInput, match="token input 1 holds only the model's special tokens or padding"):
        m.embed_tokens([framed, [start, end]])


def test_bad_ids_are_refused_naming_the_input(tmp_path, tiny_model_dir):
    m = zoo.load("t", artifact="onnx-fp32", registry=_home_with(tmp_path, tiny_model_dir), cache=False)
    vocab = m.backend.encoder.tokenizer.get_vocab_size(with_added_tokens=True)
    cases = [([[5, 6], []], r"token input 1 is an empty list"),
             ([[5, -1]], r"token input 0: id -1 at position 1 is negative; token ids are 0 or more"),
             ([[5], [vocab]], rf"token input 1: id {vocab} at position 0 .*LangChain's OpenAIEmbeddings sends tiktoken cl100k_base ids"),
             ([[5, "6"]], r"token input 0: position 1 is str, not an integer token id"),
             ([[True]], r"position 0 is bool"), ("text", r"must be a list of lists of ids")]
    for inputs, message in cases:
        with pytest.raises(InvalidInput, match=message):
            m.embed_tokens(inputs)
    with pytest.raises(InvalidInput, match=r"prompt cannot be put before token-id input"):
        m.embed_tokens([[5]], prompt_name="query")
    with pytest.raises(InvalidInput, match=r"text at index 0 has 202 tokens, more than t's max length of 64"):
        m.embed_tokens([[5] * 200], truncate=False)


def test_token_inputs_never_share_a_cache_entry_with_a_text(tmp_path, tiny_model_dir):
    reg = _home_with(tmp_path, tiny_model_dir)
    m = zoo.load("t", artifact="onnx-fp32", registry=reg, cache=str(tmp_path / "cache.db"))
    ids = _bare_ids(m, ["the cat sleeps"])[0]
    key_like = ",".join(map(str, ids))  # a text that spells the ids, as a naive key would
    first = m.embed_tokens([ids])
    assert first.cache_hits == 0
    assert m.embed([key_like, "ids:" + key_like]).cache_hits == 0
    again = m.embed_tokens([ids])
    assert again.cache_hits == 1 and np.array_equal(first, again)
    assert m.embed(["the cat sleeps"]).cache_hits == 0  # the text itself is its own entry
