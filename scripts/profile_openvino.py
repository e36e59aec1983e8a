"""Where an OpenVINO artifact's time goes: OpenVINO's own per-node counters, summed by node type.

    .venv/bin/python scripts/profile_openvino.py [--home DIR] [--model all-minilm-l6-v2]
                                                 [--targets openvino-int8,openvino-bf16] [--texts 1000]

The artifacts must be built already (`zoo optimize`, or `zoo convert MODEL --to TARGET`). The
texts run length-sorted in batches of 32 through one infer request, once to compile every shape,
then once measured with ``PERF_COUNT``. It shows whether a model is bound by its matrix products
(where int8 helps) or by the rest (element-wise ops, reorders, the fused attention kernel).
"""

from __future__ import annotations

import argparse
import collections
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home")
    ap.add_argument("--model", default="all-minilm-l6-v2")
    ap.add_argument("--targets", default="openvino-int8,openvino-bf16")
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--top", type=int, default=8)
    args = ap.parse_args()

    import openvino as ov

    import zoo
    from zoo.conversion.corpora import benchmark_texts
    from zoo.core.hardware import detect
    from zoo.engine.backends.lean import Prepared, TextEncoder
    from zoo.engine.backends.openvino_rt import compile_config

    hw = detect()
    print(f"CPU: {hw.cpu_model} ({hw.physical_cores} cores)")
    reg = zoo.open_registry(args.home)
    resolved = reg.resolve(args.model)
    artifacts = {a.target: a for a in resolved.revision.artifacts if a.status.value == "ready"}
    texts = benchmark_texts(args.texts)
    for target in args.targets.split(","):
        if target not in artifacts:
            raise SystemExit(f"{args.model} has no ready {target}; build it with `zoo convert {args.model} --to {target}`")
        art = artifacts[target]
        path = reg.artifact_path(art)
        config = {**compile_config((art.provenance or {}).get("settings")), "PERF_COUNT": "YES"}
        compiled = ov.Core().compile_model(str(path / "openvino_model.xml"), "CPU", config)
        encoder = TextEncoder.from_folder(path, resolved.model.max_seq_length, [i.get_any_name() for i in compiled.inputs])
        prepared = Prepared.of(encoder, texts)
        order = sorted(range(len(texts)), key=lambda i: prepared.lengths[i])
        batches = [[prepared.encodings[i] for i in order[k:k + 32]] for k in range(0, len(order), 32)]
        request = compiled.create_infer_request()
        for batch in batches:  # compile every shape first
            request.infer(encoder.pad(batch))
        by_type: collections.Counter = collections.Counter()
        started = time.perf_counter()
        for batch in batches:
            request.infer(encoder.pad(batch))
            for node in request.profiling_info:
                by_type[f"{node.node_type} ({node.exec_type})"] += node.real_time.total_seconds()
        wall = time.perf_counter() - started
        total = sum(by_type.values()) or 1.0
        print(f"\n{target}: {len(texts)} texts in {wall:.2f} s ({len(texts) / wall:.0f} texts/s), "
              f"{total:.2f} s in counted nodes\n")
        print("| node type (kernel) | s | share |\n|---|---|---|")
        for name, seconds in by_type.most_common(args.top):
            print(f"| {name} | {seconds:.3f} | {seconds / total:.1%} |")


if __name__ == "__main__":
    main()
