"""The torch runtime on a CUDA GPU: same vectors as on the CPU, and it says where it runs.

Skipped, with the reason, on machines without a CUDA GPU (CI and the development machines);
run on a lent GPU machine to verify the CUDA path for real.
"""

import numpy as np
import pytest

import zoo
from conftest import row_cosines

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")

TEXTS = ["the quick brown fox", "le chat dort", "numbers 42 and 3.14 " * 10, ""]


def test_cuda_embeddings_match_cpu(registry, tiny_model_dir):
    registry.register("tiny", str(tiny_model_dir))
    gpu = zoo.load("tiny", device="cuda", registry=registry)
    cpu = zoo.load("tiny", device="cpu", registry=registry)
    assert gpu.info["device"] == "cuda:0" and cpu.info["device"] == "cpu"
    a, b = gpu.embed(TEXTS), cpu.embed(TEXTS)
    assert a.dtype == np.float32 and a.shape == (4, 32)
    cos = row_cosines(a, b)
    assert cos.min() >= 0.9999


def test_default_device_is_the_gpu_when_present(registry, tiny_model_dir):
    registry.register("tiny", str(tiny_model_dir))
    assert zoo.load("tiny", registry=registry).info["device"] == "cuda:0"


def test_torch_fp16_is_built_gated_and_served_on_the_gpu(registry, tiny_model_dir):
    from zoo.conversion.pipeline import convert

    registry.register("tiny", str(tiny_model_dir))
    (o,) = convert(registry, "tiny", ["torch-fp16"])
    assert o.status == "ready", o.error
    assert o.fidelity["mean_cosine"] >= 0.999 and o.fidelity["runtime_precision"] == "fp16"
    m = zoo.load("tiny", artifact="torch-fp16", registry=registry)
    assert m.info["device"] == "cuda:0"
    ref = zoo.load("tiny", artifact="torch-fp32", device="cpu", registry=registry).embed(TEXTS)
    got = m.embed(TEXTS)
    cos = row_cosines(got, ref)
    assert got.dtype == np.float32 and cos.min() >= 0.999


def test_all_cuda_plan_matches_what_this_gpu_machine_has(tiny_model_dir):
    from converters import expand_targets
    from zoo.core.hardware import detect

    hw = detect()
    assert hw.cuda
    planned = expand_targets(["all-cuda"], hw, tiny_model_dir)
    assert "torch-fp16" in planned and ("onnx-o4" in planned) == hw.ort_cuda


def test_onnx_o4_is_built_gated_and_served_with_the_cuda_provider(registry, tiny_model_dir):
    from zoo.conversion.pipeline import convert
    from zoo.core.hardware import detect

    if not detect().ort_cuda:
        pytest.skip("onnxruntime here has no CUDAExecutionProvider (install onnxruntime-gpu)")
    registry.register("tiny", str(tiny_model_dir))
    (o,) = convert(registry, "tiny", ["onnx-o4"])
    assert o.status == "ready", o.error
    assert o.fidelity["mean_cosine"] >= 0.999 and o.fidelity["runtime_precision"] == "fp16"
    m = zoo.load("tiny", artifact="onnx-o4", device="cuda", registry=registry)
    assert m.info["device"] == "cuda" and "CUDAExecutionProvider" in m.backend.session.get_providers()
    ref = zoo.load("tiny", artifact="torch-fp32", device="cpu", registry=registry).embed(TEXTS)
    got = m.embed(TEXTS)
    cos = row_cosines(got, ref)
    assert got.dtype == np.float32 and cos.min() >= 0.999


def test_onnx_fp32_serves_on_the_gpu_when_onnxruntime_can(registry, tiny_model_dir):
    from zoo.conversion.pipeline import convert
    from zoo.core.hardware import detect

    if not detect().ort_cuda:
        pytest.skip("onnxruntime here has no CUDAExecutionProvider (install onnxruntime-gpu)")
    registry.register("tiny", str(tiny_model_dir))
    convert(registry, "tiny", ["onnx-fp32"])
    m = zoo.load("tiny", artifact="onnx-fp32", registry=registry)
    assert m.info["device"] == "cuda" and m.backend.session.get_providers()[0] == "CUDAExecutionProvider"
