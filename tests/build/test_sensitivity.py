"""Sensitivity ranking and the hostile model: planted outliers are found where they were planted."""


from conftest import CORPUS, row_cosines
from converters.export import export_onnx
from converters.sensitivity import measure_sensitivity, role_of
from hostile import make_hostile
from zoo.engine.backends.lean import TextEncoder

TEXTS = CORPUS + ["cat", "the weather", "numbers 42"]


def ranking(model_dir, out):
    out.mkdir()
    info = export_onnx(model_dir, out)
    encoder = TextEncoder.from_folder(out, 64, info["inputs"])
    return measure_sensitivity(out / "model.onnx", [encoder.pad(encoder.encode([t])) for t in TEXTS])


def test_role_strips_the_layer_number():
    assert role_of("/inner/encoder/layer.3/output/dense/MatMul") == ("/inner/encoder/layer.*/output/dense/MatMul", 3)
    assert role_of("/inner/transformer/layer.10/ffn/lin2/MatMul") == ("/inner/transformer/layer.*/ffn/lin2/MatMul", 10)
    assert role_of("/pooler/dense/MatMul") == ("/pooler/dense/MatMul", None)


def test_hostile_copy_computes_the_same_and_its_outliers_rank_first(tiny_model_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    hostile = make_hostile(tiny_model_dir, tmp_path / "hostile", factor=40.0, channels=4)
    a = SentenceTransformer(str(tiny_model_dir), device="cpu").encode(TEXTS)
    b = SentenceTransformer(str(hostile), device="cpu").encode(TEXTS)
    assert row_cosines(a, b).min() >= 0.9999

    plain = ranking(tiny_model_dir, tmp_path / "plain-onnx")
    planted = ranking(hostile, tmp_path / "hostile-onnx")
    assert len(plain) == len(planted) == 2 * 8  # q, k, v, scores, context, out, ffn up, ffn down per layer
    by_name = {s.name: s for s in plain}
    # the products fed by the scaled channels: the attention output projection (value side) and the
    # score MatMul (query side) of each layer
    hit = {s.role for s in planted[:4]}
    assert hit <= {"/inner/encoder/layer.*/attention/output/dense/MatMul", "/inner/encoder/layer.*/attention/self/MatMul"}, \
        [(s.name, round(s.error, 3)) for s in planted[:6]]
    for s in planted[:4]:
        assert s.error > 3 * by_name[s.name].error, (s.name, s.error, by_name[s.name].error)
    assert all(s.weighted == ("dense" in s.name or "query" in s.name or "key" in s.name or "value" in s.name)
               for s in planted)
    assert all(s.flops > 0 for s in planted)
