"""Calibration statistics collected once per search: each attempt's model equals ``nncf.quantize``'s,
and an attempt after the first collects only what no attempt before it did."""

import pytest

from conftest import CORPUS
from converters.calibration import quantize
from converters.export import export_onnx
from hostile import make_hostile
from zoo.engine.backends.lean import TextEncoder

TEXTS = CORPUS + ["cat", "the weather", "numbers 42", "a longer sentence about the weather in the city"]


class CountedFeeds(list):
    """Calibration feeds that count how often NNCF reads them through (one read = one pass)."""

    passes = 0

    def __iter__(self):
        CountedFeeds.passes += 1
        return super().__iter__()


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("calibration")
    hostile = make_hostile(tiny_model_dir, out / "hostile")  # outliers: SmoothQuant has work to do
    (out / "onnx").mkdir()
    info = export_onnx(hostile, out / "onnx")
    encoder = TextEncoder.from_folder(out / "onnx", 64, info["inputs"])
    return out / "onnx" / "model.onnx", [encoder.pad(encoder.encode([t])) for t in TEXTS]


def _saved(model, path) -> tuple[bytes, bytes]:
    """The IR's weights, and its graph with OpenVINO's generated node names (``Constant_27292``: a
    process-wide counter) numbered in order of appearance instead."""
    import re

    import openvino as ov

    ov.save_model(model, str(path / "m.xml"), compress_to_fp16=False)
    seen: dict[bytes, bytes] = {}
    xml = re.sub(rb"\b([A-Z][A-Za-z]*)_(\d{3,})", lambda m: b"%s_#%d" % (m[1], seen.setdefault(m[0], len(seen))),
                 (path / "m.xml").read_bytes())
    return xml, (path / "m.bin").read_bytes()


def _matmuls(model) -> list[str]:
    return [op.get_friendly_name() for op in model.get_ops() if op.get_type_name() == "MatMul"]


@pytest.mark.parametrize("smooth_quant", [0.95, None])
def test_reused_statistics_give_nncf_quantize_s_model_without_a_pass(exported, tmp_path, smooth_quant):
    import openvino as ov

    graph, items = exported
    names = _matmuls(ov.convert_model(str(graph)))
    state: dict = {}
    feeds = CountedFeeds(items)
    # the search's growing prefixes, then one seen before
    for i, keep in enumerate(([], names[:1], names[:3], names[:3])):
        before = CountedFeeds.passes
        ours = quantize(ov.convert_model(str(graph)), feeds, smooth_quant=smooth_quant, keep=keep, state=state)
        passes = CountedFeeds.passes - before
        (tmp_path / f"ours-{i}").mkdir()
        (tmp_path / f"plain-{i}").mkdir()
        reference = quantize(ov.convert_model(str(graph)), list(items), smooth_quant=smooth_quant, keep=keep)
        assert _saved(ours, tmp_path / f"ours-{i}") == _saved(reference, tmp_path / f"plain-{i}"), (i, keep)
        if i == 0:  # SmoothQuant's pass (when on), then MinMax and bias correction's
            assert passes == (2 if smooth_quant is not None else 1)
        elif i == 3:  # every statistic this scope needs was collected before
            assert passes == 0
        else:  # at most one pass, for the quantizers a node kept in float moved (onto a sibling's input)
            assert passes <= 1, (i, keep)
