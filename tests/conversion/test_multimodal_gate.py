"""A multimodal model's artifacts are gated on generated probe images as well as on the probe texts."""

from __future__ import annotations

import numpy as np
import pytest

import zoo
from zoo.core.floor import Floor


def test_the_image_probe_set_is_generated_the_same_everywhere():
    from zoo.conversion.corpora import image_probe_set

    a, b = image_probe_set(), image_probe_set()
    assert len(a) == 48 and {im.size for im in a} == {(224, 224), (320, 200), (150, 300), (64, 64), (500, 375), (33, 97)}
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))
    assert len({np.asarray(im).tobytes() for im in a}) == len(a)  # no two alike
    assert not np.array_equal(np.asarray(image_probe_set(seed=1)[2]), np.asarray(a[2]))


def test_images_hold_the_same_floor():
    text_ok = {"mean_cosine": 0.999, "min_cosine": 0.99, "spearman": 0.999, "recall_at_10": 1.0,
               "reference_recall_at_10": 1.0}
    assert Floor().check(text_ok) is None
    assert Floor().check({**text_ok, "image_mean_cosine": 0.999, "image_min_cosine": 0.98}) is None
    assert Floor().check({**text_ok, "image_mean_cosine": 0.999, "image_min_cosine": 0.5}) == \
        "image min cosine 0.50000 < 0.95000"
    assert Floor(mean_cosine=0.9995).check({**text_ok, "mean_cosine": 0.9999, "image_mean_cosine": 0.999,
                                            "image_min_cosine": 0.99}).startswith("image mean cosine 0.99900")
    assert Floor().margin({**text_ok, "image_mean_cosine": float("nan"), "image_min_cosine": 0.99}) == float("-inf")


def test_a_cast_of_a_clip_model_is_gated_on_its_images(registry, tiny_clip_dir):
    from zoo.conversion.pipeline import convert

    registry.register("clip", str(tiny_clip_dir))
    (outcome,) = convert(registry, "clip", ["torch-bf16"])
    fid = outcome.fidelity
    assert outcome.status == "ready" and fid["probe_images"] == 48 and fid["probe_texts"] > 500
    assert 0.99 <= fid["image_min_cosine"] <= fid["image_mean_cosine"] <= 1.0
    m = zoo.load("clip", artifact="torch-bf16", registry=registry, cache=False)
    ref = zoo.load("clip", artifact="torch-fp32", registry=registry, cache=False)
    from zoo.conversion.corpora import image_probe_set

    pictures = image_probe_set()[:6]
    cos = (m.embed_images(pictures, normalize=True) * ref.embed_images(pictures, normalize=True)).sum(1)
    assert cos.min() >= 0.99
    with pytest.raises(zoo.ZooError, match="openvino-int8 so far; this model is clip"):
        convert(registry, "clip", ["onnx-o2"])
