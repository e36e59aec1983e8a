"""Reading pooling, normalisation, dims, prompts and license from a model folder."""

import shutil

import pytest

from conftest import add_dense_module
from zoo.errors import NotAModel
from zoo.engine.model_config import read_model_spec


def test_sentence_transformers_folder(tiny_model_dir):
    spec = read_model_spec(tiny_model_dir)
    assert (spec.dim, spec.max_seq_length, spec.pooling, spec.normalize) == (32, 64, "mean", True)
    assert (spec.query_prompt, spec.document_prompt, spec.license) == ("query: ", "passage: ", "mit")


def test_cls_pooling_without_normalize(tiny_cls_dir):
    spec = read_model_spec(tiny_cls_dir)
    assert (spec.pooling, spec.normalize) == ("cls", False)


def test_plain_transformers_folder_gets_sentence_transformers_defaults(tiny_plain_dir):
    spec = read_model_spec(tiny_plain_dir)
    assert (spec.dim, spec.pooling, spec.normalize, spec.max_seq_length) == (32, "mean", False, 128)


def test_minilm(minilm_dir):
    spec = read_model_spec(minilm_dir)
    assert (spec.dim, spec.max_seq_length, spec.pooling, spec.normalize, spec.license) == (
        384, 256, "mean", True, "apache-2.0")


def test_dense_module_changes_dim(tiny_model_dir, tmp_path):
    d = tmp_path / "dense"
    shutil.copytree(tiny_model_dir, d)
    add_dense_module(d)
    assert read_model_spec(d).dim == 16


@pytest.mark.parametrize("remove, match", [
    ("config.json", "has no config.json"),
    ("model.safetensors", "has no weights"),
    ("tokenizer.json vocab.txt tokenizer_config.json", "has no tokenizer files"),
])
def test_not_a_model(tiny_model_dir, tmp_path, remove, match):
    d = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, d)
    for name in remove.split():
        (d / name).unlink()
    with pytest.raises(NotAModel, match=match):
        read_model_spec(d)


def test_damaged_json_is_named(tiny_model_dir, tmp_path):
    d = tmp_path / "damaged"
    shutil.copytree(tiny_model_dir, d)
    (d / "modules.json").write_text("{not json")
    with pytest.raises(NotAModel, match="modules.json is not valid JSON"):
        read_model_spec(d)
