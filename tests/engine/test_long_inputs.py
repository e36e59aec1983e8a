"""Long inputs are tokenized from a prefix, and the tokens are exactly the whole text's."""

import random

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from conftest import CORPUS
from zoo.engine.backends.lean import TextEncoder

MAX = 32


def wordpiece():
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(CORPUS * 3, trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[UNK]", "[CLS]", "[SEP]"]))
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    return tok


def byte_level_bpe():  # RoBERTa / GPT-2 style
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS * 3, trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "</s>"],
                                                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.RobertaProcessing(("</s>", 1), ("<s>", 0))
    return tok


def metaspace_unigram():  # XLM-R / SentencePiece style
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(CORPUS * 3, trainers.UnigramTrainer(vocab_size=200, special_tokens=["<s>", "</s>", "<unk>"],
                                                                unk_token="<unk>"))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 1)])
    return tok


def texts():
    rng = random.Random(0)
    words = CORPUS[0].split() + ["naïve", "東京", "🙂", "e\u0301", "x" * 40, "3.14", ",", "\u200b"]
    out = []
    for n in (10, 200, 600, 2000, 9000):
        for _ in range(4):
            out.append("".join(rng.choice(words) + rng.choice([" ", "  ", "\n", "\t ", ""]) for _ in range(n)))
    # texts whose first window holds few tokens: the window must grow, or truncation would differ
    sparse = ["start" + " " * 3000 + "word " * 200, "x" * 700 + " " + "a b " * 300, "go" + "\u200b " * 2000 + "w " * 99]
    return out + sparse + ["a" * 5000, " " * 5000 + "end", "word " * 3000, ("x" * 700 + " ") * 8]


@pytest.mark.parametrize("make", [wordpiece, byte_level_bpe, metaspace_unigram])
def test_prefix_tokens_equal_the_whole_texts(make):
    trained = make()
    reference = Tokenizer.from_str(trained.to_str())  # the same tokenizer, untouched by the encoder
    encoder = TextEncoder(trained, MAX, ["input_ids"])
    reference.no_padding()
    reference.enable_truncation(max_length=MAX)
    batch = texts()
    got, want = encoder.encode(batch), reference.encode_batch(batch)
    assert any(len(t) > encoder._window_chars() for t in batch)  # the window is really exercised
    for text, g, w in zip(batch, got, want):
        assert (g.ids, g.type_ids, bool(g.overflowing)) == (w.ids, w.type_ids, bool(w.overflowing)), text[:60]
