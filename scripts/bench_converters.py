"""Convert all-MiniLM-L6-v2 to every CPU target and report size, build time, fidelity and speed.

    .venv/bin/python scripts/bench_converters.py [--texts 1000] [--json results.json]

One fresh zoo home, one process:
1. ``zoo convert all-minilm-l6-v2 --to all-cpu`` (build time and fidelity figures as recorded);
2. each artifact, ready or rejected, embeds the same shuffled mixed-length texts at batch 32
   through zoo's runtime; throughput is reported as a ratio to sentence-transformers' own
   ``encode`` of the torch checkpoint on the same texts (median of 3 rounds);
3. broken controls, measured with the same gate, show what the floors catch:
   wrong pooling (CLS instead of mean), random weights, and per-tensor int8 over all
   operators (the setting zoo does *not* use).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path



def throughput(embed, texts: list[str], rounds: int = 3) -> float:
    from zoo.selection.benchmark import median_time

    embed(texts[:64])
    return len(texts) / median_time(lambda: embed(texts), rounds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()

    import zoo
    from sentence_transformers import SentenceTransformer

    from zoo.engine.backends import load_backend
    from zoo.build.pipeline import convert
    from zoo.build.corpora import benchmark_texts, probe_set
    from zoo.core.floor import DEFAULT_FLOOR
    from zoo.build.fidelity import embed_probe, measure
    from zoo.engine.model_config import spec_of
    from zoo.registry.catalog import DEFAULT_MODEL

    texts = benchmark_texts(args.texts)
    with tempfile.TemporaryDirectory() as tmp:
        reg = zoo.open_registry(str(Path(tmp) / "zoo"))
        resolved = reg.resolve(DEFAULT_MODEL)
        t = time.perf_counter()
        outcomes = convert(reg, DEFAULT_MODEL, ["all-cpu"])
        total_build = time.perf_counter() - t
        checkpoint = reg.artifact_path(resolved.revision.artifacts[0])

        st = SentenceTransformer(str(checkpoint), device="cpu")
        ref_speed = throughput(lambda xs: st.encode(xs, batch_size=32), texts)
        rows = [{"target": "torch-fp32 (sentence-transformers encode)", "status": "reference",
                 "size_mb": resolved.revision.artifacts[0].size_bytes / 1e6, "build_s": 0.0,
                 "mean_cosine": 1.0, "min_cosine": 1.0, "spearman": 1.0, "top1_agreement": 1.0,
                 "recall_at_10": None, "sent_per_s": ref_speed, "ratio": 1.0}]
        for o in outcomes:
            speed = None
            if o.status == "ready":
                m = zoo.load(DEFAULT_MODEL, artifact=o.target, registry=reg, cache=False)
                speed = throughput(lambda xs: m.embed(xs, batch_size=32), texts)
            f = o.fidelity or {}
            rows.append({"target": o.target, "status": o.status, "size_mb": (o.size_bytes or 0) / 1e6,
                         "build_s": o.seconds, "mean_cosine": f.get("mean_cosine"), "min_cosine": f.get("min_cosine"),
                         "spearman": f.get("spearman"), "top1_agreement": f.get("top1_agreement"),
                         "recall_at_10": f.get("recall_at_10"), "sent_per_s": speed,
                         "ratio": speed / ref_speed if speed else None,
                         "runtime_precision": f.get("runtime_precision")})

        # Broken controls, through the same gate.
        probe = probe_set()
        spec = spec_of(resolved.model)
        ref_backend = load_backend("torch", checkpoint, spec, device="cpu")
        ref = embed_probe(lambda xs: ref_backend.embed(list(xs), 32), probe)
        onnx_art = next(a for a in reg.resolve(DEFAULT_MODEL).revision.artifacts if a.target == "onnx-fp32")
        onnx_path = reg.artifact_path(onnx_art)
        controls = {}
        from dataclasses import replace

        cls = load_backend("onnx", onnx_path, replace(spec, pooling="cls"))
        controls["wrong pooling (CLS instead of mean)"] = measure(ref, embed_probe(lambda xs: cls.embed(list(xs), 32), probe), probe.relevant)
        import torch
        from sentence_transformers import models as st_models

        torch.manual_seed(0)
        random_st = SentenceTransformer(modules=[st_models.Transformer(str(checkpoint)), st_models.Pooling(384), st_models.Normalize()], device="cpu")
        for p in random_st[0].auto_model.parameters():
            torch.nn.init.normal_(p, std=0.02)
        controls["random weights"] = measure(ref, embed_probe(lambda xs: random_st.encode(list(xs), batch_size=32), probe), probe.relevant)
        from optimum.onnxruntime import ORTQuantizer
        from optimum.onnxruntime.configuration import AutoQuantizationConfig
        import shutil

        per_tensor = Path(tmp) / "per-tensor"
        shutil.copytree(onnx_path, per_tensor)
        q = ORTQuantizer.from_pretrained(str(per_tensor), file_name="model.onnx")
        q.quantize(save_dir=str(Path(tmp) / "q"), quantization_config=AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False))
        shutil.copy(Path(tmp) / "q" / "model_quantized.onnx", per_tensor / "model.onnx")
        bad_q = load_backend("onnx", per_tensor, spec)
        controls["per-tensor int8, all operators"] = measure(ref, embed_probe(lambda xs: bad_q.embed(list(xs), 32), probe), probe.relevant)

    def fmt(v, spec=".5f"):
        return "-" if v is None else format(v, spec)

    print(f"all-cpu conversion of {DEFAULT_MODEL}: {total_build:.1f} s in total\n")
    print("| target | status | MB | build s | mean cos | min cos | Spearman | top-1 agree | R@10 | sent/s | vs ST fp32 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['target']} | {r['status']} | {r['size_mb']:.1f} | {r['build_s']:.1f} | {fmt(r['mean_cosine'])} | "
              f"{fmt(r['min_cosine'])} | {fmt(r['spearman'], '.4f')} | {fmt(r['top1_agreement'], '.2f')} | "
              f"{fmt(r['recall_at_10'], '.2f')} | {fmt(r['sent_per_s'], '.0f')} | {fmt(r['ratio'], '.2f')}x |")
    print("\nBroken controls through the same gate (default floor: "
          + ", ".join(f"{k} {v}" for k, v in DEFAULT_FLOOR.as_dict().items()) + "):\n")
    print("| control | mean cos | min cos | Spearman | R@10 (ref) | verdict |")
    print("|---|---|---|---|---|---|")
    for name, f in controls.items():
        verdict = DEFAULT_FLOOR.check(f) or "passes"
        print(f"| {name} | {f['mean_cosine']:.4f} | {f['min_cosine']:.4f} | {f['spearman']:.4f} | "
              f"{f['recall_at_10']:.2f} ({f['reference_recall_at_10']:.2f}) | {verdict} |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"rows": rows, "controls": controls,
                                                   "total_build_s": total_build}, indent=2, default=float))


if __name__ == "__main__":
    main()
