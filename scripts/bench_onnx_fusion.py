"""Dynamic int8 of the plain ONNX export against int8 of the ORT-fused graph (O2: Attention,
SkipLayerNormalization, BiasGelu fused before quantizing, so attention becomes QAttention).

    .venv/bin/python scripts/bench_onnx_fusion.py [--texts 1000]

Answers whether the ONNX int8 targets should quantize the fused graph. Everything runs through
zoo's own ONNX runtime (``load_backend("onnx", ...)``) at batch 32, best of 3 rounds, in one
process; fidelity is the cosine of each row to the plain fp32 export's.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=1000)
    args = ap.parse_args()

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig

    import zoo
    from converters.export import export_onnx
    from zoo.conversion.corpora import benchmark_texts
    from zoo.core.hardware import detect
    from zoo.engine.backends import load_backend
    from zoo.engine.model_config import spec_of

    hw = detect()
    print(f"CPU: {hw.cpu_model} ({hw.physical_cores} cores)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        reg = zoo.open_registry(str(tmp / "zoo"))
        zoo.load(registry=reg)  # registers the embedded default
        resolved = reg.resolve("all-minilm-l6-v2")
        checkpoint = reg.artifact_path(resolved.revision.artifacts[0])
        spec = spec_of(resolved.model)
        plain = tmp / "fp32"
        plain.mkdir()
        export_onnx(checkpoint, plain)
        fused = tmp / "o2"
        shutil.copytree(plain, fused)
        with tempfile.TemporaryDirectory() as out:
            ORTOptimizer.from_pretrained(str(fused), file_names=["model.onnx"]).optimize(
                save_dir=out, optimization_config=AutoOptimizationConfig.O2())
            shutil.move(str(Path(out) / "model_optimized.onnx"), str(fused / "model.onnx"))

        def int8(src: Path, name: str) -> Path:  # optimum's avx512_vnni preset, as onnx-int8-* builds it
            dst = tmp / name
            shutil.copytree(src, dst)
            quantize_dynamic(str(src / "model.onnx"), str(dst / "model.onnx"), per_channel=True, reduce_range=False,
                             weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Attention"],
                             extra_options={"WeightSymmetric": True, "ActivationSymmetric": False,
                                            # the fused graph's contrib ops have no ONNX type inference
                                            "DefaultTensorType": onnx.TensorProto.FLOAT})
            return dst

        rows = [("fp32, plain", plain), ("fp32, fused (O2)", fused),
                ("int8, plain", int8(plain, "int8-plain")), ("int8, fused (O2)", int8(fused, "int8-fused"))]
        texts = benchmark_texts(args.texts)
        ref = load_backend("onnx", plain, spec).embed(texts, 32)
        print("\n| graph | ops (most common) | sent/s | mean cos | min cos |\n|---|---|---|---|---|")
        for label, folder in rows:
            ops = collections.Counter(n.op_type for n in onnx.load(str(folder / "model.onnx")).graph.node)
            backend = load_backend("onnx", folder, spec)
            backend.embed(texts[:64], 32)
            best = 0.0
            for _ in range(3):
                t = time.perf_counter()
                vectors = backend.embed(texts, 32)
                best = max(best, len(texts) / (time.perf_counter() - t))
            cos = (vectors * ref).sum(axis=1)
            top = ", ".join(f"{k} {v}" for k, v in ops.most_common(4))
            print(f"| {label} | {top} | {best:.0f} | {cos.mean():.5f} | {cos.min():.4f} |")


if __name__ == "__main__":
    main()
