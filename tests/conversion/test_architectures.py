"""The encoder families beyond BERT: MPNet, RoBERTa (XLM-R's layout) and DistilBERT, each a tiny
random model built offline, exported, quantized and served through the lean runtimes, and
compared with sentence-transformers' own output of the same folder."""

import json

import pytest
from sentence_transformers import SentenceTransformer

import zoo
from conftest import CORPUS, X86_FLAGS, build_tiny_model, row_cosines, table_counts
from converters import expand_targets
from zoo.conversion.pipeline import convert
from zoo.core.hardware import Hardware
from zoo.errors import InvalidInput

X86 = Hardware("x86_64", X86_FLAGS, cuda=False)
TARGETS = ["onnx-fp32", "openvino-fp32", "onnx-int8-avx512_vnni", "onnx-int8-static", "openvino-int8"]
TEXTS = CORPUS + ["", "a", "numbers 42 and 3.14 " * 40]  # empty, one letter, and one past the max length


def test_family_exports_quantizes_and_serves_like_sentence_transformers(registry, tiny_arch_dir):
    model_type = json.loads((tiny_arch_dir / "config.json").read_text())["model_type"]
    registry.register("tiny", str(tiny_arch_dir))
    outcomes = {o.target: o for o in convert(registry, "tiny", TARGETS, hardware=X86)}
    assert {t: o.status for t, o in outcomes.items()} == {t: "ready" for t in TARGETS}, \
        {t: o.error for t, o in outcomes.items()}
    reference = SentenceTransformer(str(tiny_arch_dir), device="cpu").encode(TEXTS)
    for target in TARGETS:
        m = zoo.load("tiny", artifact=target, registry=registry)
        got = m.embed(TEXTS)
        cos = row_cosines(got, reference)
        floor = 0.9999 if "fp32" in target else 0.99
        assert cos.min() >= floor, (model_type, target, cos.round(4))
        assert m.info["artifact"] == target
    # the graph takes what the family's tokenizer gives: no token types outside BERT
    import onnx

    tree = registry.artifact_path(next(a for a in registry.resolve("tiny").revision.artifacts if a.target == "onnx-fp32"))
    assert [i.name for i in onnx.load(str(tree / "model.onnx")).graph.input] == ["input_ids", "attention_mask"]
    # each int8 build records its search
    for target in ("onnx-int8-static", "openvino-int8", "onnx-int8-avx512_vnni"):
        search = outcomes[target].provenance["search"]
        assert search["attempts"] and search["candidates"] > 0 and search["passed"]


def test_an_untested_family_is_refused_before_any_work(registry, tmp_path):
    d = build_tiny_model(tmp_path / "electra", arch="electra")
    registry.register("other", str(d))
    before = table_counts(registry)
    with pytest.raises(InvalidInput, match="support the families bert, mpnet, roberta.*this model is electra"):
        convert(registry, "other", ["openvino-int8"], hardware=X86)
    assert table_counts(registry) == before
    assert expand_targets(["all-cpu"], X86, registry.artifact_path(
        registry.resolve("other").revision.artifacts[0])) == ["torch-bf16"]
