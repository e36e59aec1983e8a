"""Sensitivity ranking and the hostile model: planted outliers are found where they were planted."""


from conftest import CORPUS, row_cosines
from converters.export import export_onnx
from converters.sensitivity import PLAIN, measure_sensitivity, role_of, smoothed_key
from hostile import make_hostile
from zoo.engine.backends.lean import TextEncoder

TEXTS = CORPUS + ["cat", "the weather", "numbers 42"]


def ranking(model_dir, out, smooth_alphas=()):
    out.mkdir()
    info = export_onnx(model_dir, out)
    encoder = TextEncoder.from_folder(out, 64, info["inputs"])
    return measure_sensitivity(out / "model.onnx", [encoder.pad(encoder.encode([t])) for t in TEXTS], smooth_alphas)


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


def test_smoothquant_ranking_keeps_what_smoothing_cannot_repair(tiny_model_dir, tmp_path):
    """SmoothQuant moves the planted value outliers into the output projection's weights, so under it
    that product's error falls, while the attention products (no weight to smooth into) keep theirs:
    a smoothing recipe must rank them first, not the linear layers it has already repaired."""
    hostile = make_hostile(tiny_model_dir, tmp_path / "hostile", factor=40.0, channels=4)
    nodes = ranking(hostile, tmp_path / "onnx", smooth_alphas=(0.95,))
    key = smoothed_key(0.95)
    assert key == "smooth_quant 0.95"
    for s in nodes:
        assert set(s.errors) == {PLAIN, key} and s.errors[PLAIN] == s.error
        if not s.weighted:  # never smoothed
            assert s.errors[key] == s.errors[PLAIN]
    outputs = [s for s in nodes if s.role == "/inner/encoder/layer.*/attention/output/dense/MatMul"]
    for s in outputs:
        assert s.errors[key] < s.errors[PLAIN] / 3, (s.name, s.errors)
    scores = [s for s in nodes if s.role == "/inner/encoder/layer.*/attention/self/MatMul"]
    smoothed_first = sorted(nodes, key=lambda s: -s.errors[key])[:len(scores)]
    assert {s.name for s in smoothed_first} == {s.name for s in scores}, [(s.name, s.errors) for s in smoothed_first]

    # and SearchSpace.ranked orders a recipe's prefix by that error
    from converters.base import Recipe, SearchSpace

    space = SearchSpace([], [{**s.as_dict(), "flops": s.flops} for s in nodes])
    assert space.ranked(Recipe("plain"))[0] == nodes[0].name
    assert set(space.ranked(Recipe("sq", smoothing=0.95))[:len(scores)]) == {s.name for s in scores}
